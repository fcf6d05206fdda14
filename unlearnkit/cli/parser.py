"""The `unlearnkit` command line's grammar: its commands, their options, help and value types.

`unlearnkit.cli.commands` runs the commands. A malformed command line raises `UsageError` naming the bad
value.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import re
import textwrap
from pathlib import Path
from typing import Any, Optional

from unlearnkit.bench.plan import PRESETS
from unlearnkit.cli import audit as audit_cli
from unlearnkit.cli import tune as tune_command
from unlearnkit.core import __version__
from unlearnkit.core.errors import UsageError
from unlearnkit.deletion import report as deletion


def docs_folder(package: Path) -> Optional[Path]:
    """The documentation of the `unlearnkit` package at `package`: installed with it
    (`package/docs`, put there by setup.py) or, in a checkout, the checkout's `docs/`."""
    if (package / "docs" / "cli.md").is_file():
        return package / "docs"
    checkout = package.parent  # a docs/ folder beside the package is ours only in the project's own checkout
    if (checkout / "docs" / "cli.md").is_file() and (checkout / "pyproject.toml").is_file():
        return checkout / "docs"
    return None


_DOCS_AT = docs_folder(Path(importlib.resources.files("unlearnkit")))  # type: ignore[arg-type]
_DOCS_IN = f"{_DOCS_AT}{os.sep}" if _DOCS_AT else "docs/"
#: Where the documentation is, ending every command's help.
DOCS = (f"Documentation: {_DOCS_IN}cli.md (commands, outputs, exit status), {_DOCS_IN}configuration.md (TOML run "
        f"configs) and {_DOCS_IN}choosing.md (which method to pick)" + ("" if _DOCS_AT else " in the unlearnkit source tree")
        + "; `unlearnkit plugins` lists what is installed.")


class HelpFormatter(argparse.HelpFormatter):
    """Appends an option's default to its help unless it has none (None, False) or the help names it;
    wraps descriptions without breaking a path at its hyphens."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False, break_long_words=False)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An argument parser whose help shows defaults and ends with `DOCS`, and whose errors raise `UsageError`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", DOCS)
        super().__init__(*args, **kwargs)

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


def _folder(text: str) -> str:
    """A folder that exists or can be made (datasets are generated or downloaded into it)."""
    existing = next(p for p in (Path(text), *Path(text).absolute().parents) if p.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{str(existing)!r} is a file; expected a folder")
    return text


def _existing_folder(text: str) -> str:
    """A folder that exists (another run's output)."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder; expected the --out folder of an earlier bench run")
    return text


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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help=f"run configuration; command-line options win over it (see {_DOCS_IN}configuration.md)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: cuda when present, else cpu)")
    p.add_argument("--data-dir", type=_folder, default=None, metavar="DIR",
                   help="where datasets live (default: $UNLEARNKIT_DATA_DIR or ~/.cache/unlearnkit)")
    p.add_argument("--download", action="store_true", help="download torchvision datasets when missing")
    p.add_argument("--quiet", action="store_true",
                   help="no progress (on a terminal progress shows as bars, in a log as one line per finished stage)")


