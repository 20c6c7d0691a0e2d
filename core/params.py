"""Plugin parameters declared as data, and the one validator that checks them.

A plugin lists its parameters as :class:`Param` objects (name, type, default, one-line
doc and constraints). The config loader fills defaults and validates values with
:func:`validate_params`; ``runner.py --help-plugin NAME`` prints the same declarations.

Examples
--------
>>> p = Param("lr", float, 0.1, "learning rate", low=0, low_open=True)
>>> validate_params("algorithm", {"lr": 1}, [p])
{'lr': 1.0}
"""

import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, did_you_mean

__all__ = ["Param", "UnitPair", "validate_params", "describe_type"]

_MISSING = object()


@dataclass(frozen=True)
class Param:
    """One declared parameter of a plugin.

    Parameters
    ----------
    name : str
        Key in the plugin's config section.
    type : type or tuple of types
        Allowed Python type(s): ``int``, ``float`` (ints are accepted and converted),
        ``bool``, ``str``, ``list``, ``dict``. ``None`` is allowed only when
        ``nullable`` is true.
    default : object
        Value used when the config does not set the key.
    doc : str
        One line shown by ``--help-plugin``.
    choices : tuple, optional
        Allowed values (for strings, typically).
    low, high : float, optional
        Bounds for numbers; closed unless ``low_open`` / ``high_open``.
    item_type : type, optional
        For lists: the type of every item (``float`` accepts ints).
    nullable : bool
        Whether ``None`` is an allowed value.
    plugin_kind : str, optional
        The value names plugins of this kind (:data:`core.kinds.KINDS`): a ``str``
        parameter one name, a ``list`` parameter several, a ``dict`` parameter
        ``{name: parameters}``. The config resolver checks the names against the
        registry and, for a dict (or a list, which becomes a dict), validates each
        plugin's parameters and fills its defaults.
    options_of : str, optional
        A ``dict`` parameter holding the parameters of the plugin named by the
        parameter ``options_of`` (a ``plugin_kind`` one): validated against that
        plugin's declarations, defaults filled, by the config resolver.
    resume_safe : bool
        Whether ``--resume`` may change the value (a learning rate, say): only
        parameters that cannot change the problem or the meaning of the saved
        state may say so.
    """

    name: str
    type: Any
    default: Any
    doc: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    item_type: Any = None
    nullable: bool = False
    plugin_kind: str | None = None
    options_of: str | None = None
    resume_safe: bool = False

    def allowed(self):
        """Describe the allowed values in words, for error messages and help."""
        if self.choices is not None:
            text = "one of {" + ", ".join(repr(c) for c in self.choices) + "}"
        else:
            text = describe_type(self.type, self.item_type)
            if self.low is not None or self.high is not None:
                lo = "-inf" if self.low is None else repr(self.low)
                hi = "inf" if self.high is None else repr(self.high)
                left = "(" if self.low_open or self.low is None else "["
                right = ")" if self.high_open or self.high is None else "]"
                text += f" in {left}{lo}, {hi}{right}"
        if self.nullable:
            text += " or None"
        return text

    def check(self, owner, value):
        """Return ``value`` converted to the declared type, or raise ConfigError."""
        if value is None and self.nullable:
            return None
        given = value

        def bad():  # the message is built only when it is raised (a sweep checks thousands)
            return ConfigError(f"{owner}.{self.name} must be {self.allowed()}; got {given!r}")

        value = _coerce(value, self.type, self.item_type, bad)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{owner}.{self.name} must be {self.allowed()}; got {value!r}"
                + did_you_mean(value, self.choices)
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                raise bad()
            if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
                raise bad()
            if self.high is not None and (
                value > self.high or (self.high_open and value == self.high)
            ):
                raise bad()
        return value


def describe_type(typ, item_type=None):
    """Words for a declared type: ``'a float'``, ``'an int'``, ``'a list of int'``..."""
    types = typ if isinstance(typ, tuple) else (typ,)
    names = []
    for t in types:
        name = getattr(t, "__name__", str(t))
        if t is list and item_type is not None:
            name = f"list of {getattr(item_type, '__name__', item_type)}"
        names.append(name)
    text = " or ".join(names)
    return ("an " if text[0] in "aeiou" else "a ") + text


def _coerce(value, typ, item_type, bad):
    """``value`` as the declared type; ``bad()`` is the error raised when it is not one."""
    types = typ if isinstance(typ, tuple) else (typ,)
    # bool is an int subclass: accept it only where bool is declared.
    if isinstance(value, bool):
        if bool in types:
            return value
        raise bad()
    for t in types:
        if t is float and isinstance(value, (int, float)):
            return float(value)
        if t is list and isinstance(value, (list, tuple)):
            items = list(value)
            if item_type is not None:
                items = [_coerce(v, item_type, None, bad) for v in items]
            return items
        if t is not bool and t is not float and isinstance(value, t):
            return value
    raise bad()


@dataclass(frozen=True)
class UnitPair(Param):
    """A list of exactly two floats in [0, 1) (Adam's and AdamW's betas).

    Examples
    --------
    >>> UnitPair("betas", list, [0.9, 0.999], "moment coefficients", item_type=float).check(
    ...     "algorithm", [0.9, 1.0]
    ... )
    Traceback (most recent call last):
    ...
    core.errors.ConfigError: algorithm.betas must be a list of two floats in [0, 1); got [0.9, 1.0]
    """

    def allowed(self):
        return "a list of two floats in [0, 1)"

    def check(self, owner, value):
        value = super().check(owner, value)
        if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
            raise ConfigError(f"{owner}.{self.name} must be {self.allowed()}; got {value!r}")
        return value


def validate_params(owner, values, params, *, allow_extra=()):
    """Validate a config section against declared parameters and fill defaults.

    Parameters
    ----------
    owner : str
        Dotted name of the section, used in messages (``"algorithm"``).
    values : dict
        The section as written in the config (without its ``name`` key).
    params : sequence of Param
        The declarations.
    allow_extra : iterable of str
        Keys that are accepted and passed through unchecked (e.g. ``name``).

    Returns
    -------
    resolved : dict
        Every declared parameter, in declaration order, with defaults filled,
        followed by the ``allow_extra`` keys that were present.

    Raises
    ------
    ConfigError
        On an unknown key (naming the valid keys and the closest one) or a value
        of the wrong type or out of range (naming the key, the value and what is
        allowed).
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{owner} must be a dict of parameters; got {values!r}")
    by_name = {p.name: p for p in params}
    allow_extra = tuple(allow_extra)
    for key in values:
        if key not in by_name and key not in allow_extra:
            valid = sorted(by_name)
            raise ConfigError(
                f"unknown key {key!r} in {owner}; valid keys: "
                + (", ".join(valid) if valid else "(none)")
                + did_you_mean(key, valid)
            )
    resolved = {}
    for p in params:
        resolved[p.name] = p.check(owner, values.get(p.name, p.default))
    for key in allow_extra:
        if key in values:
            resolved[key] = values[key]
    return resolved
