"""plot.py: the PNGs written for a run, --only, --show and one-line errors."""

import subprocess
import sys

import matplotlib.pyplot as plt
import pytest
from conftest import ROOT, toy_config
from tiny_runs import make_run, registry

import core.registry
import plot
from core.config import resolve
from core.sweep import run_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def only_builtin_postprocessing(monkeypatch):
    """In-process CLIs see the project's plots and indicators, not other installed ones."""
    monkeypatch.setattr(core.registry, "_REGISTRIES", {(): registry()})


def written(run):
    return sorted(p.name for p in (run.path / "plots").glob("*.png"))


def test_writes_every_applicable_plot_as_a_valid_png(tmp_path, capsys):
    run = make_run(tmp_path)
    assert plot.main([str(run.path)]) == 0
    names = ["fit.png", "loss.png", "neurons.png", "trajectories.png"]
    assert written(run) == names
    assert sorted(capsys.readouterr().out.split()) == [str(run.path / "plots" / n) for n in names]
    for name in names:
        assert (run.path / "plots" / name).read_bytes().startswith(PNG_SIGNATURE)
    assert not list((run.path / "plots").glob(".*"))  # no temp files left


def test_only_the_applicable_plots_for_d_5(tmp_path):
    run = make_run(tmp_path, dim=5, bias=False)
    assert plot.main(["--runs-dir", str(tmp_path)]) == 0  # RUN defaults to latest
    assert written(run) == ["loss.png"]


def test_only_restricts_and_reports_plots_that_do_not_apply(tmp_path, capsys):
    run = make_run(tmp_path, dim=1, bias=False)
    assert plot.main([str(run.path), "--only", "fit", "neurons"]) == 0
    assert written(run) == ["fit.png"]
    assert "'neurons' does not apply" in capsys.readouterr().err


def test_unknown_plot_name_is_a_one_line_error(tmp_path, capsys):
    run = make_run(tmp_path)
    assert plot.main([str(run.path), "--only", "los"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown plot 'los'") and "did you mean 'loss'" in err
    assert err.count("\n") == 1 and not (run.path / "plots").exists()


def test_show_hands_the_figures_to_pyplot_and_writes_nothing(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(len(plt.get_fignums())))
    try:
        assert plot.main([str(run.path), "--show", "--only", "loss", "fit"]) == 0
    finally:
        plt.close("all")
    assert shown == [2] and not (run.path / "plots").exists()


@pytest.mark.parametrize("args", [["{missing}"], ["--runs-dir", "{missing}"]])
def test_missing_run_exits_2_with_one_line_and_no_traceback(tmp_path, args):
    missing = str(tmp_path / "nope")
    argv = [a.format(missing=missing) for a in args]
    out = subprocess.run(
        [sys.executable, "plot.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.parametrize(
    "success, stems",
    [
        (None, ["sweep_final_loss.png"]),
        (
            {"key": "patterns.n_patterns", "above": 1.5},
            ["sweep_final_loss.png", "sweep_success.png"],
        ),
    ],
)
def test_a_sweep_folder_gets_its_sweep_figures(tmp_path, capsys, success, stems):
    raw = toy_config(tmp_path / "runs", stoppers={"max_steps": {"steps": 5}})
    raw["sweep"] = {"grid": {"model.width": [3, 5]}, "seeds": 1, "success": success}
    path = run_sweep(resolve(raw, registry()), "", registry(), jobs=0)
    assert plot.main(["latest", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert sorted(capsys.readouterr().out.split()) == [str(path / "plots" / s) for s in stems]
    assert all((path / "plots" / s).read_bytes().startswith(PNG_SIGNATURE) for s in stems)
