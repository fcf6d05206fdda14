"""The `unlearnkit` command line: plugins, train, import, unlearn, evaluate, bench, audit, tune.

Runs the commands whose options `unlearnkit.cli.parser` reads. Usage errors exit with status 2
and runtime failures with 1, each with one line on stderr naming the bad value; no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from unlearnkit.bench import plan, provenance
from unlearnkit.bench import report as bench_report
from unlearnkit.bench import results as results_mod
from unlearnkit.bench import runner as bench_mod
from unlearnkit.bench.locks import owned_dir
from unlearnkit.cli import audit as audit_cli
from unlearnkit.cli import tune as tune_command
from unlearnkit.cli.parser import DOCS, build_parser
from unlearnkit.core.errors import CheckpointError, DivergenceError, NothingRemovedError, UnlearnkitError, UsageError
from unlearnkit.core.plugins import registry
from unlearnkit.core.registry import build_model, make_config
from unlearnkit.data.tasks import make_task, parse_forget
from unlearnkit.deletion import report as deletion
from unlearnkit.deletion import requests as forget_sets
from unlearnkit.engine import distributed, weights
from unlearnkit.engine.checkpoint import load_model, save_checkpoint
from unlearnkit.engine.evaluation import evaluate
from unlearnkit.engine.runconfig import RunConfig, load_run_config
from unlearnkit.engine.training import train_model

__all__ = ["COMMANDS", "DOCS", "build_parser", "main"]


def _device(name: Optional[str]) -> str:
    """The device to run on; under torchrun, joins the process group first (only rank 0 prints)."""
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    if not (name == "cpu" or name.startswith("cuda")):
        raise UsageError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto")
    name = distributed.init_from_env(name)
    if not distributed.is_main():
        sys.stdout = open(os.devnull, "w")  # rank 0 prints the results
    return name


#: Seconds a command has after Ctrl-C (SIGINT) to stop by itself before it is ended; finished
#: rows and checkpoints are already on disk, every write being atomic.
INTERRUPT_GRACE_S = 10.0
INTERRUPTED = "unlearnkit: interrupted; finished results are kept"


def _interrupt(signum: int, frame: Any) -> None:
    """SIGINT: raise KeyboardInterrupt, as Python's own handler does, and end the process after
    `INTERRUPT_GRACE_S` if it has not stopped (Python swallows an interrupt that lands in a
    finaliser or a callback, and the run would go on)."""

    def stop() -> None:
        print(INTERRUPTED, file=sys.stderr, flush=True)
        os._exit(130)

    timer = threading.Timer(INTERRUPT_GRACE_S, stop)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupt) if in_main_thread else None
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError(f"a command is required: one of {', '.join(COMMANDS)} (see `unlearnkit --help`)")
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"unlearnkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except DivergenceError as exc:
        print(f"unlearnkit: diverged: {exc}; nothing was written", file=sys.stderr)
        return 2
    except UnlearnkitError as exc:
        print(f"unlearnkit: failed: {exc}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


def cmd_plugins(args: argparse.Namespace) -> int:
    entries = [{"kind": e.kind, "name": e.name, "package": e.package, "version": e.version} for e in registry.entries()]
    if args.json:
        print(json.dumps(entries, indent=1))
    else:
        width = max((len(e["name"]) for e in entries), default=4)
        for e in entries:
            print(f"{e['kind']:<10} {e['name']:<{width}}  {e['package']} {e['version']}")
    for failure in registry.failures:
        print(f"unlearnkit: plugin {failure.package} skipped: {failure.error}", file=sys.stderr)
    return 0


def _out_path(out: str, force: bool, inputs: Sequence[str] = ()) -> Path:
    """The checkpoint file `--out`, checked before any work: not an input, new (or `force`), creatable."""
    path = Path(out)
    for src in inputs:
        if path.resolve() == Path(src).resolve():
            raise UsageError(f"--out {out!r} is the input checkpoint; refusing to overwrite it")
    if path.is_dir():  # before --force: forcing would not help
        raise UsageError(f"--out {out!r} is a directory; expected a file name")
    if path.exists() and not force:
        raise UsageError(f"--out {out!r} exists; pass --force to replace it")
    _check_creatable(path, out)
    return path


def _out_dir(out: str) -> Path:
    """The bench's `--out` folder, checked before any work: a writable folder (or creatable), whose
    cache is a folder and whose result files are not."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out!r} is a file; expected a folder for results and the model cache")
    if not path.exists():
        _check_creatable(path, out)
        return path
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out!r}: folder {str(path)!r} is not writable")
    cache = path / "cache"
    if cache.exists() and not (cache.is_dir() and os.access(cache, os.W_OK | os.X_OK)):
        raise UsageError(f"--out {out!r}: {str(cache)!r} is not a writable folder; it holds the model cache")
    for name in ("results.json", "results.md", "results.png", results_mod.SET_ASIDE):
        if (path / name).is_dir():
            raise UsageError(f"--out {out!r}: {str(path / name)!r} is a folder; the bench writes a file there")
    return path


