"""Cost of LTU's gradient harmonization (eq. 12) next to a plain sum, on ResNet-18-sized gradients.

    python benchmarks/harmonize_cost.py [--repeats 50] [--device cpu|cuda] [--threads N]

Builds one remember and one forget gradient per parameter of `resnet18` for 3x32x32 inputs
and 10 classes (11.2 M parameters), made to conflict so the projection runs, and times
`uk.get_combiner("harmonize").combine` against `[a + b for a, b in zip(...)]`, interleaving
the two so both see the same machine load. Prints a table of medians and, as its last line,
`{"harmonize_ms": ..., "sum_ms": ..., "ratio": ...}`. Target: ratio <= 3.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import types
from typing import Callable

import torch

import unlearnkit as uk


def gradients(device: torch.device, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Conflicting remember/forget gradients shaped like ResNet-18's parameters."""
    model = uk.build_model("resnet18", types.SimpleNamespace(input_shape=(3, 32, 32), num_classes=10))
    g = torch.Generator().manual_seed(seed)
    remember = [torch.randn(p.shape, generator=g) for p in model.parameters()]
    forget = [-0.5 * r + 0.2 * torch.randn(r.shape, generator=g) for r in remember]
    return [r.to(device) for r in remember], [f.to(device) for f in forget]


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall milliseconds of one call, synchronising CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls of each operation (default 50)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")

    remember, forget = gradients(device)
    harmonize = uk.get_combiner("harmonize")
    d = sum(float((r * f).sum()) for r, f in zip(remember, forget))
    assert d < 0, "the benchmark gradients must conflict so that the projection runs"

    def plain() -> list[torch.Tensor]:
        return [a + b for a, b in zip(remember, forget)]

    def harmonized() -> list[torch.Tensor]:
        return harmonize.combine(remember, forget)

    for _ in range(args.warmup):
        plain(), harmonized()
    times: dict[str, list[float]] = {"sum": [], "harmonize": []}
    for _ in range(args.repeats):  # interleaved: both see the same load
        times["sum"].append(timed(plain, device))
        times["harmonize"].append(timed(harmonized, device))

    sum_ms, harmonize_ms = statistics.median(times["sum"]), statistics.median(times["harmonize"])
    n = sum(t.numel() for t in remember)
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"ResNet-18 gradients: {len(remember)} tensors, {n / 1e6:.1f} M parameters, {device}, threads {threads}, {args.repeats} repeats")
    print(f"{'operation':<22}{'median ms':>12}{'min ms':>10}{'max ms':>10}")
    for label, key in (("sum [a + b]", "sum"), ("harmonize (conflict)", "harmonize")):
        ts = times[key]
        print(f"{label:<22}{statistics.median(ts):>12.2f}{min(ts):>10.2f}{max(ts):>10.2f}")
    result = {"harmonize_ms": round(harmonize_ms, 3), "sum_ms": round(sum_ms, 3), "ratio": round(harmonize_ms / sum_ms, 3)}
    print(f"{'ratio':<22}{result['ratio']:>12.2f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
