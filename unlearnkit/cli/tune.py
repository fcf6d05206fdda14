"""`unlearnkit tune` on the command line (its parser and command), and `unlearnkit bench --tuned DIR`'s tuned entries."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from unlearnkit.bench import plan
from unlearnkit.bench.locks import owned_dir
from unlearnkit.core.config import config_hash
from unlearnkit.core.errors import UsageError
from unlearnkit.core.interfaces import Unlearner
from unlearnkit.core.plugins import registry
from unlearnkit.engine.progress import progress_bar
from unlearnkit.engine.runconfig import load_run_config
from unlearnkit.tune import report
from unlearnkit.tune.space import FRACTION
from unlearnkit.tune.study import CRITERIA, HEARTBEAT_S, LOG_FILE, Tuner, TuneSettings, finished, tune_method

DEFAULT_TRIALS = 40
UNIT = "Retrain's optimiser steps: a step on b samples costs b / B, B the recipe's batch; an LTU iteration `iteration_cost` steps"


def add_parser(sub: Any, common: Any, count: Any, seeds: Any, gamma: Any, dataset_options: Any) -> None:
    """The `tune` subcommand; `common` and `dataset_options` add shared options, the others parse values."""
    p = sub.add_parser(
        "tune", help="tune methods with Optuna on tuning cells and seeds, the same budget for every method",
        description="Tune each method with the same number of TPE trials, its length capped at 20% of Retrain's optimiser "
                    "steps, the objective its mean (or worst) average gap to Retrain over the forget cells and tuning seeds. "
                    "The study lives in --out: run the command again to continue it. Writes tuning.json, tuning.md and "
                    "tuned/METHOD.toml (for `unlearnkit unlearn --config` and `unlearnkit bench --tuned`); see docs/cli.md.")
    p.add_argument("--methods", required=True, metavar="A,B,...", help="comma-separated method names (see `unlearnkit plugins`)")
    p.add_argument("--dataset", default=None, metavar="NAME", help="dataset name (default: the config's, else mnist1d)")
    p.add_argument("--model", default=None, metavar="NAME", help="model name (default: the config's, else cnn1d)")
    p.add_argument("--forget", action="append", required=True, metavar="SPEC",
                   help="a tuning cell, random:RATIO | class:K | indices:FILE; comma-separated or repeated for several "
                        "(on your own data: a mock request, e.g. random:0.01)")
    p.add_argument("--retain-access", type=gamma, default=None, metavar="γ", help="one γ for every method (default: each method's own)")
    p.add_argument("--seeds", type=seeds, default=[3, 4], metavar="3,4", help="tuning seeds, comma-separated")
    p.add_argument("--trials", type=count, default=DEFAULT_TRIALS, metavar="N", help="trials per method, the same for every method")
    p.add_argument("--criterion", choices=list(CRITERIA), default="mean", help="the trial's value: mean or worst average gap over its runs")
    p.add_argument("--workers", type=count, default=1, metavar="K", help="local worker processes on each study, one thread each")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="an Optuna RDB URL shared by processes on several machines (default: sqlite in --out)")
    p.add_argument("--heartbeat", type=count, default=HEARTBEAT_S, metavar="S",
                   help="seconds between a worker's heartbeats; a trial silent 3x as long is retried")
    p.add_argument("--attack", default=None, metavar="NAME", help="evaluation attack, or none (default: svc-confidence)")
    p.add_argument("--num-samples", type=count, default=None, metavar="N", help="mnist1d: samples to generate")
    p.add_argument("--epochs", type=count, default=None, metavar="N", help="override the recipe's epochs")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the study, the model cache and the outputs")
    dataset_options(p)
    common(p)


def settings_from(args: argparse.Namespace) -> TuneSettings:
    """The tune's settings from the command line and its --config, checked before any work."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for name in methods:
        if name in plan.REFERENCES:
            raise UsageError(f"--methods: {name!r} is a reference every gap is measured against; there is nothing to tune")
        cls = plan.unlearner_class(name)  # an unknown name fails here
        if cls.search_space.__func__ is Unlearner.search_space.__func__:
            raise UsageError(f"--methods: {name} declares no search space (Unlearner.search_space; see docs/plugins.md)")
    if len(set(methods)) != len(methods) or not methods:
        raise UsageError(f"--methods {args.methods!r}: expected distinct method names")
    if args.trials < 1 or args.workers < 1 or args.heartbeat < 1:
        raise UsageError("--trials, --workers and --heartbeat must be at least 1")
    cfg = load_run_config(args.config)
    options = {k: v for k, v in cfg.bench_options().items() if v is not None}
    cli = {"dataset": args.dataset, "model": args.model, "attack": args.attack, "seeds": args.seeds,
           "forget": [f.strip() for spec in args.forget for f in spec.split(",") if f.strip()],
           "data_dir": args.data_dir, "download": args.download or None}
    options.update({k: v for k, v in cli.items() if v is not None})
    options = plan.overlay(options, methods=None, num_samples=args.num_samples, epochs=args.epochs)
    if args.dataset_option:
        options["dataset_config"] = {**(options.get("dataset_config") or {}), **dict(args.dataset_option)}
    bench = plan.resolve({**options, "methods": methods, "tables": ["main"], "retain_access": None})
    return TuneSettings(bench, tuple(methods), args.retain_access, args.trials, args.criterion, FRACTION)


