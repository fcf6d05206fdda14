"""Cost of one LTU iteration against one plain SGD step of the same model and batch size.

"Same batch size" here means: the plain step is forward + cross-entropy + backward + SGD
(momentum) update on a batch of B samples; the LTU iteration is `LtuRun.iteration()` (exactly
what the `ltu` unlearner runs T times) in which every phase sees B samples, as in LTU's
defaults (B = 64): the support set is the forget batch of B, the three query sets hold
n_q = B // 3 each, and the audit set B // 2 forget plus B // 2 retained samples. Everything else is LTU's default configuration (second order,
`harmonize`, the three samplers and the three-model MI bank); "first order" sets
`first_order=True`. The set-up (bank fitting, sampler caches) is built once and not timed.

By sample count an LTU iteration does forward+backward passes over B (inner step of the
remembering feedback) + B (query sets, at θ') + B + B (audit set at θ and at θ'') and, in
second order, two Hessian-vector products. The samplers run the original model on a forget
batch only if it holds a sample they have not embedded before. With the defaults (B = 64,
8 warm-up rounds) every timed iteration comes after the first pass over this task's D_f (450
samples, 7 batches): the steady state of any run with T·B > |D_f|. An iteration of a first
pass costs about 0.3× a plain step more.

Timings are medians over `--repeats` rounds after `--warmup` rounds; the three variants
are timed round-robin inside each round so that a change in machine load hits all alike.
Models: CNN1D (untrained, seeded) on the mnist1d task (10% random forgetting, γ = 0.3), and
with `--resnet` also ResNet-18 on random 32×32 RGB inputs (timing does not depend on the
weights or the data). The last line printed is a JSON object with `full_ratio` and
`first_order_ratio` for CNN1D (and `resnet18_full_ratio`, `resnet18_first_order_ratio` with `--resnet`).

    python benchmarks/ltu_cost.py [--batch 64] [--repeats 30] [--resnet] [--device cuda] [--threads 1]

On a CPU shared with other work, pass `--threads 1`: OpenMP threads spinning against other
processes inflate the larger batched operations of LTU far more than the plain step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F

import unlearnkit as uk
from unlearnkit import ArrayDataset
from unlearnkit.data.datasets import CIFAR_RECIPE


def plain_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One SGD step (forward, cross-entropy, backward, update) on the batch (x, y)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def ltu_iteration(model: torch.nn.Module, task: object, batch: int, device: torch.device, **overrides: object) -> Callable[[], None]:
    """`LtuRun.iteration` of a prepared LTU run with forget batch = query size per sampler = `batch`."""
    ltu = uk.get_unlearner("ltu", forget_batch_size=batch, query_size=batch // 3, audit_size=batch // 2, **overrides)
    run = ltu.prepare(model, task, seed=0, device=device)
    return run.iteration


def time_round_robin(fns: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median milliseconds of each function, timed in turn within every round."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if round_ >= warmup:
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(name: str, build: Callable[[], torch.nn.Module], task: object, batch: int, device: torch.device, repeats: int, warmup: int) -> dict[str, float]:
    """Time the plain step, the full and the first-order LTU iteration for one model."""
    x, y = task.retain.x[:batch].to(device), task.retain.y[:batch].to(device)
    fns = {
        "plain": plain_step(build().to(device), x, y),
        "full": ltu_iteration(build().to(device), task, batch, device),
        "first_order": ltu_iteration(build().to(device), task, batch, device, first_order=True),
    }
    ms = time_round_robin(fns, repeats, warmup, device)
    row = {"model": name, "batch": batch, **{f"{k}_ms": v for k, v in ms.items()}}
    row["full_ratio"] = ms["full"] / ms["plain"]
    row["first_order_ratio"] = ms["first_order"] / ms["plain"]
    return row


def random_image_task(batch: int, pool: int, seed: int = 0) -> SimpleNamespace:
    """A stand-in task of random 3×32×32 inputs: forget, retain (D̂_r) and val splits, and CIFAR's
    recipe (LTU's step sizes follow its lr)."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> ArrayDataset:
        return ArrayDataset(torch.randn(n, 3, 32, 32, generator=g), torch.randint(10, (n,), generator=g))

    return SimpleNamespace(forget=split(4 * batch), retain=split(pool), val=split(pool // 2), num_classes=10, input_shape=(3, 32, 32),
                           recipe=CIFAR_RECIPE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="B: plain batch = forget batch = query size per sampler")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--resnet", action="store_true", help="also ResNet-18 on random 32x32 inputs")
    parser.add_argument("--resnet-batch", type=int, default=32)
    parser.add_argument("--resnet-repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    task = uk.make_task("mnist1d", forget="random:0.1", retain_access=0.3, seed=0)
    rows = [measure("cnn1d", lambda: uk.build_model("cnn1d", task, seed=0), task, args.batch, device, args.repeats, args.warmup)]
    if args.resnet:
        image_task = random_image_task(args.resnet_batch, pool=8 * args.resnet_batch)
        rows.append(measure(
            "resnet18", lambda: uk.build_model("resnet18", image_task, seed=0), image_task,
            args.resnet_batch, device, args.resnet_repeats, min(args.warmup, 2),
        ))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, load average {load:.1f}")
    print(f"{'model':<10}{'B':>5}{'plain ms':>11}{'LTU ms':>10}{'1st-order ms':>14}{'LTU/plain':>11}{'1st/plain':>11}")
    for r in rows:
        print(f"{r['model']:<10}{r['batch']:>5}{r['plain_ms']:>11.2f}{r['full_ms']:>10.2f}{r['first_order_ms']:>14.2f}"
              f"{r['full_ratio']:>11.2f}{r['first_order_ratio']:>11.2f}")
    result = {"full_ratio": round(rows[0]["full_ratio"], 3), "first_order_ratio": round(rows[0]["first_order_ratio"], 3)}
    for r in rows[1:]:
        result.update({f"{r['model']}_full_ratio": round(r["full_ratio"], 3), f"{r['model']}_first_order_ratio": round(r["first_order_ratio"], 3)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
