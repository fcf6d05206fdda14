"""Registers the gradient combiners with unlearnkit (entry point `unlearnkit` → `harmonize`)."""

from __future__ import annotations

from unlearnkit import Register, hookimpl

from unlearnkit_harmonize.combiners import (
    Alternate,
    AlternateConfig,
    Harmonize,
    HarmonizeConfig,
    PCGrad,
    PCGradConfig,
    SumCombiner,
    SumConfig,
)


@hookimpl
def unlearnkit_register_combiners(register: Register) -> None:
    register("harmonize", Harmonize, HarmonizeConfig)
    register("sum", SumCombiner, SumConfig)
    register("pcgrad", PCGrad, PCGradConfig)
    register("alternate", Alternate, AlternateConfig)
