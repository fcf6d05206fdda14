"""The README never lies: .ci/run installs and tests exactly as README says."""

from pathlib import Path

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
