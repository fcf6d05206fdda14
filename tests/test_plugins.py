"""The plugin system: loading, provenance, failures, duplicates, the registry facade."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap

import pytest

import unlearnkit as uk
from unlearnkit.core import plugins
from unlearnkit.core.errors import DuplicateComponentError, UnknownComponentError
from unlearnkit.core.plugins import PluginLoadWarning, Registry


def test_builtins_register_through_hooks_with_provenance():
    entries = {(e.kind, e.name): e for e in plugins.registry.entries()}
    for kind, name in [("dataset", "mnist1d"), ("dataset", "cifar10"), ("model", "cnn1d"), ("model", "resnet18")]:
        assert entries[(kind, name)].package == "unlearnkit"
        assert entries[(kind, name)].version == uk.__version__


def test_list_is_sorted_and_filters_with_wildcards():
    assert uk.list_models() == sorted(uk.list_models())
    assert uk.list_datasets(filter="cifar*") == ["cifar10", "cifar100"]
    assert "cifar100" not in uk.list_datasets(exclude="*100")


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UnknownComponentError, match=r"unknown model 'resnet81'.*did you mean 'resnet18'"):
        uk.build_model("resnet81", uk.testing.tiny_task())


def _fake_plugins(tmp_path, monkeypatch, modules: dict[str, str]) -> Registry:
    """A fresh registry whose entry points are the given module sources."""
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [importlib.metadata.EntryPoint(name, name, "unlearnkit") for name in modules]
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group: eps if group == "unlearnkit" else [])
    return Registry()


GOOD = """
    import attrs, unlearnkit as uk
    @uk.config_class
    class C:
        k: int = 1
    @uk.hookimpl
    def unlearnkit_register_samplers(register):
        register("good-sampler", lambda cfg: cfg, C)
"""


def test_broken_plugins_are_reported_by_name_and_skipped(tmp_path, monkeypatch):
    reg = _fake_plugins(tmp_path, monkeypatch, {
        "good_plugin": GOOD,
        "import_fails": "raise ImportError('missing dependency foo')\n",
        "register_fails": """
            import unlearnkit as uk
            @uk.config_class
            class C:
                pass
            @uk.hookimpl
            def unlearnkit_register_samplers(register):
                register("half-registered", lambda cfg: cfg, C)
                raise RuntimeError("boom")
        """,
    })
    with pytest.warns(PluginLoadWarning) as warned:
        names = reg.names("sampler")
    assert names == ["good-sampler"]  # nothing of the half-registered plugin leaks in
    failures = {f.package: f.error for f in reg.failures}
    assert "missing dependency foo" in failures["import_fails"]
    assert "boom" in failures["register_fails"]
    assert len(warned) == 2


def test_duplicate_names_are_refused_naming_both(tmp_path, monkeypatch):
    reg = _fake_plugins(tmp_path, monkeypatch, {"first_plugin": GOOD, "second_plugin": GOOD})
    with pytest.raises(DuplicateComponentError, match=r"first_plugin.*second_plugin"):
        reg.names("sampler")


def test_loading_happens_once(tmp_path, monkeypatch):
    reg = _fake_plugins(tmp_path, monkeypatch, {"good_plugin": GOOD})
    calls = []
    real = plugins._selected_entry_points
    monkeypatch.setattr(plugins, "_selected_entry_points", lambda: calls.append(1) or real())
    reg.names("sampler")
    reg.names("model")
    assert calls == [1]


def test_in_process_registration_fixture(register_component):
    @uk.config_class
    class Cfg:
        scale: float = 1.0

    register_component("combiner", "test-scaled-sum", lambda cfg: ("combiner", cfg.scale), Cfg)
    assert "test-scaled-sum" in uk.list_combiners()
    assert uk.get_combiner("test-scaled-sum", scale=2.0) == ("combiner", 2.0)
    with pytest.raises(DuplicateComponentError, match="<in-process>"):
        register_component("combiner", "test-scaled-sum", lambda cfg: None, Cfg)


def test_get_validates_config_with_the_path_of_the_bad_field():
    with pytest.raises(uk.ConfigError, match=r"\$\.cnn1d\.channels: must be > 0, got -3"):
        uk.build_model("cnn1d", uk.testing.tiny_task(), channels=-3)
    with pytest.raises(uk.ConfigError, match=r"unknown key\(s\) 'width'"):
        uk.build_model("cnn1d", uk.testing.tiny_task(), width=3)


def _plugins_json(env_value: str | None) -> list[dict]:
    env = dict(os.environ)
    env.pop("UNLEARNKIT_LOAD_PLUGINS", None)
    if env_value is not None:
        env["UNLEARNKIT_LOAD_PLUGINS"] = env_value
    out = subprocess.run([sys.executable, "-m", "unlearnkit", "plugins", "--json"], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def test_load_plugins_environment_switch():
    everything = _plugins_json(None)
    assert {"kind", "name", "package", "version"} == set(everything[0])
    assert any(e["package"] == "unlearnkit-example" for e in everything), "the test plugin in tests/example_plugin must be installed"
    only_core = _plugins_json("")
    assert {e["package"] for e in only_core} == {"unlearnkit"}
    only_example = _plugins_json("unlearnkit-example")
    assert {e["package"] for e in only_example} == {"unlearnkit", "unlearnkit-example"}
