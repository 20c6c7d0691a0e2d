"""The sweep declaration: validation, expansion into points, config hashes.

A config declares a sweep in its ``sweep`` section::

    "sweep": {
        "grid": {"model.width": [20, 40, 80], "data.d": [5, 10]},   # full product
        "zip": {"algorithm.lr": [0.1, 0.01], "stoppers.max_steps.steps": [100, 1000]},
        "seeds": 10,
        "success": {"key": "final_loss", "below": 1e-3},
        "ensemble": 16,   # optional: most seeds of one cell trained together
        "data": "cell",   # optional: the seeds of a cell share one data set
    }

The points are ``product(grid) x zip rows x seeds``, in that order (the last grid key
varies fastest, seeds innermost). ``data`` says where a point's data set comes from:
``"run"`` (the default) as the config says (from each point's ``seed``, or from the
config's ``data_seed`` when it sets one: then every point shares it); ``"cell"``
gives the seeds of each cell one data set of their own, drawn from a ``data_seed``
made from the config's ``data_seed`` (else its ``seed``) and the cell's values
(:func:`cell_data_seed`: the same cell gets the same data whatever else the grid
holds), as a study that draws a fresh data set per grid cell and trains several
initialisations on it. A grid list names distinct values; zip lists are
read by position, so a value may repeat in one of them (``lr=[0.1, 0.1]`` with
``momentum=[0.9, 0.5]``) as long as no two rows are equal. Every key is optional:
``{"seeds": 5}`` alone runs the base config with five seeds.
"""

import ast
import copy
import hashlib
import itertools
import json
from dataclasses import dataclass

from ..config import apply_overrides, resolve
from ..errors import ConfigError, RelulabError, did_you_mean

__all__ = [
    "SPEC_KEYS",
    "Point",
    "validate_spec",
    "expand_sweep",
    "config_hash",
    "first_difference",
    "group_by_shape",
    "together_key",
    "cell_data_seed",
]

SPEC_KEYS = ("grid", "zip", "seeds", "success", "ensemble", "data")
DATA_MODES = ("run", "cell")
_SUCCESS_KEYS = ("key", "below", "above")


@dataclass(frozen=True)
class Point:
    """One run of a sweep.

    Attributes
    ----------
    index : int
        Position in the sweep (0-based); fixes the run folder for good.
    id : str
        Zero-padded index: the run folder is ``runs/<id>`` inside the sweep.
    overrides : dict
        Dotted key -> value of the grid and zip keys at this point.
    seed_index : int
        Which of the ``seeds`` repetitions this is.
    seed : int
        The run's seed: the config's ``seed`` (after the overrides) plus ``seed_index``.
    config : dict
        The point's resolved config.
    hash : str
        :func:`config_hash` of ``config``.
    """

    index: int
    id: str
    overrides: dict
    seed_index: int
    seed: int
    config: dict
    hash: str

    @property
    def run(self):
        """The run folder, relative to the sweep folder."""
        return f"runs/{self.id}"

    def label(self):
        """``model.width=20, data.d=5, seed 3`` (for messages)."""
        parts = [f"{k}={v!r}" for k, v in self.overrides.items()]
        return ", ".join(parts + [f"seed {self.seed}"])

    def to_json(self):
        return {
            "index": self.index,
            "id": self.id,
            "overrides": self.overrides,
            "seed_index": self.seed_index,
            "seed": self.seed,
            "run": self.run,
            "config_hash": self.hash,
        }


def _canonical(value):
    return json.dumps(value, sort_keys=True, allow_nan=True, separators=(",", ":"))


def config_hash(config):
    """Hash of a resolved config, ignoring its ``run`` section.

    ``run`` says where runs are stored and how they are displayed, which does not
    change results, so a sweep can be resumed with another ``--runs-dir``.
    """
    body = {k: v for k, v in config.items() if k != "run"}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()[:16]