def manifest(tuner: Tuner, previous: dict[str, Any]) -> dict[str, Any]:
    """tuning.json's manifest: what the study's trials ran on; `setting_hash` names it (a rerun must match)."""
    s, b = tuner.settings, tuner.bench.manifest
    setting = {"bench_setting": b["setting_hash"], "forget": list(s.bench.forget), "seeds": list(s.bench.seeds),
               "retain_access": s.retain_access, "criterion": s.criterion, "fraction": s.fraction, "sampler_seed": s.sampler_seed}
    gammas = {**previous.get("retain_access", {}), **{m: s.gamma(m) for m in s.methods}}
    return {
        "setting_hash": config_hash(setting), "dataset": s.bench.dataset, "dataset_config": s.bench.dataset_config, "model": s.bench.model,
        "model_config": s.bench.model_config, "recipe": b["recipe"], "attack": s.bench.attack, "forget": setting["forget"],
        "seeds": setting["seeds"], "retain_access": gammas, "criterion": s.criterion, "trials": s.trials,
        "budget": {"fraction": s.fraction, "unit": UNIT}, "sampler": "TPE", "sampler_seed": s.sampler_seed,
        "pruner": "median, from the end of the first cell", "methods": sorted(gammas),
        **{k: b[k] for k in ("versions", "torch", "python", "device", "git")},
    }


def _previous(out: Path, setting_hash: str) -> dict[str, Any]:
    path = out / report.TUNING_JSON
    if not path.exists():
        return {}
    try:
        previous = json.loads(path.read_text())["manifest"]
        recorded = previous["setting_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{path} exists but is not an unlearnkit tuning file; choose another --out") from None
    if recorded != setting_hash:
        raise UsageError(f"{path} holds a study of another setting (dataset, model, recipe, cells, seeds, γ or criterion); "
                         "choose another --out to keep both")
    return previous


