"""The bench: plans per preset, statistics over seeds, paired comparisons, tables, resume."""

from __future__ import annotations

import json

import pytest
import torch

import unlearnkit as uk
from unlearnkit.bench import plan, report
from unlearnkit.bench import runner as bench
from unlearnkit.bench.results import SET_ASIDE
from unlearnkit.core.errors import UsageError


def _row(method, seed, avg, table="main", forget="random:0.1", gamma=1.0, name=None):
    metrics = {"UA": 5.0 + seed, "RA": 100.0, "TA": 94.0 - seed, "MIA": 12.0}
    return {"table": table, "method": method, "name": name or method, "forget": forget, "retain_access": gamma,
            "seed": seed, **metrics, "UT_s": 1.0 + seed, "gap": {"UA": avg, "RA": 0.0, "TA": 0.0, "MIA": 0.0, "avg": avg}}


def test_summary_is_mean_and_sample_std_over_seeds():
    rows = [_row("ft", s, a) for s, a in [(0, 1.0), (1, 2.0), (2, 3.0)]]
    (entry,) = report.summarize(rows)
    assert entry["n_seeds"] == 3
    assert entry["UA"] == {"mean": 6.0, "std": 1.0}
    assert entry["gap"]["avg"] == {"mean": 2.0, "std": 1.0}
    assert entry["UT_s"]["mean"] == 2.0


def test_paired_comparison_counts_wins_and_tests_when_enough_seeds():
    rows = [_row("ltu", s, a, gamma=0.3) for s, a in [(0, 0.5), (1, 0.4), (2, 0.9)]]
    rows += [_row("salun", s, a) for s, a in [(0, 1.0), (1, 0.2), (2, 1.5)]]
    rows += [_row("retrain", s, 0.0) for s in range(3)]
    (c,) = report.compare(rows)
    assert c["baseline"] == "salun" and c["wins"] == 2 and c["seeds"] == [0, 1, 2]
    assert c["mean_diff"] == pytest.approx((-0.5 + 0.2 - 0.6) / 3)
    assert 0 < c["p_value"] < 1
    (c2,) = report.compare([r for r in rows if r["seed"] < 2])
    assert c2["p_value"] is None  # two seeds: signs only


def test_markdown_shows_value_std_and_gap():
    rows = [_row("ft", s, a) for s, a in [(0, 1.0), (1, 2.0)]]
    results = {"manifest": {"dataset": "d", "model": "m", "seeds": [0, 1], "attack": "a", "device": "cpu"},
               "summary": report.summarize(rows), "comparisons": []}
    text = report.markdown(results)
    assert "| ft | 1 | 5.50±0.71 (1.50) | 100.00±0.00 (0.00) |" in text
    assert "Table 1" in text


def test_markdown_has_a_stop_column_and_marks_rows_equal_to_the_original():
    rows = [{**_row("salun", s, 1.0), "stop_reason": "guard", "unchanged": s < 2} for s in range(3)]
    rows += [{**_row("ga", s, 1.0), "stop_reason": "target" if s else "budget"} for s in range(3)]
    rows += [_row("fisher", s, 1.0) for s in range(3)]
    results = {"manifest": {"dataset": "d", "model": "m", "seeds": [0, 1, 2], "attack": "a", "device": "cpu"},
               "summary": report.summarize(rows), "comparisons": []}
    lines = report.markdown(results).splitlines()
    assert "| method | γ | UA | RA | TA | MIA | avg gap | UT (s) | stop |" in lines
    (salun,) = [line for line in lines if line.startswith("| salun")]
    assert salun.startswith("| salun (= original on 2/3 seeds) |") and salun.endswith("| guard ×3 |")
    assert [line for line in lines if line.startswith("| ga ")][0].endswith("| budget, target ×2 |")
    assert [line for line in lines if line.startswith("| fisher ")][0].endswith("| – |")  # no stop rule
    every = report.summarize([{**_row("ssd", s, 1.0), "unchanged": True} for s in range(2)])
    assert every[0]["unchanged_seeds"] == 2 and "| ssd (= original) |" in report.markdown({**results, "summary": every})


