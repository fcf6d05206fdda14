"""The regime grid (`unlearnkit bench --preset robust`): every method at its defaults in every cell,
and the report that ranks them across cells.

A *cell* is one regime (a dataset configuration) and one forget setting. In each cell every
method runs at γ = 1, methods that read the retain set also at γ ∈ {0.1, 0.3}, and iterative
methods under both stop rules (their default and the other of `fixed` / `calibrated`). A *method
entry* is a row label at one γ (e.g. `ft calibrated` at γ 0.1).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any, Iterable

from unlearnkit.engine.evaluation import METRICS

GRID_GAMMAS = (0.1, 0.3, 1.0)
COLLAPSE_POINTS = 5.0  # TA or RA more than this below Retrain's of the same seed
REFERENCE = "ltu γ0.3"  # the entry the paired comparisons are about: LTU at its defaults and its paper's γ


def variants(name: str, label: str, config: dict, reads: frozenset, default_stop: str | None) -> list[tuple[str, dict, tuple]]:
    """(label, config, γs) of every row a method has in a cell of the grid."""
    gammas = GRID_GAMMAS if "retain" in reads else (1.0,)
    rows = [(label, config, gammas)]
    if default_stop is not None and "stop" not in config:
        other = "calibrated" if default_stop == "fixed" else "fixed"
        rows.append((f"{label} {other}", {**config, "stop": other}, gammas))
    return rows


def shortfall(row: dict[str, Any], gold: dict[str, Any]) -> float:
    """The points by which TA or RA falls more than `COLLAPSE_POINTS` below Retrain's (0 when neither does)."""
    return max(0.0, *(gold[k] - row[k] - COLLAPSE_POINTS for k in ("TA", "RA")))


def collapsed(row: dict[str, Any], gold: dict[str, Any]) -> bool:
    """TA or RA more than `COLLAPSE_POINTS` below Retrain's, or a failed (diverged) run."""
    return "error" in row or shortfall(row, gold) > 0


def summarize(results: dict[str, dict[str, Any]], reference: str = REFERENCE) -> dict[str, Any]:
    """The grid report from each regime's bench results (`{regime: results.json contents}`): `across`
    of their grid rows, the reference entry compared with every other."""
    rows = [dict(r, regime=regime) for regime, res in results.items() for r in res["rows"] if r.get("table") == "grid"]
    return across(rows, (reference,))


def across(rows: list[dict[str, Any]], references: Iterable[str]) -> dict[str, Any]:
    """Entries (`NAME γG`) ranked across cells, a cell a (regime, forget) pair; rows without a
    `regime` share one.

    cells: per (regime, forget, entry) the mean over seeds of every metric's gap, the average
    gap, collapses, UT and UT / Retrain's. methods: per entry the mean average gap over the cells
    it ran in, its mean rank (1 = lowest mean average gap in a cell), collapses and the largest
    UT / Retrain. comparisons: each reference entry against every other, paired by cell and seed.
    """
    rows = [dict(r, regime=r.get("regime", "")) for r in rows]
    gold = {(r["regime"], r["forget"], r["seed"]): r for r in rows if r["name"] == "retrain"}
    runs = [r for r in rows if r["name"] != "retrain" and (r["regime"], r["forget"], r["seed"]) in gold]  # Retrain not yet run: no gap
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        cells[(r["regime"], r["forget"], entry_of(r))].append(r)
    cell_rows = []
    for (regime, forget, entry), members in sorted(cells.items()):
        ok = [r for r in members if "error" not in r]
        refs = [gold[(regime, forget, r["seed"])] for r in members]
        out: dict[str, Any] = {"regime": regime, "forget": forget, "entry": entry, "seeds": sorted(r["seed"] for r in members),
                               "collapses": sum(collapsed(r, g) for r, g in zip(members, refs)), "failed": len(members) - len(ok)}
        for key in (*METRICS, "avg"):
            values = [r["gap"][key] for r in ok if key in r.get("gap", {})]
            if values:
                out.setdefault("gap", {})[key] = statistics.fmean(values)
        ut = [(r["UT_s"], gold[(regime, forget, r["seed"])]["UT_s"]) for r in ok]
        if ut:
            out["UT_s"] = statistics.median(u for u, _ in ut)
            out["UT_ratio"] = max(u / g for u, g in ut if g > 0) if any(g > 0 for _, g in ut) else None
        cell_rows.append(out)
    return {"cells": cell_rows, "methods": _methods(cell_rows), "comparisons": [c for ref in references for c in _compare(runs, ref)]}


def entry_of(row: dict[str, Any]) -> str:
    """A row's entry: its label and γ, e.g. `ft tuned γ1` (a label that ends with its γ as it is)."""
    gamma = f"γ{row['retain_access']:g}"
    return row["method"] if row["method"].endswith(gamma) else f"{row['method']} {gamma}"


