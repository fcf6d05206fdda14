"""Summaries, paired comparisons, the paper-style Markdown tables and the trade-off plot."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from unlearnkit.bench import sequential
from unlearnkit.engine.evaluation import METRICS

REFERENCE = "ltu"


def setting_of(row: dict[str, Any]) -> str:
    return f"{row['forget']}" + (f" request {row['request']}" if row.get("request") else "")


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarize(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every metric, UT_s and the average gap, per method and setting."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["table"], row["method"], setting_of(row), row["retain_access"])].append(row)
    failures = {key: [r for r in members if "error" in r] for key, members in groups.items()}
    groups = {key: [r for r in members if "error" not in r] for key, members in groups.items()}
    out = []
    for (table, method, setting, gamma), members in groups.items():
        entry: dict[str, Any] = {"table": table, "method": method, "setting": setting, "retain_access": gamma, "n_seeds": len(members)}
        failed = failures[(table, method, setting, gamma)]
        if failed:  # e.g. a diverging loss: the seeds and why
            entry["failed"] = [{"seed": r["seed"], "error": r["error"]} for r in failed]
        for key in (*METRICS, "UT_s"):
            values = [r[key] for r in members if r.get(key) is not None]
            if values:
                entry[key] = _stats(values)
        for key in (*METRICS, "avg"):
            values = [r["gap"][key] for r in members if key in r.get("gap", {})]
            if values:
                entry.setdefault("gap", {})[key] = _stats(values)
        out.append(entry)
    return out


def compare(rows: Iterable[dict[str, Any]], reference: str = REFERENCE) -> list[dict[str, Any]]:
    """LTU's average gap against each other method's, paired by seed, per table and forget setting.

    `wins` counts seeds where the reference has the smaller gap; `p_value` is scipy's paired
    t-test (two-sided) when there are at least 3 seeds and the differences vary.
    """
    from scipy import stats

    by_key: dict[tuple, dict[int, float]] = defaultdict(dict)
    for row in rows:
        if row.get("name") not in ("original", "retrain") and "avg" in row.get("gap", {}):  # failed rows have no gap
            by_key[(row["table"], setting_of(row), row["method"])][row["seed"]] = row["gap"]["avg"]
    out = []
    for (table, setting, method), gaps in sorted(by_key.items()):
        ref = by_key.get((table, setting, reference))
        if method == reference or ref is None:
            continue
        seeds = sorted(set(ref) & set(gaps))
        if not seeds:
            continue
        diffs = [ref[s] - gaps[s] for s in seeds]
        p_value = None
        if len(seeds) >= 3 and len(set(diffs)) > 1:
            p_value = float(stats.ttest_rel([ref[s] for s in seeds], [gaps[s] for s in seeds]).pvalue)
        out.append({
            "table": table, "setting": setting, "reference": reference, "baseline": method, "seeds": seeds,
            "wins": sum(d < 0 for d in diffs), "mean_diff": statistics.fmean(diffs), "p_value": p_value,
        })
    return out


def _cell(entry: dict[str, Any], key: str) -> str:
    if key not in entry:
        return "–"
    m = entry[key]
    text = f"{m['mean']:.2f}" + (f"±{m['std']:.2f}" if entry["n_seeds"] > 1 else "")
    gap = entry.get("gap", {}).get(key)
    return f"{text} ({gap['mean']:.2f})" if gap else text


TABLE_TITLES = {
    "main": "Table 1 — unlearning performance",
    "access": "Table 2 — partial access to the remaining data",
    "ablation": "Tables 3–4 — LTU ablations",
}


def markdown(results: dict[str, Any]) -> str:
    """results.md: one table per (table, forget setting), value ± std with the gap to Retrain in parentheses."""
    manifest = results["manifest"]
    lines = [
        "# unlearnkit bench results",
        "",
        f"Dataset `{manifest['dataset']}`, model `{manifest['model']}`, seeds {manifest['seeds']}, "
        f"attack `{manifest['attack']}`, device `{manifest['device']}`.",
        "Each cell: mean±std over seeds (|gap to Retrain|). UA, RA, TA, MIA in %; UT in seconds.",
    ]
    summary = results["summary"]
    for table in dict.fromkeys(e["table"] for e in summary):
        if table == "sequential":  # one table over the requests
            lines += sequential.markdown(summary)
            continue
        for setting in dict.fromkeys(e["setting"] for e in summary if e["table"] == table):
            entries = [e for e in summary if e["table"] == table and e["setting"] == setting]
            lines += ["", f"## {TABLE_TITLES.get(table, table)}: forget `{setting}`", "",
                      "| method | γ | UA | RA | TA | MIA | avg gap | UT (s) |", "|---|---|---|---|---|---|---|---|"]
            for e in entries:
                if not e["n_seeds"]:
                    seeds = ", ".join(str(f["seed"]) for f in e["failed"])
                    lines.append(f"| {e['method']} | {e['retain_access']:g} | failed on seed(s) {seeds}: {e['failed'][0]['error']} | | | | | |")
                    continue
                name = e["method"] + (f" (failed on {len(e['failed'])} seed(s))" if e.get("failed") else "")
                avg = e.get("gap", {}).get("avg")
                avg_text = f"{avg['mean']:.2f}" + (f"±{avg['std']:.2f}" if e["n_seeds"] > 1 else "") if avg else "–"
                ut = f"{e['UT_s']['mean']:.1f}" if "UT_s" in e else "–"
                lines.append(
                    f"| {name} | {e['retain_access']:g} | {_cell(e, 'UA')} | {_cell(e, 'RA')} | {_cell(e, 'TA')} | "
                    f"{_cell(e, 'MIA')} | {avg_text} | {ut} |"
                )
    comparisons = results.get("comparisons") or []
    if comparisons:
        lines += ["", "## LTU against each method (average gap, paired by seed)", "",
                  "| table | forget | method | LTU better on | mean(LTU − method) | paired t-test p |", "|---|---|---|---|---|---|"]
        for c in comparisons:
            p = "–" if c["p_value"] is None or math.isnan(c["p_value"]) else f"{c['p_value']:.3f}"
            lines.append(f"| {c['table']} | {c['setting']} | {c['baseline']} | {c['wins']}/{len(c['seeds'])} seeds | {c['mean_diff']:+.2f} | {p} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> bool:
    """Forgetting gap (UA, MIA) against utility gap (TA, RA) per method of the main table; marker
    size = unlearning time. Returns False when matplotlib (the `plot` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    entries = [e for e in results["summary"] if e["table"] == "main" and "gap" in e and e["method"] not in ("retrain", "original")]
    if not entries:
        return False
    settings = list(dict.fromkeys(e["setting"] for e in entries))
    methods = sorted({e["method"] for e in entries})
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    longest = max(e.get("UT_s", {"mean": 0.0})["mean"] for e in entries) or 1.0
    # constrained layout keeps the title, labels and legend inside the figure
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4.8), squeeze=False, layout="constrained")
    for ax, setting in zip(axes[0], settings):
        for e in (e for e in entries if e["setting"] == setting):
            g = e["gap"]
            forget = statistics.fmean(g[k]["mean"] for k in ("UA", "MIA") if k in g)
            utility = statistics.fmean(g[k]["mean"] for k in ("TA", "RA") if k in g)
            size = 30 + 400 * e.get("UT_s", {"mean": 0.0})["mean"] / longest
            ax.scatter(utility, forget, s=size, alpha=0.7, color=colours[e["method"]], label=e["method"])
        ax.set_title(f"forget {setting}")
        ax.set_xlabel("utility gap: mean |ΔTA|, |ΔRA| (points)")
        ax.set_ylabel("forgetting gap: mean |ΔUA|, |ΔMIA| (points)")
        ax.legend(fontsize=7, markerscale=0.5)
    fig.suptitle("Gap to Retrain (closer to 0 is better)\nmarker size = unlearning time")
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return True
