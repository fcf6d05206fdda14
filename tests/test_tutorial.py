"""docs/your-data.md runs as written: its ```python and ```bash blocks, in order, in a fresh
folder (the first block makes the toy folder of PNGs, a later one the npz)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from unlearnkit.cli.commands import main
from unlearnkit.data.tasks import _load_bundle
from unlearnkit.engine.checkpoint import load_checkpoint

ROOT = Path(__file__).parents[1]
TUTORIAL = ROOT / "docs" / "your-data.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block marked python or bash."""
    return [(lang, code) for lang, code in re.findall(r"```(python|bash)\n(.*?)```", text, re.S)]


def run_bash(code: str, cwd: Path) -> None:
    """Each command: `unlearnkit ...` through the CLI's `main` (exit 0 required), others through bash."""
    for line in code.replace("\\\n", " ").splitlines():
        if not line.strip():
            continue
        words = shlex.split(line)
        if words[0] == "unlearnkit":
            assert main(words[1:] + ["--quiet"]) == 0, line
        else:
            subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=cwd, check=True, timeout=60)


@pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")
def test_the_tutorial_runs_as_written(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    _load_bundle.cache_clear()
    namespace: dict = {}
    found = blocks(TUTORIAL.read_text())
    assert [lang for lang, _ in found].count("bash") >= 5 and [lang for lang, _ in found].count("python") >= 4
    for lang, code in found:
        if lang == "python":
            exec(compile(code, str(TUTORIAL), "exec"), namespace)
        else:
            run_bash(code, tmp_path)
    out = capfd.readouterr().out
    assert "# Deletion report" in out and "ids; forget-set accuracy" in out  # `cat` and the Python block printed

    first = json.loads((tmp_path / "request-1" / "report.json").read_text())
    second = json.loads((tmp_path / "request-2" / "report.json").read_text())
    assert first["request"]["count"] == 4 and first["forget_set"]["requests"] == 1
    assert second["request"]["already_forgotten"] == 1 and second["forget_set"]["requests"] == 2
    assert second["forget_set"]["count"] == first["forget_set"]["count"] + second["request"]["new"]
    _, meta = load_checkpoint(tmp_path / "imported.pt")
    assert meta["kind"] == "imported" and meta["class_names"] == ["apple", "leaf", "sky"]
    assert json.loads((tmp_path / "customers" / "report.json").read_text())["request"]["count"] == 3
