"""The `unlearnkit` command line: plugins, train, import, unlearn, evaluate, bench.

Usage errors exit with status 2 and runtime failures with 1, each with one line on stderr
naming the bad value; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from unlearnkit import bench as bench_mod
from unlearnkit import deletion, distributed, forget_sets, weights
from unlearnkit.checkpoint import load_model, save_checkpoint
from unlearnkit.config import load_toml, structure_config
from unlearnkit.errors import CheckpointError, ConfigError, UnlearnkitError, UsageError
from unlearnkit.evaluation import evaluate
from unlearnkit.plugins import registry
from unlearnkit.registry import build_model, get_unlearner, make_config
from unlearnkit.runconfig import RunConfig, load_run_config
from unlearnkit.tasks import make_task, parse_forget
from unlearnkit.training import train_model


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2
        raise UsageError(message)


MAX_SEED = 2**63 - 1


def _is_count(text: str) -> bool:
    """ASCII digits of a value up to 2**63 - 1 (str.isdigit also takes '²')."""
    return re.fullmatch(r"[0-9]+", text) is not None and len(text.lstrip("0")) <= 19 and int(text.lstrip("0") or "0") <= MAX_SEED


def _seeds(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not _is_count(p) for p in parts):
        raise argparse.ArgumentTypeError(f"malformed seeds {text!r}: expected comma-separated non-negative integers like 0,1,2")
    return [int(p.lstrip("0") or "0") for p in parts]


def _gamma(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _seed(text: str) -> int:
    if not _is_count(text.strip()):
        raise argparse.ArgumentTypeError(f"malformed value {text!r}: expected a non-negative integer below 2**63")
    return int(text.strip().lstrip("0") or "0")


def _option(text: str) -> tuple[str, Any]:
    """`KEY=VALUE`, the value read as TOML (`size=8`, `mean=[0.5, 0.5, 0.5]`), else as a plain string."""
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
        raise argparse.ArgumentTypeError(f"malformed option {text!r}: expected KEY=VALUE, like size=32")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value


def _dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset setting, like the [dataset] table: size=32, mean=[0.5,0.5,0.5] (repeatable)")


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


def _common(p: argparse.ArgumentParser, config: bool = True) -> None:
    if config:
        p.add_argument("--config", metavar="FILE.toml", help="run configuration (see docs/configuration.md)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: cuda when present)")
    p.add_argument("--data-dir", default=None, help="where datasets live (default: $UNLEARNKIT_DATA_DIR or ~/.cache/unlearnkit)")
    p.add_argument("--download", action="store_true", help="download torchvision datasets when missing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="unlearnkit", description="Machine unlearning for PyTorch classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("plugins", help="list every registered component")
    p.add_argument("--json", action="store_true", help="a JSON list of {kind, name, package, version}")

    p = sub.add_parser("train", help="train an original model and save a checkpoint")
    p.add_argument("--dataset", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--seed", type=_seed, default=None)
    p.add_argument("--epochs", type=_seed, default=None, help="override the dataset recipe's epochs")
    p.add_argument("--out", required=True, metavar="CKPT")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    _dataset_options(p)
    _common(p)

    p = sub.add_parser("import", help="wrap a state dict trained elsewhere into an unlearnkit checkpoint")
    p.add_argument("--model", default=None, help="the architecture, e.g. torchvision:resnet50")
    p.add_argument("--weights", required=True, metavar="FILE", help="a state dict saved with torch.save(model.state_dict())")
    p.add_argument("--dataset", default=None, help="what the model was trained on (all of its train split), e.g. folder:DIR")
    p.add_argument("--seed", type=_seed, default=None, help="seed of the split of unseen data held out of the test split")
    p.add_argument("--epochs", type=_seed, default=None, help="the recipe's epochs (Retrain and fine-tuning methods reuse it)")
    p.add_argument("--out", required=True, metavar="CKPT")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    _dataset_options(p)
    _common(p)

    p = sub.add_parser("unlearn", help="apply an unlearning method to a checkpoint")
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--method", default=None)
    p.add_argument("--forget", default=None, metavar="SPEC", help="random:RATIO | class:K | indices:FILE | ids:FILE "
                   "(on an unlearned checkpoint: added to what it has forgotten)")
    p.add_argument("--retain-access", type=_gamma, default=None, metavar="γ")
    p.add_argument("--seed", type=_seed, default=None, help="seed of the unlearning run (default: the checkpoint's)")
    p.add_argument("--attack", default=None, help=f"the deletion report's attack (default {deletion.DEFAULT_ATTACK} when installed; none to skip)")
    p.add_argument("--out", required=True, metavar="NEW", help="the new checkpoint; report.json and report.md go beside it")
    p.add_argument("--force", action="store_true", help="replace an existing output file and report (never the input)")
    _common(p)

    p = sub.add_parser("evaluate", help="UA, RA, TA, MIA of a checkpoint on its task")
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--forget", default=None, metavar="SPEC")
    p.add_argument("--dataset", default=None, help="refuse unless the checkpoint was trained on it")
    p.add_argument("--attack", default="svc-confidence")
    p.add_argument("--json", action="store_true")
    _common(p)

    p = sub.add_parser("bench", help="train original and Retrain models, run methods, print the table")
    p.add_argument("--preset", default=None, choices=list(bench_mod.PRESETS))
    p.add_argument("--dataset", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--methods", default=None, help="comma-separated method names (default: every installed one)")
    p.add_argument("--forget", default=None, metavar="SPEC", help="random:0.1 | class:3 | indices:FILE (comma-separated for several)")
    p.add_argument("--retain-access", type=_gamma, default=None, metavar="γ")
    p.add_argument("--seeds", type=_seeds, default=None)
    p.add_argument("--tables", default=None, help="comma-separated: main, access, ablation, sequential")
    p.add_argument("--attack", default=None)
    p.add_argument("--num-samples", type=_seed, default=None, help="mnist1d: samples to generate")
    p.add_argument("--epochs", type=_seed, default=None, help="override the recipe's epochs")
    p.add_argument("--out", default="bench-out", metavar="DIR")
    _dataset_options(p)
    _common(p)
    return parser


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
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"unlearnkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
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
    path = Path(out)
    for src in inputs:
        if path.resolve() == Path(src).resolve():
            raise UsageError(f"--out {out!r} is the input checkpoint; refusing to overwrite it")
    if path.exists() and not force:
        raise UsageError(f"--out {out!r} exists; pass --force to replace it")
    if path.exists() and path.is_dir():
        raise UsageError(f"--out {out!r} is a directory; expected a file name")
    return path


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
    after = deletion.measure(new, task, attack, seed=eval_seed, device=device)
    from unlearnkit.config import unstructure_config

    unlearned = {"method": name, "config": unstructure_config(config), "forget": str(parse_forget(request_spec)),
                 "retain_access": gamma, "seed": seed, "seconds": seconds, "source": str(args.checkpoint)}
    record = forget_sets.forget_record(meta, task, unlearned["forget"], name)
    if distributed.is_main():
        save_checkpoint(out, new, {**meta, "kind": "unlearned", "unlearned": unlearned, **record})
        report = deletion.build_report(
            task=task, view=view, method=name, config=unlearned["config"], unlearner=unlearner, seed=seed, before=before,
            after=after, seconds=seconds, attack=attack, source=str(args.checkpoint), output=str(out), model=new,
            request_spec=unlearned["forget"], requests=len(record["requests"]), versions=bench_mod.versions())
        deletion.write_report(report_paths, report)
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
    if args.methods:
        by_label = {m.get("label", m.get("name")) if isinstance(m, dict) else m: m for m in options.get("methods") or []}
        options["methods"] = [by_label.get(n.strip(), n.strip()) for n in args.methods.split(",") if n.strip()]
    if args.num_samples is not None:
        options["dataset_config"] = {**(options.get("dataset_config") or {}), "num_samples": args.num_samples}
    if args.epochs is not None:
        options["train"] = {**(options.get("train") or {}), "epochs": args.epochs}
    if args.dataset_option:
        options["dataset_config"] = {**(options.get("dataset_config") or {}), **dict(args.dataset_option)}
    settings = bench_mod.resolve(options)
    device = _device(args.device)
    runner = bench_mod.Bench(settings, Path(args.out), device=device, quiet=args.quiet, rank0=distributed.is_main())
    kept = runner.load_previous()
    if kept and not args.quiet:
        print(f"resuming: {kept} finished rows kept from {runner.results_path}", file=sys.stderr)
    results = runner.run()
    print(bench_mod.report.markdown(results), end="")
    print(f"results: {runner.results_path}, {Path(args.out) / 'results.md'}")
    return 0


COMMANDS = {"plugins": cmd_plugins, "train": cmd_train, "import": cmd_import, "unlearn": cmd_unlearn, "evaluate": cmd_evaluate,
            "bench": cmd_bench}
