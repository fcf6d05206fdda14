"""Data parallelism: N processes give the parameters of 1 process with the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import unlearnkit as uk
from unlearnkit import distributed
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
