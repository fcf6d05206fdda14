"""A non-editable install from a git checkout (README's `pip install .`) still names its source
revision: setup.py writes it into the wheel, and the manifest reads it there. The wheel also
carries the docs that `--help` points to."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from unlearnkit.bench import provenance

ROOT = Path(__file__).parents[1]


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def hook():
    """setup.py's functions, loaded without building anything."""
    return runpy.run_path(str(ROOT / "setup.py"), run_name="setup_hook")


def test_the_build_hook_records_the_checkout_revision(hook, tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    record = hook["write_record"](tmp_path / "lib", ROOT)
    written = json.loads((tmp_path / "lib" / "unlearnkit" / "_build_revision.json").read_text())
    assert written == record and written["revision"] == _git("rev-parse", "HEAD")
    assert written["dirty"] == bool(_git("status", "--porcelain", "--untracked-files=no"))


def test_the_build_hook_records_nothing_outside_a_checkout_and_removes_a_stale_record(hook, tmp_path):
    stale = tmp_path / "lib" / "unlearnkit" / "_build_revision.json"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"revision": "0123", "dirty": false}')
    source = tmp_path / "sdist"  # an unpacked sdist: the project's files, no .git
    (source / "unlearnkit").mkdir(parents=True)
    assert hook["write_record"](tmp_path / "lib", source) is None and not stale.exists()


def test_the_build_hook_installs_the_docs(hook, tmp_path):
    copies = hook["copy_docs"](tmp_path / "lib", ROOT)
    assert {p.name for p in copies} == {p.name for p in (ROOT / "docs").glob("*.md")} >= {"cli.md", "configuration.md"}
    assert all(p.parent == tmp_path / "lib" / "unlearnkit" / "docs" for p in copies)


def test_the_manifest_takes_the_revision_recorded_at_build_time(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "checkout_revision", lambda: (None, None))  # installed, not a checkout
    monkeypatch.setattr(provenance, "BUILD_RECORD", tmp_path / "_build_revision.json")
    assert provenance.source(["unlearnkit"])["revision"] is None
    (tmp_path / "_build_revision.json").write_text('{"revision": "89abcdef", "dirty": true}')
    source = provenance.source(["unlearnkit"])
    assert (source["revision"], source["dirty"]) == ("89abcdef", True)


@pytest.mark.slow
def test_a_wheel_built_from_a_clone_carries_its_revision(tmp_path):
    """What README's `pip install .` does, from a fresh clone: the wheel holds the clone's commit."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    _git("clone", "-q", str(ROOT), str(clone), cwd=tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                    str(clone)], check=True)
    (wheel,) = (tmp_path / "dist").glob("unlearnkit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        record = json.loads(zf.read("unlearnkit/_build_revision.json"))
        pages = {Path(n).name for n in zf.namelist() if n.startswith("unlearnkit/docs/")}
    assert record == {"revision": _git("rev-parse", "HEAD", cwd=clone), "dirty": False}
    assert pages == {p.name for p in (ROOT / "docs").glob("*.md")}  # where `unlearnkit --help` points
