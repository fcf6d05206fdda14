"""`unlearnkit tune`: the default first, pruning and divergence counted, exactly N trials after a
SIGKILL or with two workers, tuning.json's shape, and `bench --tuned` refusing a tuning seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

import unlearnkit as uk
from unlearnkit.bench.plan import resolve
from unlearnkit.cli.commands import main
from unlearnkit.cli.tune import with_tuned
from unlearnkit.tune import report
from unlearnkit.tune.space import default_point
from unlearnkit.tune.study import Tuner, TuneSettings, finished, tune_method
from unlearnkit_baselines.finetune import FineTune, FTConfig

TINY = ["--dataset", "synthetic", "--model", "mlp", "--forget", "random:0.1", "--seeds", "3,4", "--attack", "none"]


def tuner(out: Path, methods=("ft",), trials: int = 4, **kwargs) -> Tuner:
    bench = resolve({"dataset": "synthetic", "model": "mlp", "forget": ["random:0.1", "class:1"], "seeds": [3, 4],
                     "methods": list(methods), "tables": ["main"], "attack": "none"})
    return Tuner(TuneSettings(bench, tuple(methods), None, trials), out, heartbeat=1, **kwargs)


def load(out: Path, method: str = "ft") -> optuna.Study:
    return optuna.load_study(study_name=method, storage=f"sqlite:///{out / 'study.db'}")


def test_the_first_trial_is_the_default_cut_to_the_budget(tmp_path):
    t = tuner(tmp_path)
    tune_method(t, "ft")
    first = load(tmp_path).trials[0]
    point, cut = default_point(FineTune, t.space("ft"))
    assert first.user_attrs["default"] and first.user_attrs["config"] == first.user_attrs["point"] == point
    assert point["lr"] is None  # the translation rule's lr: the default trial runs the method's true default
    assert cut == {"epochs": (10, point["epochs"])}  # 10 epochs of D̂_r cost more than 20 % of Retrain on this task
    cells = t.space("ft").cells
    assert all(point["epochs"] * c.cost(c.retain) <= 0.2 * c.retrain_steps for c in cells)


def test_every_trial_stays_within_the_budget(tmp_path):
    t = tuner(tmp_path, trials=6)
    tune_method(t, "ft")
    cells = t.space("ft").cells
    for trial in load(tmp_path).trials:
        epochs = trial.user_attrs["config"]["epochs"]  # the default trial suggests nothing: its config is the default
        assert all(epochs * c.cost(c.retain) <= 0.2 * c.retrain_steps for c in cells), trial.user_attrs["config"]


def test_pruned_trials_are_counted_and_the_default_is_never_pruned(tmp_path):
    t = tuner(tmp_path, trials=4, pruner=optuna.pruners.ThresholdPruner(upper=-1.0))  # prunes every trial it may
    tune_method(t, "ft")
    summary = report.summarize(load(tmp_path))
    assert summary["trials"] == {"complete": 1, "pruned": 3, "failed": 0}
    assert summary["default_value"] == summary["best_value"] is not None
    assert all(len(h) for h in summary["history"])


def test_a_collapsed_default_is_not_the_tuned_config_and_is_marked():
    study = optuna.create_study()
    for value, default, collapsed in ((1.0, True, True), (2.0, False, False), (1.5, False, True)):
        runs = [{"forget": "random:0.1", "seed": 3, "gap": value, "collapsed": collapsed}]
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"default": default, "config": {"lr": value}, "runs": runs}))
    entry = report.summarize(study)
    assert entry["best"] == {"lr": 2.0} and entry["default_value"] == 1.0 and entry["default_collapsed"] is True
    assert entry["collapsed_trials"] == 2
    manifest = {"dataset": "d", "model": "m", "forget": ["random:0.1"], "seeds": [3], "trials": 3, "sampler_seed": 0,
                "criterion": "mean", "budget": {"fraction": 0.2}, "retain_access": {"ft": 1.0}}
    assert "| ft | 1 | 3 | 0 | 0 | 1.000 (collapsed) | 2.000 |" in report.markdown(manifest, {"ft": entry})
    every = optuna.create_study()
    every.add_trial(optuna.trial.create_trial(value=3.0, user_attrs={"default": True, "config": {}, "runs": [{"collapsed": True}]}))
    assert "| 3.000 (collapsed) | 3.000 (collapsed) |" in report.markdown(manifest, {"ft": report.summarize(every)})


class Fragile(FineTune):
    """Diverges at any learning rate above 0.01 (its default, None, is the rule's: below)."""

    def run(self, model, task, *, seed, device, progress):
        if (self.config.lr or 0.0) > 0.01:
            raise uk.DivergenceError(f"fragile: loss is nan at step 0 (lr {self.config.lr})")
        return super().run(model, task, seed=seed, device=device, progress=progress)

    @classmethod
    def search_space(cls, trial, space):
        return {"lr": space.float(trial, "lr", 0.005, 0.5, log=True)}


def test_a_diverged_trial_is_recorded_and_the_study_goes_on(tmp_path, register_component):
    register_component("unlearner", "test-fragile", Fragile, FTConfig)
    t = tuner(tmp_path, methods=("test-fragile",), trials=6)
    tune_method(t, "test-fragile")
    study = load(tmp_path, "test-fragile")
    diverged = [tr for tr in study.trials if "diverged" in tr.user_attrs]
    assert diverged and all(tr.state == optuna.trial.TrialState.FAIL and tr.params["lr"] > 0.01 for tr in diverged)
    assert sum(map(finished, study.trials)) == 6
    assert report.summarize(study)["trials"]["failed"] == len(diverged)


class Wrecking(FineTune):
    """Scrambles the model (TA and RA fall to chance: a collapse) at any learning rate above 0.01."""

    def run(self, model, task, *, seed, device, progress):
        model = super().run(model, task, seed=seed, device=device, progress=progress)
        if (self.config.lr or 0.0) > 0.01:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.randn_like(p))
        return model

    @classmethod
    def search_space(cls, trial, space):
        return {"lr": space.float(trial, "lr", 0.005, 0.5, log=True)}


