"""The plugin template's README commands make a working, fully renamed plugin."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
TEMPLATE = ROOT / "plugins" / "_template"


def _readme_commands() -> list[str]:
    text = (TEMPLATE / "README.md").read_text()
    block = re.search(r"## Start a plugin from it\n.*?```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_the_rename_commands_leave_no_trace_of_the_template_and_its_tests_pass(tmp_path):
    commands = _readme_commands()
    assert commands[-2:] == ["pip install -e .", "python -m pytest tests"]
    shutil.copytree(TEMPLATE, tmp_path / "plugins" / "_template", ignore=shutil.ignore_patterns("__pycache__"))
    script = "set -e\n" + "\n".join(commands[:-2])  # installing is replaced by PYTHONPATH below
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True, capture_output=True, text=True)
    plugin = tmp_path / "plugins" / "unlearnkit-myplugin"
    files = sorted(str(p.relative_to(plugin)) for p in plugin.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "tests/test_myplugin.py", "unlearnkit_myplugin/__init__.py",
                     "unlearnkit_myplugin/plugin.py", "unlearnkit_myplugin/sampler.py"]
    for name in files:
        text = (plugin / name).read_text()
        assert "unlearnkit_template" not in text and "unlearnkit-template" not in text and "sys.path" not in text, name
    pyproject = (plugin / "pyproject.toml").read_text()
    assert 'name = "unlearnkit-myplugin"' in pyproject and 'unlearnkit-myplugin = "unlearnkit_myplugin.plugin"' in pyproject
    assert 'include = ["unlearnkit_myplugin*"]' in pyproject
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"], cwd=plugin, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"\b5 passed\b", result.stdout)
