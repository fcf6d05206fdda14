"""What a bench runs: the presets, the settings they resolve to, and the jobs of a plan.

`resolve` turns a preset overlaid with a run configuration's and a command line's options into
`BenchSettings`; `plan` lists the `Job`s (table, method, forget set, γ, seed) those settings ask
for, in run order. Nothing here trains or evaluates: `unlearnkit.bench.runner` runs the jobs.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from unlearnkit.bench import grid, sequential
from unlearnkit.bench.results import identity
from unlearnkit.core.config import structure_config
from unlearnkit.core.errors import ConfigError, UsageError
from unlearnkit.core.plugins import registry
from unlearnkit.core.registry import make_config
from unlearnkit.core.registry import resolve as resolve_component
from unlearnkit.data.recipe import TrainConfig
from unlearnkit.data.tasks import parse_forget

PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default: minutes on a laptop CPU.
    "quick": {"dataset": "mnist1d", "dataset_config": {"num_samples": 5000}, "model": "cnn1d",
              "forget": ["random:0.1"], "seeds": [0], "tables": ["main"]},
    # The paper's Tables 1-4 on MNIST-1D, sized for a CPU; every method at its defaults.
    "paper-cpu": {"dataset": "mnist1d", "dataset_config": {"num_samples": 50000}, "model": "cnn1d",
                  "forget": ["random:0.1", "random:0.5"], "seeds": [0, 1, 2], "tables": ["main", "access", "ablation"]},
    # The regime grid (unlearnkit.bench.grid): a memorising and a generalising regime, random and class
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
    """What a result row of `job` must match to be reused (`unlearnkit.bench.results.identity`)."""
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
    """One cell of the regime grid: every method at every γ it takes, under both stop rules (`unlearnkit.bench.grid`)."""
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