def test_plans_follow_the_paper_tables(monkeypatch):
    methods = tuple(plan.MethodSpec(n, n) for n in ("original", "retrain", "ft", "salun", "ltu"))
    monkeypatch.setattr(plan, "paper_gamma", lambda name: 0.3 if name == "ltu" else 1.0)
    settings = plan.BenchSettings(dataset="mnist1d", dataset_config={}, model="cnn1d", model_config={}, train={},
                                  methods=methods, forget=("random:0.1", "random:0.5"), retain_access=None,
                                  seeds=(0, 1, 2), tables=("main", "access", "ablation"), attack=None)
    jobs = plan.plan(settings)
    main = [j for j in jobs if j.table == "main"]
    assert len(main) == 5 * 2 * 3
    assert {(j.spec.name, j.retain_access) for j in main} >= {("ltu", 0.3), ("salun", 1.0), ("retrain", 1.0)}
    access = [j for j in jobs if j.table == "access"]
    assert {(j.spec.name, j.retain_access) for j in access} == {(n, g) for n in ("ft", "salun", "ltu") for g in (0.1, 0.3)}
    assert {j.forget for j in access} == {"random:0.1"}
    ablation = [j for j in jobs if j.table == "ablation"]
    ltu_ablations = plan.unlearner_class("ltu").ablations
    assert {j.spec.label for j in ablation} == {f"ltu {a}" for a in ltu_ablations} and len(ablation) == len(ltu_ablations) * 3
    assert len({j.key() for j in jobs}) == len(jobs)


def test_tables_2_to_4_use_the_settings_given_for_the_method():
    settings = plan.resolve({"methods": [{"name": "ltu", "iterations": 7}, {"name": "ltu", "label": "ltu long", "iterations": 50}],
                              "tables": ["main", "access", "ablation"]})
    extra = [j for j in plan.plan(settings) if j.table != "main"]
    assert extra and all(j.spec.config["iterations"] == 7 for j in extra)  # the method's first entry
    first_order = [j for j in extra if j.spec.label == "ltu first-order"]
    assert first_order[0].spec.config == {"iterations": 7, "first_order": True}


def test_every_preset_runs_each_method_at_its_defaults():
    for name in plan.PRESETS:
        settings = plan.resolve({"preset": name, "methods": ["ltu", "salun"]})
        assert all(s.config == {} for s in settings.methods), name


def test_the_grid_runs_every_gamma_and_both_stop_rules_in_every_cell():
    settings = plan.resolve({"preset": "robust", "methods": ["ltu", "ga", "ssd"]})
    jobs = plan.plan(settings)
    assert settings.forget == ("random:0.1", "random:0.5", "class:1") and settings.seeds == (5, 6, 7)
    cell = {(j.spec.label, j.retain_access) for j in jobs if j.forget == "class:1" and j.seed == 6}
    ltu_other = "ltu fixed" if uk.get_unlearner("ltu").config.stop == "calibrated" else "ltu calibrated"
    ga_other = "ga fixed" if uk.get_unlearner("ga").config.stop == "calibrated" else "ga calibrated"
    assert cell == {
        ("original", 1.0), ("retrain", 1.0),
        *((label, g) for label in ("ltu", ltu_other) for g in (0.1, 0.3, 1.0)),  # reads D̂_r: every γ
        ("ga", 1.0), (ga_other, 1.0),  # reads D_f only: γ = 1
        ("ssd", 1.0),  # not iterative: one stop rule
    }
    other = next(j for j in jobs if j.spec.label == ga_other)
    assert other.spec.config == {"stop": ga_other.split()[1]}
    assert len(jobs) == 3 * 3 * len(cell)


@pytest.mark.parametrize("options, message", [
    ({"preset": "huge"}, "unknown preset 'huge'"),
    ({"seeds": [0, 0]}, "seeds must be distinct"),
    ({"tables": ["main", "extra"]}, "unknown table 'extra'"),
    ({"forget": ["random:2"]}, "ratio must be in (0, 1)"),
    ({"methods": ["example-head-reset", {"name": "example-head-reset"}]}, "label 'example-head-reset' used twice"),
    ({"methods": [{"name": "example-head-reset", "epochs": 0}]}, "$.bench.methods[0].epochs: must be > 0, got 0"),
])
def test_bad_settings_are_refused_before_any_work(options, message):
    with pytest.raises(UsageError) as info:
        plan.resolve(options)
    assert message in str(info.value)


