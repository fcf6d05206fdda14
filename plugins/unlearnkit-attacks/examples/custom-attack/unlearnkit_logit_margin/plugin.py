"""Registers the `logit-margin` attack with unlearnkit."""

from __future__ import annotations

import unlearnkit as uk
from unlearnkit_logit_margin.attack import LogitMargin, LogitMarginConfig


@uk.hookimpl
def unlearnkit_register_attacks(register) -> None:
    register("logit-margin", LogitMargin, LogitMarginConfig)
