"""Faults: a bench killed (SIGKILL) or interrupted (SIGINT) mid-run keeps a valid results.json
with its finished rows, and a rerun of the same command completes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = """
[task]
dataset = "synthetic"
model = "mlp"
[train]
epochs = 3
[bench]
seeds = [0]
attack = "none"
[[bench.methods]]
name = "example-head-reset"
label = "quick"
epochs = 1
[[bench.methods]]
name = "example-head-reset"
label = "slow"
epochs = 100000
"""


def _bench(tmp_path: Path, out: Path, config: str = CONFIG) -> subprocess.Popen:
    (tmp_path / "run.toml").write_text(config)
    env = {**os.environ, "UNLEARNKIT_DATA_DIR": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "unlearnkit", "bench", "--config", str(tmp_path / "run.toml"), "--out", str(out), "--quiet"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if path.exists():
            rows = json.loads(path.read_text())["rows"]  # always valid JSON: written atomically
            if len(rows) >= n:
                return rows
        time.sleep(0.2)
    pytest.fail(f"no {n} rows in {path} after {timeout}s")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_bench_keeps_rows_and_resumes(tmp_path, sig):
    out = tmp_path / "out"
    proc = _bench(tmp_path, out)
    try:
        rows = _wait_for_rows(out / "results.json", 3, proc)  # original, retrain, quick; "slow" is running
    except BaseException:
        proc.kill()
        raise
    proc.send_signal(sig)
    proc.wait(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "interrupted" in proc.stderr.read()
    kept = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in kept["rows"]] == ["original", "retrain", "quick"]
    assert kept["rows"] == rows[:3]
    if sig == signal.SIGINT:  # a SIGKILL mid-write may leave a temporary file: the rerun removes it
        assert not list(out.rglob("*.tmp"))

    # The rerun resumes: the finished rows stay as they were and only "slow" runs (made fast here).
    proc = _bench(tmp_path, out, CONFIG.replace("epochs = 100000", "epochs = 1"))
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    final = json.loads((out / "results.json").read_text())
    assert final["rows"][:3] == kept["rows"]
    assert [r["method"] for r in final["rows"]] == ["original", "retrain", "quick", "slow"]
    assert not list(out.rglob("*.tmp"))


def test_diverging_unlearning_run_names_method_and_step_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from unlearnkit.cli.commands import main

    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "t.toml").write_text('[task]\ndataset = "synthetic"\nmodel = "mlp"\n[train]\nepochs = 2\n')
    assert main(["train", "--config", str(tmp_path / "t.toml"), "--out", str(tmp_path / "a.pt"), "--quiet"]) == 0
    before = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "m.toml").write_text('[method]\nname = "example-head-reset"\nlr = 1e37\nepochs = 50\n')
    capsys.readouterr()
    code = main(["unlearn", "--checkpoint", str(tmp_path / "a.pt"), "--config", str(tmp_path / "m.toml"),
                 "--forget", "random:0.1", "--out", str(tmp_path / "b.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "example-head-reset: loss became" in err and "at step" in err and "lower `lr` (now 1e+37)" in err
    assert not (tmp_path / "b.pt").exists()
    assert (tmp_path / "a.pt").read_bytes() == before


def test_an_interrupt_that_the_run_swallows_still_ends_it():
    """Python drops a KeyboardInterrupt raised inside a finaliser; the CLI then ends the process itself."""
    script = """
import os, signal, sys, threading, time
from unlearnkit.cli import commands as cli
cli.INTERRUPT_GRACE_S = 0.5
class Swallow:
    def __del__(self):
        time.sleep(0.3)  # the interrupt lands here and is dropped ("Exception ignored in")
def swallowing(args):
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    while True:
        Swallow()
cli.COMMANDS["plugins"] = swallowing
sys.exit(cli.main(["plugins"]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130 and "interrupted" in done.stderr
