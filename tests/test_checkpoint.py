"""Checkpoints: what is saved comes back, writes are atomic, and anything that is not an intact
unlearnkit checkpoint (missing, truncated, tampered, foreign, random, code-carrying) is refused."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

import unlearnkit as uk
from unlearnkit.engine.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, load_model, save_checkpoint
from unlearnkit.testing import state_equal

META = {"dataset": "synthetic", "model": "mlp", "num_classes": 4, "input_shape": [16], "seed": 3,
        "model_config": {"hidden": 8}, "notes": {"epochs": [1, 2], "ok": True}}


def make_model(seed: int = 0) -> torch.nn.Module:
    shape = type("Shape", (), {"input_shape": (16,), "num_classes": 4})
    return uk.build_model("mlp", shape, seed=seed, hidden=8)


@pytest.fixture
def saved(tmp_path):
    model = make_model()
    path = save_checkpoint(tmp_path / "model.pt", model, META)
    return path, model


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


def test_round_trip_keeps_weights_and_meta(saved, tmp_path):
    path, model = saved
    state, meta = load_checkpoint(path)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert {k: meta[k] for k in META} == META and meta["unlearnkit_version"] == uk.__version__
    assert leftovers(tmp_path) == []


def test_load_model_rebuilds_the_named_model(saved):
    path, model = saved
    rebuilt, meta = load_model(path)
    assert state_equal(rebuilt, model) and not rebuilt.training and meta["model"] == "mlp"
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rebuilt(x), model.eval()(x))


def test_save_refuses_incomplete_meta_and_overwrite_when_asked(tmp_path, saved):
    path, _ = saved
    with pytest.raises(uk.CheckpointError, match="lacks input_shape, num_classes|lacks num_classes, input_shape"):
        save_checkpoint(tmp_path / "x.pt", make_model(), {"dataset": "synthetic", "model": "mlp"})
    before = path.read_bytes()
    with pytest.raises(uk.CheckpointError, match="exists; refusing to overwrite"):
        save_checkpoint(path, make_model(1), META, overwrite=False)
    assert path.read_bytes() == before and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_the_previous_file_intact(saved, tmp_path, monkeypatch, error):
    path, model = saved
    before = path.read_bytes()

    def fail(src, dst):
        raise error

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(type(error)):
        save_checkpoint(path, make_model(seed=1), META)
    monkeypatch.undo()
    assert path.read_bytes() == before and leftovers(tmp_path) == []
    assert state_equal(load_model(path)[0], model)


def test_failed_write_of_a_new_file_leaves_nothing(tmp_path, monkeypatch):
    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "sub" / "new.pt", make_model(), META)
    assert list((tmp_path / "sub").iterdir()) == []


# -- refusals -------------------------------------------------------------------------------


def _payload(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _resave(path, change):
    """Rewrite the payload with torch.save directly, bypassing save_checkpoint (and its digest)."""
    payload = _payload(path)
    change(payload)
    torch.save(payload, path)


def _tamper_weight(payload):
    name = sorted(payload["state_dict"])[0]
    payload["state_dict"][name].view(-1)[0] += 1e-3


BAD_FILES = {
    "missing": (lambda path: path.unlink(), "not found"),
    "directory": (lambda path: (path.unlink(), path.mkdir()), "is a directory"),
    "empty": (lambda path: path.write_bytes(b""), "is not an unlearnkit checkpoint: the file is empty"),
    "truncated": (lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]), "unreadable: a torch file that is truncated"),
    "random bytes": (lambda path: path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8,
                                                                 generator=torch.Generator().manual_seed(0)).numpy().tobytes()),
                     "is not an unlearnkit checkpoint: not a torch file (it starts with bytes"),
    "text": (lambda path: path.write_text("weights = [1, 2, 3]\n"), "is not an unlearnkit checkpoint: it is a text file (starting 'weights = [1, 2, 3]')"),
    "foreign state_dict": (lambda path: torch.save(make_model().state_dict(), path), "is not an unlearnkit checkpoint"),
    "foreign tensor": (lambda path: torch.save(torch.zeros(3), path), "is not an unlearnkit checkpoint"),
    "tampered weight": (lambda path: _resave(path, _tamper_weight), "failed verification"),
    "dropped weight": (lambda path: _resave(path, lambda p: p["state_dict"].pop(sorted(p["state_dict"])[0])), "failed verification"),
    "future version": (lambda path: _resave(path, lambda p: p.update(format_version=FORMAT_VERSION + 1)), "format version 2"),
    "no meta": (lambda path: _resave(path, lambda p: p.pop("meta")), "lacks weights or metadata"),
    "meta lacks a key": (lambda path: _resave(path, lambda p: p["meta"].pop("num_classes")), "lacks weights or metadata"),
    "bad num_classes": (lambda path: _resave(path, lambda p: p["meta"].update(num_classes="4")), "num_classes must be a positive integer, got '4'"),
    "bad input_shape": (lambda path: _resave(path, lambda p: p["meta"].update(input_shape="abc")), "input_shape must be a list"),
    "bad model name": (lambda path: _resave(path, lambda p: p["meta"].update(model=["mlp"])), "dataset and model must be names"),
    "bad model_config": (lambda path: _resave(path, lambda p: p["meta"].update(model_config=[1])), "model_config must be a table"),
    "non-tensor weight": (lambda path: _resave(path, lambda p: p["state_dict"].update(extra=[1.0])), "not named tensors"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_checkpoints_raise_checkpoint_error(case, saved):
    path, _ = saved
    breakage, message = BAD_FILES[case]
    breakage(path)
    for load in (load_checkpoint, load_model):
        with pytest.raises(uk.CheckpointError) as info:
            load(path)
        text = str(info.value)
        assert message in text and repr(str(path)) in text
        assert "\n" not in text and "\x1b" not in text and "weights_only` set to `False" not in text


def test_weights_that_do_not_fit_the_model_are_refused(saved):
    path, _ = saved
    _resave(path, lambda p: p["meta"].update(num_classes=5))  # meta and weights disagree
    with pytest.raises(uk.CheckpointError, match="does not fit model 'mlp'"):
        load_model(path)


def test_unknown_model_in_a_checkpoint_is_a_usage_error(saved):
    path, _ = saved
    _resave(path, lambda p: p["meta"].update(model="mpl"))
    with pytest.raises(uk.UnknownComponentError, match="did you mean 'mlp'"):
        load_model(path)


# -- pickles that carry code ----------------------------------------------------------------


class _WritesMarker:
    """Unpickling this runs code: it writes a marker file (through builtins.exec)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


