"""The shipped sampler contract suite, on every sampler this plugin provides and its other settings."""

from __future__ import annotations

import attrs

from unlearnkit.testing.contracts import parametrize_with_checks
from unlearnkit_samplers import FeatureNN, FeatureNNConfig, LabelNN, LabelNNConfig

VARIANTS = {
    "feature-nn-input-l2": (lambda cfg: FeatureNN(attrs.evolve(cfg, features="input", metric="l2", tie_break="position")), FeatureNNConfig),
    "label-nn-class": (lambda cfg: LabelNN(attrs.evolve(cfg, label_space="class")), LabelNNConfig),
}


@parametrize_with_checks("sampler", ["feature-nn", "label-nn", "random"])
def test_samplers_plugin_sampler_contract(name, check):
    check(name)


@parametrize_with_checks("sampler", sorted(VARIANTS))
def test_samplers_plugin_setting_contract(name, check, register_component):
    factory, config_cls = VARIANTS[name]
    register_component("sampler", name, factory, config_cls)
    check(name)
