"""Summaries, paired comparisons, the paper-style Markdown tables and the trade-off plot."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

from unlearnkit.bench import grid, sequential
from unlearnkit.engine.evaluation import METRICS

REFERENCE = "ltu"


def setting_of(row: dict[str, Any]) -> str:
    return f"{row['forget']}" + (f" request {row['request']}" if row.get("request") else "")


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarize(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every metric, UT_s and the average gap, per method and setting;
    `unchanged_seeds` (seeds whose row returned the original model) and `stop` (stop reasons
    and their seed counts) where rows record them."""
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
        unchanged = sum(bool(r.get("unchanged")) for r in members)  # seeds where the method returned the original
        if unchanged:
            entry["unchanged_seeds"] = unchanged
        reasons = Counter(r["stop_reason"] for r in members if r.get("stop_reason"))
        if reasons:
            entry["stop"] = dict(sorted(reasons.items()))
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


def across(rows: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Table 1's entries ranked across its forget settings (`grid.across`; each LTU entry paired
    with every other entry), when it has more than one setting."""
    main = [r for r in rows if r.get("table") == "main"]
    if len({r["forget"] for r in main}) < 2:
        return None
    return grid.across(main, sorted({grid.entry_of(r) for r in main if r.get("name") == REFERENCE}))


def _cell(entry: dict[str, Any], key: str) -> str:
    if key not in entry:
        return "–"
    m = entry[key]
    text = f"{m['mean']:.2f}" + (f"±{m['std']:.2f}" if entry["n_seeds"] > 1 else "")
    gap = entry.get("gap", {}).get(key)
    return f"{text} ({gap['mean']:.2f})" if gap else text


def _unchanged(entry: dict[str, Any]) -> str:
    """The mark of a method that returned the original model (on k of n seeds); empty otherwise."""
    k, n = entry.get("unchanged_seeds", 0), entry["n_seeds"]
    return "" if not k else " (= original)" if k == n else f" (= original on {k}/{n} seeds)"


def _stop(entry: dict[str, Any]) -> str:
    """The stop reasons over seeds: `target`, or `guard ×2, target` (– for a method without a stop rule)."""
    reasons = entry.get("stop") or {}
    return ", ".join(reason + (f" ×{count}" if count > 1 else "") for reason, count in reasons.items()) or "–"


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
        "Each cell: mean±std over seeds (|gap to Retrain|). UA, RA, TA, MIA in %; UT in seconds. stop: why an "
        "iterative method stopped, per seed (docs/stopping.md); \"= original\": the method returned the original model.",
    ]
    summary = results["summary"]
    for table in dict.fromkeys(e["table"] for e in summary):
        if table == "sequential":  # one table over the requests
            lines += sequential.markdown(summary)
            continue
        for setting in dict.fromkeys(e["setting"] for e in summary if e["table"] == table):
            entries = [e for e in summary if e["table"] == table and e["setting"] == setting]
            lines += ["", f"## {TABLE_TITLES.get(table, table)}: forget `{setting}`", "",
                      "| method | γ | UA | RA | TA | MIA | avg gap | UT (s) | stop |", "|---|---|---|---|---|---|---|---|---|"]
            for e in entries:
                if not e["n_seeds"]:
                    seeds = ", ".join(str(f["seed"]) for f in e["failed"])
                    lines.append(f"| {e['method']} | {e['retain_access']:g} | failed on seed(s) {seeds}: {e['failed'][0]['error']} | | | | | | |")
                    continue
                name = e["method"] + _unchanged(e) + (f" (failed on {len(e['failed'])} seed(s))" if e.get("failed") else "")
                avg = e.get("gap", {}).get("avg")
                avg_text = f"{avg['mean']:.2f}" + (f"±{avg['std']:.2f}" if e["n_seeds"] > 1 else "") if avg else "–"
                ut = f"{e['UT_s']['mean']:.1f}" if "UT_s" in e else "–"
                lines.append(
                    f"| {name} | {e['retain_access']:g} | {_cell(e, 'UA')} | {_cell(e, 'RA')} | {_cell(e, 'TA')} | "
                    f"{_cell(e, 'MIA')} | {avg_text} | {ut} | {_stop(e)} |"
                )
    if results.get("across"):
        lines += ["", f"## {TABLE_TITLES['main']}: across the forget settings", "", grid.LEGEND, "",
                  *grid.methods_markdown(results["across"], level="###")]
    comparisons = results.get("comparisons") or []
    if comparisons:
        lines += ["", "## LTU against each method (average gap, paired by seed)", "",
                  "| table | forget | method | LTU better on | mean(LTU − method) | paired t-test p |", "|---|---|---|---|---|---|"]
        for c in comparisons:
            p = "–" if c["p_value"] is None or math.isnan(c["p_value"]) else f"{c['p_value']:.3f}"
            lines.append(f"| {c['table']} | {c['setting']} | {c['baseline']} | {c['wins']}/{len(c['seeds'])} seeds | {c['mean_diff']:+.2f} | {p} |")
    return "\n".join(lines) + "\n"


#: Each method's mark: colour i mod 9 (tab10 without its grey) and marker i mod 7, distinct for 63 methods.
COLOURS = (0, 1, 2, 3, 4, 5, 6, 8, 9)
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: The references' marks: Retrain (the target, gap 0) and the original (no unlearning), in black and grey.
REFERENCE_MARKS = {"retrain": ("black", "*"), "original": ("0.45", "p")}


def marks(methods: Iterable[str]) -> dict[str, tuple[Any, str]]:
    """`{method: (colour, marker)}`: distinct pairs, the references in their own marks."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    out = {}
    for i, method in enumerate(m for m in methods if m not in REFERENCE_MARKS):
        out[method] = (palette(COLOURS[i % len(COLOURS)]), MARKERS[i % len(MARKERS)])
    return {**out, **{m: mark for m, mark in REFERENCE_MARKS.items() if m in methods}}


