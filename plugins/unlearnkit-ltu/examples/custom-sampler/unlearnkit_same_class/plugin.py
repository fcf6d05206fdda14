"""Registers `same-class` with unlearnkit; LTU uses it once named in `samplers`."""

from unlearnkit import hookimpl
from unlearnkit.core.hookspecs import Register
from unlearnkit_same_class.sampler import SameClass, SameClassConfig


@hookimpl
def unlearnkit_register_samplers(register: Register) -> None:
    register("same-class", SameClass, SameClassConfig)