def test_bench_end_to_end_with_a_third_party_method(tmp_path):
    settings = plan.resolve({"dataset": "synthetic", "model": "mlp", "methods": ["example-head-reset"], "attack": None,
                              "seeds": [0, 1], "train": {"epochs": 3}})
    runner = bench.Bench(settings, tmp_path)
    results = runner.run()
    assert {r["method"] for r in results["rows"]} == {"original", "retrain", "example-head-reset"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == results["rows"]
    for field in ("UA", "RA", "TA", "UT_s", "gap", "seed", "forget", "retain_access", "dataset", "model"):
        assert field in saved["rows"][-1]
    assert all(r["gap"]["avg"] == 0 for r in saved["rows"] if r["method"] == "retrain")
    assert set(saved["manifest"]["split_hashes"]) == {"random:0.1/seed0", "random:0.1/seed1"}
    assert (tmp_path / "results.md").read_text().count("| example-head-reset |") == 1
    assert (tmp_path / "results.png").stat().st_size > 0  # the plot extra is installed for the tests
    assert set(saved["manifest"]["train_seconds"]["random:0.1/seed1"]) == {"original", "retrain"}
    assert all(r["eval_s"] >= 0 for r in saved["rows"])
    again = bench.Bench(settings, tmp_path)
    assert again.load_previous() == (6, 0)
    assert again.run()["rows"] == results["rows"]  # nothing recomputed
    assert json.loads((tmp_path / "results.json").read_text())["manifest"]["split_hashes"] == saved["manifest"]["split_hashes"]


def test_a_diverging_method_is_recorded_and_the_bench_goes_on():
    rows = [_row("ft", 0, 1.0), _row("ga", 0, 2.0)]
    rows.append({**{k: rows[1][k] for k in ("table", "method", "name", "forget", "retain_access")}, "seed": 1,
                 "error": "ga: loss became nan at step 50; lower the learning rate", "UT_s": 0.4})
    rows.append({**rows[2], "method": "boom", "name": "boom", "seed": 0})
    summary = {e["method"]: e for e in report.summarize(rows)}
    assert summary["ga"]["n_seeds"] == 1 and summary["ga"]["failed"][0]["seed"] == 1
    results = {"manifest": {"dataset": "d", "model": "m", "seeds": [0, 1], "attack": "a", "device": "cpu"},
               "summary": list(summary.values()), "comparisons": report.compare(rows)}
    text = report.markdown(results)
    assert "| ga (failed on 1 seed(s)) | 1 | 5.00 (2.00) |" in text
    assert "| boom | 1 | failed on seed(s) 0: ga: loss became nan at step 50" in text


def test_bench_records_divergence_as_a_row(tmp_path):
    settings = plan.resolve({"dataset": "synthetic", "model": "mlp", "attack": None, "train": {"epochs": 2},
                              "methods": [{"name": "example-head-reset", "label": "diverges", "lr": 1e37, "epochs": 20},
                                          {"name": "example-head-reset", "label": "fine"}]})
    rows = bench.Bench(settings, tmp_path).run()["rows"]
    assert [r["method"] for r in rows] == ["original", "retrain", "diverges", "fine"]
    assert "loss became" in rows[2]["error"] and "UA" not in rows[2]
    assert "UA" in rows[3]


RESET = "example-head-reset"


def _settings(methods, seeds=(0,)):
    return plan.resolve({"dataset": "synthetic", "model": "mlp", "methods": methods, "attack": None, "seeds": list(seeds),
                          "train": {"epochs": 2}})


def _run(methods, out, seeds=(0,)):
    runner = bench.Bench(_settings(methods, seeds), out)
    reused, aside = runner.load_previous()
    return runner.run(), reused, aside


def test_results_hold_exactly_the_rows_asked_for_and_keep_the_others_aside(tmp_path):
    a, b = {"name": RESET, "label": "a"}, {"name": RESET, "label": "b", "epochs": 2}
    full, _, _ = _run([a, b], tmp_path)
    only_b, reused, aside = _run([b], tmp_path)
    assert (reused, aside) == (3, 1)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in saved["rows"]] == ["original", "retrain", "b"] == [r["method"] for r in only_b["rows"]]
    assert saved["rows"] == [r for r in full["rows"] if r["method"] != "a"]  # reused as they were, not recomputed
    assert [m["label"] for m in saved["manifest"]["config"]["methods"]] == ["original", "retrain", "b"]
    assert {e["method"] for e in saved["summary"]} == {"original", "retrain", "b"}
    assert "| a |" not in (tmp_path / "results.md").read_text()
    set_aside = json.loads((tmp_path / SET_ASIDE).read_text())
    assert set_aside["rows"] == [r for r in full["rows"] if r["method"] == "a"]
    # asking for `a` again takes its row back; nothing is left aside
    again, reused, aside = _run([a, b], tmp_path)
    assert (reused, aside) == (4, 0) and again["rows"] == full["rows"] and not (tmp_path / SET_ASIDE).exists()


