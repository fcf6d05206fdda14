"""The registry facade: `list_*` and `get_*` for every component kind."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from unlearnkit.core.config import structure_config
from unlearnkit.core.errors import UsageError
from unlearnkit.core.interfaces import Audit, GradientCombiner, MembershipAttack, Sampler, Unlearner
from unlearnkit.core.plugins import Entry, registry

#: attrs field metadata key marking the config field that `NAME:VALUE` fills with VALUE: a dataset
#: read from a file (`npz:data.npz` sets `path`), a model family member (`torchvision:resnet50`).
FROM_NAME = "unlearnkit.from_name"


def _build(kind: str, name: str, config: Any, overrides: dict[str, Any]) -> Any:
    entry = registry.get(kind, name)
    return entry.factory(make_config(entry, config, overrides))


def make_config(entry: Entry, config: Any = None, overrides: Optional[dict[str, Any]] = None) -> Any:
    """An instance of the entry's config class from an instance, a dict, or keyword overrides."""
    if isinstance(config, entry.config_cls):
        if overrides:
            import attrs

            return structure_config(entry.config_cls, {**attrs.asdict(config, recurse=False), **overrides}, f"$.{entry.name}")
        return config
    return structure_config(entry.config_cls, {**(config or {}), **(overrides or {})}, path=f"$.{entry.name}")


def from_name_field(config_cls: type) -> Optional[str]:
    """The config field a `NAME:VALUE` spelling fills, or None when the component takes no value."""
    import attrs

    return next((f.name for f in attrs.fields(config_cls) if f.metadata.get(FROM_NAME)), None)


def resolve(kind: str, name: str, config: Optional[dict[str, Any]] = None) -> tuple[Entry, dict[str, Any]]:
    """The entry for `name` (`NAME` or `NAME:VALUE`) and its config settings, VALUE filled in.

    `NAME:VALUE` names a component whose config class marks one field with `FROM_NAME`; that
    field is set from the name only, never from `config`.
    """
    config = dict(config or {})
    if not isinstance(name, str) or ":" not in name or name in registry.names(kind):
        entry = registry.get(kind, name)
        field = from_name_field(entry.config_cls)
        if field and config.get(field):
            raise UsageError(f"{kind} {name!r}: give the {field} in the name, {name}:{field.upper()}, not as a setting")
        return entry, config
    prefix, _, value = name.partition(":")
    entry = registry.get(kind, prefix)
    field = from_name_field(entry.config_cls)
    if field is None:
        raise UsageError(f"{kind} {name!r}: {prefix!r} takes no value after ':'")
    if not value:
        raise UsageError(f"{kind} {name!r}: expected {prefix}:{field.upper()}")
    if field in config and config[field] != value:
        raise UsageError(f"{kind} {name!r}: {field} comes from the name; drop {field} = {config[field]!r} from its settings")
    return entry, {**config, field: value}


def get_unlearner(name: str, config: Any = None, **overrides: Any) -> Unlearner:
    """The unlearner `name`, configured by `config` (instance or dict) and keyword overrides."""
    return _build("unlearner", name, config, overrides)


def get_attack(name: str, config: Any = None, **overrides: Any) -> MembershipAttack:
    """The membership-inference attack `name`."""
    return _build("attack", name, config, overrides)


def get_sampler(name: str, config: Any = None, **overrides: Any) -> Sampler:
    """The query sampler `name`."""
    return _build("sampler", name, config, overrides)


def get_combiner(name: str, config: Any = None, **overrides: Any) -> GradientCombiner:
    """The gradient combiner `name`."""
    return _build("combiner", name, config, overrides)


def get_audit(name: str, config: Any = None, **overrides: Any) -> Audit:
    """The per-example privacy audit `name`."""
    return _build("audit", name, config, overrides)


def build_model(name: str, task: Any, *, seed: int = 0, config: Any = None, **overrides: Any) -> nn.Module:
    """An untrained model `name` (`NAME` or `NAME:VALUE`, e.g. `torchvision:resnet50`) shaped for
    `task` (its `input_shape` and `num_classes`), seeded."""
    if config is None or isinstance(config, dict):
        entry, config = resolve("model", name, config)
    else:  # an instance of the config class: the name's value goes in as an override
        entry, from_name = resolve("model", name)
        overrides = {**from_name, **overrides}
    cfg = make_config(entry, config, overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.factory(cfg, tuple(task.input_shape), int(task.num_classes))
    return model


def list_unlearners(filter: Optional[str] = None, exclude: Optional[str] = None) -> list[str]:
    """Sorted names of registered unlearners (shell wildcards in `filter`/`exclude`)."""
    return registry.names("unlearner", filter, exclude)


def list_attacks(filter: Optional[str] = None, exclude: Optional[str] = None) -> list[str]:
    """Sorted names of registered attacks."""
    return registry.names("attack", filter, exclude)


def list_samplers(filter: Optional[str] = None, exclude: Optional[str] = None) -> list[str]:
    """Sorted names of registered samplers."""
    return registry.names("sampler", filter, exclude)


def list_combiners(filter: Optional[str] = None, exclude: Optional[str] = None) -> list[str]:
    """Sorted names of registered gradient combiners."""
    return registry.names("combiner", filter, exclude)


def list_datasets(filter: Optional[str] = None, exclude: Optional[str] = None) -> list[str]:
    """Sorted names of registered datasets."""
    return registry.names("dataset", filter, exclude)


def list_models(filter: Optional[str] = None, exclude: Optional[str] = None) -> list[str]:
    """Sorted names of registered models."""
    return registry.names("model", filter, exclude)


def list_audits(filter: Optional[str] = None, exclude: Optional[str] = None) -> list[str]:
    """Sorted names of registered per-example privacy audits."""
    return registry.names("audit", filter, exclude)
