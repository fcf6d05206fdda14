"""Data parallelism: N processes give the parameters of 1 process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import unlearnkit as uk
from unlearnkit.engine import distributed
from unlearnkit.testing import tiny_model, tiny_task

HERE = Path(__file__).parent


def _torchrun(nproc: int, script: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_single_process_helpers_are_identity():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    idx = torch.arange(7)
    assert torch.equal(distributed.shard(idx), idx)


def test_training_under_two_processes_matches_one(tmp_path):
    sys.path.insert(0, str(HERE))
    from distributed_worker import RECIPE  # the workers' recipe

    _torchrun(2, HERE / "distributed_worker.py", str(tmp_path / "two.pt"))
    task = tiny_task()
    single = uk.train_model(tiny_model(task), task, recipe=RECIPE, seed=0)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert int(two["samples_seen"]) == RECIPE.epochs * len(task.train) // 2  # rank 0 saw its half only
    for name, value in single.state_dict().items():
        torch.testing.assert_close(two["state"][name], value, rtol=1e-4, atol=1e-5)


def test_cli_under_torchrun_writes_once_from_rank_0(tmp_path):
    """`torchrun -m unlearnkit train` trains data-parallel; rank 0 alone prints and writes, and the
    checkpoint equals a single-process run's."""
    (tmp_path / "t.toml").write_text('[task]\ndataset = "synthetic"\nmodel = "mlp"\n[train]\nepochs = 2\nbatch_size = 30\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNLEARNKIT_DATA_DIR": str(tmp_path / "data")}
    args = ["train", "--config", str(tmp_path / "t.toml"), "--device", "cpu", "--quiet"]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
                          "unlearnkit", *args, "--out", str(tmp_path / "two.pt")], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("trained mlp on synthetic") == 1
    one = subprocess.run([sys.executable, "-m", "unlearnkit", *args, "--out", str(tmp_path / "one.pt")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr
    state_two, _ = uk.load_checkpoint(tmp_path / "two.pt")
    state_one, _ = uk.load_checkpoint(tmp_path / "one.pt")
    for name, value in state_one.items():
        torch.testing.assert_close(state_two[name], value, rtol=1e-4, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