def test_a_row_of_other_method_settings_is_not_reused(tmp_path):
    first, _, _ = _run([{"name": RESET, "label": "b", "epochs": 2}], tmp_path)
    second, reused, aside = _run([{"name": RESET, "label": "b", "epochs": 3}], tmp_path)
    assert (reused, aside) == (2, 1)
    (old,) = [r for r in first["rows"] if r["method"] == "b"]
    (new,) = [r for r in second["rows"] if r["method"] == "b"]
    assert (old["config"], new["config"]) == ({"epochs": 2}, {"epochs": 3})
    assert json.loads((tmp_path / SET_ASIDE).read_text())["rows"] == [old]


def test_the_manifest_describes_only_the_seeds_beside_it(tmp_path):
    _run([RESET], tmp_path, seeds=(0, 1))
    results, reused, _ = _run([RESET], tmp_path, seeds=(1,))
    assert reused == 3 and {r["seed"] for r in results["rows"]} == {1}
    manifest = json.loads((tmp_path / "results.json").read_text())["manifest"]
    assert manifest["seeds"] == [1] and set(manifest["split_hashes"]) == set(manifest["train_seconds"]) == {"random:0.1/seed1"}
    back, reused, aside = _run([RESET], tmp_path, seeds=(0, 1))  # seed 0 comes back with its split hashes
    assert (reused, aside) == (6, 0)
    assert set(json.loads((tmp_path / "results.json").read_text())["manifest"]["split_hashes"]) == {"random:0.1/seed0", "random:0.1/seed1"}


def test_the_manifest_traces_a_result_without_a_git_checkout(tmp_path, monkeypatch):
    import subprocess

    import unlearnkit
    from unlearnkit.bench import provenance

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")  # an install from a wheel: no checkout, maybe no git at all

    monkeypatch.setattr(subprocess, "run", no_git)
    manifest = bench.Bench(_settings([RESET]), tmp_path).manifest
    source = manifest["git"]
    assert source["revision"] is None and source["dirty"] is None
    assert source["distributions"]["unlearnkit"]["version"] == unlearnkit.__version__
    assert set(source["distributions"]) >= {"unlearnkit", "unlearnkit-example"}  # every distribution that registered a component
    assert manifest["versions"]["unlearnkit"] == unlearnkit.__version__ and "torch" in manifest["versions"]
    # a pip install from a VCS URL records its commit (PEP 610), which becomes the revision
    info = tmp_path / "site" / "unlearnkit_fake-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unlearnkit-fake\nVersion: 1.0\n")
    (info / "direct_url.json").write_text(json.dumps({"url": "https://example.org/unlearnkit.git",
                                                      "vcs_info": {"vcs": "git", "commit_id": "0123abcd"}}))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fake = provenance.source(["unlearnkit-fake"])["distributions"]["unlearnkit-fake"]
    assert fake == {"version": "1.0", "installed_from": "git+https://example.org/unlearnkit.git", "commit": "0123abcd"}


def test_the_manifest_records_processes_and_threads(tmp_path):
    """A row can depend on the intra-op thread count (docs/scaling.md): the manifest says which."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = bench.Bench(_settings([RESET]), tmp_path).manifest
        torch.set_num_threads(2)
        two = bench.Bench(_settings([RESET]), tmp_path).manifest
    finally:
        torch.set_num_threads(before)
    assert (one["threads"], two["threads"], one["world_size"]) == (1, 2, 1)


def test_the_manifest_records_the_checkout_revision():
    import subprocess
    from pathlib import Path

    from unlearnkit.bench import provenance

    root = Path(uk.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("unlearnkit is not imported from a git checkout here")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    assert provenance.checkout_revision() == (head, bool(subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()))


def test_rows_of_an_older_results_file_read_guard_as_guard_acted(tmp_path):
    """Results files written before the field was renamed call it `guard`: reused rows carry the new name."""
    _run([RESET], tmp_path)
    path = tmp_path / "results.json"
    saved = json.loads(path.read_text())
    saved["rows"][-1]["guard"] = 1
    path.write_text(json.dumps(saved))
    results, reused, _ = _run([RESET], tmp_path)
    assert reused == 3
    assert results["rows"][-1]["guard_acted"] == 1 and "guard" not in results["rows"][-1]
    assert "guard" not in json.loads(path.read_text())["rows"][-1]
