"""`unlearnkit bench`: train the original and Retrain models, run methods, tabulate gaps.

Original and Retrain models are cached in `OUT/cache` (`unlearnkit.bench.cache.ModelCache`) by a
hash of what determines them; each finished row is written to `OUT/results.json` (atomically,
`unlearnkit.bench.results`) as it completes, so an interrupted bench resumes where it stopped.
What to run — the presets, `BenchSettings` and the plan's `Job`s — is `unlearnkit.bench.plan`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import attrs
import torch

from unlearnkit.bench import grid, provenance, sequential
from unlearnkit.bench.cache import ModelCache
from unlearnkit.bench.plan import REFERENCES, BenchSettings, Job, job_identity, plan
from unlearnkit.bench.results import ResultsFolder, row_identity
from unlearnkit.core.config import config_hash, structure_config, unstructure_config
from unlearnkit.core.errors import DivergenceError
from unlearnkit.core.plugins import registry
from unlearnkit.core.registry import build_model, get_unlearner
from unlearnkit.data.recipe import TrainConfig
from unlearnkit.data.tasks import UnlearningTask, make_task
from unlearnkit.engine.checkpoint import atomic_write_text
from unlearnkit.engine.evaluation import evaluate, gap
from unlearnkit.engine.progress import progress_bar
from unlearnkit.engine.training import train_model


def write_grid_report(out: Path, results: dict[str, dict[str, Any]]) -> str:
    """robust.json and robust.md in `out` from each regime's results; returns the Markdown."""
    summary = grid.summarize(results)
    text = grid.markdown(summary)
    atomic_write_text(out / "robust.json", json.dumps({"regimes": {k: v["manifest"] for k, v in results.items()}, **summary}, indent=1))
    atomic_write_text(out / "robust.md", text)
    return text


