"""Throughput of `unlearnkit tune`: trials per hour with 1 and 2 workers, and a trial's overhead over its runs.

    python benchmarks/tune_cost.py [--method ft] [--trials 8] [--num-samples 5000] [--out DIR]

On mnist1d / cnn1d (5 000 samples), forget `random:0.1`, tuning seeds 3 and 4: the original and
Retrain of each seed are trained (or loaded from DIR/cache) first, untimed. Then two studies of
`--trials` trials each, every trial the method's default point (enqueued, so both do the same work;
no pruning): one with 1 worker process and one with 2. Trials per hour count from the first trial's
start to the last one's end (a long study's rate); `startup_s` is what the call spends before its
first trial (starting the worker processes, loading the references). A trial's overhead is its wall time over the
sum of its runs' unlearning and evaluation times (median over the 1-worker study's trials).
Prints a table and, as its last line, `{"workers_speedup": ..., "trial_overhead": ..., ...}`.
Targets: workers_speedup >= 1.7 on 2 cores; trial_overhead <= 1.2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
from pathlib import Path

import optuna

from unlearnkit.bench.plan import unlearner_class, resolve
from unlearnkit.tune.space import default_point
from unlearnkit.tune.study import Tuner, TuneSettings, enqueue_default, tune_method


def timed_study(tuner: Tuner, method: str, trials: int, workers: int) -> tuple[float, float, optuna.Study]:
    """Seconds from the first trial's start to the last one's end, running `trials` copies of the
    default point with `workers` processes; seconds before the first trial; the study."""
    study = tuner.study(method)
    point, cut = default_point(unlearner_class(method), tuner.space(method))
    for _ in range(trials - len(study.trials)):
        enqueue_default(study, point, cut)
    start = datetime.datetime.now()
    tune_method(tuner, method, workers=workers, poll_s=0.2)
    done = study.get_trials(deepcopy=False)
    first, last = min(t.datetime_start for t in done), max(t.datetime_complete for t in done)
    return (last - first).total_seconds(), (first - start).total_seconds(), study


def overhead(study: optuna.Study) -> float:
    """Median over complete trials of wall time / (Σ runs' UT_s + eval_s)."""
    ratios = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        work = sum(r["UT_s"] + r["eval_s"] for r in t.user_attrs["runs"])
        ratios.append((t.datetime_complete - t.datetime_start).total_seconds() / work)
    return statistics.median(ratios)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="ft", help="the method tuned (default ft)")
    parser.add_argument("--trials", type=int, default=24, help="trials per study (default 24: enough to amortise a worker's start)")
    parser.add_argument("--num-samples", type=int, default=5000, help="mnist1d samples (default 5000)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (default: the dataset's)")
    parser.add_argument("--out", default=None, help="folder for the studies and the model cache (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.trials < 2:
        parser.error(f"--trials must be >= 2, got {args.trials}")
    out = Path(args.out or tempfile.mkdtemp(prefix="tune-cost-"))
    options = {"dataset": "mnist1d", "dataset_config": {"num_samples": args.num_samples}, "model": "cnn1d", "forget": ["random:0.1"],
               "seeds": [3, 4], "methods": [args.method], "tables": ["main"], **({"train": {"epochs": args.epochs}} if args.epochs else {})}
    settings = TuneSettings(resolve(options), (args.method,), None, args.trials)
    measured = {}
    for workers in (1, 2):
        tuner = Tuner(settings, out, storage_url=f"sqlite:///{(out / f'workers-{workers}.db').resolve()}", pruner=optuna.pruners.NopPruner())
        tuner.references()  # trained once, before any timing
        measured[workers] = timed_study(tuner, args.method, args.trials, workers)
    rate = {k: 3600 * args.trials / seconds for k, (seconds, _, _) in measured.items()}
    result = {"workers_speedup": rate[2] / rate[1], "trial_overhead": overhead(measured[1][2]),
              "trials_per_hour_1": rate[1], "trials_per_hour_2": rate[2], "startup_s_2": measured[2][1]}
    print("| workers | trials | seconds | trials / hour | before the first trial (s) |\n|---|---|---|---|---|")
    for k, (seconds, startup, _) in measured.items():
        print(f"| {k} | {args.trials} | {seconds:.1f} | {rate[k]:.0f} | {startup:.1f} |")
    print(f"{args.method} on mnist1d-{args.num_samples}, random:0.1, seeds 3 and 4: 2 workers {result['workers_speedup']:.2f}x one; "
          f"a trial takes {result['trial_overhead']:.2f}x its runs")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
