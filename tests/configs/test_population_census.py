"""The shipped sweep ``configs/population_census.py`` resolves, runs shortened, and yields
its census tables and figures; the run figures and indicators work on its runs."""

import json

from core import config as config_module
from core.analysis import compute_indicators, draw_plots
from core.registry import Registry
from core.store import Run
from core.sweep import analyse_sweep, expand_sweep, plot_sweep, run_sweep, summarize_sweep
from core.sweep._spec import group_by_shape


def _load(tmp_path, *overrides):
    registry = Registry(entry_points=False, plugin_modules=())
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "population_census.py",
        [f"run.runs_dir={tmp_path}", "run.display=off", *overrides],
        registry,
    )
    return config, source, registry


def test_census_declares_the_documented_sweep(tmp_path):
    config, _, registry = _load(tmp_path)
    _, points = expand_sweep(config, registry)
    assert len(points) == 15 * 40
    ks = sorted({p.config["data"]["k"] for p in points})
    assert ks == list(range(6, 21))
    assert all(p.config["model"]["width"] == p.config["data"]["k"] for p in points)
    assert config["algorithm"]["tol"] == 1e-12 and config["algorithm"]["lr"] is None
    assert config["init"]["mode"] == "fan_in"  # W_ij ~ N(0, 1 / k) on d = k inputs
    # the seeds of one k train together (ensembles of the batchable algorithm)
    assert sorted(len(g) for g in group_by_shape(points, registry)) == [40] * 15


def test_census_shortened_classifies_every_run(tmp_path):
    config, source, registry = _load(
        tmp_path, "sweep.seeds=6", "sweep.zip={'data.k': [6, 7], 'model.width': [6, 7]}"
    )
    path = run_sweep(config, source, registry, jobs=0)
    rows, _ = summarize_sweep(path, registry)
    assert [r["status"] for r in rows] == ["finished"] * 12
    assert all(r["population.grad_norm"] <= 1e-12 for r in rows)
    written = {p.name for p in analyse_sweep(path, registry)}
    assert {"census.json", "census.csv"} <= written
    census = json.loads((path / "census.json").read_text())
    cells = {c["k"]: c for c in census["cells"]}
    assert sorted(cells) == [6, 7]
    for k, cell in cells.items():
        assert cell["runs"] == 6 and cell["converged"] == 6 and cell["n"] == k
        assert cell["global"] + cell["non_global_minima"] + cell["saddles"] == 6
        assert sum(p["multiplicity"] for p in cell["points"]) == 6
        for point in cell["points"]:
            assert point["grad_norm"] < 1e-8 and point["reconstruction_error"] < 1e-6
            if point["kind"] == "global":
                assert point["loss"] < 1e-12 and abs(point["norm_sum"] - k) < 1e-9
            else:
                assert point["loss"] > 1e-6
    # every run's global flag from the indicator agrees with the census
    for row in rows:
        k = Run(path / "runs" / row["id"]).problem["extra.V"].shape[1]
        global_ids = [
            run_id for p in cells[k]["points"] if p["kind"] == "global" for run_id in p["runs"]
        ]
        assert (row["id"] in global_ids) == bool(row["population.global"])
    csv_lines = (path / "census.csv").read_text().splitlines()
    assert csv_lines[0].startswith("cell,k,n,d,kind,form,multiplicity,loss")
    assert len(csv_lines) == 1 + sum(len(c["points"]) for c in census["cells"])
    figures = plot_sweep(path, registry=registry)
    assert {"census_non_global_fraction", "census_distinct_minima"} <= set(figures)
    run = Run(path / "runs" / rows[0]["id"])
    figures, skipped = draw_plots(run, registry)
    assert "loss" in figures and "neurons" in skipped  # the neuron plane needs d = 2
    summary, columns = compute_indicators(run, registry)
    assert summary["population.grad_norm"] <= 1e-12
    assert summary["population.loss"] == run.scalars["loss"][-1]  # the run's loss is F
    assert columns["population.loss"][0] == run.scalars["loss"][0]
