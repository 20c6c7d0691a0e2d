"""The phase-transition figure: success fraction as filled contours with the diagonal."""

import numpy as np
from matplotlib.figure import Figure

from core.sweep._plot import _contour, _is_axis


def test_contour_levels_data_and_diagonal():
    ns, ds = [10, 20, 30, 40], [10, 20]
    dim_n = ("data.n", ["data.n"], [{"data.n": n} for n in ns])
    dim_d = ("data.d", ["data.d"], [{"data.d": d} for d in ds])
    assert _is_axis(dim_n) and _is_axis(dim_d)
    assert not _is_axis(("a / b", ["a", "b"], [{"a": 1, "b": 2}, {"a": 2, "b": 3}]))

    def group_at(pn, pd):  # recovered when n >= 2 d
        return {"success": float(pn["data.n"] >= 2 * pd["data.d"])}

    fig = _contour(Figure, dim_n, dim_d, "recovery", "", group_at)
    ax = fig.axes[0]
    (filled,) = [c for c in ax.collections if hasattr(c, "levels")] or [None]
    if filled is None:  # matplotlib < 3.8 keeps the contour set elsewhere
        filled = next(a for a in fig.axes[0].get_children() if hasattr(a, "levels"))
    np.testing.assert_allclose(filled.levels, np.linspace(0, 1, 11))
    (diagonal,) = ax.get_lines()
    np.testing.assert_array_equal(diagonal.get_xdata(), [10, 20])
    np.testing.assert_array_equal(diagonal.get_ydata(), [10, 20])
    assert ax.get_xlabel() == "data.d" and ax.get_ylabel() == "data.n"