class _RunsShell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _raw_pickle(path, marker, protocol):
    with open(path, "wb") as fh:
        pickle.dump({"format": FORMAT, "format_version": FORMAT_VERSION, "evil": _WritesMarker(marker)}, fh, protocol=protocol)


CODE_FILES = {
    "raw pickle, protocol 2": lambda path, marker: _raw_pickle(path, marker, 2),
    "raw pickle, protocol 5": lambda path, marker: _raw_pickle(path, marker, 5),
    "torch zip with exec": lambda path, marker: torch.save({"format": FORMAT, "state_dict": _WritesMarker(marker)}, path),
    "torch zip with os.system": lambda path, marker: torch.save({"format": FORMAT, "meta": _RunsShell(marker)}, path),
}


@pytest.mark.parametrize("case", list(CODE_FILES))
def test_a_pickle_carrying_code_is_refused_and_never_run(case, tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    CODE_FILES[case](path, marker)
    # the payload really is live: a plain unpickle would create the marker
    for load in (load_checkpoint, load_model):
        with pytest.raises(uk.CheckpointError, match="refused") as info:
            load(path)
        assert "never runs code" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_the_code_carrying_fixture_would_run_if_unpickled(tmp_path):
    marker = tmp_path / "MARKER"
    _raw_pickle(tmp_path / "evil.pt", marker, 2)
    with open(tmp_path / "evil.pt", "rb") as fh:
        pickle.load(fh)  # what weights_only=True must prevent
    assert marker.read_text() == "pwned"
