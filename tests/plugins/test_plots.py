"""Plot plugins: which apply to which run, and that they draw what the run holds."""

import io

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure
from tiny_runs import make_run

from core import model
from plugins import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = [plots.LossCurve, plots.Neurons, plots.Trajectories, plots.Fit]


def applicable(run):
    return sorted(cls.name for cls in PLOTS if cls().applies(run))


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, ["fit", "loss", "neurons", "trajectories"]),  # 1-D inputs with a bias
        ({"dim": 5, "bias": False}, ["loss"]),
        ({"dim": 4, "bias": True}, ["loss"]),  # d = 5 counting the bias
        ({"dim": 1, "bias": False}, ["fit", "loss"]),
        ({"dim": 2, "bias": False}, ["loss", "neurons", "trajectories"]),
        ({"k": 2}, ["fit", "loss"]),  # no single sign per neuron
        ({"steps": 0}, ["fit", "loss", "neurons"]),  # one snapshot: no trajectory
    ],
)
def test_applies_follows_what_the_run_holds(tmp_path, options, expected):
    assert applicable(make_run(tmp_path, **options)) == expected


@pytest.mark.parametrize("options", [{}, {"k": 2, "test": True}, {"dim": 5, "bias": False}])
def test_every_applicable_plot_draws_png_figures_named_after_it(tmp_path, options):
    run = make_run(tmp_path, **options)
    for cls in PLOTS:
        if not cls().applies(run):
            continue
        figures = cls().draw(run)
        assert list(figures) == [cls.name]
        buffer = io.BytesIO()
        figures[cls.name].savefig(buffer, format="png", dpi=40)
        assert isinstance(figures[cls.name], Figure)
        assert buffer.getvalue().startswith(PNG_SIGNATURE)


def test_loss_curve_is_the_logged_loss_on_a_log_scale(tmp_path):
    run = make_run(tmp_path, test=True)
    ax = plots.LossCurve().draw(run)["loss"].axes[0]
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"train", "test"}
    np.testing.assert_array_equal(lines["train"].get_xdata(), run.scalars["step"])
    np.testing.assert_array_equal(lines["train"].get_ydata(), run.scalars["loss"])
    np.testing.assert_array_equal(lines["test"].get_ydata(), run.scalars["test_loss"])


def test_neurons_are_the_final_and_initial_columns_of_W_split_by_sign(tmp_path):
    run = make_run(tmp_path, width=8)
    ax = plots.Neurons().draw(run)["neurons"].axes[0]
    init_pos, init_neg, final_pos, final_neg = ax.collections
    final = run.snapshots.at(-1)
    for (W, a), pos, neg in (
        ((run.problem["W0"], run.problem["a0"]), init_pos, init_neg),
        ((final["W"], final["a"]), final_pos, final_neg),
    ):
        np.testing.assert_array_equal(pos.get_offsets(), W[:, a >= 0].T)
        np.testing.assert_array_equal(neg.get_offsets(), W[:, a < 0].T)
    # marker area grows with |a_r|
    sizes, a = final_pos.get_sizes(), final["a"][final["a"] >= 0]
    assert np.all(np.diff(sizes[np.argsort(a)]) >= 0)
    assert init_pos.get_alpha() < final_pos.get_alpha()


def test_trajectories_join_consecutive_snapshots_coloured_by_sign(tmp_path):
    run = make_run(tmp_path, width=3, steps=20, every=10)
    ax = plots.Trajectories().draw(run)["trajectories"].axes[0]
    (paths,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    W, a = run.snapshots["W"], run.snapshots["a"]  # (S, 2, m), (S, m)
    S, _, m = W.shape
    segments = paths.get_segments()
    assert len(segments) == m * (S - 1)
    for r in range(m):
        for s in range(S - 1):
            np.testing.assert_array_equal(segments[r * (S - 1) + s], [W[s, :, r], W[s + 1, :, r]])
    colours = paths.get_colors()
    expected = [
        plots.POSITIVE if a[s + 1, r] >= 0 else plots.NEGATIVE
        for r in range(m)
        for s in range(S - 1)
    ]
    np.testing.assert_allclose(colours[:, :3], to_rgba_array(expected)[:, :3])


@pytest.mark.parametrize("bias", [True, False])
def test_fit_is_core_forward_with_the_run_scaling_at_first_and_last_snapshot(tmp_path, bias):
    run = make_run(tmp_path, bias=bias, scaling="ntk")
    ax = plots.Fit().draw(run)["fit"].axes[0]
    curves = [line for line in ax.get_lines() if line.get_label().startswith("$f$")]
    assert [c.get_label() for c in curves] == ["$f$ at step 0", "$f$ at step 30"]
    x = run.problem["X"][:, 0]
    grid = curves[0].get_xdata()
    assert grid.min() < x.min() and grid.max() > x.max() and len(grid) == plots.Fit.n_grid
    G = np.column_stack([grid, np.ones_like(grid)]) if bias else grid[:, None]
    for curve, i in zip(curves, (0, -1)):
        W, a = run.snapshots["W"][i], run.snapshots["a"][i]
        np.testing.assert_allclose(curve.get_ydata(), model.forward(G, W, a, "ntk"))
        assert not np.allclose(curve.get_ydata(), model.forward(G, W, a, "standard"))
    (data,) = [c for c in ax.collections if c.get_label() == "data"]
    np.testing.assert_array_equal(data.get_offsets(), np.column_stack([x, run.problem["Y"]]))


def test_fit_draws_every_output(tmp_path):
    run = make_run(tmp_path, k=2, test=True)
    ax = plots.Fit().draw(run)["fit"].axes[0]
    assert len([c for c in ax.collections if "data" in c.get_label()]) == 4  # train/test x 2
    assert len(ax.get_lines()) == 4  # 2 snapshots x 2 outputs


@pytest.mark.parametrize("plot", [plots.Neurons, plots.Trajectories])
@pytest.mark.parametrize(
    "options, labels",
    [({}, ("input weight $w$", "bias $b$")), ({"dim": 2, "bias": False}, ("$w_1$", "$w_2$"))],
)
def test_the_neuron_plane_is_labelled_by_whether_the_run_has_a_bias(
    tmp_path, plot, options, labels
):
    ax = plot().draw(make_run(tmp_path, **options))[plot.name].axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == labels
