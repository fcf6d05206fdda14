"""What a tuning folder holds: `tuning.json`, `tuning.md`, `tuned/<method>.toml` and a history plot per study.

    tuning.json  {"manifest": {...seeds, cells, γ, budget, versions}, "methods": {"<name>":
                 {"trials": {"complete": n, "pruned": n, "failed": n}, "default_value": x,
                  "best_value": x, "best": {settings}, "wall_s": x, ...}}}

`tuned/<method>.toml` is a run configuration (`unlearnkit unlearn --config`, `unlearnkit bench
--tuned DIR`): `[method]` the best trial's settings, `[task] retain_access` the γ it was tuned
at, and `[tuned]` where it came from and its score on the tuning cells.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import optuna

from unlearnkit.core.config import load_toml
from unlearnkit.core.errors import UsageError
from unlearnkit.engine.checkpoint import atomic_write_text
from unlearnkit.tune.study import finished

TUNING_JSON, TUNING_MD, TUNED = "tuning.json", "tuning.md", "tuned"


def collapsed(runs: list[dict[str, Any]]) -> bool:
    """Whether one of a trial's runs collapsed (TA or RA more than 5 points below Retrain's)."""
    return any(r["collapsed"] for r in runs)


def summarize(study: optuna.Study) -> dict[str, Any]:
    """One method's entry in tuning.json, from its study."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if finished(t)]
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    default = next((t for t in complete if t.user_attrs.get("default")), None)
    sound = [t for t in complete if not collapsed(t.user_attrs.get("runs", []))]
    best = min(sound or complete, key=lambda t: t.value) if complete else None
    retried = sum(1 for t in trials if t.state == optuna.trial.TrialState.FAIL and not finished(t) and not t.user_attrs.get("surplus"))
    return {
        "trials": {"complete": len(complete), "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in done),
                   "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in done)},
        "retried": retried,  # trials of killed workers, run again (not counted)
        "default_value": default.value if default else None,
        "default": default.user_attrs["config"] if default else None,
        "default_cut": default.user_attrs.get("cut", {}) if default else {},
        "default_collapsed": collapsed(default.user_attrs.get("runs", [])) if default else None,  # then the best config may score worse than it
        "best_value": best.value if best else None,
        "best": best.user_attrs["config"] if best else None,
        "best_trial": best.number if best else None,
        "best_runs": best.user_attrs["runs"] if best else [],
        "collapsed_trials": sum(collapsed(t.user_attrs.get("runs", [])) for t in done),  # complete, or ended at the collapse
        "wall_s": sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done if t.datetime_start and t.datetime_complete),
        "history": [{"number": t.number, "state": t.state.name.lower(), "value": t.value} for t in sorted(done, key=lambda t: t.number)],
    }


def write(out: Path, manifest: dict[str, Any], methods: dict[str, dict[str, Any]], gammas: dict[str, float]) -> None:
    """tuning.json, tuning.md, each method's tuned config and (with the `plot` extra) its history plot."""
    out = Path(out)
    atomic_write_text(out / TUNING_JSON, json.dumps({"manifest": manifest, "methods": methods}, indent=1))
    atomic_write_text(out / TUNING_MD, markdown(manifest, methods))
    for name, entry in methods.items():
        if entry["best"] is not None:
            atomic_write_text(out / TUNED / f"{name}.toml", tuned_toml(name, entry, manifest, gammas[name]))
        plot_history(name, entry, out / f"history-{name}.png")


