"""The model cache: one training per key across processes, never a corrupt file read as valid."""

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from unlearnkit.bench.cache import ModelCache
from unlearnkit.bench.locks import exclusive_lock
from unlearnkit.engine.checkpoint import load_checkpoint, state_digest

KEY = {"dataset": "synthetic", "model": "linear", "seed": 0}
META = {"dataset": "synthetic", "model": "linear", "num_classes": 3, "input_shape": [4]}


def _build() -> nn.Module:
    return nn.Linear(4, 3)


def _trainer(log: Path, pause: float = 0.0):
    """A `train` that records each call in `log` and gives weights no other call gives."""

    def train() -> nn.Module:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(pause)
        torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
        return nn.Linear(4, 3)

    return train


def _ask(root: str, log: str, barrier, results) -> None:
    torch.set_num_threads(1)
    barrier.wait()
    model, meta = ModelCache(root).get_or_train("original", KEY, build=_build, train=_trainer(Path(log), 1.0), meta=META)
    results.put((state_digest(model.state_dict()), meta["train_seconds"]))


def _calls(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def test_two_processes_asking_for_the_same_model_train_it_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    log = tmp_path / "calls.log"
    workers = [ctx.Process(target=_ask, args=(str(tmp_path / "cache"), str(log), barrier, results)) for _ in range(2)]
    for w in workers:
        w.start()
    got = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert _calls(log) == 1  # the second waited for the first, then loaded its model
    assert got[0] == got[1]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [ModelCache(tmp_path / "cache").path("original", KEY).name]


def test_a_cached_model_is_loaded_not_retrained_and_a_different_key_trains_anew(tmp_path):
    cache, log = ModelCache(tmp_path), tmp_path / "calls.log"
    first, meta = cache.get_or_train("original", KEY, build=_build, train=_trainer(log), meta=META)
    assert meta["kind"] == "original" and meta["train_seconds"] >= 0 and meta["dataset"] == "synthetic"
    again, meta_again = cache.get_or_train("original", KEY, build=_build, train=_trainer(log), meta=META)
    assert _calls(log) == 1 and meta_again["train_seconds"] == meta["train_seconds"]
    assert state_digest(again.state_dict()) == state_digest(first.state_dict()) and not again.training
    other, _ = cache.get_or_train("original", {**KEY, "seed": 1}, build=_build, train=_trainer(log), meta=META)
    retrain, _ = cache.get_or_train("retrain", KEY, build=_build, train=_trainer(log), meta=META)
    assert _calls(log) == 3
    assert len({state_digest(m.state_dict()) for m in (first, other, retrain)}) == 3
    assert cache.path("original", KEY) != cache.path("retrain", KEY) != cache.path("original", {**KEY, "seed": 1})


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "text", "other kind"])
def test_a_damaged_cache_file_is_never_read_as_valid(tmp_path, damage):
    cache, log = ModelCache(tmp_path), tmp_path / "calls.log"
    first, _ = cache.get_or_train("original", KEY, build=_build, train=_trainer(log), meta=META)
    path = cache.path("original", KEY)
    data = path.read_bytes()
    if damage == "truncated":  # a write cut short (not through the atomic writer)
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":  # the weights' digest no longer matches
        state, meta = load_checkpoint(path)
        state["weight"][0, 0] += 1.0
        from unlearnkit.engine.checkpoint import FORMAT, FORMAT_VERSION

        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "meta": meta, "digest": state_digest(dict(first.state_dict())),
                    "state_dict": state}, path)
    elif damage == "text":
        path.write_text("not a checkpoint\n")
    else:  # a Retrain checkpoint under the original's name
        ModelCache(tmp_path / "elsewhere").get_or_train("retrain", KEY, build=_build, train=_trainer(log), meta=META)
        path.write_bytes(ModelCache(tmp_path / "elsewhere").path("retrain", KEY).read_bytes())
    calls = _calls(log)
    model, meta = cache.get_or_train("original", KEY, build=_build, train=_trainer(log), meta=META)
    assert _calls(log) == calls + 1 and meta["kind"] == "original"
    state, stored = load_checkpoint(path)  # replaced by the new, valid model
    assert state_digest(state) == state_digest(model.state_dict()) != state_digest(first.state_dict())


def test_a_read_only_cache_never_writes(tmp_path):
    cache, log = ModelCache(tmp_path / "cache", writable=False), tmp_path / "calls.log"
    model, meta = cache.get_or_train("original", KEY, build=_build, train=_trainer(log), meta=META)
    assert _calls(log) == 1 and meta["kind"] == "original" and not (tmp_path / "cache").exists()
    written, _ = ModelCache(tmp_path / "cache").get_or_train("original", KEY, build=_build, train=_trainer(log), meta=META)
    loaded, _ = cache.get_or_train("original", KEY, build=_build, train=_trainer(log), meta=META)  # reads what rank 0 wrote
    assert _calls(log) == 2 and state_digest(loaded.state_dict()) == state_digest(written.state_dict())


def test_cached_files_get_the_mode_a_plain_write_gives(tmp_path):
    previous = os.umask(0o022)
    try:
        cache = ModelCache(tmp_path)
        cache.get_or_train("original", KEY, build=_build, train=_trainer(tmp_path / "calls.log"), meta=META)
        assert stat.S_IMODE(cache.path("original", KEY).stat().st_mode) == 0o644
    finally:
        os.umask(previous)


def test_a_held_lock_is_reported_and_released(tmp_path):
    lock = tmp_path / "dir.lock"
    with exclusive_lock(lock, note="pid 123") as held:
        assert held and lock.read_text() == "pid 123"
        with exclusive_lock(lock, blocking=False) as second:  # flock locks belong to an open file, as another process's would
            assert not second
        assert lock.exists()  # the refused attempt left the holder's file alone
    assert not lock.exists()
    with exclusive_lock(lock, blocking=False) as held:
        assert held
