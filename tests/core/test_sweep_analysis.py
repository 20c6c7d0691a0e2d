"""Sweep analyses: the plugin kind, where its tables and figures land, the built-in ``curves``."""

import csv

import numpy as np
import pytest
from conftest import CORE_PLUGINS
from test_sweep import sweep_config

from core.components import SweepAnalysis
from core.errors import PluginError
from core.hookspecs import hookimpl
from core.registry import Registry
from core.sweep import SweepResults, analyse_sweep, plot_sweep, run_sweep
from plugins.sweep_analyses import Curves, curve_stats


class FinalLossTable(SweepAnalysis):
    """Final loss per point, and the number of cells."""

    name = "final_loss_table"

    def applies(self, sweep):
        return sweep.algorithm == "toy_sgd"

    def tables(self, sweep):
        rows = [{"point": r["point"], "final_loss": r["final_loss"]} for r in sweep.rows]
        return {"final.csv": rows, "cells.json": {"cells": len(sweep.cells())}}


class NeverApplies(SweepAnalysis):
    name = "never"

    def applies(self, sweep):
        return False

    def tables(self, sweep):
        raise AssertionError("called although it does not apply")


class BadName(SweepAnalysis):
    name = "bad_name"

    def tables(self, sweep):
        return {"summary.csv": []}


def _registry(*classes):
    class Plugin:
        @staticmethod
        @hookimpl
        def relulab_sweep_analyses():
            return list(classes)

    return Registry(
        builtins=CORE_PLUGINS + ["toy_plugins", "plugins.sweep_analyses"],
        entry_points=False,
        extra_plugins=[(Plugin, "test_analyses")],
    )


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    registry = _registry()
    tmp_path = tmp_path_factory.mktemp("analysis")
    sweep = {"grid": {"model.width": [4, 8]}, "seeds": 3}
    config = sweep_config(tmp_path, registry, sweep, steps=20)
    config["loggers"]["scalars"] = {"every": 5, "metrics": {}}
    return run_sweep(config, "", registry, jobs=0)


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_results_group_finished_runs_by_cell(small_sweep):
    results = SweepResults(small_sweep)
    cells = results.cells()
    assert [values for values, _ in cells] == [{"model.width": 4}, {"model.width": 8}]
    assert [len(runs) for _, runs in cells] == [3, 3]
    assert results.label(cells[1][0]) == "model.width=8"
    assert len(results.rows) == 6 and len(results.groups) == 2


def test_tables_are_written_only_by_analyses_that_apply(small_sweep):
    registry = _registry(FinalLossTable, NeverApplies)
    paths = analyse_sweep(small_sweep, registry)
    assert {p.name for p in paths} == {"final.csv", "cells.json", "curves.csv"}
    rows = _read(small_sweep / "final.csv")
    expected = SweepResults(small_sweep).rows
    assert [float(r["final_loss"]) for r in rows] == [r["final_loss"] for r in expected]
    assert (small_sweep / "cells.json").read_text().strip() == '{\n  "cells": 2\n}'


def test_a_reserved_or_odd_table_name_is_refused(small_sweep):
    with pytest.raises(PluginError, match="'bad_name' returned the table name 'summary.csv'"):
        analyse_sweep(small_sweep, _registry(BadName))


def test_curves_are_the_mean_and_range_over_seeds_of_each_cell(small_sweep):
    results = SweepResults(small_sweep)
    (_, runs4), (_, runs8) = results.cells()
    losses = np.array([r.scalars["loss"] for r in runs4])
    steps, mean, low, high, count = curve_stats(runs4, "loss")
    np.testing.assert_array_equal(steps, runs4[0].scalars["step"])
    np.testing.assert_allclose(mean, losses.mean(axis=0), rtol=1e-15)
    np.testing.assert_array_equal(low, losses.min(axis=0))
    np.testing.assert_array_equal(high, losses.max(axis=0))
    assert set(count) == {3}
    figures = plot_sweep(small_sweep, registry=_registry())
    ax = figures["sweep_curves_loss"].axes[0]
    assert ax.get_yscale() == "log"  # the loss spans more than two decades: geometric mean
    geomean = np.exp(np.log(losses).mean(axis=0))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), geomean, rtol=1e-12)
    assert [line.get_label() for line in ax.lines] == ["model.width=4 (3)", "model.width=8 (3)"]


def test_curve_stats_align_runs_that_stopped_at_different_steps():
    class Run:
        def __init__(self, steps, values):
            self.scalars = {"step": np.array(steps), "loss": np.array(values)}

    steps, mean, low, high, count = curve_stats(
        [Run([0, 5, 10], [4.0, 2.0, np.nan]), Run([0, 5], [2.0, 1.0])], "loss"
    )
    assert steps.tolist() == [0, 5, 10]
    assert mean[:2].tolist() == [3.0, 1.5] and np.isnan(mean[2])
    assert count.tolist() == [2, 2, 0]


def test_curves_on_a_log_axis_draw_the_geometric_mean():
    class Run:
        def __init__(self, values):
            self.scalars = {"step": np.arange(len(values)), "loss": np.array(values)}

    runs = [Run([1.0, 1e-2, 1e-6]), Run([1.0, 1e-4, 1e-10])]
    _, geomean, *_ = curve_stats(runs, "loss", geometric=True)
    np.testing.assert_allclose(geomean, [1.0, 1e-3, 1e-8], rtol=1e-12)
    _, mean, *_ = curve_stats(runs, "loss")
    assert mean[2] > 10 * geomean[2]  # the arithmetic mean follows the largest run
    zero = curve_stats([Run([1.0, 0.0]), Run([1.0, 1.0])], "loss", geometric=True)[1]
    assert zero[0] == 1.0 and np.isnan(zero[1])

    class Sweep:
        def cells(self):
            return [({"seed": 0}, runs)]

        def label(self, values):
            return "cell"

    figures = Curves().draw(Sweep())
    ax = figures["sweep_curves_loss"].axes[0]
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), geomean, rtol=1e-12)
    row = Curves().tables(Sweep())["curves.csv"][2]
    assert row["mean"] == mean[2] and row["geomean"] == geomean[2]
