"""The bench's rows say what they claim: Retrain's row is the Retrain model's, every gap is the
distance to it, a method sees exactly the retain access its row names, and a run that changed
nothing says so."""

from __future__ import annotations

import pytest
import torch

import unlearnkit as uk
from unlearnkit.bench import plan
from unlearnkit.bench import runner as bench
from unlearnkit.core.plugins import registry
from unlearnkit.engine.evaluation import METRICS

SEEN: dict[float, int] = {}


@uk.config_class
class SpyConfig:
    move: bool = True


class Spy(uk.Unlearner):
    """Records how much of D_r it was handed, and nudges the head (or leaves the model alone)."""

    def run(self, model, task, *, seed, device, progress):
        SEEN[task.retain_access] = len(task.retain)
        if self.config.move:
            with torch.no_grad():
                uk.models.head(model).bias.add_(0.05)
        return model


@pytest.fixture(scope="module")
def bench_rows(tmp_path_factory):
    registry.register("unlearner", "spy", Spy, SpyConfig)
    out = tmp_path_factory.mktemp("bench")
    settings = plan.resolve({"dataset": "synthetic", "model": "mlp", "attack": "svc-confidence", "seeds": [0], "train": {"epochs": 3},
                             "methods": ["spy", {"name": "spy", "label": "spy γ0.3", "retain_access": 0.3},
                                         {"name": "spy", "label": "still", "move": False}]})
    runner = bench.Bench(settings, out)
    rows = {r["method"]: r for r in runner.run()["rows"]}
    yield runner, rows
    registry.unregister("unlearner", "spy")


def test_the_retrain_row_is_the_retrain_model_evaluated(bench_rows):
    runner, rows = bench_rows
    task = runner.task("random:0.1", 0)
    gold = bench.retrain(task, "mlp", {}, 0, "cpu")  # trained again here, not read from the bench's cache
    expected = uk.evaluate(gold, task, "svc-confidence", seed=0)
    assert {k: rows["retrain"][k] for k in METRICS} == pytest.approx({k: expected[k] for k in METRICS})
    original = uk.evaluate(runner.original(task, 0)[0], task, "svc-confidence", seed=0)
    assert {k: rows["original"][k] for k in METRICS} == pytest.approx({k: original[k] for k in METRICS})


def test_every_gap_is_the_distance_to_the_retrain_row(bench_rows):
    _, rows = bench_rows
    gold = rows["retrain"]
    for row in rows.values():
        for k in METRICS:
            assert row["gap"][k] == pytest.approx(abs(row[k] - gold[k]))
        assert row["gap"]["avg"] == pytest.approx(sum(row["gap"][k] for k in METRICS) / len(METRICS))


def test_a_method_is_handed_exactly_the_retain_access_its_row_names(bench_rows):
    runner, rows = bench_rows
    n_retain = len(runner.task("random:0.1", 0).retain_full)
    assert rows["spy γ0.3"]["retain_access"] == 0.3 and rows["spy"]["retain_access"] == 1.0
    assert SEEN == {1.0: n_retain, 0.3: round(0.3 * n_retain)}


def test_a_row_whose_weights_did_not_change_says_so(bench_rows):
    _, rows = bench_rows
    assert rows["still"]["unchanged"] is True and rows["spy"]["unchanged"] is False
    assert rows["still"]["gap"] == rows["original"]["gap"]
