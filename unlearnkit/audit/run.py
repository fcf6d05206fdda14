"""`unlearnkit audit`: build the model populations that per-example audits read, then run them.

Every model (originals, Retrain models, unlearned models) is cached by what determines it in a
`unlearnkit.bench.cache.ModelCache`, so a run that was killed resumes where it stopped and a later
run with more methods or audits reuses what exists. Under torchrun each rank builds its share
of the models (they are independent; rank r takes model indices i with i mod world = r, each
trained by that rank alone) and rank 0 runs the audits and writes the results. The
populations are described in `unlearnkit.data.populations` and docs/audit.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import attrs
import numpy as np
import torch

from unlearnkit.bench.cache import ModelCache
from unlearnkit.bench.plan import BenchSettings, MethodSpec, plan
from unlearnkit.bench.runner import apply_recipe, checkpoint_meta, retrain
from unlearnkit.core.access import PopulationView
from unlearnkit.core.config import unstructure_config
from unlearnkit.core.errors import DivergenceError, UsageError
from unlearnkit.core.plugins import registry
from unlearnkit.core.registry import build_model, get_audit, make_config
from unlearnkit.data.populations import (
    MAX_MODELS,
    SEEDS,
    RepeatedPopulation,
    ShadowPopulation,
    positions_in_train,
    shadow_halves,
    shadow_task,
)
from unlearnkit.data.tasks import UnlearningTask, make_task
from unlearnkit.engine import distributed
from unlearnkit.engine.evaluation import accuracy, predict_logits
from unlearnkit.engine.progress import progress_bar
from unlearnkit.engine.training import train_model


@attrs.frozen
class AuditSettings:
    """A bench setting (one forget spec, one seed) plus the population size and the audits."""

    bench: BenchSettings
    models: int
    audits: tuple[str, ...]

    @property
    def populations(self) -> tuple[str, ...]:
        return tuple(sorted({p for a in self.audits for p in type(get_audit(a)).reads}))


def check_settings(bench: BenchSettings, models: int, audits: Optional[list[str]]) -> AuditSettings:
    """Refuse, before any model is built, what the audits could not use."""
    names = audits or registry.names("audit")
    if not names:
        raise UsageError("no audit is installed; install unlearnkit-audit (pip install ./plugins/unlearnkit-audit)")
    for name in names:
        registry.get("audit", name)
    if len(bench.forget) != 1 or len(bench.seeds) != 1:
        raise UsageError(f"an audit takes one forget spec and one seed, got {list(bench.forget)} and {list(bench.seeds)}")
    settings = AuditSettings(bench=bench, models=models, audits=tuple(dict.fromkeys(names)))
    for name in settings.audits:
        need = type(get_audit(name)).min_models
        if models < need:
            raise UsageError(f"--models {models}: audit {name!r} needs at least {need} models per population")
    if "shadow" in settings.populations and models % 2:
        raise UsageError(f"--models {models}: the shadow population (U-LiRA) pairs its models; give an even number")
    if models > MAX_MODELS:
        raise UsageError(f"--models {models}: at most {MAX_MODELS}")
    return settings


@attrs.frozen
class ModelJob:
    """One model to build: an `original`, a reference `retrain`, or a method's `run`."""

    population: str  # "repeated" | "shadow"
    role: str
    index: int
    method: Optional[str] = None  # the method's label, for runs

    def owner(self, world: int) -> int:
        return self.index % world

    def __str__(self) -> str:
        who = {"run": self.method, "retrain": "reference Retrain"}.get(self.role, self.role)
        return f"{who} {self.index} ({self.population})"