def cmd_tune(args: argparse.Namespace, device_of: Any) -> int:
    """Tune every method to N trials, then write the outputs; `device_of(name)` resolves --device."""
    settings = settings_from(args)
    out = Path(args.out)
    if out.exists() and not (out.is_dir() and os.access(out, os.W_OK | os.X_OK)):
        raise UsageError(f"--out {args.out!r} is not a writable folder")
    device = device_of(args.device)
    with owned_dir(out):
        tuner = Tuner(settings, out, storage_url=args.storage, device=device, heartbeat=args.heartbeat, progress=not args.quiet)
        first = manifest(tuner, {})
        previous = _previous(out, first["setting_hash"])
        man = manifest(tuner, previous)
        out.mkdir(parents=True, exist_ok=True)
        for method in settings.methods:
            _tune_one(tuner, method, args.workers, man["setting_hash"], quiet=args.quiet)
            write_outputs(tuner, man)
    print(report.markdown(man, json.loads((out / report.TUNING_JSON).read_text())["methods"]), end="")
    print(f"results: {out / report.TUNING_MD}, {out / report.TUNING_JSON}, {out / report.TUNED}/; one line per trial in {out / LOG_FILE}")
    return 0


def _tune_one(tuner: Tuner, method: str, workers: int, setting_hash: str, *, quiet: bool) -> None:
    tuner.references()
    study = tuner.study(method)
    recorded = study.user_attrs.get("setting_hash", setting_hash)
    if recorded != setting_hash:  # a shared --storage holding this method's study of another setting
        raise UsageError(f"the storage holds a study {method!r} of another setting ({recorded}, not {setting_hash}); use another --storage")
    study.set_user_attr("setting_hash", setting_hash)
    n = tuner.settings.trials
    done = min(n, sum(map(finished, study.get_trials(deepcopy=False))))
    bar = progress_bar(desc=f"tune {method}", total=n, initial=done, unit="trial", each=True, enabled=not quiet)

    def on_trial(trial: Any) -> None:
        values = [t.value for t in study.get_trials(deepcopy=False) if t.value is not None and t.state.name == "COMPLETE"]
        shown = f"{trial.value:.3f}" if trial.value is not None else trial.state.name.lower()
        bar.set_postfix_str(f"trial {trial.number}: {shown}; best {min(values):.3f}" if values else f"trial {trial.number}: {shown}")
        bar.update(1)

    try:
        tune_method(tuner, method, workers=workers, on_trial=on_trial)
    finally:
        bar.close()


def write_outputs(tuner: Tuner, man: dict[str, Any]) -> None:
    """tuning.json, tuning.md, tuned/*.toml and the plots, from every study of the folder's manifest."""
    import optuna

    names = set(optuna.get_all_study_names(tuner.storage))
    methods = {m: report.summarize(optuna.load_study(study_name=m, storage=tuner.storage)) for m in man["methods"] if m in names}
    report.write(tuner.out, man, methods, man["retain_access"])


def with_tuned(options: dict[str, Any], folders: list[str]) -> dict[str, Any]:
    """Bench options with a `NAME tuned` entry for every method tuned in `folders` that the bench
    runs; refuses a bench seed that was a tuning seed of those configs."""
    if not folders:
        return options
    settings = plan.resolve(options)
    entries = list(options.get("methods") or [m for m in registry.names("unlearner") if m not in plan.REFERENCES])
    running, labelled = {s.name for s in settings.methods}, set()
    for folder in folders:
        man, configs = report.read_tuned(folder)
        seen = sorted(set(settings.seeds) & set(man["seeds"]))
        if seen:
            raise UsageError(f"--tuned {folder}: seed {seen[0]} was a tuning seed of its configs (tuned on seeds "
                             f"{', '.join(map(str, man['seeds']))}); evaluate them on other seeds")
        for name, cfg in configs.items():
            if name not in running:
                continue
            gamma = cfg["task"]["retain_access"]
            label = f"{name} tuned" + (f" ({Path(folder).name})" if (name, gamma) in labelled else "")  # a second folder, same γ
            label += f" γ{gamma:g}" if len(folders) > 1 else ""
            labelled.add((name, gamma))
            method = {k: v for k, v in cfg["method"].items() if k != "name"}
            entries.append({"name": name, "label": label, "retain_access": gamma, **method,
                            "tuning": {"config": "tuned", "manifest": man["setting_hash"], "folder": str(folder)}})
    return {**options, "methods": entries}

