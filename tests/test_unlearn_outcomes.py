"""What `unlearn` does when a run is not a deletion: it returned the weights it was given, its
model's outputs are not finite, or its accuracy on unseen data collapsed."""

from __future__ import annotations

import json

import pytest
import torch

import unlearnkit as uk
from unlearnkit.cli.commands import main
from unlearnkit.core.plugins import registry
from unlearnkit.data.tasks import _load_bundle
from unlearnkit.engine.checkpoint import load_checkpoint
from unlearnkit.testing.files import tiny_npz


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
    root = tmp_path_factory.mktemp("outcomes")
    registry.register("unlearner", "effect", Effect, EffectConfig)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARNKIT_DATA_DIR", str(root / "data"))
        _load_bundle.cache_clear()
        tiny_npz(root / "people.npz", n_train=120)
        (root / "t.toml").write_text('[task]\nmodel = "mlp"\n[train]\nepochs = 5\n')
        assert main(["train", "--dataset", f"npz:{root / 'people.npz'}", "--config", str(root / "t.toml"),
                     "--out", str(root / "a.pt"), "--quiet"]) == 0
        yield root
    registry.unregister("unlearner", "effect")


def unlearn(root, effect, out, *extra):
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
    code = unlearn(ws, "none", "none")
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "nothing was removed: effect returned the weights it was given" in err and "--keep-unchanged" in err
    assert not (ws / "none").exists()  # no checkpoint claims it, no ids recorded, no report


def test_keep_unchanged_writes_it_and_the_report_says_so_first(ws, capsys):
    assert unlearn(ws, "none", "kept", "--keep-unchanged") == 0
    report = json.loads((ws / "kept" / "report.json").read_text())
    text = (ws / "kept" / "report.md").read_text()
    assert report["unchanged"] is True and report["warnings"][0].startswith("Nothing was removed")
    assert text.splitlines()[2].startswith("> **Warning.** Nothing was removed")
    assert "changed the weights so that" not in text
    assert "removed nothing" in capsys.readouterr().out
    _, meta = load_checkpoint(ws / "kept" / "model.pt")
    assert meta["unlearned"]["unchanged"] is True


def test_outputs_that_are_not_finite_end_in_one_line_naming_the_method_and_setting(ws, capsys):
    code = unlearn(ws, "nan", "nan")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("unlearnkit: diverged: effect: the model's outputs on the forget set are not finite")
    assert "lower `lr` (now 0.1)" in err and "nothing was written" in err
    assert not (ws / "nan").exists()


def test_a_collapse_on_unseen_data_is_warned_and_the_report_says_so_first(ws, capsys):
    assert unlearn(ws, "collapse", "collapse") == 0
    err = capsys.readouterr().err
    assert "unlearnkit: warning: The model may have collapsed: its accuracy on unseen data fell" in err
    report = json.loads((ws / "collapse" / "report.json").read_text())
    text = (ws / "collapse" / "report.md").read_text()
    assert report["warnings"] and "collapsed" in report["warnings"][0]
    assert "collapsed" in text.splitlines()[2] and "changed the weights so that" not in text


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
