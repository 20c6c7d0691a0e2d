"""``data_seed`` and ``sweep.data``: which runs share their data set."""

import numpy as np
import pytest
from conftest import toy_config

from core.config import resolve
from core.errors import ConfigError
from core.problem import build_problem
from core.store import load_run
from core.sweep import expand_sweep, group_by_shape, load_sweep, run_sweep, validate_spec
from core.sweep._spec import cell_data_seed


def _problem(tmp_path, registry, **top):
    config = resolve(toy_config(tmp_path) | top, registry)
    return build_problem(config, registry)[0]


def test_data_seed_is_absent_unless_set_and_checked(tmp_path, toy_registry):
    assert "data_seed" not in resolve(toy_config(tmp_path), toy_registry)
    assert resolve(toy_config(tmp_path) | {"data_seed": 5}, toy_registry)["data_seed"] == 5
    for bad in (-1, 2.5, True, "0"):
        with pytest.raises(ConfigError, match=r"data_seed must be an int >= 0.*got"):
            resolve(toy_config(tmp_path) | {"data_seed": bad}, toy_registry)


def test_runs_with_one_data_seed_share_the_data_not_the_initialisation(tmp_path, toy_registry):
    a = _problem(tmp_path, toy_registry, seed=1, data_seed=9)
    b = _problem(tmp_path, toy_registry, seed=2, data_seed=9)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y, b.Y)
    assert not np.array_equal(a.W0, b.W0)
    # without it the data come from the seed: the toy labels' noise differs
    c = _problem(tmp_path, toy_registry, seed=1)
    d = _problem(tmp_path, toy_registry, seed=2)
    assert not np.array_equal(c.Y, d.Y)
    # and the initialisation does not depend on data_seed
    np.testing.assert_array_equal(a.W0, c.W0)


def _sweep(tmp_path, registry, sweep, **top):
    raw = toy_config(tmp_path / "runs", stoppers={"max_steps": {"steps": 3}}) | top
    raw["sweep"] = sweep
    return resolve(raw, registry)


def test_sweep_data_cell_gives_each_cell_one_data_seed(tmp_path, toy_registry):
    sweep = {"grid": {"model.width": [4, 8], "data.n": [6, 7]}, "seeds": 3, "data": "cell"}
    _, points = expand_sweep(_sweep(tmp_path, toy_registry, sweep), toy_registry)
    by_cell = {}
    for point in points:
        by_cell.setdefault(tuple(point.overrides.items()), set()).add(point.config["data_seed"])
    assert len(by_cell) == 4 and all(len(seeds) == 1 for seeds in by_cell.values())
    assert len(set().union(*by_cell.values())) == 4  # distinct between cells
    # a cell keeps its data seed when the grid around it grows
    wider = dict(sweep, grid={"model.width": [4, 8, 16], "data.n": [5, 6, 7]})
    _, more = expand_sweep(_sweep(tmp_path, toy_registry, wider), toy_registry)
    for point in more:
        key = tuple(point.overrides.items())
        if key in by_cell:
            assert {point.config["data_seed"]} == by_cell[key]
    # from the config's data_seed when set, else its seed
    seed = points[0].config["seed"]
    assert points[0].config["data_seed"] == cell_data_seed(seed, points[0].overrides)
    _, based = expand_sweep(_sweep(tmp_path, toy_registry, sweep, data_seed=11), toy_registry)
    assert based[0].config["data_seed"] == cell_data_seed(11, based[0].overrides)


def test_sweep_data_run_leaves_the_configs_as_before(tmp_path, toy_registry):
    sweep = {"grid": {"model.width": [4, 8]}, "seeds": 2}
    spec, points = expand_sweep(_sweep(tmp_path, toy_registry, sweep), toy_registry)
    assert spec["data"] == "run"
    assert all("data_seed" not in point.config for point in points)
    _, shared = expand_sweep(_sweep(tmp_path, toy_registry, sweep, data_seed=4), toy_registry)
    assert {point.config["data_seed"] for point in shared} == {4}


def test_sweep_data_is_checked():
    with pytest.raises(ConfigError, match=r"sweep.data must be one of 'run', 'cell'.*'cel'"):
        validate_spec({"data": "cel"})


def test_a_cells_seeds_still_train_together(tmp_path, batchable_registry):
    registry = batchable_registry
    sweep = {"grid": {"model.width": [4, 8]}, "seeds": 3, "data": "cell"}
    config = _sweep(tmp_path, registry, sweep, algorithm={"name": "toy_batchable"})
    _, points = expand_sweep(config, registry)
    groups = group_by_shape(points, registry)
    assert [[p.index for p in g] for g in groups] == [[0, 1, 2], [3, 4, 5]]


def test_a_swept_cell_trains_its_seeds_on_one_data_set(tmp_path, toy_registry):
    sweep = {"grid": {"data.n": [6, 7]}, "seeds": 2, "data": "cell"}
    path = run_sweep(_sweep(tmp_path, toy_registry, sweep), "", toy_registry, jobs=0)
    runs = [load_run(path / entry["run"]) for entry in load_sweep(path)["points"]]
    problems = [run.problem for run in runs]
    np.testing.assert_array_equal(problems[0]["Y"], problems[1]["Y"])
    np.testing.assert_array_equal(problems[2]["Y"], problems[3]["Y"])
    assert not np.array_equal(problems[0]["W0"], problems[1]["W0"])
    assert runs[0].config["data_seed"] != runs[2].config["data_seed"]
