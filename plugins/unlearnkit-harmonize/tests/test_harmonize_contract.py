"""The shipped combiner contract suite, run on every combiner this plugin provides."""

from __future__ import annotations

from unlearnkit.testing.contracts import parametrize_with_checks


@parametrize_with_checks("combiner", ["harmonize", "sum", "pcgrad", "alternate"])
def test_harmonize_plugin_combiner_contract(name, check):
    check(name)
