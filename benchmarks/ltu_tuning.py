"""Grid search of a method's settings on tuning seeds, the protocol of docs/ltu.md.

Every combination of the grid runs on every (forget setting, seed) of a bench preset with the
method's default γ, through `Bench.run_job`: the original and Retrain models come from (or go
to) the bench cache in `--out`, so a tuning run shares them with `unlearnkit bench --out` of
the same preset. Rows are appended to `OUT/tuning.jsonl` as they finish (a rerun skips them);
the table printed at the end ranks the combinations by their worst average gap to Retrain over
the forget settings, each the mean over the seeds.

    python benchmarks/ltu_tuning.py --preset paper-cpu --seeds 3,4 --out DIR \\
        --grid '{"beta": [10, 30], "lr": [0.00025, 0.0005], "iterations": [90, 180]}'
    python benchmarks/ltu_tuning.py --preset paper-cpu --seeds 3,4 --out DIR --method ft \\
        --grid '{"epochs": [2, 5], "lr": [0.01, 0.02]}'

Tune on seeds the evaluation does not use (the docs use 3 and 4; the results, 0-2).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import torch

import unlearnkit as uk
from unlearnkit.bench.plan import Job, MethodSpec, resolve
from unlearnkit.bench.runner import Bench


def combinations(grid: dict[str, list]) -> list[dict]:
    """Every assignment of one value per setting, in grid order."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def key(method: str, config: dict, forget: str, seed: int) -> str:
    return json.dumps([method, config, forget, seed], sort_keys=True)


def table(rows: list[dict], forgets: tuple[str, ...]) -> list[str]:
    """One line per (method, config): mean avg gap per forget setting, ranked by the worse of them."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        groups.setdefault(json.dumps([r["name"], r["config"]], sort_keys=True), {}).setdefault(r["forget"], []).append(r)
    ranked = []
    for label, by_forget in groups.items():
        gaps = {f: statistics.mean(r["gap"]["avg"] if "gap" in r else float("inf") for r in by_forget.get(f, [])) if f in by_forget else float("nan") for f in forgets}
        ut = statistics.mean(r["UT_s"] for rs in by_forget.values() for r in rs)
        seeds = min(len(rs) for rs in by_forget.values())
        worst = max(g if g == g else float("inf") for g in gaps.values())  # a setting not run yet ranks last
        ranked.append((worst, label, gaps, ut, seeds))
    ranked.sort(key=lambda t: t[0])
    lines = ["| method, settings | " + " | ".join(f"avg gap {f}" for f in forgets) + " | UT (s) | seeds |",
             "|---|" + "---|" * (len(forgets) + 2)]
    for _, label, gaps, ut, seeds in ranked:
        name, config = json.loads(label)
        lines.append(f"| {name} {json.dumps(config)} | " + " | ".join(f"{gaps[f]:.2f}" for f in forgets) + f" | {ut:.1f} | {seeds} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper-cpu")
    parser.add_argument("--seeds", default="3,4", help="tuning seeds (keep them apart from the evaluation's)")
    parser.add_argument("--method", default="ltu")
    parser.add_argument("--grid", required=True, help='JSON object: setting -> list of values, e.g. {"lr": [0.001, 0.002]}')
    parser.add_argument("--out", required=True, help="bench output folder: its cache holds the original and Retrain models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = json.loads(args.grid)
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        parser.error(f"--grid must map each setting to a non-empty list of values, got {args.grid!r}")
    seeds = [int(s) for s in args.seeds.split(",")]

    settings = resolve({"preset": args.preset, "seeds": seeds, "methods": [args.method], "tables": ["main"]})
    bench = Bench(settings, Path(args.out), device=args.device)
    log = Path(args.out) / "tuning.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {key(r["name"], r["config"], r["forget"], r["seed"]) for r in rows}
    gamma = uk.get_unlearner(args.method).default_retain_access  # the method's own γ, as in the bench
    for config in combinations(grid):
        for forget in settings.forget:
            for seed in seeds:
                if key(args.method, config, forget, seed) in done:
                    continue
                row = bench.run_job(Job("main", MethodSpec(args.method, args.method, gamma, config), forget, gamma, seed))
                rows.append(row)
                with log.open("a") as f:  # one line per finished row: an interrupted search loses nothing
                    f.write(json.dumps(row) + "\n")
                print(json.dumps({k: row.get(k) for k in ("name", "config", "forget", "seed", "UA", "RA", "TA", "MIA", "UT_s")}
                                 | {"gap": row["gap"]["avg"] if "gap" in row else row.get("error")}), flush=True)
    print("\n".join(table([r for r in rows if r["seed"] in seeds], settings.forget)))


if __name__ == "__main__":
    main()
