"""`unlearnkit audit`: per-example privacy audits of unlearning methods (its parser and command).

Added to the grammar by `unlearnkit.cli.parser` and run by `unlearnkit.cli.commands`; kept apart from them so
that the audit's options live in one place.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from unlearnkit.audit import report as audit_report
from unlearnkit.audit.run import AuditRun, check_settings
from unlearnkit.bench import plan
from unlearnkit.bench.locks import owned_dir
from unlearnkit.core.errors import UsageError
from unlearnkit.engine import distributed
from unlearnkit.engine.runconfig import load_run_config

DEFAULT_MODELS = 16


def add_parser(sub: Any, common: Any, count: Any, gamma: Any) -> None:
    """The `audit` subcommand; `common` adds the shared options, `count` and `gamma` parse values."""
    p = sub.add_parser(
        "audit", help="per-example privacy audits (NeurIPS 2023 score, U-LiRA) over populations of models",
        description="Build (or reuse from the cache) populations of original, Retrain and unlearned models, then audit "
                    "each method per forget example: the NeurIPS 2023 challenge's forgetting score (epsilon) and U-LiRA "
                    "(ulira). Writes audit.md, audit.json, per_example.csv and audit.png to --out; see docs/audit.md.")
    p.add_argument("--dataset", default=None, metavar="NAME", help="dataset name (default: the quick preset's, mnist1d)")
    p.add_argument("--model", default=None, metavar="NAME", help="model name (default: the quick preset's, cnn1d)")
    p.add_argument("--methods", default=None, metavar="A,B,...",
                   help="comma-separated method names or config labels (default: every installed one; original and retrain always run)")
    p.add_argument("--forget", default=None, metavar="SPEC", help="one forget spec: random:0.1 | class:3 | indices:FILE (default: random:0.1)")
    p.add_argument("--retain-access", type=gamma, default=None, metavar="γ", help="one γ for every method (default: each method's own)")
    p.add_argument("--seed", type=count, default=None, help="seed of the split and the original model (default: the config's, else 0)")
    p.add_argument("--models", type=count, default=DEFAULT_MODELS, metavar="N",
                   help="models per population: N unlearning runs and N Retrain models (epsilon), N shadow models (ulira)")
    p.add_argument("--audits", default=None, metavar="A,B", help="comma-separated audit names (default: every installed one)")
    p.add_argument("--num-samples", type=count, default=None, metavar="N", help="mnist1d: samples to generate (default: the preset's)")
    p.add_argument("--epochs", type=count, default=None, metavar="N", help="override the recipe's epochs")
    p.add_argument("--out", default="audit-out", metavar="DIR", help="folder for the results (and the model cache, unless --cache)")
    p.add_argument("--cache", default=None, metavar="DIR", help="model cache folder, e.g. a bench's DIR/cache (default: OUT/cache)")
    p.add_argument("--wait", action="store_true", help="if another run is using --out, wait for it to finish instead of refusing")
    common(p)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_run_config(args.config)
    options = {k: v for k, v in cfg.bench_options().items() if v is not None}
    cli = {"dataset": args.dataset, "model": args.model, "forget": [args.forget] if args.forget else None,
           "retain_access": args.retain_access, "seeds": [args.seed] if args.seed is not None else None,
           "data_dir": args.data_dir, "download": args.download or None}
    options.update({k: v for k, v in cli.items() if v is not None})
    options = plan.overlay(options, methods=args.methods, num_samples=args.num_samples, epochs=args.epochs)
    return {**options, "attack": "none", "tables": ["main"]}


def _out_dir(out: str, cache: Path) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out!r} is a file; expected a folder for the audit's results")
    for name in audit_report.FILES:
        if (path / name).is_dir():
            raise UsageError(f"--out {out!r}: {str(path / name)!r} is a folder; the audit writes a file there")
    for folder, what in ((path, "--out"), (cache, "--cache")):
        base = folder if folder.exists() else next(p for p in folder.absolute().parents if p.exists())
        if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {str(folder)!r}: {str(base)!r} is not a writable folder")
    return path


def _check_previous(out: Path, run: AuditRun) -> None:
    path = out / "audit.json"
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text())["manifest"]["setting_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{path} exists but is not an unlearnkit audit file; choose another --out") from None
    if previous != audit_report.setting_hash(run):
        raise UsageError(f"{path} holds an audit of another setting (dataset, model, recipe, forget set or seed); "
                         "choose another --out to keep both")


def cmd_audit(args: argparse.Namespace, device_of: Any) -> int:
    """Run the audit; `device_of(name)` resolves --device (and joins torchrun's process group)."""
    if args.forget and "," in args.forget:
        raise UsageError(f"--forget {args.forget!r}: an audit takes one forget spec")
    settings = check_settings(plan.resolve(_options(args)), args.models,
                              [a.strip() for a in args.audits.split(",") if a.strip()] if args.audits else None)
    cache = Path(args.cache) if args.cache else Path(args.out) / "cache"
    out = _out_dir(args.out, cache)
    device = device_of(args.device)
    run = AuditRun(settings, cache, device=device, progress=not args.quiet)
    rank0 = distributed.is_main()
    if rank0:
        _check_previous(out, run)
    start = time.perf_counter()
    with owned_dir(out, wait=args.wait, waiting=lambda line: print(line, file=sys.stderr, flush=True)) if rank0 else contextlib.nullcontext():
        outputs = run.build()
        if not rank0:
            return 0
        rows, per_example = run.audit(outputs)
        results = {"manifest": audit_report.manifest(run, time.perf_counter() - start), "rows": rows}
        written = audit_report.write(out, results, run.task.forget.indices.numpy(), per_example)
    print(audit_report.markdown(results), end="")
    print(f"results: {', '.join(str(p) for p in written)}")
    return 0
