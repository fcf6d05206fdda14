"""Cost of the NeurIPS 2023 forgetting score: the reference's loops against unlearnkit-audit's vectorised version.

    python benchmarks/audit_cost.py [--models 64] [--examples 200] [--repeats 3] [--threads N]

Draws one pair of `[models, examples]` logit-scaled confidence matrices shaped like a real
audit's (each example its own mean, as confidences differ between examples; the unlearned
models 0.3 higher and less spread than the retrained ones), then scores them with the
reference's computation ported to the CPU (`unlearnkit_audit._reference`: one example at a
time, every threshold tiled across models, as google-deepmind/unlearning_evaluation `metric.py`
does) and with `unlearnkit_audit.example_epsilons` / `forget_quality`, on the same matrices in
one process. Prints a table and, as its last line, `{"reference_s": ..., "vectorised_s": ...,
"speedup": ..., "max_abs_diff": ...}` where `max_abs_diff` is the largest difference over F
and every per-example ε. Targets: speedup >= 100, max_abs_diff <= 1e-6.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import torch

from unlearnkit_audit import example_epsilons, forget_quality
from unlearnkit_audit._reference import reference_forget_score


def confidences(models: int, examples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(unlearned, retrained) `[models, examples]` confidences with per-example means."""
    rng = np.random.default_rng(seed)
    means = rng.normal(4.0, 3.0, examples)
    unlearned = means + 0.3 + rng.normal(0.0, 1.0, (models, examples))
    retrained = means + rng.normal(0.0, 1.2, (models, examples))
    return unlearned, retrained


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=64, help="models of each kind (default 64)")
    parser.add_argument("--examples", type=int, default=200, help="forget examples (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the vectorised version (default 3; the reference runs once)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the matrices (default 0)")
    args = parser.parse_args(argv)
    for name in ("models", "examples", "repeats"):
        if getattr(args, name) < (2 if name == "models" else 1):
            parser.error(f"--{name} is too small: {getattr(args, name)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    unlearned, retrained = confidences(args.models, args.examples, args.seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the reference's all-NaN maxima over discarded rules
        reference_f, reference_eps = reference_forget_score(unlearned, retrained)
    reference_s = time.perf_counter() - start

    times, ours_f = [], None
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours_f = forget_quality(unlearned, retrained)
        times.append(time.perf_counter() - start)
    vectorised_s = statistics.median(times)
    ours_eps = example_epsilons(unlearned, retrained)  # the per-example values F was made of, for the comparison
    diff = max(abs(ours_f - reference_f), float(np.max(np.abs(ours_eps - reference_eps))))

    print(f"{args.models} unlearned and {args.models} retrained models, {args.examples} examples; torch threads {torch.get_num_threads()}")
    print("| computation | seconds | F | median ε |")
    print("|---|---|---|---|")
    print(f"| reference (ported to CPU, loops) | {reference_s:.2f} | {reference_f:.6f} | {np.median(reference_eps):.4f} |")
    print(f"| unlearnkit_audit (vectorised, median of {args.repeats}) | {vectorised_s:.3f} | {ours_f:.6f} | {np.median(ours_eps):.4f} |")
    result = {"reference_s": reference_s, "vectorised_s": vectorised_s, "speedup": reference_s / vectorised_s, "max_abs_diff": diff}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
