"""Finds plugins and looks their pieces up by kind and name.

Built-in plugin modules (listed in :data:`plugins.BUILTIN_PLUGINS`) and the modules of
the entry-point group ``relulab`` are registered with one pluggy ``PluginManager``.
A module that fails to import is recorded with its error and skipped; every other
plugin keeps working. A piece whose ``requires`` modules are missing is listed as
unavailable with the exact install hint.

Modules named in the environment variable ``RELULAB_PLUGINS`` (comma-separated)
are registered too, with provider ``RELULAB_PLUGINS`` (like ``PYTEST_PLUGINS``):
handy for local plugins and for test plugins that worker processes must see.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass

import pluggy

from . import hookspecs
from .errors import PluginError, did_you_mean
from .kinds import KIND_TABLE, KINDS

__all__ = ["Entry", "Registry", "get_registry"]

BUILTIN_PROVIDER = "relulab"


@dataclass
class Entry:
    """One registered piece.

    Attributes
    ----------
    kind, name : str
    cls : type
        The Component subclass.
    provider : str
        Distribution that provides it (``relulab`` for built-ins).
    version : str
        The provider's version.
    module : str
        Plugin module that registered it.
    """

    kind: str
    name: str
    cls: type
    provider: str
    version: str
    module: str

    @property
    def missing(self):
        """Required modules that cannot be imported."""
        return [m for m in self.cls.requires if not _importable(m)]

    @property
    def available(self):
        return not self.missing

    @property
    def install_hint(self):
        """The command that installs what the piece ``requires``.

        The class's own ``install_hint`` string when it sets one; for a built-in,
        ``pip install "relulab[<extra>]"`` (``all`` without an ``extra``); for a
        piece of another distribution, ``pip install "<dist>[<extra>]"`` when the
        class sets ``extra``, else ``pip install`` of the missing modules.
        """
        hint = getattr(self.cls, "install_hint", None)
        if isinstance(hint, str) and hint.strip():
            return hint.strip()
        extra = self.cls.extra
        if self.provider == BUILTIN_PROVIDER:
            return f'pip install "relulab[{extra or "all"}]"'
        local = self.provider in ("RELULAB_PLUGINS", "?")  # not a distribution's name
        if extra and not local:
            return f'pip install "{self.provider}[{extra}]"'
        return "pip install " + (" ".join(self.missing or self.cls.requires) or self.provider)


def _importable(module):
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _relulab_version():
    try:
        return importlib.metadata.version("relulab")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


class Registry:
    """All plugin pieces, by kind and name.

    Parameters
    ----------
    builtins : sequence of str, optional
        Module names registered as built-in plugins (default:
        :data:`plugins.BUILTIN_PLUGINS`).
    entry_points : bool
        Also load the ``relulab`` entry-point group.
    extra_plugins : sequence of (module or object, provider name)
        Additional plugins registered as given (tests use this).
    plugin_modules : sequence of str, optional
        Module names registered with provider ``RELULAB_PLUGINS`` (default: the
        comma-separated ``RELULAB_PLUGINS`` environment variable).
    """

    def __init__(self, builtins=None, entry_points=True, extra_plugins=(), plugin_modules=None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.failures = []  # (plugin name, provider, error message)
        self._provider = {}  # plugin name -> (provider, version)
        if builtins is None:
            from plugins import BUILTIN_PLUGINS as builtins
        version = _relulab_version()
        for module_name in builtins:
            self._register_module(module_name, BUILTIN_PROVIDER, version)
        if entry_points:
            self._load_entry_points()
        if plugin_modules is None:
            plugin_modules = os.environ.get("RELULAB_PLUGINS", "").split(",")
        self.plugin_modules = tuple(m.strip() for m in plugin_modules if m and m.strip())
        for module_name in self.plugin_modules:
            self._register_module(module_name, "RELULAB_PLUGINS", "")
        for plugin, provider in extra_plugins:
            name = getattr(plugin, "__name__", None) or repr(plugin)
            self.pm.register(plugin, name=name)
            self._provider[name] = (provider, "")
        self.pm.check_pending()
        self._entries = {kind: {} for kind in KINDS}
        self._duplicates = {}  # (kind, name) -> [Entry, ...]
        self._collect()

    # -- loading -----------------------------------------------------------------
    def _register_module(self, module_name, provider, version):
        try:
            module = importlib.import_module(module_name)
            self.pm.register(module, name=module_name)
        except Exception as exc:  # a broken plugin must not take the host down
            self.failures.append((module_name, provider, f"{type(exc).__name__}: {exc}"))
            return
        self._provider[module_name] = (provider, version)

    def _load_entry_points(self):
        for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            provider = dist.name if dist is not None else ep.name
            version = dist.version if dist is not None else ""
            try:
                plugin = ep.load()
                name = f"{provider}:{ep.name}"
                self.pm.register(plugin, name=name)
            except Exception as exc:
                self.failures.append((ep.name, provider, f"{type(exc).__name__}: {exc}"))
                continue
            self._provider[name] = (provider, version)

    def _collect(self):
        for kind in KIND_TABLE:
            hook = getattr(self.pm.hook, kind.hook)
            for impl in hook.get_hookimpls():
                provider, version = self._provider.get(impl.plugin_name, ("?", ""))
                try:
                    classes = impl.function() or []
                except Exception as exc:
                    self.failures.append(
                        (impl.plugin_name, provider, f"{type(exc).__name__}: {exc}")
                    )
                    continue
                for cls in classes:
                    if not (isinstance(cls, type) and issubclass(cls, kind.base)):
                        self.failures.append(
                            (
                                impl.plugin_name,
                                provider,
                                (
                                    f"{kind.hook} returned {cls!r}, not a subclass of "
                                    f"{kind.base.__module__}.{kind.base.__name__}"
                                ),
                            )
                        )
                        continue
                    entry = Entry(kind.name, cls.name, cls, provider, version, impl.plugin_name)
                    self._add(entry)

    def _add(self, entry):
        table = self._entries[entry.kind]
        key = (entry.kind, entry.name)
        if entry.name in table or key in self._duplicates:
            self._duplicates.setdefault(key, [table.pop(entry.name, None)])
            self._duplicates[key].append(entry)
            self._duplicates[key] = [e for e in self._duplicates[key] if e is not None]
            return
        table[entry.name] = entry

    # -- lookups -----------------------------------------------------------------
    def names(self, kind):
        """Names of one kind, sorted (duplicated names included)."""
        dup = [name for (k, name) in self._duplicates if k == kind]
        return sorted(set(self._entries[kind]) | set(dup))

    def entries(self, kind=None):
        """All entries (of one kind), duplicates included, sorted by kind and name."""
        kinds = KINDS if kind is None else (kind,)
        out = []
        for k in kinds:
            out.extend(self._entries[k].values())
            for (dk, _), dups in self._duplicates.items():
                if dk == k:
                    out.extend(dups)
        return sorted(out, key=lambda e: (KINDS.index(e.kind), e.name, e.provider))

    def entry(self, kind, name, owner=None):
        """The entry of ``kind`` called ``name``.

        Raises
        ------
        PluginError
            Unknown name (listing the available ones and the closest match), a
            name provided twice (naming both providers), or a piece whose extra
            is not installed (with the install hint).
        """
        if kind not in self._entries:
            raise PluginError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
        owner = owner or kind
        dups = self._duplicates.get((kind, name))
        if dups:
            who = " and ".join(f"{e.provider} ({e.module})" for e in dups)
            raise PluginError(f"{kind} {name!r} is provided by both {who}")
        entry = self._entries[kind].get(name)
        if entry is None:
            names = self.names(kind)
            failed = ""
            if self.failures:
                failed = "; plugins that failed to load: " + ", ".join(
                    f"{n} ({err})" for n, _, err in self.failures
                )
            raise PluginError(
                f"unknown {kind} {name!r} in {owner}; available: "
                + (", ".join(names) if names else "(none)")
                + did_you_mean(name, names)
                + failed
            )
        if not entry.available:
            raise PluginError(
                f"{kind} {name!r} needs {', '.join(entry.missing)}, which is not "
                f"installed; install it with: {entry.install_hint}"
            )
        return entry

    def get(self, kind, name, owner=None):
        """The Component class of ``kind`` called ``name`` (see :meth:`entry`)."""
        return self.entry(kind, name, owner).cls

    def build(self, kind, name, params=None, owner=None):
        """An instance of the ``kind`` plugin ``name``, its ``params`` validated.

        Defaults fill what ``params`` leaves out; a bad key or value raises
        :class:`core.errors.ConfigError` naming ``owner`` (default ``"<kind> (<name>)"``).
        """
        from .params import validate_params

        cls = self.get(kind, name, owner)
        where = owner or f"{kind} ({name})"
        return cls(**validate_params(where, dict(params or {}), cls.params))

    def build_all(self, kind, only=None, owner=None):
        """One instance (default parameters) of every available plugin of ``kind``.

        ``only`` restricts to the given names (an unknown or unavailable name
        raises :class:`core.errors.PluginError`); otherwise pieces whose extra is
        missing are skipped. A name provided twice raises either way.
        """
        if only:
            names = [self.entry(kind, name, owner).name for name in dict.fromkeys(only)]
        else:
            names = [e.name for e in self.entries(kind) if e.available]
        return [self.build(kind, name) for name in dict.fromkeys(names)]


_REGISTRIES = {}


def get_registry(refresh=False, plugins=None):
    """The process-wide registry of built-in and installed plugins.

    Parameters
    ----------
    refresh : bool
        Build it again (after installing a plugin package, say).
    plugins : str or sequence of str, optional
        Extra plugin modules to register, as ``RELULAB_PLUGINS`` would (default:
        that variable). Sweep workers receive the driver's value this way, as an
        argument; the environment is never written.
    """
    if plugins is None:
        plugins = os.environ.get("RELULAB_PLUGINS", "")
    if isinstance(plugins, str):
        plugins = plugins.split(",")
    key = tuple(name.strip() for name in plugins if name and name.strip())
    if refresh or key not in _REGISTRIES:
        _REGISTRIES[key] = Registry(plugin_modules=key)
    return _REGISTRIES[key]
