"""`unlearnkit --help`, `--version` and every command's help: each option explained, defaults shown,
and a pointer to documentation that exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import unlearnkit
from unlearnkit.cli.commands import DOCS, build_parser, main

ROOT = Path(__file__).parents[1]


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"": parser, **sub.choices}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"unlearnkit {unlearnkit.__version__}"


def test_no_command_names_the_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unlearnkit: error: a command is required") and all(c in err for c in _commands() if c)


@pytest.mark.parametrize("command", list(_commands()))
def test_every_option_has_help_and_shows_its_default(command):
    parser = _commands()[command]
    for action in _options(parser):
        assert action.help and action.help != argparse.SUPPRESS and len(action.help) > 10, f"{command} {action.option_strings}: no help"
    text = re.sub(r"\s+", " ", parser.format_help())
    for action in _options(parser):
        if action.default not in (None, False) and not isinstance(action, argparse._VersionAction):
            assert f"(default: {action.default})" in text, f"{command} {action.option_strings[0]}: default not shown"


def test_defaults_a_new_user_asked_about_are_shown():
    commands = _commands()
    assert "(default: bench-out)" in re.sub(r"\s+", " ", commands["bench"].format_help())
    assert "(default: the config's, else quick)" in re.sub(r"\s+", " ", commands["bench"].format_help())
    evaluate = re.sub(r"\s+", " ", commands["evaluate"].format_help())
    assert "any registered attack" in evaluate and "(default: svc-confidence)" in evaluate


@pytest.mark.parametrize("command", list(_commands()))
def test_help_ends_with_a_pointer_to_docs_that_exist(command):
    text = re.sub(r"\s+", " ", _commands()[command].format_help()).strip()
    assert text.endswith(re.sub(r"\s+", " ", DOCS))
    for name in re.findall(r"docs/[\w-]+\.md", text):
        assert (ROOT / name).is_file(), name


def test_help_names_where_the_docs_are_on_this_machine():
    """Not "docs/cli.md in the source repository", which an installed copy does not have."""
    from unlearnkit.cli.parser import docs_folder

    paths = re.findall(r"(\S+\.md)\b", DOCS)
    assert len(paths) == 3 and all(Path(p).is_absolute() and Path(p).is_file() for p in paths), paths
    assert "choosing.md" in re.sub(r"\s+", " ", _commands()["unlearn"].format_help()).split("Documentation:")[0]
    assert docs_folder(Path(unlearnkit.__file__).parent) == Path(paths[0]).parent


def test_docs_are_found_installed_with_the_package_or_in_the_checkout(tmp_path):
    from unlearnkit.cli.parser import docs_folder

    installed = tmp_path / "site-packages" / "unlearnkit"
    (installed / "docs").mkdir(parents=True)
    (installed / "docs" / "cli.md").write_text("# cli")
    assert docs_folder(installed) == installed / "docs"
    checkout = tmp_path / "clone"
    (checkout / "unlearnkit").mkdir(parents=True)
    (checkout / "docs").mkdir()
    (checkout / "docs" / "cli.md").write_text("# cli")
    assert docs_folder(checkout / "unlearnkit") is None  # a docs/ folder beside some package is not ours...
    (checkout / "pyproject.toml").write_text("[project]\n")
    assert docs_folder(checkout / "unlearnkit") == checkout / "docs"  # ... the checkout's is