class Bench:
    """Runs a plan, caching trained models and writing rows to results.json as they finish.

    `results` (`unlearnkit.bench.results.ResultsFolder`) holds exactly the rows of this configuration:
    rows an earlier run in `out` finished for it are reused, rows it does not ask for are moved
    to `unlearnkit.bench.results.SET_ASIDE` (and taken back by a later run that asks for them). `progress`: bars on a
    terminal, lines in a log.
    """

    def __init__(self, settings: BenchSettings, out: Path, *, device: str = "cpu", progress: bool = False, rank0: bool = True):
        self.settings, self.out, self.device, self.progress, self.rank0 = settings, Path(out), device, progress, rank0
        self.recipe_overrides = settings.train
        self.jobs = plan(settings)
        self.results = ResultsFolder(self.out, self._manifest(), {job_identity(j): _split_key(j.forget, j.seed) for j in self.jobs},
                                     rank0=rank0)
        self.cache = ModelCache(self.out / "cache", writable=rank0)
        self._gold: dict[tuple, tuple] = {}
        self.chains: dict[tuple, Any] = {}  # the sequential table's models between requests

    # -- results.json (`self.results`) -----------------------------------------------------
    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.results.rows

    @property
    def manifest(self) -> dict[str, Any]:
        return self.results.manifest

    @property
    def results_path(self) -> Path:
        return self.results.path

    def load_previous(self, sources: Sequence[Path] = ()) -> tuple[int, int]:
        """`ResultsFolder.load_previous`: (rows reused, rows set aside)."""
        return self.results.load_previous(sources)

    def save(self) -> None:
        self.results.save()

    def finish(self) -> dict[str, Any]:
        return self.results.finish()

    # -- the work --------------------------------------------------------------------------
    def run(self, progress_cb: Optional[Callable[[dict], None]] = None) -> dict[str, Any]:
        import torch._dynamo  # noqa: F401  (a process's first optimiser step imports it, ~2 s: not in any method's UT)

        done = {row_identity(r) for r in self.rows}
        todo = [j for j in self.jobs if job_identity(j) not in done]
        bar = progress_bar(desc="bench", total=len(self.jobs), initial=len(self.jobs) - len(todo), each=True, enabled=self.progress)
        for job in todo:
            row = self.run_job(job)
            self.results.add(row)
            bar.set_postfix_str(f"{job.spec.label} ({job.table}, {job.forget}, γ {job.retain_access:g}, seed {job.seed}): {_brief(row)}")
            bar.update(1)
            if progress_cb:
                progress_cb(row)
        bar.close()
        return self.finish()

    def task(self, forget: str, seed: int, retain_access: float = 1.0) -> UnlearningTask:
        s = self.settings
        task = make_task(s.dataset, forget=forget, retain_access=retain_access, seed=seed, val_ratio=s.val_ratio,
                         data_dir=s.data_dir, download=s.download, dataset_config=s.dataset_config, progress=self.progress)
        task.recipe = apply_recipe(task.recipe, self.recipe_overrides)
        return task

    def _cached_model(self, kind: str, task: UnlearningTask, data_key: dict, train: Callable[[], torch.nn.Module]) -> tuple[torch.nn.Module, float]:
        s = self.settings
        key = {"dataset": s.dataset, "dataset_config": task.dataset_config, "model": s.model,
               "model_config": s.model_config, "recipe": unstructure_config(task.recipe), **data_key}
        model, meta = self.cache.get_or_train(
            kind, key, build=lambda: build_model(s.model, task, seed=data_key["seed"], config=s.model_config or None),
            train=train, meta={**checkpoint_meta(task, s.model, s.model_config), "val_ratio": s.val_ratio}, device=self.device)
        return model, float(meta["train_seconds"])

    def original(self, task: UnlearningTask, seed: int) -> tuple[torch.nn.Module, float]:
        """The original model: trained on D_r ∪ D_f with the dataset's recipe."""
        s = self.settings
        return self._cached_model("original", task, {"seed": seed, "train": task.split_hashes()["train"]}, lambda: train_model(
            build_model(s.model, task, seed=seed, config=s.model_config or None), task, seed=seed, device=self.device,
            progress=self.progress, who=f"original (seed {seed})"))

    def gold(self, task: UnlearningTask, seed: int) -> tuple[torch.nn.Module, float]:
        """The Retrain model: the original's recipe from scratch on D_r alone."""
        s = self.settings
        hashes = task.split_hashes()
        return self._cached_model("retrain", task, {"seed": seed, "train": hashes["train"], "forget": hashes["forget"]},
                                  lambda: retrain(task, s.model, s.model_config, seed, self.device, progress=self.progress))

    def _reference(self, forget: str, seed: int) -> tuple:
        key = (forget, seed)
        if key not in self._gold:
            task = self.task(forget, seed)
            original, original_seconds = self.original(task, seed)
            gold, gold_seconds = self.gold(task, seed)
            gold_metrics = evaluate(gold, task, self.settings.attack, seed=seed, device=self.device)
            self.manifest["split_hashes"][_split_key(forget, seed)] = task.split_hashes()
            self.manifest["train_seconds"][_split_key(forget, seed)] = {"original": original_seconds, "retrain": gold_seconds}
            self._gold[key] = (original, gold, gold_seconds, gold_metrics)
        return self._gold[key]

    def run_job(self, job: Job) -> dict[str, Any]:
        if job.table == "sequential":
            return sequential.run_job(self, job)
        original, gold, gold_seconds, gold_metrics = self._reference(job.forget, job.seed)
        task = self.task(job.forget, job.seed, job.retain_access)
        if job.spec.name == "original":
            model, seconds = original, 0.0
        elif job.spec.name == "retrain":
            model, seconds = gold, gold_seconds  # the gold model is Retrain's output
        else:
            unlearner = get_unlearner(job.spec.name, job.spec.config)
            start = time.perf_counter()
            try:
                model = unlearner.unlearn(original, task, seed=job.seed, device=self.device, progress=self.progress)
            except DivergenceError as exc:  # a result too: recorded, and the bench goes on
                return {**self._row_head(job), "error": str(exc), "UT_s": time.perf_counter() - start}
            seconds = time.perf_counter() - start
        start = time.perf_counter()
        try:
            metrics = dict(gold_metrics) if model is gold else evaluate(model, task, self.settings.attack, seed=job.seed, device=self.device)
        except DivergenceError as exc:
            return {**self._row_head(job), "error": f"{job.spec.name}: {exc}", "UT_s": seconds}
        eval_seconds = time.perf_counter() - start
        run_info = getattr(unlearner, "run_info", {}) if job.spec.name not in REFERENCES else {}
        return {**self._row_head(job), **metrics, "UT_s": seconds, "gap": gap(metrics, gold_metrics), "eval_s": eval_seconds,
                **run_info}

    def _row_head(self, job: Job) -> dict[str, Any]:
        return {
            "table": job.table, "method": job.spec.label, "name": job.spec.name, "config": job.spec.config,
            "dataset": self.settings.dataset, "model": self.settings.model, "forget": job.forget,
            "retain_access": job.retain_access, "seed": job.seed,
        }

    def _manifest(self) -> dict[str, Any]:
        s = self.settings
        setting = {"dataset": s.dataset, "dataset_config": s.dataset_config, "model": s.model, "model_config": s.model_config,
                   "train": s.train, "attack": s.attack, "val_ratio": s.val_ratio}
        task_recipe = unstructure_config(apply_recipe(registry_recipe(s), s.train))
        packages = {e.package for e in registry.entries()}  # the distributions that registered a component
        return {
            "setting_hash": config_hash(setting), "config": {**setting, "forget": list(s.forget), "tables": list(s.tables),
            "methods": [attrs.asdict(m) for m in s.methods], "retain_access": s.retain_access}, "recipe": task_recipe,
            "dataset": s.dataset, "model": s.model, "attack": s.attack, "seeds": list(s.seeds), "effective_batch_size": task_recipe["batch_size"],
            **provenance.environment(packages, self.device), "split_hashes": {}, "train_seconds": {},
        }


