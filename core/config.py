"""Python config files: loading, bases, command-line overrides, validation.

A config is a plain Python file that defines a dict named ``config``. It can build
on another config in two ways:

* ``base = "base.py"`` (a path relative to the file): the loader merges ``config``
  over the base's resolved dict;
* ``from configs.base import config as base`` and ``config = merge(base, {...})``.

Layout of a config (every section optional but ``data``/``init``/``algorithm`` have
defaults in ``configs/base.py``)::

    config = {
        "experiment": "gd_sinus",          # runs go to runs/<experiment>/
        "seed": 0,                         # every random choice flows from it
        "data_seed": 7,                    # optional: the data's own seed (default: seed)
        "model": {"width": 200, "scaling": "standard", "loss": "mse"},
        "data": {"name": "sinus", "n": 20},          # one plugin: name + params
        "init": {"name": "normal", "scale": 1.0},
        "algorithm": {"name": "gd", "lr": 0.01},
        "stoppers": {"max_steps": {"steps": 1000}},  # several plugins: name -> params
        "loggers": {"scalars": {}, "snapshots": {"every": 10}},
        "savers": {"periodic": {"every_seconds": 30}},
        "run": {"display": "auto"},
    }

``data_seed`` (an int >= 0, optional) draws the data set from its own seed, so runs
with different ``seed`` but the same ``data_seed`` train on the same data (their
initialisations and algorithms still differ); without it the data set is drawn from
``seed``. It is absent from a resolved config that does not set it.

Setting a multi-plugin entry to ``None`` removes it (``stoppers.wall_time=None``).
Switching a plugin (``algorithm.name=jko`` in a file or an override) drops the old
plugin's parameters; later overrides set the new one's (``algorithm.tau=0.1``).
Overrides ``key.sub=value`` parse ``value`` as a Python literal, else keep it as a
string. The resolved config is plain JSON-able data with every default filled.
"""

import ast
import copy
import json
import os
import runpy
import sys
from pathlib import Path

from .errors import ConfigError, did_you_mean
from .kinds import config_sections
from .model import LOSSES, SCALINGS
from .params import Param, validate_params

__all__ = [
    "merge",
    "load_config_file",
    "parse_override",
    "apply_overrides",
    "resolve",
    "load",
    "TOP_LEVEL_KEYS",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


MODEL_PARAMS = (
    Param("width", int, 100, "number of neurons m (inits may derive theirs, e.g. a grid)", low=1),
    Param("scaling", str, "standard", "output scaling: 1, 1/sqrt(m) or 1/m", choices=SCALINGS),
    Param(
        "loss",
        str,
        "mse",
        "mse: mean (f-y)^2; half_mse: half of it; half_sum: sum/2",
        choices=LOSSES,
    ),
)

RUN_PARAMS = (
    Param("runs_dir", str, "runs", "root directory of the run store (--runs-dir overrides)"),
    Param(
        "display",
        str,
        "auto",
        "live rich display, plain lines, or off (auto: live on a tty)",
        choices=("auto", "live", "plain", "off"),
    ),
    Param("refresh_per_second", float, 10.0, "live display refresh rate", low=0, low_open=True),
    Param(
        "threads",
        int,
        0,
        "CPU threads for torch and BLAS (0: automatic, one per sweep "
        "worker, chosen by problem size for a single run)",
        low=0,
    ),
    Param(
        "max_pending_mb",
        float,
        256.0,
        "force a save when the unsaved trace exceeds this size (MiB)",
        low=0,
        low_open=True,
    ),
)

TOP_LEVEL_KEYS = (
    "experiment",
    "seed",
    "data_seed",
    "notes",
    "model",
    "data",
    "init",
    "algorithm",
    "stoppers",
    "loggers",
    "savers",
    "run",
    "sweep",
)


def merge(base, override):
    """Deep-merge ``override`` over ``base`` (neither is modified).

    Dicts merge key by key, except a plugin section whose ``name`` changes, which is
    replaced whole (the old plugin's parameters would not fit the new one).
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            switched = "name" in value and "name" in old and value["name"] != old["name"]
            out[key] = copy.deepcopy(value) if switched else merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _ensure_importable_configs():
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


def load_config_file(path, _seen=()):
    """Execute a config file and return ``(config dict, module globals)``.

    Follows ``base = "..."`` chains (relative to each file) and merges.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    resolved_path = path.resolve()
    if resolved_path in _seen:
        raise ConfigError(f"config base cycle: {' -> '.join(map(str, _seen + (path,)))}")
    _ensure_importable_configs()
    try:
        namespace = runpy.run_path(str(path), run_name="__relulab_config__")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"config file {path} failed to execute: {type(exc).__name__}: {exc}"
        ) from exc
    if "config" not in namespace or not isinstance(namespace["config"], dict):
        raise ConfigError(f"config file {path} must define a dict named 'config'")
    config = namespace["config"]
    base = namespace.get("base")
    if isinstance(base, str):
        base_config, _ = load_config_file(path.parent / base, _seen + (resolved_path,))
        config = merge(base_config, config)
    return copy.deepcopy(config), namespace