def _methods(cell_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_cell: dict[tuple, list[dict]] = defaultdict(list)
    for c in cell_rows:
        by_cell[(c["regime"], c["forget"])].append(c)
    ranks: dict[str, list[float]] = defaultdict(list)
    for members in by_cell.values():  # an entry with a failed run in a cell ranks last there
        scored = sorted((c["gap"]["avg"] if not c["failed"] else math.inf, c["entry"]) for c in members)
        for position, (_, entry) in enumerate(scored, start=1):
            ranks[entry].append(position)
    entries: dict[str, list[dict]] = defaultdict(list)
    for c in cell_rows:
        entries[c["entry"]].append(c)
    out = []
    for entry, members in entries.items():
        gaps = [c["gap"]["avg"] if not c["failed"] else math.inf for c in members]  # a failed run fails its cell
        ratios = [c["UT_ratio"] for c in members if c.get("UT_ratio") is not None]
        out.append({
            "entry": entry, "cells": len(members), "failed_cells": sum(1 for c in members if c["failed"]),
            "mean_avg_gap": statistics.fmean(gaps) if gaps else math.nan,
            "worst_avg_gap": max(gaps) if gaps else math.nan, "mean_rank": statistics.fmean(ranks[entry]) if ranks[entry] else math.nan,
            "collapses": sum(c["collapses"] for c in members), "max_UT_ratio": max(ratios) if ratios else None,
        })
    return sorted(out, key=lambda m: (m["mean_avg_gap"], m["entry"]))


def _compare(runs: Iterable[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """The `reference` entry against each other entry, paired by (regime, forget, seed); a failed
    run counts as a loss for its side (its gap is taken as infinite)."""
    from scipy import stats

    by_entry: dict[str, dict[tuple, float]] = defaultdict(dict)
    for r in runs:
        by_entry[entry_of(r)][(r["regime"], r["forget"], r["seed"])] = r["gap"]["avg"] if "gap" in r else math.inf
    if reference not in by_entry:
        return []
    ref = by_entry[reference]
    out = []
    for entry, gaps in sorted(by_entry.items()):
        if entry == reference:
            continue
        keys = sorted(set(ref) & set(gaps))
        if not keys:
            continue
        diffs = [ref[k] - gaps[k] for k in keys]
        finite = [d for d in diffs if math.isfinite(d)]
        p = float(stats.wilcoxon(finite).pvalue) if len(finite) >= 6 and any(finite) else None
        out.append({"reference": reference, "entry": entry, "pairs": len(keys), "wins": sum(d < 0 for d in diffs),
                    "mean_diff": statistics.fmean(finite) if finite else math.nan, "p_value": p})
    return out


LEGEND = ("Mean over seeds per cell; avg gap = mean |method − Retrain| of UA, RA, TA, MIA; collapse = TA or RA "
          f"more than {COLLAPSE_POINTS:g} points below Retrain's (or a diverged run); UT ratio = UT / Retrain's training time.")


def methods_markdown(report: dict[str, Any], level: str = "##") -> list[str]:
    """The lines of the entries' table across cells and of each reference's paired comparisons."""
    lines = ["| entry | cells | mean avg gap | worst cell | mean rank | collapses | max UT / Retrain |", "|---|---|---|---|---|---|---|"]
    for m in report["methods"]:
        ratio = "–" if m["max_UT_ratio"] is None else f"{m['max_UT_ratio']:.2f}"
        mean = "failed" if math.isinf(m["mean_avg_gap"]) else f"{m['mean_avg_gap']:.2f}"
        worst = f"failed in {m['failed_cells']}" if m["failed_cells"] else f"{m['worst_avg_gap']:.2f}"
        lines.append(f"| {m['entry']} | {m['cells']} | {mean} | {worst} | {m['mean_rank']:.1f} | {m['collapses']} | {ratio} |")
    for ref in dict.fromkeys(c["reference"] for c in report["comparisons"]):
        lines += ["", f"{level} {ref} against each entry (average gap, paired by cell and seed)", "",
                  f"| entry | pairs | {ref} better on | mean({ref} − entry) | Wilcoxon p |", "|---|---|---|---|---|"]
        for c in (c for c in report["comparisons"] if c["reference"] == ref):
            p = "–" if c["p_value"] is None else f"{c['p_value']:.3f}"
            lines.append(f"| {c['entry']} | {c['pairs']} | {c['wins']} | {c['mean_diff']:+.2f} | {p} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """robust.md: the per-method summary, the paired comparisons and every cell."""
    lines = ["# The regime grid", "", LEGEND, "", "## Methods across cells", "", *methods_markdown(report)]
    lines += ["", "## Every cell", "", "| regime | forget | entry | UA | RA | TA | MIA | avg gap | collapses | UT (s) | UT / Retrain |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in report["cells"]:
        g = c.get("gap", {})
        gaps = " | ".join(f"{g[k]:.2f}" if k in g else "–" for k in (*METRICS, "avg"))
        ut = f"{c['UT_s']:.1f}" if "UT_s" in c else "–"
        ratio = f"{c['UT_ratio']:.2f}" if c.get("UT_ratio") is not None else "–"
        lines.append(f"| {c['regime']} | {c['forget']} | {c['entry']} | {gaps} | {c['collapses']}/{len(c['seeds'])} | {ut} | {ratio} |")
    return "\n".join(lines) + "\n"