def test_a_collapsed_trial_ends_at_its_first_collapse_infeasible_to_the_sampler(tmp_path, register_component):
    register_component("unlearner", "test-wrecking", Wrecking, FTConfig)
    t = tuner(tmp_path, methods=("test-wrecking",), trials=6)
    tune_method(t, "test-wrecking")
    study = load(tmp_path, "test-wrecking")
    trials = [tr for tr in study.trials if finished(tr)]
    wrecked = [tr for tr in trials if tr.params.get("lr", 0.0) > 0.01]
    assert wrecked and len(wrecked) < len(trials)  # both kinds were drawn
    for tr in wrecked:  # stopped at the first run, which collapsed: pruned, infeasible by its shortfall
        (run,) = tr.user_attrs["runs"]
        assert tr.state == optuna.trial.TrialState.PRUNED and tr.user_attrs["collapsed"] == "random:0.1, seed 3"
        assert run["collapsed"] and run["shortfall"] > 0 and tr.constraints["collapse"] == pytest.approx(run["shortfall"])
        assert not tr.intermediate_values  # never a value the pruner's median could take
    for tr in (tr for tr in trials if tr not in wrecked):
        assert tr.constraints["collapse"] == 0 and not any(r["collapsed"] for r in tr.user_attrs["runs"])
    summary = report.summarize(study)
    assert summary["collapsed_trials"] == len(wrecked) and not any(r["collapsed"] for r in summary["best_runs"])
    assert "collapsed (random:0.1, seed 3) after 1 runs" in (tmp_path / "tune.log").read_text()


