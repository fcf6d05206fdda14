"""LTU under torchrun (2 gloo processes) reaches the parameters of one process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unlearnkit.engine import distributed
from unlearnkit_ltu import meta

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from ltu_distributed_worker import CONFIG, SETTINGS, unlearn  # noqa: E402


def test_meta_test_parts_sum_to_the_whole():
    """The weighting that lets ranks split a meta-test set: parts add up to the full loss."""
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(10, 4, generator=g), torch.randint(4, (10,), generator=g)
    weights = meta.query_weights([3, 3, 4], logits.device)
    whole = sum(torch.nn.functional.cross_entropy(part_l, part_y) for part_l, part_y in zip(logits.split([3, 3, 4]), labels.split([3, 3, 4])))
    parts = [meta.query_loss(logits[p], labels[p], weights[p]) for p in torch.tensor_split(torch.arange(10), 3)]
    torch.testing.assert_close(sum(parts), whole)
    log_odds, targets = torch.randn(10, generator=g), (torch.arange(10) % 2).float()
    halves = torch.tensor_split(torch.arange(10), 2)
    torch.testing.assert_close(
        sum(meta.membership_loss(log_odds[h], targets[h], total=10) for h in halves), meta.membership_loss(log_odds, targets)
    )


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_two_processes_match_one(tmp_path, setting):
    out = tmp_path / "two.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(HERE / "ltu_distributed_worker.py"), setting, str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert distributed.world_size() == 1
    single, seen = unlearn(setting)
    two = torch.load(out, weights_only=True)
    per_iteration = seen // CONFIG["iterations"]
    assert int(two["query_samples"]) == CONFIG["iterations"] * -(-per_iteration // 2)  # rank 0: its half of each query set
    for name, value in single.state_dict().items():
        torch.testing.assert_close(two["state"][name], value, rtol=1e-4, atol=1e-5)