def parse_override(text):
    """Parse ``"a.b.c=value"`` into ``(["a", "b", "c"], value)``.

    ``value`` is read as a Python literal (``0.1``, ``[1, 2]``, ``None``, ``'x'``);
    anything that is not a literal is kept as a plain string (``gd``).
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key part")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = raw.strip()
    return key.split("."), value


def apply_overrides(config, overrides):
    """Return a copy of ``config`` with ``key.sub=value`` overrides applied."""
    config = copy.deepcopy(config)
    for text in overrides:
        path, value = parse_override(text)
        node = config
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"override {text!r}: {where} is {child!r}, not a section")
            node = child
        last = path[-1]
        if isinstance(node.get(last), dict) and isinstance(value, dict):
            node[last] = merge(node[last], value)
        elif last == "name" and len(path) == 2 and node.get("name") not in (None, value):
            node.clear()  # switching plugin: the old plugin's parameters would not fit
            node["name"] = value
        else:
            node[last] = value
    return config


def _resolve_single(section, value, registry, kind):
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"{section} must be a dict with a 'name' key; got {value!r}")
    name = value["name"]
    if not isinstance(name, str):
        raise ConfigError(f"{section}.name must be a string; got {name!r}")
    cls = registry.get(kind, name, owner=f"{section}.name")
    params = {k: v for k, v in value.items() if k != "name"}
    resolved = validate_params(f"{section} ({name})", params, cls.params)
    _check_plugin_params(section, cls.params, resolved, registry)
    cls.check(resolved)
    return {"name": name, **resolved}


def _check_plugin_params(section, params, resolved, registry):
    """Resolve the parameters that name other plugins (declared links), once.

    A parameter with ``plugin_kind`` names plugins of that kind: each name is
    checked against the registry; a ``dict`` value (or a ``list`` of names, when
    the parameter also accepts a dict) becomes ``{name: parameters}`` with each
    plugin's parameters validated and defaults filled. A parameter with
    ``options_of`` holds the parameters of the plugin named by that other
    parameter: validated, defaults filled, and checked by the plugin's
    :meth:`~core.components.Component.check`. The plugin using them instantiates
    them as they are (:meth:`core.registry.Registry.build`).
    """
    by_name = {p.name: p for p in params}
    for p in params:
        value = resolved.get(p.name)
        if p.plugin_kind is None or value is None:
            continue
        owner = f"{section}.{p.name}"
        if isinstance(value, str):
            registry.get(p.plugin_kind, value, owner=owner)
        elif isinstance(value, dict) or _accepts(p, dict):
            items = value.items() if isinstance(value, dict) else ((v, {}) for v in value)
            out = {}
            for name, options in items:
                if not isinstance(name, str):
                    raise ConfigError(f"{owner} must name {p.plugin_kind} plugins; got {name!r}")
                if options is None or options is True:
                    options = {}
                cls = registry.get(p.plugin_kind, name, owner=owner)
                out[name] = validate_params(f"{owner}.{name}", options, cls.params)
                cls.check(out[name])
            resolved[p.name] = out
        else:
            for name in value:
                if not isinstance(name, str):
                    raise ConfigError(f"{owner} must name {p.plugin_kind} plugins; got {name!r}")
                registry.get(p.plugin_kind, name, owner=owner)
    for p in params:
        target = p.options_of
        if target is None or resolved.get(target) is None:
            continue
        kind = by_name[target].plugin_kind
        cls = registry.get(kind, resolved[target], owner=f"{section}.{target}")
        resolved[p.name] = validate_params(
            f"{section}.{p.name} ({resolved[target]})", resolved[p.name] or {}, cls.params
        )
        cls.check(resolved[p.name])


def _accepts(param, typ):
    types = param.type if isinstance(param.type, tuple) else (param.type,)
    return typ in types


def _resolve_multi(section, value, registry, kind):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{section} must be a dict of name -> parameters; got {value!r}")
    out = {}
    for name, params in value.items():
        if params is None or params is False:
            continue  # removed
        if params is True:
            params = {}
        if not isinstance(params, dict):
            raise ConfigError(f"{section}.{name} must be a dict of parameters; got {params!r}")
        cls = registry.get(kind, name, owner=section)
        out[name] = validate_params(f"{section}.{name}", params, cls.params)
        _check_plugin_params(f"{section}.{name}", cls.params, out[name], registry)
        cls.check(out[name])
    return out


MAX_NAME_BYTES = 200
"""Longest experiment name (bytes, UTF-8): one folder name, below file systems' 255."""


