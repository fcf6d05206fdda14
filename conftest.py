"""Test-session settings shared by the core's and the plugins' tests."""

import os

import torch

# One intra-op thread: the suite's models are tiny, so extra threads only add contention
# (on a loaded 2-core machine they made the suite 10x slower), and results stay fixed.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the subprocesses tests start