def build_parser() -> argparse.ArgumentParser:
    """The `unlearnkit` parser with every command's sub-parser."""
    parser = Parser(prog="unlearnkit", description="Machine unlearning for PyTorch classifiers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    p = sub.add_parser("plugins", help="list every registered component", description="List every registered component.")
    p.add_argument("--json", action="store_true", help="a JSON list of {kind, name, package, version}")

    p = sub.add_parser("train", help="train an original model and save a checkpoint",
                       description="Train an original model on a task's training split and save a checkpoint.")
    p.add_argument("--dataset", default=None, metavar="NAME", help="dataset name, see `unlearnkit plugins` (default: the config's, else mnist1d)")
    p.add_argument("--model", default=None, metavar="NAME", help="model name, see `unlearnkit plugins` (default: the config's, else cnn1d)")
    p.add_argument("--seed", type=_seed, default=None, help="seed of the split and the training (default: the config's, else 0)")
    p.add_argument("--epochs", type=_seed, default=None, metavar="N", help="override the dataset recipe's epochs")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    _dataset_options(p)
    _common(p)

    p = sub.add_parser("import", help="wrap a state dict trained elsewhere into an unlearnkit checkpoint",
                       description="Wrap a plain state dict, trained elsewhere on all of a dataset's train split, into an "
                                   "unlearnkit checkpoint that unlearn and evaluate take.")
    p.add_argument("--model", default=None, metavar="NAME", help="the architecture, e.g. torchvision:resnet50 (default: the config's)")
    p.add_argument("--weights", required=True, metavar="FILE", help="a state dict saved with torch.save(model.state_dict())")
    p.add_argument("--dataset", default=None, metavar="NAME", help="what the model was trained on, e.g. folder:DIR (default: the config's, else mnist1d)")
    p.add_argument("--seed", type=_seed, default=None, help="seed of the unseen data held out of the test split (default: the config's, else 0)")
    p.add_argument("--epochs", type=_seed, default=None, metavar="N", help="the recipe's epochs, which Retrain and fine-tuning methods reuse")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    _dataset_options(p)
    _common(p)

    p = sub.add_parser("unlearn", help="apply an unlearning method to a checkpoint",
                       description="Apply an unlearning method to a checkpoint and save the result as a new checkpoint. "
                                   f"Which method to pick, from the measured tables: {_DOCS_IN}choosing.md.")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="the checkpoint to unlearn from (never modified)")
    p.add_argument("--method", default=None, metavar="NAME", help="unlearner name, see `unlearnkit plugins` (default: the config's [method] name)")
    p.add_argument("--forget", default=None, metavar="SPEC",
                   help="random:RATIO | class:K | indices:FILE | ids:FILE; on an unlearned checkpoint, added to what it "
                        "has forgotten (default: the config's)")
    p.add_argument("--retain-access", type=_gamma, default=None, metavar="γ",
                   help="fraction of the remaining data the method may read, in (0, 1] (default: the method's own)")
    p.add_argument("--seed", type=_seed, default=None, help="seed of the unlearning run (default: the checkpoint's)")
    p.add_argument("--attack", default=None, metavar="NAME",
                   help=f"the deletion report's attack, or none (default: {deletion.DEFAULT_ATTACK} when installed)")
    p.add_argument("--out", required=True, metavar="NEW",
                   help="checkpoint file to write (never the input); report.json and report.md go beside it")
    p.add_argument("--force", action="store_true", help="replace an existing output file and report (never the input)")
    p.add_argument("--keep-unchanged", action="store_true",
                   help="write the output even when the method returned the weights it was given (the report says so first); "
                        "without it such a run fails and writes nothing")
    _common(p)

    p = sub.add_parser("evaluate", help="UA, RA, TA, MIA of a checkpoint on its task",
                       description="Print UA, RA, TA and MIA of a checkpoint on the task it was trained on.")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="the checkpoint to evaluate")
    p.add_argument("--forget", default=None, metavar="SPEC",
                   help="random:RATIO | class:K | indices:FILE | ids:FILE (default: the forget set an unlearned checkpoint records)")
    p.add_argument("--dataset", default=None, metavar="NAME", help="refuse unless the checkpoint was trained on it")
    p.add_argument("--attack", default="svc-confidence", metavar="NAME",
                   help="any registered attack (see `unlearnkit plugins`), or none")
    p.add_argument("--json", action="store_true", help="print JSON, with the attack's full report")
    _common(p)

    p = sub.add_parser("bench", help="train original and Retrain models, run methods, print the table",
                       description="Train the original and the Retrain model, run unlearning methods, evaluate them and "
                                   "print the paper-style table; results.json, results.md and results.png go to --out.")
    p.add_argument("--preset", default=None, choices=list(PRESETS),
                   help="a ready-made setting that other options override (default: the config's, else quick)")
    p.add_argument("--dataset", default=None, metavar="NAME", help="dataset name (default: the preset's)")
    p.add_argument("--model", default=None, metavar="NAME", help="model name (default: the preset's)")
    p.add_argument("--methods", default=None, metavar="A,B,...",
                   help="comma-separated method names or config labels (default: every installed one; original and retrain always run)")
    p.add_argument("--forget", default=None, metavar="SPEC",
                   help="random:0.1 | class:3 | indices:FILE, comma-separated for several (default: the preset's)")
    p.add_argument("--retain-access", type=_gamma, default=None, metavar="γ", help="one γ for every method (default: each method's own)")
    p.add_argument("--seeds", type=_seeds, default=None, metavar="0,1,...", help="comma-separated seeds (default: the preset's)")
    p.add_argument("--tables", default=None, metavar="T,...", help="comma-separated: main, access, ablation, grid, sequential (default: the preset's)")
    p.add_argument("--attack", default=None, metavar="NAME", help="evaluation attack, any registered one, or none (default: svc-confidence)")
    p.add_argument("--num-samples", type=_seed, default=None, metavar="N", help="mnist1d: samples to generate (default: the preset's)")
    p.add_argument("--epochs", type=_seed, default=None, metavar="N", help="override the recipe's epochs")
    p.add_argument("--out", default="bench-out", metavar="DIR", help="folder for results and the model cache")
    p.add_argument("--wait", action="store_true", help="if another run is using --out, wait for it to finish instead of refusing")
    p.add_argument("--tuned", action="append", type=_existing_folder, default=[], metavar="DIR",
                   help="also run each method tuned in DIR (an `unlearnkit tune` --out) with its tuned config, as "
                        "'NAME tuned'; refuses DIR's tuning seeds (repeatable)")
    p.add_argument("--rows-from", action="append", type=_existing_folder, default=[], metavar="DIR",
                   help="also take the finished rows of another --out of the same setting, e.g. seeds run in parallel "
                        "processes; read only (repeatable)")
    _dataset_options(p)
    _common(p)

    audit_cli.add_parser(sub, _common, _seed, _gamma)
    tune_command.add_parser(sub, _common, _seed, _seeds, _gamma, _dataset_options)
    return parser