def _check_creatable(path: Path, out: str) -> None:
    """`path` can be created (or replaced): the nearest existing folder above it is a folder we may write."""
    base = next(p for p in path.absolute().parents if p.exists())
    if not base.is_dir():
        raise UsageError(f"--out {out!r}: {str(base)!r} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out!r}: folder {str(base)!r} is not writable")


def _task_from(cfg: RunConfig, args: argparse.Namespace, **overrides: Any):
    t = cfg.task
    return make_task(
        overrides.get("dataset") or t.dataset or "mnist1d",
        forget=overrides.get("forget") or t.forget or "random:0.1",
        retain_access=overrides.get("retain_access") or t.retain_access or 1.0,
        seed=overrides["seed"] if overrides.get("seed") is not None else (t.seed or 0),
        val_ratio=t.val_ratio,
        val_from=overrides.get("val_from", "train"),
        data_dir=args.data_dir or t.data_dir,
        download=args.download,
        dataset_config={**cfg.dataset, **dict(getattr(args, "dataset_option", []))} or None,
        progress=not args.quiet,
    )


def cmd_train(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config)
    out = _out_path(args.out, args.force)
    task = _task_from(cfg, args, dataset=args.dataset, seed=args.seed)
    model_name = args.model or cfg.task.model or "cnn1d"
    recipe = bench_mod.apply_recipe(task.recipe, {**cfg.train, **({"epochs": args.epochs} if args.epochs is not None else {})})
    model = build_model(model_name, task, seed=task.seed, config=cfg.model or None)
    device = _device(args.device)
    start = time.perf_counter()
    train_model(model, task.train, recipe=recipe, augment=task.augment, seed=task.seed, device=device,
                progress=not args.quiet, who="train")
    seconds = time.perf_counter() - start
    task.recipe = recipe
    metrics = evaluate(model, task, attack=None, device=device)
    if distributed.is_main():
        meta = bench_mod.checkpoint_meta(task, model_name, cfg.model)
        save_checkpoint(out, model, {**meta, "val_ratio": cfg.task.val_ratio, "kind": "original", "train_seconds": seconds})
    print(f"trained {model_name} on {task.dataset} (seed {task.seed}) in {seconds:.1f}s: "
          f"train acc {metrics['RA']:.2f}%, test acc {metrics['TA']:.2f}% -> {out}")
    return 0


def _checkpoint_task(meta: dict, cfg: RunConfig, args: argparse.Namespace, forget: Optional[str], retain_access: Optional[float] = None,
                     *, extend: bool = False):
    dataset = getattr(args, "dataset", None)
    if dataset and dataset != meta["dataset"]:
        raise CheckpointError(f"checkpoint was trained on {meta['dataset']!r}, not {dataset!r}")
    if not forget and not extend and not forget_sets.forget_label(meta):
        forget = cfg.task.forget  # the file's forget spec, for a checkpoint that has forgotten nothing
    task = forget_sets.checkpoint_task(meta, forget, extend=extend,
                                       retain_access=retain_access or 1.0, data_dir=args.data_dir or cfg.task.data_dir,
                                       download=args.download, progress=not args.quiet)
    task.recipe = bench_mod.apply_recipe(task.recipe, meta.get("recipe") or {})
    return task


def cmd_import(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config)
    out = _out_path(args.out, args.force, inputs=[args.weights])
    model_name = args.model or cfg.task.model
    if not model_name:
        raise UsageError("--model is required: the architecture the weights belong to, e.g. torchvision:resnet50")
    state = weights.read_state_dict(args.weights)
    task = _task_from(cfg, args, dataset=args.dataset, seed=args.seed, val_from="test")
    model = build_model(model_name, task, seed=task.seed, config=cfg.model or None)
    weights.fit_state_dict(model, state, model_name, f"weights file {args.weights!r}")
    task.recipe = bench_mod.apply_recipe(task.recipe, {**cfg.train, **({"epochs": args.epochs} if args.epochs is not None else {})})
    metrics = evaluate(model, task, attack=None, device=_device(args.device))
    if distributed.is_main():
        meta = bench_mod.checkpoint_meta(task, model_name, cfg.model)
        save_checkpoint(out, model, {**meta, "val_ratio": cfg.task.val_ratio, "kind": "imported",
                                     "weights": {"file": str(args.weights), "sha256": weights.file_sha256(args.weights)}})
    print(f"imported {model_name} for {task.dataset} ({task.num_classes} classes): train acc {metrics['RA']:.2f}%, "
          f"test acc {metrics['TA']:.2f}% -> {out}")
    return 0