def first_difference(old, new, prefix=""):
    """The first dotted key where two configs differ, as ``"key: old -> new"``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if key == "run" and not prefix:
                continue
            if _canonical(old.get(key)) != _canonical(new.get(key)):
                return first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
        return None
    return f"{prefix[:-1] or 'config'}: {old!r} -> {new!r}"


def _check_values(section, key, values, distinct=True):
    """The list of values of one key; ``distinct``: no value twice (grid keys)."""
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        raise ConfigError(
            f"sweep.{section} key {key!r} must be a dotted config key like 'model.width'"
        )
    if key.split(".")[0] == "sweep":
        raise ConfigError(f"sweep.{section} cannot vary the sweep itself ({key!r})")
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"sweep.{section}.{key} must be a list of values; got {values!r}")
    if not values:
        raise ConfigError(f"sweep.{section}.{key} must list at least one value")
    seen = set()
    for value in values:
        try:
            same = ast.literal_eval(repr(value)) == value
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            same = False
        if not same:
            raise ConfigError(
                f"sweep.{section}.{key}: value {value!r} is not a plain literal "
                "(number, string, bool, None, list or dict of them)"
            )
        text = _canonical(value)
        if distinct and text in seen:
            raise ConfigError(f"sweep.{section}.{key} lists {value!r} twice")
        seen.add(text)
    return list(values)


def _check_zip_rows(zipped):
    """Zip lists may repeat a value (a row is a position), but no row twice."""
    seen = {}
    for position, row in enumerate(zip(*zipped.values())):
        text = _canonical(row)
        if text in seen:
            cell = ", ".join(f"{k}={v!r}" for k, v in zip(zipped, row))
            raise ConfigError(f"sweep.zip rows {seen[text]} and {position} are the same ({cell})")
        seen[text] = position


def _flatten(table, prefix=""):
    """Nested dicts to dotted keys, as the override ``sweep.grid.model.width=[20,40]`` nests them.

    Lists are values and dicts are paths: ``{"model": {"width": [20]}}`` becomes
    ``{"model.width": [20]}``.
    """
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def validate_spec(spec):
    """Check a ``sweep`` section and return it normalised.

    Returns
    -------
    spec : dict
        ``{"grid": {key: [values]}, "zip": {key: [values]}, "seeds": int,
        "success": {"key": str, "below" or "above": float} or None, "data": "run" or
        "cell"}``, and ``"ensemble": int`` when given (most points of one cell a
        batchable algorithm trains together; :data:`core.sweep._execute.MAX_BATCH`
        otherwise).

    Raises
    ------
    ConfigError
        Unknown sweep key, a value that is not a non-empty list of literals, a
        value repeated in a ``grid`` list, a key both in ``grid`` and ``zip``,
        ``zip`` lists of different lengths or two equal ``zip`` rows, ``seeds`` not
        an int >= 1, ``ensemble`` not an int >= 1, ``data`` not one of
        :data:`DATA_MODES`, or a malformed ``success``.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"sweep must be a dict with keys {', '.join(SPEC_KEYS)}; got {spec!r}")
    for key in spec:
        if key not in SPEC_KEYS:
            raise ConfigError(
                f"unknown sweep key {key!r}; valid keys: {', '.join(SPEC_KEYS)}"
                + did_you_mean(key, SPEC_KEYS)
            )
    out = {}
    for section in ("grid", "zip"):
        table = spec.get(section) or {}
        if not isinstance(table, dict):
            raise ConfigError(
                f"sweep.{section} must be a dict of key -> list of values; got {table!r}"
            )
        out[section] = {
            key: _check_values(section, key, values, distinct=section == "grid")
            for key, values in _flatten(table).items()
        }
    both = sorted(set(out["grid"]) & set(out["zip"]))
    if both:
        raise ConfigError(f"sweep key {both[0]!r} is in both sweep.grid and sweep.zip")
    lengths = {key: len(values) for key, values in out["zip"].items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ConfigError(f"sweep.zip lists must have equal lengths; {listed}")
    _check_zip_rows(out["zip"])
    seeds = spec.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"sweep.seeds must be an int >= 1; got {seeds!r}")
    out["seeds"] = seeds
    out["success"] = _check_success(spec.get("success"))
    if "ensemble" in spec:
        ensemble = spec["ensemble"]
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
            raise ConfigError(
                "sweep.ensemble must be an int >= 1 (most seeds of a cell trained together); "
                f"got {ensemble!r}"
            )
        out["ensemble"] = ensemble
    data = spec.get("data", "run")
    if data not in DATA_MODES:
        raise ConfigError(
            f"sweep.data must be one of {', '.join(map(repr, DATA_MODES))} (where a point's "
            f"data set comes from); got {data!r}" + did_you_mean(str(data), DATA_MODES)
        )
    out["data"] = data
    return out


