"""`unlearnkit bench`: train the original and Retrain models, run methods, tabulate gaps.

Original and Retrain models are cached in `OUT/cache` (`unlearnkit.cache.ModelCache`) by a
hash of what determines them; each finished row is written to `OUT/results.json` (atomically,
`unlearnkit.results`) as it completes, so an interrupted bench resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import attrs
import torch

from unlearnkit import grid, provenance, sequential
from unlearnkit.cache import ModelCache
from unlearnkit.checkpoint import atomic_write_text
from unlearnkit.config import config_hash, structure_config, unstructure_config
from unlearnkit.errors import ConfigError, DivergenceError, UsageError
from unlearnkit.evaluation import evaluate, gap
from unlearnkit.plugins import registry
from unlearnkit.progress import progress_bar
from unlearnkit.recipe import TrainConfig
from unlearnkit.registry import build_model, get_unlearner, make_config
from unlearnkit.registry import resolve as resolve_component
from unlearnkit.results import SET_ASIDE, ResultsFolder, identity, row_identity  # noqa: F401  (SET_ASIDE: bench's name for it)
from unlearnkit.tasks import UnlearningTask, make_task, parse_forget
from unlearnkit.training import train_model

PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default: minutes on a laptop CPU.
    "quick": {"dataset": "mnist1d", "dataset_config": {"num_samples": 5000}, "model": "cnn1d",
              "forget": ["random:0.1"], "seeds": [0], "tables": ["main"]},
    # The paper's Tables 1-4 on MNIST-1D, sized for a CPU; every method at its defaults.
    "paper-cpu": {"dataset": "mnist1d", "dataset_config": {"num_samples": 50000}, "model": "cnn1d",
                  "forget": ["random:0.1", "random:0.5"], "seeds": [0, 1, 2], "tables": ["main", "access", "ablation"]},
    # The regime grid (unlearnkit.grid): a memorising and a generalising regime, random and class
    # forgetting, every γ and stop rule, on evaluation seeds no setting was tuned on. `regimes`
    # are dataset configurations, each run into OUT/<regime> with its own cache and results.
    "robust": {"dataset": "mnist1d", "dataset_config": {"num_samples": 5000}, "model": "cnn1d",
               "regimes": {"mnist1d-5k": {"num_samples": 5000}, "mnist1d-50k": {"num_samples": 50000}},
               "forget": ["random:0.1", "random:0.5", "class:1"], "seeds": [5, 6, 7], "tables": ["grid"]},
    # SalUn's CIFAR-10 recipe (45k/5k split, 182 epochs, SGD 0.1) for a GPU with CIFAR-10 downloaded.
    "paper-gpu": {"dataset": "cifar10", "dataset_config": {}, "model": "resnet18",
                  "forget": ["random:0.1", "random:0.5"], "seeds": [0, 1, 2], "tables": ["main", "access", "ablation"]},
}
ACCESS_METHODS = ("ft", "randl", "badt", "salun", "ltu", "neggrad-plus", "scrub", "l1-sparse", "sfron")  # Table 2 (+ later baselines)
ACCESS_LEVELS = (0.1, 0.3)
RESERVED = ("name", "label", "retain_access")
REFERENCES = ("original", "retrain")  # rows every main table holds: the input model and the gold model
TABLES = ("main", "access", "ablation", "grid", "sequential")


@attrs.frozen
class MethodSpec:
    """A method to run: its registered `name`, a row `label`, an optional fixed γ and its config."""

    name: str
    label: str
    retain_access: Optional[float] = None
    config: dict = attrs.field(factory=dict)


@attrs.frozen
class BenchSettings:
    dataset: str
    dataset_config: dict
    model: str
    model_config: dict
    train: dict
    methods: tuple
    forget: tuple
    retain_access: Optional[float]
    seeds: tuple
    tables: tuple
    attack: Optional[str]
    val_ratio: float = 0.1
    data_dir: Optional[str] = None
    download: bool = False


@attrs.frozen
class Job:
    table: str
    spec: MethodSpec
    forget: str
    retain_access: float
    seed: int
    request: int = 0  # the `sequential` table's request number

    def key(self) -> tuple:
        return (self.table, self.spec.label, self.forget, self.retain_access, self.seed) + ((self.request,) if self.request else ())


def job_identity(job: Job) -> str:
    """What a result row of `job` must match to be reused (`unlearnkit.results.identity`)."""
    return identity(job.key(), job.spec.name, job.spec.config)


def parse_methods(items: list[Any], path: str = "$.methods") -> list[MethodSpec]:
    """Method entries: a name, or a table with `name`, optional `label`, `retain_access` and config keys."""
    specs = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError([f"{where}: expected a method name or a table with a 'name', got {item!r}"])
        entry = registry.get("unlearner", item["name"])
        config = {k: v for k, v in item.items() if k not in RESERVED}
        try:
            make_config(entry, config)
        except ConfigError as exc:
            raise ConfigError([e.replace(f"$.{entry.name}", where, 1) for e in exc.errors]) from None
        gamma = item.get("retain_access")
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1):
            raise ConfigError([f"{where}.retain_access: must be in (0, 1], got {gamma!r}"])
        specs.append(MethodSpec(item["name"], str(item.get("label", item["name"])), gamma, config))
    labels = [s.label for s in specs]
    dupes = sorted({l for l in labels if labels.count(l) > 1})
    if dupes:
        raise ConfigError([f"{path}: label {dupes[0]!r} used twice; give each entry its own 'label'"])
    return specs


def resolve(options: dict[str, Any]) -> BenchSettings:
    """Settings from a preset overlaid with explicit options (None = not given)."""
    preset_name = options.get("preset") or "quick"
    if preset_name not in PRESETS:
        raise UsageError(f"unknown preset {preset_name!r}; expected one of {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    merged = {**preset, **{k: v for k, v in options.items() if v is not None and k not in ("preset", "regimes")}}
    if merged.get("dataset") != preset["dataset"] and "dataset_config" not in options:
        merged["dataset_config"] = {}
    methods = merged.get("methods") or registry.names("unlearner")
    specs = [MethodSpec(n, n) for n in REFERENCES] + parse_methods([m for m in methods if m not in REFERENCES], "$.bench.methods")
    forget = tuple(str(parse_forget(f)) for f in merged["forget"])
    gamma = merged.get("retain_access")
    if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1):
        raise UsageError(f"retain access must be in (0, 1], got {gamma!r}")
    seeds = merged["seeds"]
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"seeds must be distinct non-negative integers, got {seeds!r}")
    tables = tuple(merged["tables"])
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise UsageError(f"unknown table {unknown[0]!r}; expected one of {', '.join(TABLES)}")
    resolve_component("dataset", merged["dataset"])
    resolve_component("model", merged["model"])
    attack = merged.get("attack", "svc-confidence")
    if attack not in ("", "none"):
        registry.get("attack", attack)  # an unknown name fails now, not after the models are trained
    structure_config(TrainConfig, merged.get("train") or {}, path="$.train")
    return BenchSettings(
        dataset=merged["dataset"], dataset_config=dict(merged.get("dataset_config") or {}), model=merged["model"],
        model_config=dict(merged.get("model_config") or {}), train=dict(merged.get("train") or {}),
        methods=tuple(specs), forget=forget, retain_access=gamma, seeds=tuple(seeds), tables=tables,
        attack=None if attack in ("", "none") else attack, val_ratio=float(merged.get("val_ratio", 0.1)),
        data_dir=merged.get("data_dir"), download=bool(merged.get("download", False)),
    )


def overlay(options: dict[str, Any], *, methods: Optional[str], num_samples: Optional[int], epochs: Optional[int]) -> dict[str, Any]:
    """`options` with a command line's `--methods` (names, or labels of the config's methods),
    `--num-samples` and `--epochs` on top."""
    options = dict(options)
    if methods:
        by_label = {m.get("label", m.get("name")) if isinstance(m, dict) else m: m for m in options.get("methods") or []}
        options["methods"] = [by_label.get(n.strip(), n.strip()) for n in methods.split(",") if n.strip()]
    if num_samples is not None:
        options["dataset_config"] = {**(options.get("dataset_config") or {}), "num_samples": num_samples}
    if epochs is not None:
        options["train"] = {**(options.get("train") or {}), "epochs": epochs}
    return options


def regimes(options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(folder name, options) of each regime to run: the preset's `regimes` unless the dataset or
    its configuration is given explicitly, else one regime in the output folder itself ("")."""
    preset = PRESETS.get(options.get("preset") or "quick", {})
    if "regimes" not in preset or any(options.get(k) is not None for k in ("dataset", "dataset_config")):
        resolve(options)  # refuse bad settings before any work
        return [("", options)]
    out = [(name, {**options, "dataset_config": config}) for name, config in preset["regimes"].items()]
    for _, regime in out:
        resolve(regime)
    return out


