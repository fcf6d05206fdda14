"""Run under torchrun by tests/test_distributed.py: train the tiny model, rank 0 saves it."""

import os
import sys

import torch

import unlearnkit as uk
from unlearnkit.engine import distributed
from unlearnkit.testing import tiny_model, tiny_task

RECIPE = uk.TrainConfig(epochs=3, batch_size=30, lr=0.05)

if __name__ == "__main__":
    distributed.init_from_env("cpu")
    task = tiny_task()
    model = tiny_model(task)
    seen = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(len(args[0])))
    model = uk.train_model(model, task, recipe=RECIPE, seed=0)
    if distributed.is_main():
        torch.save({"state": model.state_dict(), "samples_seen": torch.tensor(sum(seen))}, sys.argv[1])
    distributed.shutdown()
    # Skip the interpreter's teardown: torch's C++ destructors at exit occasionally end a rank with
    # "terminate called without an active exception" (about 1 run in 20 on a loaded machine) after
    # its work is done and the process group is left.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
