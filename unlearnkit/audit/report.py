"""What `unlearnkit audit` writes: audit.md, audit.json, per_example.csv and audit.png."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from unlearnkit.audit.run import AuditRun
from unlearnkit.bench import provenance
from unlearnkit.core.config import config_hash, unstructure_config
from unlearnkit.core.plugins import registry
from unlearnkit.core.registry import get_audit
from unlearnkit.data.populations import SEEDS
from unlearnkit.engine.checkpoint import atomic_write_bytes, atomic_write_text

FILES = ("audit.md", "audit.json", "per_example.csv", "audit.png")


def setting_hash(run: AuditRun) -> str:
    """What the rows of an output folder depend on besides the methods, audits and N."""
    s = run.settings.bench
    return config_hash({"dataset": s.dataset, "dataset_config": s.dataset_config, "model": s.model, "model_config": s.model_config,
                        "train": s.train, "val_ratio": s.val_ratio, "forget": s.forget[0], "seed": s.seeds[0]})


def manifest(run: AuditRun, wall_s: float) -> dict[str, Any]:
    """Configuration, population design, versions and provenance, like the bench's manifest."""
    s = run.settings.bench
    packages = {e.package for e in registry.entries()}
    n = run.settings.models
    design = {
        "repeated": f"1 original (seed {run.seed}) trained on the training split; per method {n} runs from it (seeds "
                    f"{run.seed + SEEDS['unlearn']}+u); {n} Retrain models on D_r (seeds {run.seed + SEEDS['retrain']}+r)",
        "shadow": f"{n} originals (seeds {run.seed + SEEDS['shadow']}+i) on complementary random halves of the training split, "
                  f"pairs (2k, 2k+1) split D_r and D_f; per method each unlearned on its half of D_f (seeds "
                  f"{run.seed + SEEDS['shadow-unlearn']}+i); leave-one-model-out fits",
    }
    return {
        "setting_hash": setting_hash(run),
        "config": {"dataset": s.dataset, "dataset_config": s.dataset_config, "model": s.model, "model_config": s.model_config,
                   "train": s.train, "val_ratio": s.val_ratio, "forget": s.forget[0], "seed": s.seeds[0],
                   "methods": [attrs.asdict(m) for m in s.methods], "retain_access": s.retain_access,
                   "models": n, "audits": list(run.settings.audits)},
        "populations": {p: design[p] for p in run.settings.populations},
        "recipe": unstructure_config(run.task.recipe), "forget_examples": len(run.task.forget),
        "split_hashes": run.task.split_hashes(), **provenance.environment(packages, run.device), "wall_s": wall_s,
    }


def _cell(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else "–"


def markdown(results: dict[str, Any]) -> str:
    """One row per method: each audit's headline figures, the models and the time they took."""
    m = results["manifest"]
    c = m["config"]
    audits = c["audits"]
    columns = [(a, h) for a in audits for h in type(get_audit(a)).headline]
    lines = [
        "# unlearnkit audit", "",
        f"Dataset `{c['dataset']}` {json.dumps(c['dataset_config'])}, model `{c['model']}`, forget `{c['forget']}` "
        f"({m['forget_examples']} examples), seed {c['seed']}, N = {c['models']} models per population, device `{m['device']}`; "
        f"{m['wall_s']:.0f} s wall time.", "",
        *[f"- `{p}`: {text}" for p, text in m["populations"].items()], "",
        "Build: seconds spent training or unlearning the method's models (when they were built; a cached model costs nothing now).",
        "", "| method | γ | " + " | ".join(f"{a} {h}" for a, h in columns) + " | models | build (s) | audit (s) |",
        "|---" * (len(columns) + 5) + "|",
    ]
    for row in results["rows"]:
        head = f"| {row['method']} | {row['retain_access']:g} | "
        if "error" in row:
            lines.append(head + f"failed: {row['error']} |" + " |" * (len(columns) + 2))
            continue
        cells = []
        for audit, key in columns:
            entry = row["audits"].get(audit, {})
            cells.append(f"failed: {entry['error']}" if "error" in entry else _cell(entry.get("summary", {}).get(key), 3 if key in ("F", "final") else 2))
        seconds = sum(e.get("seconds", 0.0) for e in row["audits"].values())
        lines.append(head + " | ".join(cells) + f" | {row['models']} | {row['build_s']:.0f} | {seconds:.1f} |")
    return "\n".join(lines) + "\n"


def per_example_csv(examples: np.ndarray, per_example: dict[str, dict[str, np.ndarray]]) -> str:
    """method, example (index in the dataset's train split), then one column per per-example value."""
    keys = list(dict.fromkeys(k for values in per_example.values() for k in values))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "example", *keys])
    for method, values in per_example.items():
        for i, example in enumerate(examples):
            writer.writerow([method, int(example), *(f"{values[k][i]:.6g}" if k in values else "" for k in keys)])
    return out.getvalue()


def plot(per_example: dict[str, dict[str, np.ndarray]], path: Path) -> bool:
    """Histograms of each per-example value (columns) for each method (rows). False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    methods = [m for m, values in per_example.items() if values]
    keys = list(dict.fromkeys(k for m in methods for k in per_example[m]))
    if not methods or not keys:
        return False
    fig, axes = plt.subplots(len(methods), len(keys), figsize=(4 * len(keys), 1.6 * len(methods) + 0.8), squeeze=False, sharex="col")
    for j, key in enumerate(keys):
        values = [per_example[m].get(key, np.array([])) for m in methods]
        finite = np.concatenate([v for v in values if len(v)])
        bins = np.linspace(finite.min(), finite.max(), 31) if finite.max() > finite.min() else 10
        for i, (method, v) in enumerate(zip(methods, values)):
            ax = axes[i][j]
            ax.hist(v, bins=bins, color="tab:blue", alpha=0.8)
            ax.set_ylabel(method, fontsize=8)
            if i == 0:
                ax.set_title(key)
    fig.suptitle("Per-example audit values by method (count of forget examples)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return True


def write(out: Path, results: dict[str, Any], examples: np.ndarray, per_example: dict[str, dict[str, np.ndarray]]) -> list[Path]:
    """Every output file, each written atomically; returns those written."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "audit.json", json.dumps(results, indent=1))
    atomic_write_text(out / "audit.md", markdown(results))
    atomic_write_text(out / "per_example.csv", per_example_csv(examples, per_example))
    written = [out / "audit.md", out / "audit.json", out / "per_example.csv"]
    if plot(per_example, out / "audit.png"):
        written.append(out / "audit.png")
    return written