def write_grid_report(out: Path, results: dict[str, dict[str, Any]]) -> str:
    """robust.json and robust.md in `out` from each regime's results; returns the Markdown."""
    summary = grid.summarize(results)
    text = grid.markdown(summary)
    atomic_write_text(out / "robust.json", json.dumps({"regimes": {k: v["manifest"] for k, v in results.items()}, **summary}, indent=1))
    atomic_write_text(out / "robust.md", text)
    return text


def plan(settings: BenchSettings) -> list[Job]:
    """Every (table, method, forget, γ, seed) the settings ask for, in run order."""
    jobs = []
    default_gamma = {s.label: s.retain_access for s in settings.methods}
    for seed in settings.seeds:
        for forget in settings.forget:
            for table in settings.tables:
                if table == "main":
                    for spec in settings.methods:
                        gamma = default_gamma[spec.label] or settings.retain_access or _paper_gamma(spec.name)
                        jobs.append(Job(table, spec, forget, gamma, seed))
                elif table == "grid":
                    jobs += _grid_jobs(settings, forget, seed)
                elif forget == settings.forget[0]:
                    jobs += _extra_jobs(table, settings, forget, seed)
    return jobs


def _grid_jobs(settings: BenchSettings, forget: str, seed: int) -> list[Job]:
    """One cell of the regime grid: every method at every γ it takes, under both stop rules (`unlearnkit.grid`)."""
    jobs = []
    for spec in settings.methods:
        if spec.name in REFERENCES:
            jobs.append(Job("grid", spec, forget, 1.0, seed))
            continue
        cls = _unlearner_class(spec.name)
        default_stop = getattr(make_config(registry.get("unlearner", spec.name)), "stop", None)
        for label, config, gammas in grid.variants(spec.name, spec.label, spec.config, cls.reads, default_stop):
            jobs += [Job("grid", MethodSpec(spec.name, label, None, config), forget, g, seed) for g in gammas]
    return jobs


