"""The regime grid: its report from rows (ranks, collapses, paired comparisons) and the bench run end to end."""

from __future__ import annotations

import json

import pytest

import unlearnkit as uk
from unlearnkit.bench import grid, plan, report
from unlearnkit.cli import commands as cli


def _row(method, forget, seed, avg, *, gamma=1.0, TA=90.0, RA=99.0, UT=1.0, name=None, error=None):
    row = {"table": "grid", "method": method, "name": name or method.split()[0], "config": {}, "forget": forget,
           "retain_access": gamma, "seed": seed, "UT_s": UT}
    if error:
        return {**row, "error": error}
    return {**row, "TA": TA, "RA": RA, "gap": {"UA": avg, "RA": 0.0, "TA": 0.0, "MIA": 0.0, "avg": avg}}


def _results(rows):
    return {"rows": rows, "manifest": {}}


def test_the_report_ranks_entries_per_cell_counts_collapses_and_pairs_by_seed():
    rows = []
    for regime_rows in (rows,):
        for seed in (5, 6):
            regime_rows += [
                _row("retrain", "random:0.1", seed, 0.0, TA=90.0, RA=100.0, UT=10.0),
                _row("ltu", "random:0.1", seed, 1.0, gamma=0.3, UT=2.0),
                _row("ft", "random:0.1", seed, 2.0, UT=1.0),
                _row("ga", "random:0.1", seed, 0.5, TA=80.0, UT=0.5),  # best gap, but TA 10 points below Retrain's
            ]
    rows += [_row("retrain", "class:1", 5, 0.0, TA=80.0, RA=100.0, UT=10.0), _row("ltu", "class:1", 5, 3.0, gamma=0.3, TA=80.0, RA=100.0),
             _row("ft", "class:1", 5, 1.0, TA=80.0, RA=100.0), _row("ga", "class:1", 5, 0.0, error="diverged")]
    report = grid.summarize({"small": _results(rows)}, reference="ltu γ0.3")
    methods = {m["entry"]: m for m in report["methods"]}
    assert methods["ga γ1"]["collapses"] == 3  # two collapsed seeds and one diverged run
    assert methods["ga γ1"]["failed_cells"] == 1 and methods["ga γ1"]["worst_avg_gap"] == float("inf")
    assert methods["ga γ1"]["mean_rank"] == pytest.approx((1 + 3) / 2)  # first in random:0.1, last where it failed
    assert methods["ltu γ0.3"]["mean_rank"] == pytest.approx((2 + 2) / 2)  # 2nd of 3 in random:0.1, 2nd of 2 in class:1
    assert methods["ft γ1"]["mean_avg_gap"] == pytest.approx((2.0 + 1.0) / 2)
    assert methods["ltu γ0.3"]["max_UT_ratio"] == pytest.approx(0.2)
    cell = next(c for c in report["cells"] if c["entry"] == "ft γ1" and c["forget"] == "random:0.1")
    assert cell["gap"]["avg"] == 2.0 and cell["seeds"] == [5, 6] and cell["collapses"] == 0
    pairs = {c["entry"]: c for c in report["comparisons"]}
    assert pairs["ft γ1"]["pairs"] == 3 and pairs["ft γ1"]["wins"] == 2
    assert pairs["ga γ1"]["wins"] == 1  # a diverged run loses its pair
    text = grid.markdown(report)
    assert "| ga γ1 | 2 | failed | failed in 1 |" in text and "## ltu γ0.3 against each entry" in text


