"""The seven hooks a plugin may implement. Each receives `register(name, factory, config_cls)`.

`factory(config)` builds the component from an instance of `config_cls` (a frozen attrs
class, see `unlearnkit.core.config.config_class`); for datasets and models the factory takes
extra arguments, documented on each hook.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("unlearnkit")
hookimpl = pluggy.HookimplMarker("unlearnkit")

Register = Callable[[str, Callable[..., Any], type], None]


@hookspec
def unlearnkit_register_unlearners(register: Register) -> None:
    """Register unlearning methods: `factory(config) -> unlearnkit.Unlearner`."""


@hookspec
def unlearnkit_register_attacks(register: Register) -> None:
    """Register membership-inference attacks: `factory(config) -> unlearnkit.MembershipAttack`."""


@hookspec
def unlearnkit_register_samplers(register: Register) -> None:
    """Register LTU query samplers: `factory(config) -> unlearnkit.Sampler`."""


@hookspec
def unlearnkit_register_combiners(register: Register) -> None:
    """Register gradient combiners: `factory(config) -> unlearnkit.GradientCombiner`."""


@hookspec
def unlearnkit_register_datasets(register: Register) -> None:
    """Register datasets: `factory(config, data_dir: Path, download: bool) -> unlearnkit.DatasetBundle`."""


@hookspec
def unlearnkit_register_models(register: Register) -> None:
    """Register models: `factory(config, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module`."""


@hookspec
def unlearnkit_register_audits(register: Register) -> None:
    """Register per-example privacy audits: `factory(config) -> unlearnkit.Audit`."""
