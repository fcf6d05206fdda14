"""The defaults behave as the paper's baselines do on the embedded task (slow: trains cnn1d on mnist1d).

mnist1d, 10% random forgetting, cnn1d, seed 0, every method reading all of D_r (γ = 1, as in
the LTU paper's Table 1). Run with `pytest -m slow plugins/unlearnkit-baselines`.
"""

from __future__ import annotations

import functools

import pytest

import unlearnkit as uk

pytestmark = pytest.mark.slow


@functools.lru_cache(maxsize=1)
def _setting():
    task = uk.make_task("mnist1d", forget="random:0.1", retain_access=1.0, seed=0)
    original = uk.train_model(uk.build_model("cnn1d", task, seed=0), task, seed=0)
    return task, original, uk.evaluate(original, task, attack=None)


@functools.lru_cache(maxsize=None)
def _metrics(name: str, stop: str | None = None) -> dict[str, float]:
    task, original, _ = _setting()
    unlearner = uk.get_unlearner(name, **({"stop": stop} if stop else {}))
    return uk.evaluate(unlearner.unlearn(original, task, seed=0), task, attack=None)


def test_retrain_forgets_as_much_as_it_generalises():
    metrics = _metrics("retrain")
    assert abs(metrics["UA"] - (100.0 - metrics["TA"])) <= 3.0


# Not GA: at SalUn's lr relative to the recipe it forgets next to nothing here, as in the LTU
# paper's Table 1 (CIFAR-10, 10%: GA's ΔUA 4.55 against Retrain, FT's 4.61); docs/baselines.md.
@pytest.mark.parametrize("name", ["randl", "salun", "l1-sparse", "sfron"])
def test_forgetting_methods_raise_unlearning_accuracy(name):
    _, _, original = _setting()
    assert _metrics(name, "fixed")["UA"] > original["UA"]  # the method's own update, its paper's length


def test_ft_keeps_the_remaining_set():
    assert _metrics("ft")["RA"] >= 99.0
