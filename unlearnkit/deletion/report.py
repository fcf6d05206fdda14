"""The deletion report: `report.json` and `report.md`, written beside every `unlearn` output.

It says what was asked (how many ids and the SHA-256 of their sorted list, never the ids), how
it was done (method, config, versions, the parts of the data the method read, its stop), what
changed (before and after: accuracy on the forget set against unseen data, what a
membership-inference attack sees, retain and test accuracy) and what that does and does not
guarantee.
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any, Optional, Sequence

from torch import nn

from unlearnkit.bench import provenance
from unlearnkit.core.access import TaskView
from unlearnkit.core.errors import UsageError
from unlearnkit.core.plugins import registry
from unlearnkit.data.tasks import UnlearningTask, ids_digest
from unlearnkit.engine.checkpoint import atomic_write_text, state_digest
from unlearnkit.engine.evaluation import accuracy, evaluate, predict_logits

REPORT_FILES = ("report.json", "report.md")
FORMAT = "unlearnkit-deletion-report"
DEFAULT_ATTACK = "svc-confidence"

GUARANTEES = (
    "This is approximate unlearning. The method changed the weights so that the model treats the forgotten samples "
    "more like data it never saw; it gives no formal guarantee that the model equals one retrained without them, nor "
    "that no trace of them can be recovered. The figures are measurements of this model against one attack: "
    "accuracy on the forget set close to accuracy on unseen data, and an attack AUC near 50, are evidence that the "
    "samples no longer stand out, not proof. They are noisy when the forget set is small. The stronger check is a "
    "per-example audit (the unlearnkit-audit plugin), which compares the model with models retrained without the "
    "samples; how far the method is from Retrain on average is what `unlearnkit bench` measures."
)


#: Points of accuracy on unseen data a run may lose before its report warns that the model collapsed.
COLLAPSE_POINTS = 10.0
#: Points by which the forget set's accuracy may exceed unseen data's, after a run that lowered it by
#: less than one point, before the report warns that the samples are still recognised.
STILL_KNOWN_POINTS = 10.0
WARNED = ("Because of the warning above, this run is no evidence of unlearning: the figures below are what was "
          "measured, and nothing more is claimed.")


def nothing_removed(method: str, run_info: dict[str, Any]) -> str:
    """The one line `unlearn` fails with when the method returned the weights it was given."""
    reason = run_info.get("stop_reason")
    how = f" (stop: {reason} after {run_info.get('steps', '?')} steps)" if reason else ""
    setting = 'stop = "fixed"' if reason not in (None, "fixed") else "a larger lr or more epochs"
    return (f"nothing was removed: {method} returned the weights it was given{how}; no checkpoint was written and no id "
            f"was recorded as forgotten. Try another setting (e.g. {setting}) or method, or pass --keep-unchanged "
            "to write the unchanged model anyway")


def removed_classes(task: UnlearningTask) -> list[int]:
    """The classes the forget set removes whole: labels of D_f that no sample of D_r carries."""
    return sorted(set(task.forget.y.tolist()) - set(task.retain_full.y.tolist()))


def warnings_for(
    before: dict[str, Any], after: dict[str, Any], unchanged: bool, removed: Sequence[int] = ()
) -> list[str]:
    """What the report must say first: an output equal to the input, a collapse on unseen data,
    forgotten samples the model still recognises (their accuracy unmoved, well above unseen data's),
    or `removed` classes (`removed_classes`) it still predicts for their forgotten samples."""
    found = []
    if unchanged:
        found.append("Nothing was removed: the output's weights equal the input's (written because of --keep-unchanged); "
                     "the request is recorded, but the model is the one it was given.")
    drop = before["unseen_accuracy"] - after["unseen_accuracy"]
    if drop > COLLAPSE_POINTS:
        found.append(f"The model may have collapsed: its accuracy on unseen data fell from {before['unseen_accuracy']:.1f}% "
                     f"to {after['unseen_accuracy']:.1f}% ({drop:.1f} points, more than {COLLAPSE_POINTS:g}); lower the "
                     "method's learning rate or try another method.")
    known = after["forget_accuracy"] - after["unseen_accuracy"]
    if not unchanged and known > STILL_KNOWN_POINTS and before["forget_accuracy"] - after["forget_accuracy"] < 1.0:
        found.append(f"The forgotten samples are still recognised: the model gets {after['forget_accuracy']:.1f}% of them right "
                     f"(before: {before['forget_accuracy']:.1f}%) against {after['unseen_accuracy']:.1f}% of unseen data, so the run "
                     "barely moved it; run the method longer (more epochs; LTU: `iterations`) or retrain without them.")
    if removed and not unchanged and after["forget_accuracy"] > STILL_KNOWN_POINTS:
        names = ", ".join(map(str, removed))
        found.append(f"The request removes whole classes ({names}), yet the model still predicts them for "
                     f"{after['forget_accuracy']:.1f}% of their forgotten samples (before: {before['forget_accuracy']:.1f}%); "
                     "a model retrained without them never would. Unseen data of those classes is no reference here: "
                     "use a method that forgets by construction (retrain, or one that relabels D_f) or run this one longer.")
    return found


def report_paths(out: Path, force: bool) -> tuple[Path, Path]:
    """Where `unlearn --out OUT` writes its report; an existing report is replaced only with --force."""
    json_path, md_path = (Path(out).parent / name for name in REPORT_FILES)
    folder = next((p for p in (json_path, md_path) if p.is_dir()), None)
    if folder is not None:  # before --force: forcing would not help
        raise UsageError(f"{folder} is a folder; unlearn writes its deletion report there: write --out into another folder")
    existing = next((p for p in (json_path, md_path) if p.exists()), None)
    if existing is not None and not force:
        raise UsageError(f"{existing} exists (an earlier deletion report); write --out into another folder, or pass --force to replace it")
    return json_path, md_path


def report_attack(name: Optional[str]) -> Optional[str]:
    """The attack the report uses: `name`; None for 'none', or when the default is not installed."""
    if name in ("", "none"):
        return None
    if name is None:
        return DEFAULT_ATTACK if DEFAULT_ATTACK in registry.names("attack") else None
    registry.get("attack", name)  # an unknown name fails now, before any work
    return name


def measure(model: nn.Module, task: UnlearningTask, attack: Optional[str], *, seed: int, device: Any) -> dict[str, Any]:
    """The report's figures for one model (all in %)."""
    metrics = evaluate(model, task, attack, seed=seed, device=device, report=attack is not None)
    out = {
        "forget_accuracy": 100.0 - metrics["UA"],
        "unseen_accuracy": accuracy(predict_logits(model, task.val, device=device), task.val.y),
        "retain_accuracy": metrics["RA"],
        "test_accuracy": metrics["TA"],
    }
    if attack is not None:
        out["mia"] = {"efficacy": metrics["MIA"], **metrics["MIA_report"]}
    return out


def build_report(
    *, task: UnlearningTask, view: TaskView, method: str, config: dict[str, Any], unlearner: Any, seed: int,
    before: dict[str, Any], after: dict[str, Any], seconds: float, attack: Optional[str], source: str, output: str,
    model: nn.Module, request_spec: str, requests: int, warnings: Sequence[str] = (), tuned: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """The report as JSON-able data; `warnings` come first in it; `tuned`: the `[tuned]` table of a config from `unlearnkit tune`."""
    request = task.request
    reads = {part: len(getattr(task, part)) for part in sorted(view.accessed)}
    return {
        "format": FORMAT,
        "format_version": 1,
        "warnings": list(warnings),
        "unchanged": bool((getattr(unlearner, "run_info", None) or {}).get("unchanged")),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "request": {"forget": request_spec, "count": len(request.ids), "sha256": request.digest(), "new": request.new,
                    "already_forgotten": request.already_forgotten, "held_out": request.held_out},
        "forget_set": {"count": len(task.forget), "sha256": ids_digest(task.ids_of(task.forget)), "requests": requests},
        "checkpoints": {"input": source, "output": output, "output_weights_sha256": state_digest(model.state_dict())},
        "dataset": {"name": task.dataset, "config": task.dataset_config, "fingerprint": task.fingerprint,
                    "classes": list(task.class_names) if task.class_names is not None else task.num_classes,
                    "train": len(task.train), "val": len(task.val), "test": len(task.test), "val_from": task.val_from},
        "method": {"name": method, "config": config, "retain_access": task.retain_access, "seed": seed,
                   **({"tuned": tuned} if tuned else {})},
        "data_read": {"declared": sorted(view.reads), "read": reads, "retain_available": len(task.retain_full)},
        "run_info": getattr(unlearner, "run_info", None) or None,  # None: the method reports nothing about its run
        "wall_seconds": seconds,
        "attack": attack,
        "before": before,
        "after": after,
        "versions": {**provenance.versions({e.package for e in registry.entries()}), "python": platform.python_version()},
        "guarantees": WARNED if warnings else GUARANTEES,
    }


def write_report(paths: tuple[Path, Path], report: dict[str, Any]) -> None:
    """report.json and report.md, each written atomically."""
    atomic_write_text(paths[0], json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(paths[1], markdown(report))


ROWS = (
    ("accuracy on the forget set", "forget_accuracy"),
    ("accuracy on unseen data (val, never trained on)", "unseen_accuracy"),
    ("MIA: AUC, forget set against unseen data (50 = cannot tell them apart)", "mia.AUC"),
    ("MIA: true-positive rate at 1% false positives", "mia.TPR@1%FPR"),
    ("MIA: accuracy, forget set against unseen data", "mia.accuracy"),
    ("MIA-efficacy: % of the forget set called non-member", "mia.efficacy"),
    ("retain accuracy (RA)", "retain_accuracy"),
    ("test accuracy (TA)", "test_accuracy"),
)


def _value(figures: dict[str, Any], key: str) -> str:
    for part in key.split("."):
        if not isinstance(figures, dict) or part not in figures:
            return "–"
        figures = figures[part]
    return f"{figures:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """report.md: the report for a reader."""
    r, m, fs, data = report["request"], report["method"], report["forget_set"], report["dataset"]
    reads = ", ".join(f"{part} ({n} samples)" for part, n in report["data_read"]["read"].items()) or "nothing"
    lines = ["# Deletion report", ""]
    lines += [f"> **Warning.** {w}" for w in report.get("warnings", ())]
    lines += [""] if report.get("warnings") else []
    lines += [
        f"- **Request** `{r['forget']}`: {r['count']} samples, SHA-256 of their sorted ids `{r['sha256']}`; "
        f"{r['new']} newly forgotten, {r['already_forgotten']} already forgotten, {r['held_out']} never trained on (held out).",
        f"- **Forget set** after {fs['requests']} request(s): {fs['count']} samples, SHA-256 `{fs['sha256']}`.",
        f"- **Model** `{report['checkpoints']['input']}` → `{report['checkpoints']['output']}` "
        f"(weights SHA-256 `{report['checkpoints']['output_weights_sha256'][:16]}…`).",
        f"- **Data** `{data['name']}`" + (f" (content SHA-256 `{data['fingerprint'][:16]}…`)" if data["fingerprint"] else "")
        + f": {data['train']} training samples, {data['val']} unseen (val, from {data['val_from']}), {data['test']} test.",
        f"- **Method** `{m['name']}`, γ = {m['retain_access']:g}, seed {m['seed']}, {report['wall_seconds']:.1f} s; "
        f"config `{json.dumps(m['config'], sort_keys=True)}`.",
        f"- **Data read by the method**: {reads} (declared: {', '.join(report['data_read']['declared'])}; the test split is never readable).",
    ]
    tuned = m.get("tuned")
    if tuned:
        lines.append(f"- **Tuned config**: by `unlearnkit tune` (study `{tuned.get('manifest')}`) on {tuned.get('dataset')}, "
                     f"mock request(s) {', '.join(tuned.get('forget', []))}, seeds {', '.join(map(str, tuned.get('seeds', [])))}: "
                     f"{tuned.get('criterion')} average gap to Retrain {tuned.get('score', float('nan')):.2f} there "
                     f"(the default's {tuned.get('default_score', float('nan')):.2f}).")
    info = report.get("run_info") or {}
    if "stop_reason" in info or "steps" in info:
        lines.append(f"- **Stop**: {info.get('stop_reason', 'fixed schedule')} after {info.get('steps', '?')} steps.")
    lines += ["", "## Before and after", ""]
    if report["attack"] is None:
        lines += ["No membership-inference attack was run (none installed, or `--attack none`).", ""]
    else:
        lines += [f"Attack: `{report['attack']}`, fitted on retained (member) against test (non-member) samples.", ""]
    lines += ["| figure (%) | before | after |", "|---|---|---|"]
    for label, key in ROWS:
        if key.startswith("mia.") and report["attack"] is None:
            continue
        lines.append(f"| {label} | {_value(report['before'], key)} | {_value(report['after'], key)} |")
    lines += ["", "## What this does and does not guarantee", "", report["guarantees"], "",
              f"Versions: {', '.join(f'{k} {v}' for k, v in sorted(report['versions'].items()))}."]
    return "\n".join(lines) + "\n"
