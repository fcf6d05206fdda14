"""docs/plugins.md: its example component, hook and LTU configuration work as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import unlearnkit as uk
from unlearnkit.core.config import load_toml
from unlearnkit.testing import checks_for_kind

DOC = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


@pytest.fixture
def example(register_component):
    namespace: dict = {}
    exec(compile(_blocks("python")[0], "docs/plugins.md", "exec"), namespace)
    hook = _blocks("python")[1]
    exec(compile(hook, "docs/plugins.md", "exec"), namespace)
    namespace["unlearnkit_register_samplers"](lambda name, factory, cls: register_component("sampler", name, factory, cls))
    return namespace


def test_the_example_uses_only_the_public_api():
    assert "unlearnkit._" not in DOC and "uk.validators" in _blocks("python")[0]


@pytest.mark.parametrize("check", checks_for_kind("sampler"), ids=lambda c: c.__name__)
def test_the_example_sampler_passes_the_contract(example, check):
    check("nearest-class")


def test_the_quoted_error_is_the_one_users_get(example):
    quoted = re.search(r"fails with\n`(.*?)`", DOC).group(1)
    with pytest.raises(uk.ConfigError) as info:
        uk.get_sampler("nearest-class", order="sorted")
    assert str(info.value) == quoted


def test_the_ltu_method_table_configures_ltu(tmp_path, example):
    pytest.importorskip("unlearnkit_ltu")
    (toml,) = [b for b in _blocks("toml") if "[method]" in b]
    (tmp_path / "ltu.toml").write_text(toml)
    method = load_toml(tmp_path / "ltu.toml")["method"]
    ltu = uk.get_unlearner(method.pop("name"), method)
    assert "nearest-class" in ltu.config.samplers and "logit-margin" in ltu.config.bank
    assert ltu.config.sampler_configs == {"nearest-class": {"order": "pool"}}
    commands = [b for b in _blocks("bash") if "--config ltu.toml" in b]
    assert commands and "--attack logit-margin" in commands[0]