def _label(entry: dict[str, Any]) -> str:
    """A method's name on the plot: the references named as such, a method that returned the original marked."""
    method = entry["method"]
    return f"{method} (reference)" if method in REFERENCE_MARKS else method + _unchanged(entry)


def figure(results: dict[str, Any]) -> Any:
    """The main table as a dot chart, one row of panels per forget setting: each method's |gap to
    Retrain| on UA, RA, TA and MIA (0 = Retrain; the dashed line: the original's gap, i.e. doing
    nothing), then its unlearning time against Retrain's training time. Methods are sorted by
    average gap, closest first, the original among them; a hollow mark is a method that returned
    the original model.
    Returns a matplotlib Figure, or None when the main table has no finished method."""
    import matplotlib.pyplot as plt

    entries = [e for e in results["summary"] if e["table"] == "main" and "gap" in e]
    if not [e for e in entries if e["method"] not in REFERENCE_MARKS]:
        return None
    settings = list(dict.fromkeys(e["setting"] for e in entries))
    style = marks(dict.fromkeys(e["method"] for e in entries))
    rows = max(sum(e["setting"] == s for e in entries) for s in settings)
    fig, axes = plt.subplots(len(settings), len(METRICS) + 1, figsize=(13, 1.2 + len(settings) * (0.9 + 0.28 * rows)),
                             squeeze=False, sharey="row", layout="constrained")
    for panels, setting in zip(axes, settings):
        # by average gap: Retrain (0) first, and below the original the methods that did worse than nothing
        here = sorted((e for e in entries if e["setting"] == setting), key=lambda e: (e["gap"]["avg"]["mean"], e["method"] != "retrain"))
        original = next((e for e in here if e["method"] == "original"), None)
        for y, e in enumerate(here):
            colour, marker = style[e["method"]]
            hollow = bool(e.get("unchanged_seeds"))
            face = "none" if hollow else colour
            for ax, key in zip(panels, METRICS):
                if key in e["gap"]:
                    g = e["gap"][key]
                    ax.errorbar(g["mean"], y, xerr=g["std"] or None, fmt="none", ecolor=colour, elinewidth=1)
                    ax.scatter(g["mean"], y, marker=marker, s=55, facecolors=face, edgecolors=colour, linewidths=1.3,
                               label=e["method"], zorder=3, clip_on=False)  # a mark at 0 (Retrain) shows whole
            if "UT_s" in e:
                seconds = e["UT_s"]["mean"]
                panels[-1].barh(y, seconds, height=0.6, color=colour, alpha=0.35 if hollow else 0.8)
                panels[-1].annotate(f"{seconds:.1f}", (seconds, y), xytext=(2, 0), textcoords="offset points", va="center", fontsize=7)
        for ax, key in zip(panels, METRICS):
            if original is not None and key in original["gap"]:
                ax.axvline(original["gap"][key]["mean"], color="0.45", linestyle="--", linewidth=1)
            ax.set_xlim(left=0)
            ax.set_xlabel(f"|Δ{key}| (points)")
            ax.grid(axis="x", alpha=0.3)
        panels[-1].set_xlim(left=0)
        panels[-1].set_xlabel("time (s)")
        panels[0].set_yticks(range(len(here)), [f"{_label(e)}  {e['gap']['avg']['mean']:.2f}" for e in here], fontsize=8)
        panels[0].invert_yaxis()
        panels[0].set_title(f"forget {setting}", loc="left", fontsize=10)
    fig.suptitle("How close each method comes to Retrain: |Δ| = |method − Retrain| per metric (0 = Retrain), sorted by "
                 "average |Δ| (the number);\ndashed: the original model (no unlearning; rows below it did worse); "
                 "hollow: returned the original. "
                 "Last column: unlearning time (Retrain's: training from scratch)", fontsize=10)
    return fig


def plot(results: dict[str, Any], path: Path) -> bool:
    """`figure(results)` saved as a PNG at `path` (atomically). Returns False when matplotlib
    (the `plot` extra) is missing or there is nothing to plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig = figure(results)
    if fig is None:
        return False
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return True