def test_robust_bench_runs_each_regime_in_its_folder_and_writes_the_grid_report(tmp_path, monkeypatch):
    tiny = {"dataset": "synthetic", "dataset_config": {"num_samples": 400}, "model": "mlp",
            "regimes": {"small": {"num_samples": 400}, "large": {"num_samples": 800}},
            "forget": ["random:0.1", "class:1"], "seeds": [5], "tables": ["grid"], "attack": "none", "train": {"epochs": 2}}
    monkeypatch.setitem(plan.PRESETS, "tiny-grid", tiny)
    code = cli.main(["bench", "--preset", "tiny-grid", "--methods", "ga,example-head-reset", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    ga_other = "ga fixed" if uk.get_unlearner("ga").config.stop == "calibrated" else "ga calibrated"
    for regime in ("small", "large"):
        rows = json.loads((tmp_path / regime / "results.json").read_text())["rows"]
        assert {r["forget"] for r in rows} == {"random:0.1", "class:1"}
        assert {r["method"] for r in rows} >= {"original", "retrain", "ga", ga_other}
    report = json.loads((tmp_path / "robust.json").read_text())
    assert set(report["regimes"]) == {"small", "large"}
    assert {c["regime"] for c in report["cells"]} == {"small", "large"}
    assert f"{ga_other} γ1" in {m["entry"] for m in report["methods"]}
    assert "## Methods across cells" in (tmp_path / "robust.md").read_text()


def test_a_regime_run_on_its_own_joins_the_grid_with_rows_from(tmp_path, monkeypatch):
    """A seed of one regime run as a separate one-regime process is taken into that regime's folder."""
    tiny = {"dataset": "synthetic", "dataset_config": {"num_samples": 400}, "model": "mlp",
            "regimes": {"small": {"num_samples": 400}, "large": {"num_samples": 800}},
            "forget": ["random:0.1"], "seeds": [5], "tables": ["grid"], "attack": "none", "train": {"epochs": 1}}
    monkeypatch.setitem(plan.PRESETS, "tiny-grid", tiny)
    common = ["bench", "--preset", "tiny-grid", "--methods", "example-head-reset", "--quiet"]
    grid_out, alone = tmp_path / "grid", tmp_path / "large-seed6"
    assert cli.main(common + ["--out", str(grid_out)]) == 0
    assert cli.main(common + ["--num-samples", "800", "--seeds", "6", "--out", str(alone)]) == 0
    theirs = json.loads((alone / "results.json").read_text())["rows"]
    assert cli.main(common + ["--seeds", "5,6", "--out", str(grid_out), "--rows-from", str(alone)]) == 0
    large = json.loads((grid_out / "large" / "results.json").read_text())["rows"]
    assert [r for r in large if r["seed"] == 6] == theirs  # taken, not run again
    small = json.loads((grid_out / "small" / "results.json").read_text())["rows"]
    assert {r["seed"] for r in small} == {5, 6}  # the other regime ran its new seed itself
    assert {c["regime"] for c in json.loads((grid_out / "robust.json").read_text())["cells"]} == {"small", "large"}


def _main(method, forget, seed, avg, **kw):
    return {**_row(method, forget, seed, avg, **kw), "table": "main"}


def test_table_1_over_several_forget_settings_ranks_its_entries_across_them_and_pairs_ltu_with_each():
    rows = []
    for forget, ft_gap in (("random:0.1", 2.0), ("class:1", 4.0)):
        for seed in (10, 11):
            rows += [_main("retrain", forget, seed, 0.0, UT=10.0), _main("ltu", forget, seed, 3.0, gamma=0.3),
                     _main("ltu tuned", forget, seed, 1.0, gamma=0.3, name="ltu"), _main("ft", forget, seed, ft_gap)]
    across = report.across(rows)
    methods = {m["entry"]: m for m in across["methods"]}
    assert methods["ft γ1"]["mean_avg_gap"] == pytest.approx(3.0) and methods["ft γ1"]["worst_avg_gap"] == 4.0
    assert methods["ltu tuned γ0.3"]["mean_rank"] == 1.0 and methods["ltu γ0.3"]["mean_rank"] == pytest.approx(2.5)
    pairs = {(c["reference"], c["entry"]): c for c in across["comparisons"]}
    assert pairs[("ltu tuned γ0.3", "ft γ1")]["wins"] == 4 and pairs[("ltu γ0.3", "ft γ1")]["wins"] == 2
    text = report.markdown({"manifest": {"dataset": "d", "model": "m", "seeds": [10, 11], "attack": "none", "device": "cpu"},
                            "summary": report.summarize(rows), "across": across})
    assert "## Table 1 — unlearning performance: across the forget settings" in text
    assert "### ltu tuned γ0.3 against each entry" in text and "| ft γ1 | 2 | 3.00 | 4.00 | 2.5 | 0 | 0.10 |" in text
    assert report.across([r for r in rows if r["forget"] == "class:1"]) is None  # one setting: its own table says it all
    unfinished = [r for r in rows if not (r["name"] == "retrain" and r["forget"] == "class:1")]  # a bench still running
    assert {c["forget"] for c in report.across(unfinished)["cells"]} == {"random:0.1"}
