"""core.analysis: indicators of a run and their files, figures, the saved problem, layering."""

import ast
import csv
import json
import math

import numpy as np
import pytest
from conftest import ROOT, toy_config
from tiny_runs import make_run, registry

import core.registry
from core import analysis
from core.components import Plot
from core.config import resolve
from core.errors import PluginError, RunStoreError
from core.hookspecs import hookimpl
from core.loop import build_problem
from core.registry import Registry
from core.store import Run
from core.sweep import run_sweep, summarize_sweep
from plugins import indicators

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPTS = {"runner", "plot", "postprocess", "bench"}


@pytest.fixture(scope="module")
def reg():
    return registry()


@pytest.fixture(autouse=True)
def only_builtin_postprocessing(monkeypatch, reg):
    """get_registry() is the tiny registry: the project's plots and indicators only."""
    monkeypatch.setattr(core.registry, "_REGISTRIES", {(): reg})
    monkeypatch.delenv("RELULAB_PLUGINS", raising=False)


def read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=float).reshape(-1, len(rows[0]))


# -- layering ------------------------------------------------------------------------
def imported_modules(path):
    """Top-level names of every module ``path`` imports, anywhere in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["core", "plugins"])
def test_no_library_module_imports_a_command_line_script(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    offenders = {str(f.relative_to(ROOT)): sorted(imported_modules(f) & SCRIPTS) for f in files}
    assert {f: s for f, s in offenders.items() if s} == {}


# -- the saved problem ---------------------------------------------------------------
def test_saved_problem_is_the_problem_the_run_was_trained_on(tmp_path, reg):
    run = make_run(tmp_path, test=True, scaling="ntk", k=2)
    live, _ = build_problem(run.config, reg, arrays=run.problem)
    saved = analysis.saved_problem(run)
    for name in ("X", "Y", "W0", "a0", "X_test", "Y_test"):
        np.testing.assert_array_equal(getattr(saved, name), getattr(live, name), err_msg=name)
    assert (saved.scaling, saved.loss, saved.bias, saved.seed) == ("ntk", "mse", True, 1)
    assert (live.scaling, live.loss, live.bias, live.seed) == ("ntk", "mse", True, 1)
    assert analysis.saved_problem(make_run(tmp_path / "plain", bias=False)).X_test is None
    assert not analysis.has_bias(make_run(tmp_path / "nobias", bias=False))


# -- indicators ----------------------------------------------------------------------
def test_compute_indicators_collects_prefixed_summary_and_per_snapshot_columns(tmp_path, reg):
    run = make_run(tmp_path)
    summary, columns = analysis.compute_indicators(run, reg)
    np.testing.assert_array_equal(columns["step"], run.snapshots.steps)
    assert all(len(v) == len(run.snapshots) for v in columns.values())
    assert summary["loss.status"] == "finished"
    assert summary["patterns.n_patterns"] == columns["patterns.n_patterns"][-1]
    assert summary["neuron_norms.neuron_norm_max"] == columns["neuron_norms.neuron_norm_max"][-1]
    W, a = run.snapshots["W"], run.snapshots["a"]
    for i in range(len(run.snapshots)):
        expected = indicators.ActivationPoints().per_snapshot(run, W[i], a[i])["kinks_inside"]
        assert columns["activation_points.kinks_inside"][i] == expected
    run5 = make_run(tmp_path / "d5", dim=5, bias=False)
    summary5, columns5 = analysis.compute_indicators(run5)  # the process registry
    assert not any(k.startswith("activation_points.") for k in [*summary5, *columns5])
    assert "distance_from_init.dist_W" in columns5 and "loss.train_loss" in columns5


def test_compute_indicators_of_named_indicators_gives_exactly_their_part(tmp_path, reg):
    run = make_run(tmp_path)
    full, full_columns = analysis.compute_indicators(run, reg)
    summary, columns = analysis.compute_indicators(run, reg, names={"loss", "patterns"})
    wanted = {k for k in full if k.split(".")[0] in ("loss", "patterns")}
    assert set(summary) == wanted and {k: full[k] for k in wanted} == summary
    assert set(columns) == {"step"} | {
        k for k in full_columns if k.startswith(("loss.", "patterns."))
    }
    assert analysis.compute_indicators(run, reg, names=())[0] == {}


def test_summary_values_are_plain_python_and_scalar_summary_keeps_table_cells(tmp_path, reg):
    summary, _ = analysis.compute_indicators(make_run(tmp_path), reg)
    assert all(v is None or type(v) in (bool, int, float, str) for v in summary.values())
    mixed = {"a": 1, "b": None, "c": "x", "d": [1, 2], "e": {"f": 1}, "g": 2.5}
    assert analysis.scalar_summary(mixed) == {"a": 1, "b": None, "c": "x", "g": 2.5}


def test_write_indicators_csv_reads_back_exactly_and_json_is_the_summary(tmp_path, reg):
    run = make_run(tmp_path, test=True)
    summary, columns, paths = analysis.write_indicators(run, reg)
    assert paths == [run.path / "indicators.csv", run.path / "indicators.json"]
    header, rows = read_csv(paths[0])
    assert header == list(columns) and header[0] == "step" and len(rows) == len(run.snapshots)
    for j, name in enumerate(header):
        np.testing.assert_array_equal(rows[:, j], columns[name], err_msg=name)
    assert json.loads(paths[1].read_text()) == summary
    assert not [p for p in run.path.iterdir() if p.name.startswith(".")]  # no temp files


def test_indicators_csv_writes_non_finite_floats_that_read_back():
    text = analysis.indicators_csv(
        {"step": np.array([0, 5]), "x.v": np.array([math.inf, math.nan])}
    )
    assert text == "step,x.v\n0,inf\n5,nan\n"


def test_json_safe_replaces_non_finite_floats_at_any_depth():
    value = {"a": math.nan, "b": [1.0, -math.inf, {"c": np.float64("nan")}], "d": "x"}
    safe = analysis.json_safe(value)
    assert safe == {"a": None, "b": [1.0, None, {"c": None}], "d": "x"}
    json.loads(json.dumps(safe), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))


@pytest.mark.parametrize("missing", ["problem.npz", "config.json"])
def test_an_incomplete_run_is_a_run_store_error(tmp_path, reg, missing):
    run = make_run(tmp_path)
    (run.path / missing).unlink()
    with pytest.raises(RunStoreError, match=f"incomplete run .*: no {missing}"):
        analysis.write_indicators(run, reg)
    with pytest.raises(RunStoreError, match=f"no {missing}"):
        analysis.draw_plots(run, reg)


# -- figures -------------------------------------------------------------------------
def test_draw_plots_returns_every_applicable_figure_and_the_skipped_names(tmp_path, reg):
    run = make_run(tmp_path, dim=1, bias=False)
    figures, skipped = analysis.draw_plots(run, reg)
    assert sorted(figures) == ["fit", "loss"] and sorted(skipped) == ["neurons", "trajectories"]
    figures, skipped = analysis.draw_plots(run, reg, only=["neurons", "loss", "loss"])
    assert list(figures) == ["loss"] and skipped == ["neurons"]
    with pytest.raises(PluginError, match="unknown plot 'los' in --only.*did you mean 'loss'"):
        analysis.draw_plots(run, reg, only=["los"])


class SecondLoss(Plot):
    """Draws a figure under a stem another plot uses."""

    name = "second_loss"

    def draw(self, run):
        from plugins.plots import new_figure

        return {"loss": new_figure()}


class Plugin:
    @hookimpl
    def relulab_plots():
        return [SecondLoss]


def test_two_plots_drawing_one_stem_is_a_plugin_error(tmp_path):
    reg = Registry(builtins=["plugins.plots"], entry_points=False, extra_plugins=[(Plugin, "test")])
    run = make_run(tmp_path)
    with pytest.raises(PluginError, match="plots 'loss' and 'second_loss' both draw 'loss'"):
        analysis.draw_plots(run, reg)


def test_save_figures_writes_pngs_of_the_figure_size_times_dpi(tmp_path, reg):
    run = make_run(tmp_path)
    figures, _ = analysis.draw_plots(run, reg, only=["loss", "fit"])
    paths = analysis.save_figures(figures, tmp_path / "out", dpi=40)
    assert paths == [tmp_path / "out" / "loss.png", tmp_path / "out" / "fit.png"]
    for path, fig in zip(paths, figures.values()):
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == tuple(round(40 * s) for s in fig.get_size_inches())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fit.png", "loss.png"]


# -- sweeps --------------------------------------------------------------------------
def test_sweep_rows_carry_the_indicators_of_each_run(tmp_path, reg):
    raw = toy_config(tmp_path / "runs", stoppers={"max_steps": {"steps": 8}})
    raw["sweep"] = {"grid": {"model.width": [3, 5]}, "seeds": 1}
    path = run_sweep(resolve(raw, reg), "", reg, jobs=0)
    rows, groups = summarize_sweep(path)  # the process registry: the tiny one
    for row in rows:
        summary, _ = analysis.compute_indicators(Run(path / "runs" / row["id"]), reg)
        expected = analysis.scalar_summary(summary)
        assert {k: row.get(k) for k in expected} == expected
        assert row["patterns.n_patterns"] >= 1
    assert [g["patterns.n_patterns_mean"] for g in groups] == [
        float(r["patterns.n_patterns"]) for r in rows
    ]