def cell_data_seed(base, cell):
    """The ``data_seed`` of a cell's points under ``sweep.data = "cell"``.

    Parameters
    ----------
    base : int
        The config's ``data_seed``, else its ``seed`` (before the seed index).
    cell : dict
        The cell's dotted keys and values.

    Returns
    -------
    int
        In ``[0, 2**63)``: a hash of ``base`` and the cell's keys and values (in key
        order), so a cell keeps its data when the grid around it changes.

    Examples
    --------
    >>> cell_data_seed(0, {"data.d": 4}) == cell_data_seed(0, {"data.d": 4})
    True
    >>> cell_data_seed(0, {"data.d": 4}) != cell_data_seed(0, {"data.d": 6})
    True
    """
    text = json.dumps([base, sorted(cell.items())], sort_keys=True)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def _check_success(success):
    if success is None:
        return None
    if not isinstance(success, dict) or not isinstance(success.get("key"), str):
        raise ConfigError(
            "sweep.success must be a dict like {'key': 'final_loss', "
            f"'below': 1e-3}}; got {success!r}"
        )
    for key in success:
        if key not in _SUCCESS_KEYS:
            raise ConfigError(
                f"unknown key {key!r} in sweep.success; valid keys: "
                f"{', '.join(_SUCCESS_KEYS)}" + did_you_mean(key, _SUCCESS_KEYS)
            )
    bounds = [k for k in ("below", "above") if k in success]
    if len(bounds) != 1:
        raise ConfigError(f"sweep.success needs exactly one of 'below' or 'above'; got {success!r}")
    bound = success[bounds[0]]
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise ConfigError(f"sweep.success.{bounds[0]} must be a number; got {bound!r}")
    return {"key": success["key"], bounds[0]: float(bound)}


