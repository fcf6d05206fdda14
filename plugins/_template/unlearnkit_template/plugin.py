"""Registers the template's components with unlearnkit."""

from __future__ import annotations

import unlearnkit as uk
from unlearnkit_template.sampler import NearestClass, NearestClassConfig


@uk.hookimpl
def unlearnkit_register_samplers(register) -> None:
    register("nearest-class", NearestClass, NearestClassConfig)