class AuditRun:
    """Builds (or loads) this rank's share of the models, gathers their outputs, runs the audits."""

    def __init__(self, settings: AuditSettings, cache_dir: Path, *, device: str = "cpu", progress: bool = False):
        self.settings, self.device, self.progress = settings, device, progress
        self.cache = ModelCache(cache_dir)
        s = settings.bench
        self.task = self._task(1.0)
        self.seed = self.task.seed
        self.forget_labels = self.task.forget.y.numpy()
        self.methods: list[MethodSpec] = list(s.methods)
        self.gamma = {job.spec.label: job.retain_access for job in plan(s)}  # each method's γ, as the bench's main table
        if "shadow" in settings.populations:
            self.member = shadow_halves(self.task, settings.models)
            self.forgot = self.member[:, positions_in_train(self.task, "forget")]
        self._tasks: dict[float, UnlearningTask] = {1.0: self.task}
        self._originals: dict[ModelJob, tuple[torch.nn.Module, str]] = {}  # model, its cache file name

    # -- the plan ---------------------------------------------------------------------------------
    def jobs(self) -> list[ModelJob]:
        """Every model the audits need, in build order (each original before the runs from it)."""
        n, out = self.settings.models, []
        runs = [m.label for m in self.methods if m.name != "original"]
        if "repeated" in self.settings.populations:
            out += [ModelJob("repeated", "original", 0)] + [ModelJob("repeated", "retrain", r) for r in range(n)]
        if "shadow" in self.settings.populations:
            out += [ModelJob("shadow", "original", i) for i in range(n)]
        for label in runs:
            for population in self.settings.populations:
                out += [ModelJob(population, "run", i, label) for i in range(n)]
        return out

    # -- building ---------------------------------------------------------------------------------
    def build(self) -> dict[ModelJob, dict[str, Any]]:
        """Every job's outputs (logits on D_f, accuracies, build seconds), gathered from all ranks."""
        world, rank = distributed.world_size(), distributed.rank()
        mine = [j for j in self.jobs() if j.owner(world) == rank]
        outputs: dict[ModelJob, dict[str, Any]] = {}
        bar = progress_bar(desc="audit models", total=len(mine), each=True, enabled=self.progress)
        built, built_s = 0, 0.0  # the ETA counts models built in this run, not those loaded from the cache
        with distributed.alone():
            for done, job in enumerate(mine, 1):
                start = time.perf_counter()
                outputs[job] = self._output(job)
                if not outputs[job].get("cached"):
                    built, built_s = built + 1, built_s + time.perf_counter() - start
                eta = f"; ETA {built_s / built * (len(mine) - done) / 60:.0f} min" if built and done < len(mine) else ""
                bar.set_postfix_str(f"{job}: {_brief(outputs[job])}{eta}")
                bar.update(1)
        bar.close()
        gathered: dict[ModelJob, dict[str, Any]] = {}
        for part in distributed.gather_objects(outputs):
            gathered.update(part)
        return gathered

    def _task(self, gamma: float) -> UnlearningTask:
        s = self.settings.bench
        task = make_task(s.dataset, forget=s.forget[0], retain_access=gamma, seed=s.seeds[0], val_ratio=s.val_ratio,
                         data_dir=s.data_dir, download=s.download, dataset_config=s.dataset_config)
        task.recipe = apply_recipe(task.recipe, s.train)
        return task

    def task_for(self, gamma: float) -> UnlearningTask:
        if gamma not in self._tasks:
            self._tasks[gamma] = self._task(gamma)
        return self._tasks[gamma]

    def _output(self, job: ModelJob) -> dict[str, Any]:
        try:
            model, meta = self._model(job)
        except DivergenceError as exc:  # a result too: the method's row says so
            return {"error": str(exc)}
        out = {"logits": predict_logits(model, self.task.forget, device=self.device).numpy(),
               "seconds": float(meta["train_seconds"]), "cached": bool(meta.get("_cached"))}
        if job.population == "repeated":
            for metric, part in (("RA", self.task.retain_full), ("TA", self.task.test)):
                out[metric] = accuracy(predict_logits(model, part, device=self.device), part.y)
        return out

    def _model(self, job: ModelJob) -> tuple[torch.nn.Module, dict]:
        s0 = self.seed
        if job.role == "original" and job.population == "repeated":
            return self.original(self.task, s0, job)
        if job.role == "original":
            seed = s0 + SEEDS["shadow"] + job.index
            return self.original(shadow_task(self.task, self.member[job.index], 1.0, seed), seed, job)
        if job.role == "retrain":
            return self._retrain(self.task, s0 + SEEDS["retrain"] + job.index)
        spec = next(m for m in self.methods if m.label == job.method)
        gamma = self.gamma[spec.label]
        if job.population == "repeated":
            seed, source = s0 + SEEDS["unlearn"] + job.index, ModelJob("repeated", "original", 0)
            task = self.task_for(gamma)
        else:
            seed, source = s0 + SEEDS["shadow-unlearn"] + job.index, ModelJob("shadow", "original", job.index)
            task = shadow_task(self.task, self.member[job.index], gamma, seed)
        if spec.name == "retrain":  # Retrain as a method: the gold recipe, with seeds of its own
            return self._retrain(task, seed)
        if source not in self._originals:  # another rank's job (the repeated original): load it, or train it once
            self._model(source)
        original, source_file = self._originals[source]
        entry = registry.get("unlearner", spec.name)
        config = make_config(entry, spec.config)
        hashes = task.split_hashes()
        key = {**self._common(task), "method": spec.name, "config": unstructure_config(config), "retain_access": gamma,
               "source": source_file, "forget": hashes["forget"], "retain": hashes["retain"], "seed": seed}
        return self._cached("unlearned", task, key, seed, lambda: entry.factory(config).unlearn(
            original, task, seed=seed, device=self.device, progress=False))

    def original(self, task: UnlearningTask, seed: int, job: ModelJob) -> tuple[torch.nn.Module, dict]:
        """An original model, trained on `task.train`, under the bench's cache key (a bench's cache serves)."""
        s = self.settings.bench
        key = {**self._common(task), "seed": seed, "train": task.split_hashes()["train"]}
        model, meta = self._cached("original", task, key, seed, lambda: train_model(
            build_model(s.model, task, seed=seed, config=s.model_config or None), task, seed=seed, device=self.device))
        self._originals[job] = (model, self.cache.path("original", key).name)
        return model, meta

    def _retrain(self, task: UnlearningTask, seed: int) -> tuple[torch.nn.Module, dict]:
        s = self.settings.bench
        hashes = task.split_hashes()
        key = {**self._common(task), "seed": seed, "train": hashes["train"], "forget": hashes["forget"]}
        return self._cached("retrain", task, key, seed, lambda: retrain(task, s.model, s.model_config, seed, self.device))

    def _common(self, task: UnlearningTask) -> dict[str, Any]:
        s = self.settings.bench
        return {"dataset": s.dataset, "dataset_config": task.dataset_config, "model": s.model,
                "model_config": s.model_config, "recipe": unstructure_config(task.recipe)}

    def _cached(self, kind: str, task: UnlearningTask, key: dict, seed: int, train: Callable[[], torch.nn.Module]) -> tuple[torch.nn.Module, dict]:
        """The cached model, with `meta["_cached"]` saying whether it was loaded rather than built now."""
        s = self.settings.bench
        trained = False

        def train_now() -> torch.nn.Module:
            nonlocal trained
            trained = True
            return train()

        model, meta = self.cache.get_or_train(
            kind, key, build=lambda: build_model(s.model, task, seed=seed, config=s.model_config or None), train=train_now,
            meta={**checkpoint_meta(task, s.model, s.model_config), "val_ratio": s.val_ratio, "seed": seed}, device=self.device)
        return model, {**meta, "_cached": not trained}

    # -- auditing ---------------------------------------------------------------------------------
    def populations(self, outputs: dict[ModelJob, dict[str, Any]], spec: MethodSpec) -> dict[str, Any]:
        """The populations of one method's row, from the gathered outputs."""
        n, out = self.settings.models, {}
        if "repeated" in self.settings.populations:
            retrains = [outputs[ModelJob("repeated", "retrain", r)] for r in range(n)]
            if spec.name == "original":
                runs = [outputs[ModelJob("repeated", "original", 0)]] * n  # the original, N times: no unlearning
            else:
                runs = [outputs[ModelJob("repeated", "run", u, spec.label)] for u in range(n)]
            out["repeated"] = RepeatedPopulation(
                unlearned_logits=np.stack([o["logits"] for o in runs]), retrained_logits=np.stack([o["logits"] for o in retrains]),
                labels=self.forget_labels, unlearned_accuracy=_mean_accuracy(runs), retrained_accuracy=_mean_accuracy(retrains))
        if "shadow" in self.settings.populations:
            role = "original" if spec.name == "original" else "run"
            runs = [outputs[ModelJob("shadow", role, i, None if role == "original" else spec.label)] for i in range(n)]
            out["shadow"] = ShadowPopulation(logits=np.stack([o["logits"] for o in runs]), labels=self.forget_labels,
                                             forgot=self.forgot)
        return out

    def audit(self, outputs: dict[ModelJob, dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
        """One row per method (its audits' summaries, or why it has none) and per-example values."""
        rows, per_example = [], {}
        for spec in self.methods:
            mine = [o for j, o in outputs.items() if (j.method == spec.label) or (spec.name == "original" and j.role == "original")]
            row: dict[str, Any] = {"method": spec.label, "name": spec.name, "config": spec.config,
                                   "retain_access": self.gamma[spec.label], "models": self.settings.models,
                                   "build_s": sum(o.get("seconds", 0.0) for o in mine), "audits": {}}
            errors = [o["error"] for o in mine if "error" in o]
            if errors:
                row["error"] = f"{len(errors)} of {len(mine)} models failed: {errors[0]}"
                rows.append(row)
                continue
            populations = self.populations(outputs, spec)
            per_example[spec.label] = {}
            for name in self.settings.audits:
                audit = get_audit(name)
                start = time.perf_counter()
                try:
                    result = audit.run(PopulationView(populations, type(audit).reads, who=f"audit {name!r}"))
                except ValueError as exc:
                    row["audits"][name] = {"error": str(exc)}
                    continue
                row["audits"][name] = {"summary": result.summary, "seconds": time.perf_counter() - start}
                for key, values in result.per_example.items():  # audits name their columns; a clash gets the audit's name
                    per_example[spec.label][f"{name}.{key}" if key in per_example[spec.label] else key] = np.asarray(values)
            rows.append(row)
        return rows, per_example


def _mean_accuracy(outputs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: float(np.mean([o[k] for o in outputs])) for k in ("RA", "TA")}


def _brief(output: dict[str, Any]) -> str:
    if "error" in output:
        return f"failed: {output['error']}"
    return f"{'cached' if output['cached'] else 'built'} ({output['seconds']:.1f} s)"
