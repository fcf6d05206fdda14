"""The README never lies: .ci/run installs and tests exactly as README says."""

import re
import shlex
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parents[1]


def _commands(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\\\n", " ").splitlines()]


def test_ci_runs_the_readme_commands():
    readme = " ".join(_commands((ROOT / "README.md").read_text()))
    ci = [c for c in _commands((ROOT / ".ci/run").read_text()) if c and not c.startswith(("#", "set ", "cd "))]
    normalise = lambda s: " ".join(s.split())
    for command in ci:
        assert normalise(command) in normalise(readme), f".ci/run runs {command!r}, which README.md does not say"


def test_every_plugin_folder_is_installed_by_ci():
    ci = (ROOT / ".ci/run").read_text()
    for folder in sorted((ROOT / "plugins").glob("unlearnkit-*")):
        assert f"./plugins/{folder.name}" in ci


def test_the_30_second_example_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path))
    text = (ROOT / "README.md").read_text()
    code = text.split("## In 30 seconds\n```python\n", 1)[1].split("```", 1)[0]
    printed = []
    exec(compile(code, "README.md", "exec"), {"print": printed.append})
    (metrics,) = printed
    assert set(metrics) == {"UA", "RA", "TA", "MIA"}


def _shell_lines(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [c for block in blocks for c in _commands(block) if c and not c.startswith("#")]


def test_the_readme_commands_name_what_exists():
    """Every `unlearnkit` command parses as written, every installed folder and extra exists."""
    from unlearnkit.cli.commands import build_parser

    lines = _shell_lines((ROOT / "README.md").read_text())
    invocations = [shlex.split(c) for c in lines if c.startswith("unlearnkit")]
    assert len(invocations) >= 5
    for argv in invocations:
        build_parser().parse_args(argv[1:])  # a usage error raises UsageError
    installs = [shlex.split(c) for c in lines if c.startswith("pip install")]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for argv in installs:
        for arg in argv[2:]:
            if arg.startswith("."):
                folder, _, extra = arg.partition("[")
                assert (ROOT / folder).is_dir(), arg
                assert all(e in extras for e in extra.rstrip("]").split(",") if e), arg
    assert any("--index-url https://download.pytorch.org/whl/cpu" in c for c in lines)  # the CPU-only build
    assert lines[0] == "python3 -m venv .venv && . .venv/bin/activate"  # a virtual environment first


def test_each_unlearn_in_the_readme_writes_into_a_folder_of_its_own():
    """Two `unlearn --out` into one folder: the second finds the first's report.json and refuses."""
    lines = _shell_lines((ROOT / "README.md").read_text())
    outs = [shlex.split(c) for c in lines if c.startswith("unlearnkit unlearn")]
    folders = [Path(argv[argv.index("--out") + 1]).parent for argv in outs]
    assert len(folders) >= 2 and len(set(folders)) == len(folders) and Path(".") not in folders