def expand_sweep(config, registry):
    """Validate a config's sweep and resolve the config of every point.

    Point ``i`` is the base config (``config`` without its ``sweep`` section) with
    the point's dotted keys set as command-line overrides would set them
    (:func:`core.config.apply_overrides`), ``run.display`` set to ``"off"`` (the
    sweep has its own display) and ``seed`` increased by the seed index. Grid
    cells share their seeds, so cell ``(20, 5)`` seed 1 and cell ``(40, 5)`` seed 1
    see the same random streams. Every point is resolved here, before anything
    runs, so a bad key fails the whole sweep at once (a cell is resolved once: its
    other seeds' configs are copies with their own seed, as resolving gives).

    Parameters
    ----------
    config : dict
        A resolved config with a ``sweep`` section.
    registry : core.registry.Registry

    Returns
    -------
    spec : dict
        The normalised sweep (:func:`validate_spec`).
    points : list of Point

    Raises
    ------
    ConfigError, PluginError
        The sweep is malformed, or a point's config is invalid (the message names
        the point).
    """
    if "sweep" not in config:
        raise ConfigError("config has no 'sweep' section (a dict with grid, zip, seeds)")
    spec = validate_spec(config["sweep"])
    base = {k: copy.deepcopy(v) for k, v in config.items() if k != "sweep"}
    grid, zipped = spec["grid"], spec["zip"]
    zip_rows = list(zip(*zipped.values())) if zipped else [()]
    cells = [
        dict(zip(grid, values)) | dict(zip(zipped, row))
        for values in itertools.product(*grid.values())
        for row in zip_rows
    ]
    total = len(cells) * spec["seeds"]
    width = max(4, len(str(total - 1)))
    points = []
    for cell in cells:
        texts = [f"{key}={value!r}" for key, value in cell.items()]
        first = None  # the cell's first point: (its seed before the seed index, its config)
        for seed_index in range(spec["seeds"]):
            index = len(points)
            if first is None:
                where = f"sweep point {index} ({', '.join(texts) or 'base config'})"
                try:
                    raw = apply_overrides(base, texts + ["run.display='off'"])
                    seed = raw.get("seed", 0)
                    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                        raise ConfigError(f"seed must be an int >= 0; got {seed!r}")
                    raw["seed"] = seed + seed_index
                    if spec["data"] == "cell":
                        base_data = raw.get("data_seed")
                        raw["data_seed"] = cell_data_seed(
                            seed if base_data is None else base_data, cell
                        )
                    resolved = resolve(raw, registry)
                except RelulabError as exc:
                    raise type(exc)(f"{where}: {exc}") from None
                first = (seed, resolved)
            else:  # resolving depends on the seed only through the seed itself
                resolved = _with_seed(first[1], first[0] + seed_index)
            points.append(
                Point(
                    index,
                    f"{index:0{width}d}",
                    dict(cell),
                    seed_index,
                    resolved["seed"],
                    resolved,
                    config_hash(resolved),
                )
            )
    return spec, points


def _copy_plain(value):
    """A copy of resolved config data (dicts, lists, tuples of plain values)."""
    kind = type(value)
    if kind is dict:
        return {key: _copy_plain(item) for key, item in value.items()}
    if kind is list:
        return [_copy_plain(item) for item in value]
    if kind is tuple:
        return tuple(_copy_plain(item) for item in value)
    if isinstance(value, (dict, list, tuple)):
        return copy.deepcopy(value)
    return value


def _with_seed(resolved, seed):
    """The resolved config of another seed of the same cell: ``resolved`` with ``seed``.

    :func:`core.config.resolve` reads the seed only to check it (an int >= 0, which
    ``seed`` is) and to copy it, so this equals resolving the point's raw config, at
    a fraction of the cost (a sweep has many seeds per cell).
    """
    out = _copy_plain(resolved)
    out["seed"] = seed
    return out


def together_key(config, registry):
    """What a point must share with others to be trained together, or None.

    Points whose algorithm class sets ``batchable = True`` and whose resolved
    configs are equal but for the seed (same data, width, shapes and
    hyper-parameters) get the same key; any other point gets None.
    """
    cls = registry.get("algorithm", config["algorithm"]["name"])
    if not getattr(cls, "batchable", False):
        return None
    return _canonical({k: v for k, v in config.items() if k != "seed"})


def group_by_shape(points, registry):
    """Group the points that can be trained together (:func:`together_key`).

    Points of a batchable algorithm equal but for their seed form one group;
    every other point is a group of its own. The executors keep a group's points
    together (contiguous, up to the batch size), and a worker trains the points
    of a group that reach it in one batch as one ensemble
    (:meth:`core.components.Algorithm.step_together`).

    Parameters
    ----------
    points : list of Point
    registry : core.registry.Registry

    Returns
    -------
    groups : list of list of Point
        In order of first appearance.
    """
    return keyed_groups(points, registry)[0]


def keyed_groups(points, registry):
    """:func:`group_by_shape`'s groups and each point's :func:`together_key` by index
    (computed once: a sweep's driver tells its workers which points train together)."""
    groups, keys = {}, {}
    for point in points:
        key = keys[point.index] = together_key(point.config, registry)
        groups.setdefault(("single", point.index) if key is None else key, []).append(point)
    return list(groups.values()), keys
