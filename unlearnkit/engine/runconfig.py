"""TOML run configurations (`--config FILE.toml`), shared by every command.

    [task]      dataset, model, forget, retain_access, seed, val_ratio, data_dir
    [dataset]   options of the dataset's config class      (e.g. num_samples = 5000)
    [model]     options of the model's config class        (e.g. channels = 32)
    [train]     overrides of the training recipe           (e.g. epochs = 30)
    [method]    name = "ltu" plus that method's options    (unlearn)
    [bench]     preset, forget, seeds, tables, attack, retain_access, methods = [...]
                ([[bench.methods]] tables: name, optional label and retain_access, options)

Command-line flags override the file; unknown sections or keys are errors.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from unlearnkit.core.config import config_class, load_toml, structure_config
from unlearnkit.core.errors import ConfigError
from unlearnkit.core.validators import in_range


@config_class
class TaskSection:
    dataset: Optional[str] = None
    model: Optional[str] = None
    forget: Optional[str] = None
    retain_access: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(in_range(0.0, 1.0, low_open=True)))
    seed: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(in_range(0, 2**63 - 1)))
    val_ratio: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, low_open=True, high_open=True))
    data_dir: Optional[str] = None


@config_class
class BenchSection:
    preset: Optional[str] = None
    forget: Optional[list[str]] = None
    seeds: Optional[list[int]] = None
    tables: Optional[list[str]] = None
    attack: Optional[str] = None
    retain_access: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(in_range(0.0, 1.0, low_open=True)))
    methods: Optional[list[Any]] = None


@config_class
class RunConfig:
    task: TaskSection = TaskSection()
    dataset: dict[str, Any] = attrs.field(factory=dict)
    model: dict[str, Any] = attrs.field(factory=dict)
    train: dict[str, Any] = attrs.field(factory=dict)
    method: dict[str, Any] = attrs.field(factory=dict)
    bench: BenchSection = BenchSection()

    def bench_options(self) -> dict[str, Any]:
        """The bench options this file sets (None where it is silent)."""
        t, b = self.task, self.bench
        return {
            "preset": b.preset, "dataset": t.dataset, "model": t.model,
            "dataset_config": self.dataset or None, "model_config": self.model or None, "train": self.train or None,
            "forget": b.forget or ([t.forget] if t.forget else None),
            "seeds": b.seeds or ([t.seed] if t.seed is not None else None),
            "tables": b.tables, "attack": b.attack, "retain_access": b.retain_access or t.retain_access,
            "methods": b.methods, "val_ratio": t.val_ratio, "data_dir": t.data_dir,
        }


def load_run_config(path: Optional[str]) -> RunConfig:
    """The run configuration in `path` (an empty one when None)."""
    if path is None:
        return RunConfig()
    data = load_toml(path)  # its errors name the file already
    try:
        return structure_config(RunConfig, data, path="$")
    except ConfigError as exc:  # name the file once: `run.toml: $.task: unknown key(s) 'foo'`
        raise ConfigError([f"{path}: {exc.errors[0]}", *exc.errors[1:]]) from None

