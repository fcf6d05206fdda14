"""The configurations shipped in configs/: the tuned ones of docs/results.md "Equal footing" load
as run configurations, build their methods, record the study they came from, and the evaluation
plan beside them names every method at its defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import unlearnkit as uk
from unlearnkit.bench import plan
from unlearnkit.engine.runconfig import load_run_config
from unlearnkit.tune import report

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
TUNED = sorted(p for p in (CONFIGS / "tuned").iterdir() if p.is_dir())
CELLS = ["random:0.1", "random:0.5", "class:1"]


def test_both_equal_footing_studies_are_shipped():
    assert [p.name for p in TUNED] == ["mnist1d-5k", "mnist1d-5k-gamma0.1"]


@pytest.mark.parametrize("folder", TUNED, ids=lambda p: p.name)
def test_every_tuned_config_loads_builds_its_method_and_came_from_the_tuning_seeds(folder):
    manifest, configs = report.read_tuned(folder)  # refuses a TOML another study wrote
    assert manifest["seeds"] == [3, 4] and manifest["forget"] == CELLS  # never an evaluation seed
    methods = json.loads((folder / "tuning.json").read_text())["methods"]
    assert sorted(configs) == sorted(methods)
    for name, entry in methods.items():
        assert sum(entry["trials"].values()) == manifest["trials"]  # the same budget for every method
        assert entry["best_value"] <= entry["default_value"] or entry["default_collapsed"]
        assert not any(run["collapsed"] for run in entry["best_runs"]), name  # no tuned config collapses on a tuning cell
        cfg = load_run_config(str(folder / "tuned" / f"{name}.toml"))
        assert cfg.task.retain_access == manifest["retain_access"][name]
        settings = {k: v for k, v in configs[name]["method"].items() if k != "name"}
        built = uk.get_unlearner(name, **settings).config  # the converter refuses an unknown or ill-typed setting
        assert {k: getattr(built, k) for k in settings} == {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def test_the_evaluation_plan_runs_every_tuned_method_at_its_defaults_too():
    cfg = load_run_config(str(CONFIGS / "equal-footing.toml"))
    settings = plan.resolve({k: v for k, v in cfg.bench_options().items() if v is not None})
    assert list(settings.forget) == CELLS
    at = {(s.name, s.retain_access) for s in settings.methods}
    for folder in TUNED:
        manifest, configs = report.read_tuned(folder)
        for name in configs:
            gamma = manifest["retain_access"][name]
            assert (name, None) in at and ((name, gamma) in at or gamma == plan.paper_gamma(name))