def cmd_unlearn(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config)
    out = _out_path(args.out, args.force, inputs=[args.checkpoint])
    model, meta = load_model(args.checkpoint)
    method = dict(cfg.method)
    name = args.method or method.pop("name", None)
    method.pop("name", None)
    if not name:
        raise UsageError("--method is required (see `unlearnkit plugins`)")
    entry = registry.get("unlearner", name)
    config = make_config(entry, method if name == cfg.method.get("name", name) else {})
    unlearner = entry.factory(config)
    attack = deletion.report_attack(args.attack)
    gamma = args.retain_access or cfg.task.retain_access or type(unlearner).default_retain_access
    request_spec = args.forget or cfg.task.forget
    if not request_spec:
        raise UsageError("--forget is required: random:RATIO, class:K, indices:FILE or ids:FILE")
    task = _checkpoint_task(meta, cfg, args, request_spec, gamma, extend=True)
    report_paths = deletion.report_paths(out, args.force)  # after the inputs are checked: their errors come first
    device = _device(args.device)
    seed = args.seed if args.seed is not None else int(meta.get("seed", 0))
    eval_seed = int(meta.get("seed", 0))
    before = deletion.measure(model.to(device), task, attack, seed=eval_seed, device=device)
    view = task.view(unlearner.reads, who=type(unlearner).__name__)
    start = time.perf_counter()
    new = unlearner.unlearn(model, view, seed=seed, device=device, progress=not args.quiet)
    seconds = time.perf_counter() - start
    unchanged = bool(unlearner.run_info.get("unchanged"))
    if unchanged and not args.keep_unchanged:
        raise NothingRemovedError(deletion.nothing_removed(name, unlearner.run_info))
    try:
        after = deletion.measure(new, task, attack, seed=eval_seed, device=device)
    except DivergenceError as exc:
        raise DivergenceError(f"{name}: {exc}; {unlearner.divergence_advice()}") from None
    warnings = deletion.warnings_for(before, after, unchanged, deletion.removed_classes(task))
    from unlearnkit.core.config import unstructure_config

    unlearned = {"method": name, "config": unstructure_config(config), "forget": str(parse_forget(request_spec)),
                 "retain_access": gamma, "seed": seed, "seconds": seconds, "source": str(args.checkpoint), "unchanged": unchanged}
    record = forget_sets.forget_record(meta, task, unlearned["forget"], name)
    if distributed.is_main():
        save_checkpoint(out, new, {**meta, "kind": "unlearned", "unlearned": unlearned, **record})
        report = deletion.build_report(
            task=task, view=view, method=name, config=unlearned["config"], unlearner=unlearner, seed=seed, before=before,
            after=after, seconds=seconds, attack=attack, source=str(args.checkpoint), output=str(out), model=new,
            request_spec=unlearned["forget"], requests=len(record["requests"]), warnings=warnings,
            tuned=cfg.tuned or None)
        deletion.write_report(report_paths, report)
    for warning in warnings:
        print(f"unlearnkit: warning: {warning}", file=sys.stderr)
    if unchanged:
        print(f"{name} removed nothing ({unlearned['forget']}): wrote the unchanged model to {out} and {report_paths[1]} (--keep-unchanged)")
        return 0
    print(f"{name} forgot {task.request.new} new sample(s) ({unlearned['forget']}; forget set now {len(task.forget)}) in {seconds:.1f}s: "
          f"forget-set accuracy {before['forget_accuracy']:.1f}% -> {after['forget_accuracy']:.1f}% (unseen data: "
          f"{after['unseen_accuracy']:.1f}%); wrote {out} and {report_paths[1]}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config)
    model, meta = load_model(args.checkpoint)
    task = _checkpoint_task(meta, cfg, args, args.forget)
    device = _device(args.device)
    attack = None if args.attack in ("", "none") else args.attack
    metrics = evaluate(model.to(device), task, attack, seed=int(meta.get("seed", 0)), device=device, report=attack is not None)
    forget = forget_sets.forget_label(meta) or str(task.forget_spec)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "forget": forget, "attack": attack, **metrics}, indent=1))
    else:
        shown = " ".join(f"{k} {metrics[k]:.2f}" for k in ("UA", "RA", "TA", "MIA") if k in metrics)
        print(f"{args.checkpoint} on {task.dataset} forget {forget}: {shown}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    out = _out_dir(args.out)
    cfg = load_run_config(args.config)
    # keys the file is silent on stay absent, so `resolve` keeps the preset's (or resets a
    # dataset_config that belongs to the preset's dataset)
    options = {k: v for k, v in cfg.bench_options().items() if v is not None}
    cli = {
        "preset": args.preset, "dataset": args.dataset, "model": args.model, "attack": args.attack,
        "forget": args.forget.split(",") if args.forget else None, "retain_access": args.retain_access,
        "seeds": args.seeds, "tables": args.tables.split(",") if args.tables else None,
        "data_dir": args.data_dir, "download": args.download or None,
    }
    options.update({k: v for k, v in cli.items() if v is not None})
    options = plan.overlay(options, methods=args.methods, num_samples=args.num_samples, epochs=args.epochs)
    if args.dataset_option:
        options["dataset_config"] = {**(options.get("dataset_config") or {}), **dict(args.dataset_option)}
    options = tune_command.with_tuned(options, args.tuned)
    regimes = plan.regimes(options)
    device = _device(args.device)
    rank0 = distributed.is_main()
    with owned_dir(out, wait=args.wait, waiting=lambda line: print(line, file=sys.stderr, flush=True)) if rank0 else contextlib.nullcontext():
        runners = {name: bench_mod.Bench(plan.resolve(regime_options), out / name if name else out, device=device,
                                         progress=not args.quiet, rank0=rank0) for name, regime_options in regimes}
        matched: set[str] = set()
        sources = {name: _row_sources(args.rows_from, name, runner.results.manifest["setting_hash"], matched)
                   for name, runner in runners.items()}
        for folder in args.rows_from:
            if folder not in matched:
                raise UsageError(f"--rows-from {folder} holds no results of this run's setting (in it or in a regime's sub-folder)")
        done = {}
        for name, runner in runners.items():
            reused, set_aside = runner.load_previous(sources[name])
            if reused and rank0 and not args.quiet:
                print(f"resuming: {reused} finished rows reused from {', '.join(map(str, [runner.results_path, *sources[name]]))}",
                      file=sys.stderr)
            if set_aside and rank0:
                print(f"unlearnkit: {set_aside} earlier rows this run does not ask for were set aside in {runner.out / results_mod.SET_ASIDE}",
                      file=sys.stderr)
            done[name] = runner.run()
    if len(regimes) == 1:
        results = done[regimes[0][0]]
        print(bench_report.markdown(results), end="")
        note = provenance.readme_note(results["manifest"])
        if note:
            print(note)
        files = [runner.results_path, out / "results.md"] + [out / "results.png"] * (out / "results.png").exists()
        print(f"results: {', '.join(map(str, files[:-1]))} and {files[-1]}")
    else:
        summary = bench_mod.write_grid_report(out, done) if rank0 else ""
        print(summary, end="")
        print(f"results: {out / 'robust.md'}, {out / 'robust.json'} and each regime's folder")
    return 0


def _row_sources(folders: list[str], regime: str, setting: str, matched: set[str]) -> list[Path]:
    """The `--rows-from` folders holding rows for `regime` (its sub-folder, or the folder itself
    when it is a one-regime run of the same setting); records in `matched` which matched. Without
    regimes every folder is a source, and one of another setting is refused when read."""
    if not regime:
        matched.update(folders)
        return [Path(f) for f in folders]
    sources = []
    for folder in folders:
        found = next((c for c in (Path(folder) / regime, Path(folder)) if results_mod.recorded_setting(c) == setting), None)
        if found is not None:
            sources.append(found)
            matched.add(folder)
    return sources


def cmd_audit(args: argparse.Namespace) -> int:
    return audit_cli.cmd_audit(args, _device)


def cmd_tune(args: argparse.Namespace) -> int:
    return tune_command.cmd_tune(args, _device)


COMMANDS = {"plugins": cmd_plugins, "train": cmd_train, "import": cmd_import, "unlearn": cmd_unlearn, "evaluate": cmd_evaluate,
            "bench": cmd_bench, "audit": cmd_audit, "tune": cmd_tune}
