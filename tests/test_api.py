"""The public namespace: what users and plugin authors import from `unlearnkit`."""

import types

import torch

import unlearnkit as uk
from unlearnkit.cli.commands import main


def test_the_namespace_holds_what_it_exports_and_no_stray_names():
    assert "annotations" not in dir(uk)  # a `from __future__` import leaking into the namespace
    stray = [n for n in dir(uk) if not n.startswith("_") and n not in uk.__all__ and not isinstance(getattr(uk, n), types.ModuleType)]
    assert stray == []
    assert all(hasattr(uk, n) for n in uk.__all__)


def test_plugin_authors_get_the_validators_from_the_public_namespace():
    import attrs
    import pytest

    @uk.config_class
    class Sizes:
        k: int = attrs.field(default=4, validator=uk.validators.positive)
        mode: str = attrs.field(default="fast", validator=uk.validators.one_of("fast", "exact"))

    with pytest.raises(ValueError, match=r"k: must be > 0, got -1"):
        Sizes(k=-1)
    with pytest.raises(ValueError, match=r"mode: must be one of 'fast', 'exact', got 'slow'"):
        Sizes(mode="slow")
    assert set(uk.validators.__all__) == {"FieldError", "in_range", "non_negative", "one_of", "positive"}


def test_load_model_returns_the_saved_model_in_one_call(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "t.toml").write_text('[task]\ndataset = "synthetic"\nmodel = "mlp"\n[train]\nepochs = 1\n')
    assert main(["train", "--config", str(tmp_path / "t.toml"), "--out", str(tmp_path / "a.pt"), "--quiet"]) == 0
    model = uk.load_model(tmp_path / "a.pt")
    state, meta = uk.load_checkpoint(tmp_path / "a.pt")
    assert isinstance(model, torch.nn.Module) and not model.training
    assert all(torch.equal(v, state[k]) and v.device.type == "cpu" for k, v in model.state_dict().items())
    task = uk.make_task(meta["dataset"], seed=meta["seed"], forget="random:0.1")
    assert model(task.test.x[:5]).shape == (5, meta["num_classes"])
    assert next(uk.load_model(tmp_path / "a.pt", device="cpu").parameters()).device == torch.device("cpu")
