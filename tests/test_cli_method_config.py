"""A run config's [method] table points LTU at a user's own sampler (and MI model) from the CLI,
and `evaluate --attack` takes any registered attack, a user's own included."""

from __future__ import annotations

import json

import pytest
import torch

import unlearnkit as uk
from unlearnkit.cli.commands import main
from unlearnkit.core.plugins import registry

pytest.importorskip("unlearnkit_ltu")


@uk.config_class
class FirstOnesConfig:
    """No settings."""


class FirstOnes(uk.Sampler):
    """The first k positions of the pool; records each call."""

    calls: list[int] = []

    def prepare(self, pool_x, pool_y, model):
        self.size = len(pool_y)

    def sample(self, support_x, support_y, k, generator):
        FirstOnes.calls.append(k)
        return torch.arange(min(k, self.size))


LTU_TOML = """\
[method]
name = "ltu"
iterations = 3
query_size = 5
samplers = ["first-ones", "random"]
bank = ["mi-logreg", "loss-mi"]

[method.bank_configs.mi-logreg]
steps = 20
"""


def test_the_method_table_points_ltu_at_a_custom_sampler_and_mi_model(tmp_path, monkeypatch, capsys, register_component):
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    register_component("sampler", "first-ones", FirstOnes, FirstOnesConfig)
    logreg = registry.get("attack", "mi-logreg")  # a differentiable attack under a name of the user's
    register_component("attack", "loss-mi", logreg.factory, logreg.config_cls)
    FirstOnes.calls.clear()
    (tmp_path / "t.toml").write_text('[task]\ndataset = "synthetic"\nmodel = "mlp"\n[train]\nepochs = 2\n')
    (tmp_path / "ltu.toml").write_text(LTU_TOML)
    assert main(["train", "--config", str(tmp_path / "t.toml"), "--out", str(tmp_path / "a.pt"), "--quiet"]) == 0
    assert main(["unlearn", "--checkpoint", str(tmp_path / "a.pt"), "--config", str(tmp_path / "ltu.toml"),
                 "--forget", "random:0.1", "--out", str(tmp_path / "b.pt"), "--quiet"]) == 0, capsys.readouterr().err
    assert FirstOnes.calls == [5, 5, 5]  # one query set per iteration from the custom sampler
    _, meta = uk.load_checkpoint(tmp_path / "b.pt")
    config = meta["unlearned"]["config"]
    assert config["samplers"] == ["first-ones", "random"] and config["bank"] == ["mi-logreg", "loss-mi"]
    assert config["bank_configs"] == {"mi-logreg": {"steps": 20}} and config["iterations"] == 3

    # the evaluation attack: any registered one, by name
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "b.pt"), "--attack", "loss-mi", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["attack"] == "loss-mi" and 0 <= result["MIA"] <= 100


def test_an_unknown_sampler_in_the_method_table_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "t.toml").write_text('[task]\ndataset = "synthetic"\nmodel = "mlp"\n[train]\nepochs = 1\n')
    (tmp_path / "ltu.toml").write_text('[method]\nname = "ltu"\nsamplers = ["first-one"]\n')
    assert main(["train", "--config", str(tmp_path / "t.toml"), "--out", str(tmp_path / "a.pt"), "--quiet"]) == 0
    code = main(["unlearn", "--checkpoint", str(tmp_path / "a.pt"), "--config", str(tmp_path / "ltu.toml"),
                 "--forget", "random:0.1", "--out", str(tmp_path / "b.pt"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "first-one" in err and len(err.splitlines()) == 1 and not (tmp_path / "b.pt").exists()
