"""The bench's `sequential` table: five deletion requests in a row, each method continuing from
its own previous output, each row measured against Retrain on the union so far."""

from __future__ import annotations

import json

import pytest
import torch

from unlearnkit.bench import sequential
from unlearnkit.cli.commands import main
from unlearnkit.core.registry import build_model, get_unlearner
from unlearnkit.data.tasks import ForgetSpec, _load_bundle, make_task
from unlearnkit.engine.checkpoint import load_checkpoint

METHOD = "example-head-reset"


def test_requests_are_disjoint_seeded_draws_whose_union_grows():
    indices = torch.arange(100, 400)
    sets = sequential.forget_sets(indices, seed=3)
    size = round(sequential.REQUEST_RATIO * 300)
    assert [len(s) for s in sets] == [size * k for k in range(1, sequential.REQUESTS + 1)]
    assert all(set(a) < set(b) for a, b in zip(sets, sets[1:])) and set(sets[-1]) <= set(indices.tolist())
    assert sets == sequential.forget_sets(indices, seed=3) and sets != sequential.forget_sets(indices, seed=4)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequential")
    argv = ["bench", "--dataset", "synthetic", "--model", "mlp", "--methods", METHOD, "--tables", "sequential",
            "--attack", "none", "--epochs", "3", "--out", str(root / "out"), "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARNKIT_DATA_DIR", str(root / "data"))
        _load_bundle.cache_clear()
        assert main(argv) == 0
        yield root, argv


def test_one_row_per_method_and_request(bench):
    root, _ = bench
    rows = json.loads((root / "out" / "results.json").read_text())["rows"]
    assert [(r["method"], r["request"]) for r in rows] == [(m, k) for k in range(1, 6) for m in ("original", "retrain", METHOD)]
    train = make_task("synthetic", seed=0).train
    size = round(sequential.REQUEST_RATIO * len(train))
    assert all(r["forgotten"] == size * r["request"] and r["table"] == "sequential" for r in rows)
    assert all(r["gap"]["avg"] == 0 for r in rows if r["method"] == "retrain")
    text = (root / "out" / "results.md").read_text()
    assert "Sequential deletion requests: 5 × `random:0.02`" in text and "| after 1 | after 2 | after 3 | after 4 | after 5 |" in text
    assert f"| {METHOD} | 1 |" in text


def test_each_request_continues_from_the_previous_output(bench):
    root, _ = bench
    rows = {(r["method"], r["request"]): r for r in json.loads((root / "out" / "results.json").read_text())["rows"]}
    _load_bundle.cache_clear()
    base = make_task("synthetic", seed=0)
    sets = sequential.forget_sets(base.train.indices, 0)
    (original_path,) = (root / "out" / "cache").glob("original-*.pt")
    model = build_model("mlp", base)
    model.load_state_dict(load_checkpoint(original_path)[0])
    for k in (1, 2):  # by hand: unlearn the union so far from the previous output
        task = make_task("synthetic", forget=ForgetSpec("indices", sets[k - 1]), seed=0, retain_access=1.0)
        model = get_unlearner(METHOD).unlearn(model, task, seed=0)
        ua = 100 - 100 * (model(task.forget.x).argmax(1) == task.forget.y).float().mean().item()
        assert rows[(METHOD, k)]["UA"] == pytest.approx(ua)


def test_a_resumed_bench_recomputes_the_chain_to_the_same_rows(bench):
    root, argv = bench
    results = json.loads((root / "out" / "results.json").read_text())
    kept = [r for r in results["rows"] if not (r["method"] == METHOD and r["request"] >= 3)]
    (root / "out" / "results.json").write_text(json.dumps({**results, "rows": kept}))
    _load_bundle.cache_clear()
    assert main(argv) == 0
    again = json.loads((root / "out" / "results.json").read_text())["rows"]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("UT_s", "eval_s")}
    assert sorted(map(json.dumps, map(strip, again))) == sorted(map(json.dumps, map(strip, results["rows"])))