def tuned_toml(name: str, entry: dict[str, Any], manifest: dict[str, Any], gamma: float) -> str:
    """A run configuration holding the best settings, its γ and where it came from."""
    where = {"manifest": manifest["setting_hash"], "criterion": manifest["criterion"], "score": entry["best_value"],
             "default_score": entry["default_value"], "trial": entry["best_trial"], "dataset": manifest["dataset"],
             "forget": manifest["forget"], "seeds": manifest["seeds"]}
    lines = [f"# {name} tuned by `unlearnkit tune` ({manifest['criterion']} average gap to Retrain {entry['best_value']:.3f} "
             f"on the tuning cells; the default's {_number(entry['default_value'])}); see tuning.json", "",
             "[task]", f"retain_access = {_toml(gamma)}", "", "[method]", f"name = {_toml(name)}"]
    lines += [f"{k} = {_toml(v)}" for k, v in entry["best"].items() if v is not None]  # None: the method's rule, its default
    lines += ["", "[tuned]"] + [f"{k} = {_toml(v)}" for k, v in where.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def _mark(collapsed: Optional[bool]) -> str:
    return " (collapsed)" if collapsed else ""


def _number(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(manifest: dict[str, Any], methods: dict[str, dict[str, Any]]) -> str:
    """tuning.md: per method its trials, the default's and the best value, and the best settings."""
    lines = [
        "# Tuning", "",
        f"{manifest['dataset']} / {manifest['model']}, cells {', '.join(manifest['forget'])}, tuning seeds "
        f"{', '.join(map(str, manifest['seeds']))}; {manifest['trials']} trials per method (TPE, seed {manifest['sampler_seed']}), "
        f"objective: the {manifest['criterion']} average gap to Retrain over the cells and seeds; every method's length capped at "
        f"{manifest['budget']['fraction']:.0%} of Retrain's optimiser steps. The first trial is the default (lengths cut to the cap).", "",
        "| method | γ | complete | pruned | failed | default | best | trial | collapsed trials | settings |", "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in methods.items():
        t = e["trials"]
        best = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in (e["best"] or {}).items())
        lines.append(f"| {name} | {manifest['retain_access'][name]:g} | {t['complete']} | {t['pruned']} | {t['failed']} | "
                     f"{_number(e['default_value'])}{_mark(e.get('default_collapsed'))} | {_number(e['best_value'])}{_mark(collapsed(e['best_runs']))} | "
                     f"{e['best_trial']} | {e['collapsed_trials']} | {best} |")
    lines += ["", "The best config is the best complete trial without a collapsed run (TA or RA more than 5 points below "
              "Retrain's in a run). A trial ends at its first collapsed run (pruned; counted under collapsed trials) but "
              "the default, which runs on: where the default collapsed, the best may score worse than it; where no trial "
              "completed without a collapse, the best is the best of those that did, marked (collapsed)."]
    cut = {n: e["default_cut"] for n, e in methods.items() if e["default_cut"]}
    if cut:
        lines += ["", "Defaults longer than the cap, cut for the first trial: " + "; ".join(
            f"{n} {', '.join(f'{k} {a} → {b}' for k, (a, b) in c.items())}" for n, c in cut.items()) + "."]
    return "\n".join(lines) + "\n"


def plot_history(name: str, entry: dict[str, Any], path: Path) -> bool:
    """Each trial's value and the best so far; False when matplotlib (the `plot` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    done = [h for h in entry["history"] if h["value"] is not None]
    if not done:
        return False
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.scatter([h["number"] for h in done], [h["value"] for h in done], s=14, alpha=0.6, label="trial")
    best, line = float("inf"), []
    for h in done:
        best = min(best, h["value"])
        line.append(best)
    ax.step([h["number"] for h in done], line, where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("average gap to Retrain (points)")
    ax.set_title(f"{name}: {entry['trials']['pruned']} pruned, {entry['trials']['failed']} failed")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def read_tuned(folder: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The manifest of a tuning folder and, per method, its tuned run configuration (as data)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / TUNING_JSON).read_text())["manifest"]
        hash_ = manifest["setting_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"--tuned {folder}: no readable {TUNING_JSON}; expected the --out folder of `unlearnkit tune`") from None
    configs = {path.stem: load_toml(path) for path in sorted((folder / TUNED).glob("*.toml"))}
    stale = [n for n, c in configs.items() if c.get("tuned", {}).get("manifest") != hash_]
    if stale:
        raise UsageError(f"--tuned {folder}: {TUNED}/{stale[0]}.toml was not written by this folder's study (manifest differs)")
    return manifest, configs