def _split_key(forget: str, seed: int) -> str:
    """A task's key in the manifest's `split_hashes` and `train_seconds`."""
    return f"{forget}/seed{seed}"


def _brief(row: dict[str, Any]) -> str:
    """A finished row in a few words, for the progress line."""
    if "error" in row:
        return f"failed: {row['error']}"
    metrics = " ".join(f"{k} {row[k]:.2f}" for k in ("UA", "RA", "TA", "MIA") if k in row)
    return f"{metrics}, UT {row['UT_s']:.1f} s"


def apply_recipe(recipe: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """`recipe` with `overrides` (validated; errors name `$.train.<field>`)."""
    if not overrides:
        return recipe
    return structure_config(TrainConfig, {**unstructure_config(recipe), **overrides}, path="$.train")


def registry_recipe(settings: BenchSettings) -> TrainConfig:
    """The dataset's own training recipe (loads the dataset)."""
    return make_task(settings.dataset, seed=0, val_ratio=settings.val_ratio, data_dir=settings.data_dir,
                     download=settings.download, dataset_config=settings.dataset_config).recipe


def retrain(task: UnlearningTask, model: str, model_config: dict, seed: int, device: Any, progress: bool = False) -> torch.nn.Module:
    """Train `model` from scratch on D_r with the original's recipe and seed (the gold standard)."""
    fresh = build_model(model, task, seed=seed, config=model_config or None)
    return train_model(fresh, task.retain_full, recipe=task.recipe, augment=task.augment, seed=seed, device=device,
                       progress=progress, who=f"retrain (seed {seed})")


def checkpoint_meta(task: UnlearningTask, model: str, model_config: dict) -> dict[str, Any]:
    """What a checkpoint records about how its model was made."""
    return {"dataset": task.dataset, "dataset_config": task.dataset_config, "model": model, "model_config": model_config,
            "num_classes": task.num_classes, "input_shape": list(task.input_shape), "seed": task.seed,
            "recipe": unstructure_config(task.recipe), **task.data_record()}