def test_tuning_json_tuned_toml_and_the_tuned_bench(tmp_path, capsys):
    out = tmp_path / "tuning"
    assert main(["tune", "--methods", "ft,ga", *TINY, "--trials", "3", "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "tuning.json").read_text())
    manifest = results["manifest"]
    assert {"seeds", "forget", "retain_access", "budget", "versions", "setting_hash"} <= manifest.keys()
    assert manifest["seeds"] == [3, 4] and manifest["forget"] == ["random:0.1"] and manifest["budget"]["fraction"] == 0.2
    for name in ("ft", "ga"):
        entry = results["methods"][name]
        assert entry["trials"] == {"complete": 3, "pruned": 0, "failed": 0}
        assert {"default_value", "best_value", "best", "wall_s"} <= entry.keys() and entry["best_value"] <= entry["default_value"]
        toml = uk.load_toml(out / "tuned" / f"{name}.toml")
        left_to_rule = {k for k, v in entry["best"].items() if v is None}  # not written: the method's default
        assert toml["method"] == {"name": name, **{k: v for k, v in entry["best"].items() if k not in left_to_rule}}
        assert toml["tuned"]["manifest"] == manifest["setting_hash"]
    assert "| ft |" in (out / "tuning.md").read_text()

    bench = ["bench", "--tuned", str(out), "--methods", "ft", "--dataset", "synthetic", "--model", "mlp", "--forget", "random:0.1",
             "--attack", "none", "--quiet"]
    assert main([*bench, "--seeds", "5,4", "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed 4 was a tuning seed of its configs (tuned on seeds 3, 4)" in err
    assert main([*bench, "--seeds", "5", "--out", str(tmp_path / "bench")]) == 0
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["rows"]
    tuned = [r for r in rows if r["method"] == "ft tuned"]
    assert len(tuned) == 1 and tuned[0]["tuning"] == {"config": "tuned", "manifest": manifest["setting_hash"], "folder": str(out)}
    assert tuned[0]["config"] == {k: v for k, v in results["methods"]["ft"]["best"].items() if v is not None}
    assert [r for r in rows if r["method"] == "ft"][0]["config"] == {}  # the default beside it


def test_configs_of_two_tuning_folders_are_told_apart_by_their_gamma_or_else_their_folder(tmp_path):
    folders = {"g1": [], "g05": ["--retain-access", "0.5"], "worst": ["--criterion", "worst"]}
    for name, extra in folders.items():
        assert main(["tune", "--methods", "ft", *TINY, *extra, "--trials", "1", "--out", str(tmp_path / name), "--quiet"]) == 0
    options = with_tuned({"dataset": "synthetic", "model": "mlp", "methods": ["ft"], "seeds": [5]}, [str(tmp_path / n) for n in folders])
    assert [(m["label"], m["retain_access"]) for m in options["methods"][1:]] == [
        ("ft tuned γ1", 1.0), ("ft tuned γ0.5", 0.5), ("ft tuned (worst) γ1", 1.0)]
    assert len(resolve(options).methods) == 2 + 4  # the references, the default and three distinct tuned entries


def test_a_rerun_of_another_setting_is_refused(tmp_path, capsys):
    out = tmp_path / "tuning"
    assert main(["tune", "--methods", "ft", *TINY, "--trials", "1", "--out", str(out), "--quiet"]) == 0
    assert main(["tune", "--methods", "ft", *TINY, "--criterion", "worst", "--trials", "1", "--out", str(out), "--quiet"]) == 2
    assert "holds a study of another setting" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--methods", "retrain"], "a reference every gap is measured against"),
    (["--methods", "no-such-method"], "no-such-method"),
    (["--methods", "ft", "--storage", "journal:/tmp/x.log"], "journal storage has no heartbeat"),
])
def test_bad_tune_options_are_refused(tmp_path, capsys, argv, message):
    assert main(["tune", *argv, *TINY, "--trials", "1", "--out", str(tmp_path / "t"), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def _tune_process(out: Path, trials: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "unlearnkit", "tune", "--methods", "ft", *TINY, "--forget", "class:1",
            "--trials", str(trials), "--heartbeat", "1", "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _exactly(out: Path, trials: int) -> None:
    study = load(out)
    counted = [t for t in study.trials if finished(t)]
    assert len(counted) == trials, [(t.number, t.state.name) for t in study.trials]
    assert json.loads((out / "tuning.json").read_text())["methods"]["ft"]["trials"]["complete"] == trials
    assert len((out / "tune.log").read_text().splitlines()) == trials  # one line per counted trial, none twice


@pytest.mark.slow
def test_sigkill_mid_study_and_a_rerun_end_with_exactly_n_trials(tmp_path):
    out = tmp_path / "tuning"
    process = _tune_process(out, 8)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len((out / "tune.log").read_text().splitlines() if (out / "tune.log").exists() else []) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    study = load(out)
    assert sum(map(finished, study.trials)) < 8
    rerun = _tune_process(out, 8)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    _exactly(out, 8)


@pytest.mark.slow
def test_two_workers_on_one_study_end_with_exactly_n_trials(tmp_path):
    out = tmp_path / "tuning"
    process = _tune_process(out, 8, "--workers", "2")
    assert process.wait(timeout=300) == 0, process.stderr.read()
    _exactly(out, 8)
    workers = {t.user_attrs["worker"] for t in load(out).trials if finished(t)}
    assert workers and all(w.split(":")[1] != str(process.pid) for w in workers)  # the trials ran in the worker processes