def _paper_gamma(name: str) -> float:
    if name in REFERENCES:
        return 1.0
    return float(getattr(_unlearner_class(name), "default_retain_access", 1.0))


def _unlearner_class(name: str) -> type:
    entry = registry.get("unlearner", name)
    return type(entry.factory(make_config(entry)))


def _extra_jobs(table: str, settings: BenchSettings, forget: str, seed: int) -> list[Job]:
    """Tables 2-4 and the sequential requests for each method with the settings of its (first) entry in the main table."""
    configs: dict[str, dict] = {}
    for spec in settings.methods:
        configs.setdefault(spec.name, spec.config)
    if table == "sequential":
        gamma = {s.label: s.retain_access or settings.retain_access or _paper_gamma(s.name) for s in settings.methods}
        return [Job(table, spec, sequential.REQUEST_SPEC, gamma[spec.label], seed, k)
                for k in range(1, sequential.REQUESTS + 1) for spec in settings.methods]
    if table == "access":
        return [Job(table, MethodSpec(n, n, None, configs[n]), forget, g, seed) for n in ACCESS_METHODS if n in configs for g in ACCESS_LEVELS]
    return [  # each method's own ablations (`Unlearner.ablations`), e.g. LTU's Tables 3-4
        Job(table, MethodSpec(name, f"{name} {label}", None, {**configs[name], **config}), forget, _paper_gamma(name), seed)
        for name in sorted(set(configs) - set(REFERENCES))
        for label, config in _unlearner_class(name).ablations.items()
    ]


class Bench:
    """Runs a plan, caching trained models and writing rows to results.json as they finish.

    `results` (`unlearnkit.results.ResultsFolder`) holds exactly the rows of this configuration:
    rows an earlier run in `out` finished for it are reused, rows it does not ask for are moved
    to `SET_ASIDE` (and taken back by a later run that asks for them). `progress`: bars on a
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
        metrics = dict(gold_metrics) if model is gold else evaluate(model, task, self.settings.attack, seed=job.seed, device=self.device)
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
