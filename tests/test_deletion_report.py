"""Deletion requests from the command line: the report beside every `unlearn` output, requests in
a row that forget the union of everything asked so far, and runs that are not a deletion."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil

import pytest
import torch

import unlearnkit as uk
from unlearnkit.cli.commands import main
from unlearnkit.core.errors import DivergenceError
from unlearnkit.core.plugins import registry
from unlearnkit.data.tasks import ForgetSpec, _load_bundle, make_task
from unlearnkit.deletion.report import nothing_removed
from unlearnkit.engine.checkpoint import load_checkpoint, load_model
from unlearnkit.testing.files import tiny_npz

RUN_INFO = {"steps": 3, "stop_reason": "calibrated: forget loss reached the held-out level"}


@uk.config_class
class ProbeConfig:
    diverge: bool = False


class Probe(uk.Unlearner):
    """Reads the forget set and D̂_r, nudges the head, and reports how it stopped."""

    reads = frozenset({"forget", "retain", "val"})

    def run(self, model, task, *, seed, device, progress):
        if self.config.diverge:
            raise DivergenceError("probe: loss became nan at step 2; lower the learning rate")
        n = len(task.forget) + len(task.retain)  # reads forget and retain, never val
        with torch.no_grad():
            uk.models.head(model).bias.add_(0.01 * n)
        self.run_info = dict(RUN_INFO)
        return model


@uk.config_class
class EffectConfig:
    effect: str = "nudge"
    lr: float = 0.1


class Effect(uk.Unlearner):
    """Does to the model exactly what its `effect` says."""

    def run(self, model, task, *, seed, device, progress):
        head = uk.models.head(model)
        with torch.no_grad():
            if self.config.effect == "nudge":
                head.bias.add_(0.01)
            elif self.config.effect == "collapse":  # every sample gets the same class
                head.weight.zero_()
                head.bias.copy_(torch.arange(len(head.bias), dtype=head.bias.dtype))
            elif self.config.effect == "nan":
                head.weight.fill_(float("nan"))
        return model


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("deletion")
    registry.register("unlearner", "probe", Probe, ProbeConfig)
    registry.register("unlearner", "effect", Effect, EffectConfig)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARNKIT_DATA_DIR", str(root / "data"))
        _load_bundle.cache_clear()
        tiny_npz(root / "people.npz", n_train=120)
        (root / "t.toml").write_text('[task]\nmodel = "mlp"\n[train]\nepochs = 5\n')
        assert main(["train", "--dataset", f"npz:{root / 'people.npz'}", "--config", str(root / "t.toml"),
                     "--out", str(root / "a.pt"), "--quiet"]) == 0
        task = make_task(f"npz:{root / 'people.npz'}", seed=0)
        train_ids, val_ids = task.ids_of(task.train), task.ids_of(task.val)
        (root / "req1.txt").write_text("\n".join(train_ids[:6]) + "\n")
        (root / "req2.txt").write_text("\n".join(train_ids[5:9] + val_ids[:1]) + "\n")  # one already forgotten, one never trained on
        (root / "ids").mkdir()
        yield root, train_ids, val_ids
    registry.unregister("unlearner", "probe")
    registry.unregister("unlearner", "effect")


def unlearn(ws_root, checkpoint, request, out, *extra):
    return main(["unlearn", "--checkpoint", str(ws_root / checkpoint), "--forget", f"ids:{ws_root / request}",
                 "--out", str(ws_root / out), "--quiet", *map(str, extra)])


@pytest.fixture(scope="module")
def first(ws):
    root, _, _ = ws
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARNKIT_DATA_DIR", str(root / "data"))
        assert unlearn(root, "a.pt", "req1.txt", "r1/model.pt", "--method", "probe") == 0
        assert unlearn(root, "r1/model.pt", "req2.txt", "r2/model.pt", "--method", "probe") == 0
    return root


def report(path):
    return json.loads((path / "report.json").read_text()), (path / "report.md").read_text()


def test_the_report_says_what_was_asked_never_the_ids(ws, first):
    root, train_ids, _ = ws
    data, text = report(root / "r1")
    asked = train_ids[:6]
    assert data["request"] == {"forget": f"ids:{root / 'req1.txt'}", "count": 6, "new": 6, "already_forgotten": 0, "held_out": 0,
                               "sha256": hashlib.sha256("\n".join(sorted(asked)).encode()).hexdigest()}
    assert data["forget_set"]["count"] == 6 and data["forget_set"]["requests"] == 1
    for sample_id in train_ids + ["person-"]:
        assert sample_id not in json.dumps(data) and sample_id not in text
    assert data["request"]["sha256"] in text and "6 newly forgotten" in text


def test_the_report_says_how_what_was_read_and_how_it_stopped(ws, first):
    root, _, _ = ws
    data, text = report(root / "r1")
    task = make_task(f"npz:{root / 'people.npz'}", forget=f"ids:{root / 'req1.txt'}", seed=0, retain_access=1.0)
    assert data["method"] == {"name": "probe", "config": {"diverge": False}, "retain_access": 1.0, "seed": 0}
    assert data["data_read"] == {"declared": ["forget", "retain", "val"], "read": {"forget": 6, "retain": len(task.retain)},
                                 "retain_available": len(task.retain_full)}
    assert data["run_info"] == {**RUN_INFO, "unchanged": False} and RUN_INFO["stop_reason"] in text
    assert data["versions"]["torch"] == importlib.metadata.version("torch") and data["wall_seconds"] >= 0
    assert data["checkpoints"]["output"] == str(root / "r1" / "model.pt")
    assert data["dataset"]["fingerprint"] == task.fingerprint and data["dataset"]["classes"] == ["a", "b", "c"]
    assert "no formal guarantee" in data["guarantees"] and "per-example audit" in text


def test_before_and_after_are_the_input_and_output_models_on_the_forget_set(ws, first):
    root, _, _ = ws
    data, text = report(root / "r1")
    task = make_task(f"npz:{root / 'people.npz'}", forget=f"ids:{root / 'req1.txt'}", seed=0)
    for side, checkpoint in (("before", "a.pt"), ("after", "r1/model.pt")):
        model, _ = load_model(root / checkpoint)
        metrics = uk.evaluate(model, task, "svc-confidence", seed=0, report=True)
        figures = data[side]
        assert figures["forget_accuracy"] == pytest.approx(100 - metrics["UA"])
        assert figures["retain_accuracy"] == pytest.approx(metrics["RA"]) and figures["test_accuracy"] == pytest.approx(metrics["TA"])
        assert figures["unseen_accuracy"] == pytest.approx(uk.accuracy(uk.predict_logits(model, task.val), task.val.y))
        assert figures["mia"] == pytest.approx({"efficacy": metrics["MIA"], **metrics["MIA_report"]})
    assert f"| accuracy on the forget set | {data['before']['forget_accuracy']:.2f} | {data['after']['forget_accuracy']:.2f} |" in text


def test_requests_in_a_row_forget_the_union(ws, first):
    root, train_ids, val_ids = ws
    _, meta = load_checkpoint(root / "r2" / "model.pt")
    union = make_task(f"npz:{root / 'people.npz'}", seed=0)
    position = {i: k for k, i in enumerate(union.source_ids)}
    assert meta["forget_set"]["indices"] == sorted(position[i] for i in train_ids[:9])
    assert [r["forget"] for r in meta["requests"]] == [f"ids:{root / 'req1.txt'}", f"ids:{root / 'req2.txt'}"]
    data, text = report(root / "r2")
    assert data["request"]["count"] == 5 and data["request"]["already_forgotten"] == 1 and data["request"]["held_out"] == 1
    assert data["request"]["new"] == 3 and data["forget_set"]["count"] == 9 and data["forget_set"]["requests"] == 2
    assert data["data_read"]["read"]["forget"] == 9  # the method forgets the union
    assert "1 never trained on (held out)" in text
    assert (root / "r1" / "report.json").exists()  # the first request's report stays beside its model


def test_evaluate_of_a_sequential_checkpoint_reports_the_union(ws, first, capsys):
    root, _, _ = ws
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(root / "r2" / "model.pt"), "--attack", "none", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    _, meta = load_checkpoint(root / "r2" / "model.pt")
    task = make_task(f"npz:{root / 'people.npz'}", forget=ForgetSpec("indices", tuple(meta["forget_set"]["indices"])), seed=0)
    model, _ = load_model(root / "r2" / "model.pt")
    assert result["forget"] == f"ids:{root / 'req1.txt'} + ids:{root / 'req2.txt'}"
    assert result["UA"] == pytest.approx(uk.evaluate(model, task, None)["UA"])
    code = main(["evaluate", "--checkpoint", str(root / "r2" / "model.pt"), "--forget", f"ids:{root / 'req2.txt'}"])
    assert code == 2 and "would mix tasks" in capsys.readouterr().err


def _one_line_error(capsys, code, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("unlearnkit: error: "), err
    assert all(n in err[0] for n in needles), err[0]


def test_refusals_write_nothing_and_leave_the_input(ws, first, capsys, monkeypatch):
    root, _, _ = ws
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(root / "data"))
    before = (root / "r1" / "model.pt").read_bytes()
    listing = sorted(root.rglob("*"))
    capsys.readouterr()
    # the same request again: nothing new to forget
    _one_line_error(capsys, unlearn(root, "r1/model.pt", "req1.txt", "r3/model.pt", "--method", "probe"), "already forgotten")
    # a report is never replaced silently
    _one_line_error(capsys, unlearn(root, "r1/model.pt", "req2.txt", "r1/again.pt", "--method", "probe"), "report.json exists", "--force")
    # unknown ids, an unknown attack
    (root / "ids" / "ghosts.txt").write_text("ghost-1\n")
    listing = sorted(root.rglob("*"))
    _one_line_error(capsys, unlearn(root, "a.pt", "ids/ghosts.txt", "r4/model.pt", "--method", "probe"), "'ghost-1'")
    _one_line_error(capsys, unlearn(root, "a.pt", "req1.txt", "r4/model.pt", "--method", "probe", "--attack", "nosuch"), "unknown attack 'nosuch'")
    assert (root / "r1" / "model.pt").read_bytes() == before and sorted(root.rglob("*")) == listing


def test_a_failed_run_writes_no_checkpoint_and_no_report(ws, first, capsys, tmp_path, monkeypatch):
    root, _, _ = ws
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(root / "data"))
    (tmp_path / "m.toml").write_text('[method]\nname = "probe"\ndiverge = true\n')
    code = main(["unlearn", "--checkpoint", str(root / "a.pt"), "--config", str(tmp_path / "m.toml"), "--forget",
                 f"ids:{root / 'req1.txt'}", "--out", str(tmp_path / "out" / "model.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "probe: loss became nan at step 2; lower the learning rate; nothing was written" in err
    assert not (tmp_path / "out").exists()


def test_without_an_attack_the_report_says_so(ws, first, tmp_path, monkeypatch):
    root, _, _ = ws
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(root / "data"))
    assert main(["unlearn", "--checkpoint", str(root / "a.pt"), "--method", "example-head-reset", "--forget",
                 f"ids:{root / 'req1.txt'}", "--attack", "none", "--out", str(tmp_path / "model.pt"), "--quiet"]) == 0
    data, text = report(tmp_path)
    assert data["attack"] is None and "mia" not in data["after"] and "No membership-inference attack was run" in text
    assert data["run_info"] == {"unchanged": False} and "Stop" not in text  # the method reports nothing of its run


def test_data_that_changed_since_training_is_refused(ws, tmp_path, capsys, monkeypatch):
    root, _, _ = ws
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    shutil.copy(root / "people.npz", tmp_path / "people.npz")
    assert main(["train", "--dataset", f"npz:{tmp_path / 'people.npz'}", "--model", "mlp", "--epochs", "1",
                 "--out", str(tmp_path / "a.pt"), "--quiet"]) == 0
    tiny_npz(tmp_path / "people.npz", n_train=120, x_test=torch.zeros(15, 6).numpy())
    capsys.readouterr()
    code = unlearn(tmp_path, "a.pt", "people.npz", "r/model.pt", "--method", "probe")  # any ids file: the data check comes first
    _one_line_error(capsys, code, "has changed since the checkpoint was made")
    assert not (tmp_path / "r").exists()


def test_recorded_forget_sets_are_validated_on_load(ws, first, tmp_path):
    root, _, _ = ws
    _, meta = load_checkpoint(root / "r2" / "model.pt")
    model, _ = load_model(root / "r2" / "model.pt")
    uk.save_checkpoint(tmp_path / "bad.pt", model, {**meta, "forget_set": {"indices": [-1, "x"]}})
    with pytest.raises(uk.CheckpointError, match="forget_set must record"):
        load_checkpoint(tmp_path / "bad.pt")


# -- runs that are not a deletion: nothing removed, outputs not finite, a collapse on unseen data --


def unlearn_with(root, effect, out, *extra):
    (root / f"{effect}.toml").write_text(f'[method]\nname = "effect"\neffect = "{effect}"\n')
    return main(["unlearn", "--checkpoint", str(root / "a.pt"), "--config", str(root / f"{effect}.toml"), "--forget", "random:0.05",
                 "--out", str(root / out / "model.pt"), "--quiet", *extra])


def test_the_api_records_whether_the_weights_changed():
    model, task = uk.testing.trained_tiny_model()
    for effect, unchanged in (("none", True), ("nudge", False)):
        unlearner = Effect(EffectConfig(effect=effect))
        unlearner.unlearn(model, task)
        assert unlearner.run_info["unchanged"] is unchanged


def test_a_run_that_removed_nothing_fails_writes_nothing_and_says_what_to_try(ws, capsys):
    root, _, _ = ws
    code = unlearn_with(root, "none", "none")
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "nothing was removed: effect returned the weights it was given" in err and "--keep-unchanged" in err
    assert not (root / "none").exists()  # no checkpoint claims it, no ids recorded, no report


@pytest.mark.parametrize("run_info, advice", [
    ({"stop_reason": "calibrated", "steps": 0}, 'stop = "fixed"'),  # a stop rule restored the original
    ({"stop_reason": "fixed", "steps": 90}, "a larger lr or more epochs"),  # the paper's length moved nothing
    ({}, "a larger lr or more epochs"),  # a method without a stop rule
])
def test_nothing_removed_suggests_what_was_not_already_tried(run_info, advice):
    line = nothing_removed("ga", run_info)
    assert f"(e.g. {advice})" in line and "\n" not in line


def test_keep_unchanged_writes_it_and_the_report_says_so_first(ws, capsys):
    root, _, _ = ws
    assert unlearn_with(root, "none", "kept", "--keep-unchanged") == 0
    report = json.loads((root / "kept" / "report.json").read_text())
    text = (root / "kept" / "report.md").read_text()
    assert report["unchanged"] is True and report["warnings"][0].startswith("Nothing was removed")
    assert text.splitlines()[2].startswith("> **Warning.** Nothing was removed")
    assert "changed the weights so that" not in text
    assert "removed nothing" in capsys.readouterr().out
    _, meta = load_checkpoint(root / "kept" / "model.pt")
    assert meta["unlearned"]["unchanged"] is True


def test_outputs_that_are_not_finite_end_in_one_line_naming_the_method_and_setting(ws, capsys):
    root, _, _ = ws
    code = unlearn_with(root, "nan", "nan")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("unlearnkit: diverged: effect: the model's outputs on the forget set are not finite")
    assert "lower `lr` (now 0.1)" in err and "nothing was written" in err
    assert not (root / "nan").exists()


def test_a_collapse_on_unseen_data_is_warned_and_the_report_says_so_first(ws, capsys):
    root, _, _ = ws
    assert unlearn_with(root, "collapse", "collapse") == 0
    err = capsys.readouterr().err
    assert "unlearnkit: warning: The model may have collapsed: its accuracy on unseen data fell" in err
    report = json.loads((root / "collapse" / "report.json").read_text())
    text = (root / "collapse" / "report.md").read_text()
    assert report["warnings"] and "collapsed" in report["warnings"][0]
    assert "collapsed" in text.splitlines()[2] and "changed the weights so that" not in text


@pytest.mark.parametrize("forget_after, warned", [(100.0, True), (99.5, True), (98.0, False), (65.0, False)])
def test_forgotten_samples_still_recognised_are_warned_first(forget_after, warned):
    from unlearnkit.deletion.report import warnings_for

    before = {"forget_accuracy": 100.0, "unseen_accuracy": 60.0}
    after = {"forget_accuracy": forget_after, "unseen_accuracy": 60.0}
    found = warnings_for(before, after, unchanged=False)
    assert bool(found) is warned
    if warned:
        assert found[0].startswith("The forgotten samples are still recognised") and f"{forget_after:.1f}%" in found[0]
    # a generalising model whose forget set is as well known as unseen data: nothing to warn
    assert not warnings_for({"forget_accuracy": 100.0, "unseen_accuracy": 94.0}, {"forget_accuracy": 100.0, "unseen_accuracy": 94.0}, False)


def test_a_diverging_run_names_the_settings_to_lower_with_their_values():
    class Diverges(uk.Unlearner):
        divergence_settings = ("lr", "inner_lr")

        def run(self, model, task, *, seed, device, progress):
            uk.check_finite_loss(torch.tensor(float("nan")), "diverges", 4)

    @uk.config_class
    class Config:
        lr: float = 0.5
        inner_lr: float = 0.05

    model, task = uk.testing.trained_tiny_model()
    with pytest.raises(uk.DivergenceError, match=r"^diverges: loss became nan at step 4; lower `lr` \(now 0.5\) or `inner_lr` \(now 0.05\)$"):
        Diverges(Config()).unlearn(model, task)


@pytest.mark.parametrize("forget_after, warned", [(100.0, True), (40.0, True), (8.0, False)])
def test_a_whole_class_still_predicted_is_warned_first(forget_after, warned):
    from unlearnkit.deletion.report import removed_classes, warnings_for

    task = uk.testing.tiny_task(forget="class:1")
    assert removed_classes(task) == [1] and removed_classes(uk.testing.tiny_task()) == []
    # a model that generalises to the class: its unseen samples are recognised as well as the forgotten ones
    before, after = {"forget_accuracy": 100.0, "unseen_accuracy": 97.0}, {"forget_accuracy": forget_after, "unseen_accuracy": 97.0}
    found = warnings_for(before, after, False, removed_classes(task))
    assert bool(found) is warned
    if warned:
        assert found[0].startswith("The request removes whole classes (1), yet the model still predicts them for "
                                   f"{forget_after:.1f}% of their forgotten samples")
    assert not warnings_for(before, after, False)  # the same figures for random samples say nothing
