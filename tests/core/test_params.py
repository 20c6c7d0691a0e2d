"""Declared parameters and their validator."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from core.params import Param, validate_params

PARAMS = (
    Param("lr", float, 0.1, "learning rate", low=0, low_open=True),
    Param("steps", int, 10, "steps", low=0, high=100),
    Param("mode", str, "a", "mode", choices=("a", "b")),
    Param("flag", bool, False, "flag"),
    Param("sizes", list, [1], "sizes", item_type=int),
    Param("cap", float, None, "optional cap", nullable=True),
)


def test_defaults_and_conversion():
    out = validate_params("alg", {"lr": 1, "sizes": (2, 3)}, PARAMS)
    assert out == {"lr": 1.0, "steps": 10, "mode": "a", "flag": False, "sizes": [2, 3], "cap": None}
    assert isinstance(out["lr"], float)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lr": 0}, "alg.lr must be a float in (0, inf); got 0"),
        ({"steps": 101}, "alg.steps must be an int in [0, 100]; got 101"),
        ({"steps": True}, "alg.steps must be an int in [0, 100]; got True"),
        ({"mode": "c"}, "alg.mode must be one of {'a', 'b'}; got 'c'"),
        ({"flag": 1}, "alg.flag must be a bool; got 1"),
        ({"sizes": [1, "x"]}, "alg.sizes must be a list of int; got [1, 'x']"),
        ({"lr": float("nan")}, "alg.lr must be a float in (0, inf); got nan"),
        ({"cap": "x"}, "alg.cap must be a float or None; got 'x'"),
        (
            {"lrr": 1},
            "unknown key 'lrr' in alg; valid keys: cap, flag, lr, mode, sizes, steps; "
            "did you mean 'lr'?",
        ),
    ],
)
def test_errors(values, message):
    with pytest.raises(ConfigError) as info:
        validate_params("alg", values, PARAMS)
    assert str(info.value) == message


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text() | st.none())
def test_any_value_is_accepted_in_range_or_rejected_clearly(value):
    try:
        out = validate_params("alg", {"lr": value}, PARAMS)["lr"]
    except ConfigError as exc:
        assert str(exc).startswith("alg.lr must be a float in (0, inf)")
    else:
        assert isinstance(out, float) and out > 0 and not math.isnan(out)
