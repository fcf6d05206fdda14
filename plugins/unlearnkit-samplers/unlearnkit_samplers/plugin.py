"""Registers the query samplers with unlearnkit (entry point `unlearnkit` → `samplers`)."""

from __future__ import annotations

from unlearnkit import Register, hookimpl

from unlearnkit_samplers.samplers import FeatureNN, FeatureNNConfig, LabelNN, LabelNNConfig, RandomConfig, RandomSampler


@hookimpl
def unlearnkit_register_samplers(register: Register) -> None:
    register("feature-nn", FeatureNN, FeatureNNConfig)
    register("label-nn", LabelNN, LabelNNConfig)
    register("random", RandomSampler, RandomConfig)
