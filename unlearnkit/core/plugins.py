"""Plugin loading and the component registry.

Loading is lazy and happens once: the built-in module first, then every entry point of the
`unlearnkit` group (limited by `UNLEARNKIT_LOAD_PLUGINS`), then `check_pending()`. Each
plugin's hooks run with a `register` callback that records provenance; a plugin that fails
to import or to register is reported by name and skipped, the others still load.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import os
import threading
import warnings
from typing import Any, Callable, Iterator

import attrs
import pluggy

from unlearnkit.core import hookspecs
from unlearnkit.core.errors import DuplicateComponentError, UnknownComponentError, UsageError

KIND_HOOKS = {
    "unlearner": "unlearnkit_register_unlearners",
    "attack": "unlearnkit_register_attacks",
    "sampler": "unlearnkit_register_samplers",
    "combiner": "unlearnkit_register_combiners",
    "dataset": "unlearnkit_register_datasets",
    "model": "unlearnkit_register_models",
    "audit": "unlearnkit_register_audits",
}
ENTRY_POINT_GROUP = "unlearnkit"
#: The core's own plugin (datasets, models), named like an entry point so the core imports no layer above it.
BUILTINS = "unlearnkit.builtins"
LOAD_PLUGINS_ENV = "UNLEARNKIT_LOAD_PLUGINS"


class PluginLoadWarning(UserWarning):
    """A plugin failed to import or register and was skipped."""


@attrs.frozen
class Entry:
    """One registered component and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config_cls: type
    package: str
    version: str


@attrs.frozen
class PluginFailure:
    package: str
    error: str


def _core_version() -> str:
    from unlearnkit.core import __version__

    return __version__


class Registry:
    """Components by kind and name, loaded from plugins on first use."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KIND_HOOKS}
        self.failures: list[PluginFailure] = []
        self._loaded = False
        self._lock = threading.RLock()

    # -- loading -------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
            pm.add_hookspecs(hookspecs)
            builtins = importlib.import_module(BUILTINS)
            plugins: list[tuple[Any, str, str]] = [(builtins, "unlearnkit", _core_version())]
            pm.register(builtins, name="unlearnkit")
            for ep, package, version in _selected_entry_points():
                try:
                    module = ep.load()
                    pm.register(module, name=f"{package}:{ep.name}")
                except Exception as exc:  # a broken plugin must not take the others down
                    self._fail(package, f"import failed: {type(exc).__name__}: {exc}")
                    continue
                plugins.append((module, package, version))
            pm.check_pending()
            for module, package, version in plugins:
                self._register_plugin(pm, module, package, version)

    def _register_plugin(self, pm: pluggy.PluginManager, module: Any, package: str, version: str) -> None:
        staged: list[Entry] = []
        try:
            for kind, hook_name in KIND_HOOKS.items():
                for impl in getattr(pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is not module:
                        continue

                    def register(name: str, factory: Callable[..., Any], config_cls: type, _kind: str = kind) -> None:
                        staged.append(_make_entry(_kind, name, factory, config_cls, package, version))

                    impl.function(register=register)
        except Exception as exc:
            self._fail(package, f"registration failed: {type(exc).__name__}: {exc}")
            return
        for entry in staged:
            self._add(entry)

    def _fail(self, package: str, error: str) -> None:
        self.failures.append(PluginFailure(package, error))
        warnings.warn(f"unlearnkit plugin {package!r} skipped: {error}", PluginLoadWarning, stacklevel=3)

    def _add(self, entry: Entry) -> None:
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{entry.kind} {entry.name!r} is registered twice: by {existing.package} {existing.version} "
                f"and by {entry.package} {entry.version}; uninstall one or limit plugins with {LOAD_PLUGINS_ENV}"
            )
        self._entries[entry.kind][entry.name] = entry

    # -- public --------------------------------------------------------------------------
    def register(
        self, kind: str, name: str, factory: Callable[..., Any], config_cls: type, *, package: str = "<in-process>"
    ) -> Entry:
        """Register a component in-process (tests, notebooks); `unregister` removes it."""
        self._ensure_loaded()
        entry = _make_entry(kind, name, factory, config_cls, package, "0")
        with self._lock:
            self._add(entry)
        return entry

    def unregister(self, kind: str, name: str) -> None:
        with self._lock:
            self._entries[_check_kind(kind)].pop(name, None)

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        """Every entry (of one kind), sorted by kind then name."""
        self._ensure_loaded()
        kinds = [_check_kind(kind)] if kind else list(KIND_HOOKS)
        for k in kinds:
            yield from (self._entries[k][n] for n in sorted(self._entries[k]))

    def names(self, kind: str, filter: str | None = None, exclude: str | None = None) -> list[str]:
        """Sorted names of one kind; `filter`/`exclude` are shell-style wildcards."""
        names = [e.name for e in self.entries(kind)]
        if filter:
            names = [n for n in names if fnmatch.fnmatch(n, filter)]
        if exclude:
            names = [n for n in names if not fnmatch.fnmatch(n, exclude)]
        return names

    def get(self, kind: str, name: str) -> Entry:
        """The entry for `name`, or `UnknownComponentError` suggesting close names."""
        self._ensure_loaded()
        entries = self._entries[_check_kind(kind)]
        if not isinstance(name, str) or name not in entries:
            close = difflib.get_close_matches(str(name), list(entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            known = ", ".join(sorted(entries)) or "none installed"
            raise UnknownComponentError(f"unknown {kind} {name!r}{hint} (known: {known})")
        return entries[name]


def _check_kind(kind: str) -> str:
    if kind not in KIND_HOOKS:
        raise UsageError(f"unknown component kind {kind!r}; expected one of {', '.join(KIND_HOOKS)}")
    return kind


def _make_entry(kind: str, name: str, factory: Callable[..., Any], config_cls: type, package: str, version: str) -> Entry:
    if not isinstance(name, str) or not name or name != name.strip():
        raise UsageError(f"{package}: a {kind} name must be a non-empty string without surrounding spaces, got {name!r}")
    if not callable(factory):
        raise UsageError(f"{package}: factory for {kind} {name!r} is not callable: {factory!r}")
    if not attrs.has(config_cls):
        raise UsageError(f"{package}: config class for {kind} {name!r} must be an attrs class, got {config_cls!r}")
    return Entry(kind, name, factory, config_cls, package, version)


def _selected_entry_points() -> Iterator[tuple[importlib.metadata.EntryPoint, str, str]]:
    wanted = os.environ.get(LOAD_PLUGINS_ENV)
    allowed = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
    seen = set()
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = getattr(ep, "dist", None)
        package = dist.name if dist is not None else ep.name
        version = dist.version if dist is not None else "unknown"
        if (package, ep.name) in seen:  # the same distribution found twice on sys.path
            continue
        seen.add((package, ep.name))
        if allowed is not None and package not in allowed and ep.name not in allowed:
            continue
        yield ep, package, version


registry = Registry()
