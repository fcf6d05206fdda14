"""What produced a result: installed distributions, where they came from, the source revision."""

from __future__ import annotations

import importlib.metadata as md
import json
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from unlearnkit.engine import distributed

STACK = ("torch", "torchvision", "numpy", "scikit-learn", "scipy")
#: Where README.md's results table was measured (`unlearnkit bench`, the quick preset); README
#: names the same build and threads beside the table. Update both whenever the table is re-run.
README_TABLE = {"setting_hash": "31d7ee5a01e5353e", "torch": "2.14.1+cu130", "threads": 2, "world_size": 1, "device": "cpu"}
#: Written into a wheel built from a git checkout (setup.py): that checkout's revision and dirty flag.
BUILD_RECORD = Path(__file__).resolve().parents[1] / "_build_revision.json"  # in unlearnkit/


def versions(names: Iterable[str]) -> dict[str, str]:
    """`{distribution: version}` of `names` and of torch's stack ("unknown" where not installed)."""
    out = {}
    for name in sorted(set(names) | set(STACK)):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "unknown"
    return out


def environment(names: Iterable[str], device: Any) -> dict[str, Any]:
    """A manifest's record of where a result was computed: `versions` of `names` and torch's
    stack, torch and Python versions, `device`, `world_size` (processes), `threads` (intra-op
    threads per process: results can depend on it) and `git` (`source(names)`)."""
    return {"versions": versions(names), "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "world_size": distributed.world_size(), "threads": torch.get_num_threads(), "git": source(names)}


def readme_note(manifest: dict[str, Any]) -> Optional[str]:
    """One line when `manifest` is of README's results setting but was computed in another
    environment than `README_TABLE` (torch build, threads, processes, device), else None."""
    if manifest.get("setting_hash") != README_TABLE["setting_hash"]:
        return None
    keys = ("torch", "threads", "world_size", "device")
    if all(manifest.get(k) == README_TABLE[k] for k in keys):
        return None

    def where(env: dict[str, Any]) -> str:
        return (f"torch {env.get('torch')}, {env.get('threads')} thread(s), {env.get('world_size')} process(es), "
                f"device {env.get('device')}")

    return (f"note: README.md's results table was made with {where(README_TABLE)}; this run: {where(manifest)}. "
            "Rows move by up to a few points between such environments (README.md, Results).")


def source(names: Iterable[str]) -> dict[str, Any]:
    """Where the unlearnkit code came from, for a manifest's `git` field.

    `revision`: the commit of the source, from the git checkout the core is imported from, else
    from the checkout a wheel of it was built from (`BUILD_RECORD`, e.g. `pip install .`), else
    from a pip install of a VCS URL (PEP 610 `direct_url.json`), else None. `dirty`: whether
    that checkout had uncommitted changes (None when unknown). `distributions`: for each of
    `names`, its version and how pip installed it (`index`, an `editable` or plain `file:` path,
    or a VCS URL with its commit).
    """
    distributions = {name: _distribution(name) for name in sorted(set(names))}
    revision, dirty = checkout_revision()
    if revision is None:
        revision, dirty = build_revision()
    if revision is None:
        revision = (distributions.get("unlearnkit") or {}).get("commit")
    return {"revision": revision, "dirty": dirty, "distributions": distributions}


def checkout_revision() -> tuple[Optional[str], Optional[bool]]:
    """`(commit, dirty)` of the git checkout the `unlearnkit` package is imported from, else (None, None).

    A copy installed into a virtual environment that happens to sit inside some git
    repository is not that repository's code, so the checkout must hold this very package.
    """
    package = Path(__file__).resolve().parents[1]  # unlearnkit/, the core's package

    def git(*args: str) -> Optional[str]:
        try:
            res = subprocess.run(["git", *args], cwd=package, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() / "unlearnkit" != package:
        return None, None
    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return revision or None, None if status is None else bool(status)


def build_revision() -> tuple[Optional[str], Optional[bool]]:
    """`(commit, dirty)` recorded in `BUILD_RECORD` when the installed package was built, else (None, None)."""
    try:
        record = json.loads(BUILD_RECORD.read_text())
    except (OSError, ValueError):
        return None, None
    revision = record.get("revision") if isinstance(record, dict) else None
    return (revision, record.get("dirty")) if isinstance(revision, str) else (None, None)


def _distribution(name: str) -> dict[str, Any]:
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return {"version": "unknown", "installed_from": None}
    info: dict[str, Any] = {"version": dist.version, "installed_from": "index"}
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        direct = None
    if isinstance(direct, dict) and isinstance(direct.get("url"), str):
        vcs = direct.get("vcs_info") or {}
        if vcs.get("commit_id"):
            info.update(installed_from=f"{vcs.get('vcs', 'vcs')}+{direct['url']}", commit=vcs["commit_id"])
        else:
            editable = bool((direct.get("dir_info") or {}).get("editable"))
            info["installed_from"] = ("editable " if editable else "") + direct["url"]
    return info