def check_experiment_name(name):
    """Return ``name`` if it can be a folder name of the run store, else raise.

    Refused: non-strings, blank names, names starting with ``.`` or a space,
    ``/``, NUL or other control characters, and names over ``MAX_NAME_BYTES``.
    """
    if (
        not isinstance(name, str)
        or not name.strip()
        or name != name.strip()
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
        or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
    ):
        raise ConfigError(
            "experiment must be a folder name: not blank, no leading or trailing space or "
            f"'.', no '/', '\\' or control characters, at most {MAX_NAME_BYTES} bytes; "
            f"got {name!r}"[:300]
        )
    return name


def plain_data(value):
    """``value`` with numpy scalars turned into Python numbers (recursively).

    Configs computed with numpy (``np.logspace(...)[i]``, ``np.float64(0.1)``)
    hold numpy scalars; the resolved config is plain JSON data.
    """
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_data(v) for v in value)
    item = getattr(value, "item", None)
    if item is not None and type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        return item()
    return value


def resolve(config, registry):
    """Validate a raw config against the registry and fill every default.

    Returns
    -------
    resolved : dict
        Plain JSON-able data.

    Raises
    ------
    ConfigError, PluginError
        One clear message naming the offending key, value and what is allowed.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a dict; got {type(config).__name__}")
    for key in config:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"unknown top-level key {key!r}; valid keys: {', '.join(TOP_LEVEL_KEYS)}"
                + did_you_mean(key, TOP_LEVEL_KEYS)
            )
    config = plain_data(config)
    out = {"experiment": check_experiment_name(config.get("experiment", "default"))}
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an int >= 0; got {seed!r}")
    out["seed"] = seed
    data_seed = config.get("data_seed")
    if data_seed is not None:  # absent when unset: configs made before it keep their hash
        if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
            raise ConfigError(
                f"data_seed must be an int >= 0 (or None: the data from seed); got {data_seed!r}"
            )
        out["data_seed"] = data_seed
    notes = config.get("notes", "")
    if not isinstance(notes, str):
        raise ConfigError(f"notes must be a string; got {notes!r}")
    out["notes"] = notes
    out["model"] = validate_params("model", config.get("model", {}), MODEL_PARAMS)
    for kind in config_sections(several=False):
        if kind.section not in config:
            raise ConfigError(f"config has no {kind.section!r} section (a dict with a 'name' key)")
        out[kind.section] = _resolve_single(kind.section, config[kind.section], registry, kind.name)
    for kind in config_sections(several=True):
        out[kind.section] = _resolve_multi(
            kind.section, config.get(kind.section, {}), registry, kind.name
        )
    out["run"] = validate_params("run", config.get("run", {}), RUN_PARAMS)
    if "sweep" in config:
        out["sweep"] = config["sweep"]
    try:
        json.dumps(out, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config is not plain data (JSON): {exc}") from exc
    return out


def load(path, overrides=(), registry=None):
    """Load, override and resolve a config file.

    Returns
    -------
    resolved : dict
    source : str
        The config file's text (copied into the run).
    namespace : dict
        The file's globals (for extras such as a sweep declaration).
    """
    if registry is None:
        from .registry import get_registry

        registry = get_registry()
    raw, namespace = load_config_file(path)
    raw = apply_overrides(raw, overrides)
    resolved = resolve(raw, registry)
    source = Path(path).read_text()
    return resolved, source, namespace


def config_dir():
    """Directory of the shipped configs."""
    return os.fspath(REPO_ROOT / "configs")
