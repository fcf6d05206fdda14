"""Build hooks: a wheel (`pip install .`) carries the documentation and the checkout's commit.

pyproject.toml holds the metadata; this adds two steps to setuptools' `build_py`, for
non-editable builds (an editable install reads both from the checkout itself):
- `docs/*.md` are copied to `unlearnkit/docs/`, where `unlearnkit --help` points;
- an installed copy has no checkout to ask, so `unlearnkit.provenance` reads
  `unlearnkit/_build_revision.json` (`{"revision": ..., "dirty": ...}`) for a result's source
  revision; a build outside a git checkout (an sdist) writes none.
Runs in pip's build environment: standard library only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
RECORD = "_build_revision.json"


def checkout_revision(root: Path) -> Optional[dict]:
    """`{"revision", "dirty"}` of the git checkout whose top folder is `root`, else None."""

    def git(*args: str) -> Optional[str]:
        try:
            res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    revision = git("rev-parse", "HEAD")
    if not top or Path(top).resolve() != root.resolve() or not revision:  # not this project's own checkout
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": revision, "dirty": None if status is None else bool(status)}


def write_record(build_lib: Path, root: Path = ROOT) -> Optional[dict]:
    """Write (or remove a stale) `unlearnkit/_build_revision.json` under `build_lib`; returns what was written."""
    path = Path(build_lib) / "unlearnkit" / RECORD
    record = checkout_revision(root)
    if record is None:
        path.unlink(missing_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record) + "\n")
    return record


def copy_docs(build_lib: Path, root: Path = ROOT) -> list[Path]:
    """Copy `root/docs/*.md` to `unlearnkit/docs/` under `build_lib`; returns the copies."""
    target = Path(build_lib) / "unlearnkit" / "docs"
    copies = []
    for page in sorted((root / "docs").glob("*.md")):
        target.mkdir(parents=True, exist_ok=True)
        copies.append(Path(shutil.copyfile(page, target / page.name)))
    return copies


class BuildPy(build_py):
    """setuptools' build_py, then the docs and the source revision (not in editable mode: the checkout is at hand)."""

    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            copy_docs(Path(self.build_lib))
            write_record(Path(self.build_lib))


if __name__ == "__main__":  # setuptools runs this file as __main__; tests load it without building
    setup(cmdclass={"build_py": BuildPy})
