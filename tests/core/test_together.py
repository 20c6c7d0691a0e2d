"""Runs trained together: the lockstep loop, batchable algorithms, ensembles in sweeps.

``toy_ensemble`` (tests/toy_plugins.py) is full-batch heavy-ball GD whose
``step_together`` is one program on stacked (R, d, m) arrays.
"""

import numpy as np
import pytest
from conftest import toy_config
from toy_plugins import ToyEnsemble

from core.config import resolve
from core.errors import ConfigError
from core.loop import execute, prepare_resume, prepare_run, start_run
from core.store import Run
from core.sweep import group_by_shape, run_sweep, summarize_sweep
from core.sweep._spec import expand_sweep

SEEDS = (3, 4, 5, 6)


def _config(tmp_path, registry, seed, steps=60, algorithm=None, **sections):
    sections = {
        "stoppers": {"max_steps": {"steps": steps}},
        "savers": {"periodic": {"every_steps": 10}},
        **sections,
    }
    raw = toy_config(
        tmp_path / "runs",
        seed=seed,
        algorithm={"name": "toy_ensemble", **(algorithm or {})},
        **sections,
    )
    return resolve(raw, registry)


def _together(tmp_path, registry, seeds=SEEDS, **kwargs):
    executions = [
        prepare_run(_config(tmp_path, registry, s, **kwargs), "", registry) for s in seeds
    ]
    ToyEnsemble.calls.clear()
    statuses = execute(executions)
    return [Run(ex.path) for ex in executions], statuses, list(ToyEnsemble.calls)


def _alone(tmp_path, registry, seeds=SEEDS, **kwargs):
    return [start_run(_config(tmp_path, registry, s, **kwargs), "", registry) for s in seeds]


def test_batched_step_equals_one_step_per_member(tmp_path, toy_registry):
    batched = [
        prepare_run(_config(tmp_path, toy_registry, s), "", toy_registry).algorithm for s in SEEDS
    ]
    single = [
        prepare_run(_config(tmp_path, toy_registry, s), "", toy_registry).algorithm for s in SEEDS
    ]
    for _ in range(5):
        ToyEnsemble.step_together(batched)
        for alg in single:
            alg.step()
    for b, s in zip(batched, single):
        np.testing.assert_allclose(b.W, s.W, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b.a, s.a, rtol=1e-12, atol=1e-14)


def test_ensemble_equals_runs_one_by_one_and_drops_members_that_stop(tmp_path, toy_registry):
    # a loss threshold between the members' losses: they stop at different steps
    probe = _alone(tmp_path / "probe", toy_registry, steps=200)
    threshold = float(np.median([run.scalars["loss"][40] for run in probe]))
    stoppers = {"max_steps": {"steps": 200}, "loss_threshold": {"value": threshold}}
    alone = _alone(tmp_path / "alone", toy_registry, stoppers=stoppers)
    together, statuses, calls = _together(tmp_path / "together", toy_registry, stoppers=stoppers)
    steps = [run.meta["steps"] for run in alone]
    assert len(set(steps)) > 1  # the members really stop apart
    assert statuses == ["finished"] * len(SEEDS)
    assert [run.meta["steps"] for run in together] == steps
    assert [run.meta["reason"] for run in together] == [run.meta["reason"] for run in alone]
    # one call per step while two or more members go on, shrinking as they stop
    assert calls[0] == len(SEEDS) and calls == sorted(calls, reverse=True)
    assert sum(calls) + (max(steps) - len(calls)) == sum(steps)
    for a, t in zip(alone, together):
        np.testing.assert_allclose(t.final_state()["W"], a.final_state()["W"], rtol=1e-10)
        np.testing.assert_allclose(t.scalars["loss"], a.scalars["loss"], rtol=1e-10)


def test_a_member_that_diverges_is_dropped_and_the_others_finish(tmp_path, toy_registry):
    runs, statuses, calls = _together(
        tmp_path, toy_registry, seeds=(3, 4, 5), steps=20, algorithm={"nan_seed": 4}
    )
    assert statuses == ["finished", "diverged", "finished"]
    assert runs[1].meta["steps"] == 3 and np.isnan(runs[1].scalars["loss"][-1])
    assert [run.meta["steps"] for run in (runs[0], runs[2])] == [20, 20]
    assert calls == [3] * 3 + [2] * 17


def test_interrupted_ensemble_resumes_to_the_uninterrupted_result(tmp_path, toy_registry):
    reference, _, _ = _together(tmp_path / "ref", toy_registry, steps=40)
    runs, statuses, _ = _together(
        tmp_path / "cut", toy_registry, steps=40, algorithm={"interrupt_at": 15}
    )
    assert statuses == ["interrupted"] * len(SEEDS)
    assert {run.meta["steps"] for run in runs} == {15}
    statuses = execute([prepare_resume(run.path, toy_registry) for run in runs])
    assert statuses == ["finished"] * len(SEEDS)
    for ref, run in zip(reference, runs):
        resumed = Run(run.path)
        assert resumed.meta["steps"] == 40
        np.testing.assert_array_equal(resumed.final_state()["W"], ref.final_state()["W"])
        np.testing.assert_array_equal(resumed.scalars["step"], np.arange(41))


@pytest.mark.parametrize("fails", [False, True])
def test_start_together_comes_once_before_any_loss_and_its_failure_is_not_the_members(
    tmp_path, toy_registry, monkeypatch, fails
):
    events = []

    def start_together(cls, algorithms):
        events.append(("start", len(algorithms)))
        if fails:
            raise RuntimeError("no batched start")

    loss = ToyEnsemble.loss
    monkeypatch.setattr(ToyEnsemble, "start_together", classmethod(start_together))
    monkeypatch.setattr(ToyEnsemble, "loss", lambda self: events.append("loss") or loss(self))
    executions = [
        prepare_run(_config(tmp_path, toy_registry, s, steps=5), "", toy_registry) for s in SEEDS
    ]
    assert events == []  # setting a run up reads no loss
    assert execute(executions) == ["finished"] * len(SEEDS)
    assert events[0] == ("start", len(SEEDS)) and events.count(("start", len(SEEDS))) == 1
    reference = _alone(tmp_path / "alone", toy_registry, steps=5)
    for ex, alone in zip(executions, reference):
        np.testing.assert_allclose(Run(ex.path).scalars["loss"], alone.scalars["loss"], rtol=1e-12)


def test_execute_refuses_members_of_different_algorithms(tmp_path, toy_registry):
    ensemble = prepare_run(_config(tmp_path, toy_registry, 3), "", toy_registry)
    sgd = prepare_run(resolve(toy_config(tmp_path / "runs"), toy_registry), "", toy_registry)
    with pytest.raises(ValueError, match="one algorithm class"):
        execute([ensemble, sgd])


def test_sweep_trains_the_seeds_of_a_cell_as_one_ensemble(tmp_path, toy_registry):
    config = _config(tmp_path, toy_registry, 3, steps=30)
    config["sweep"] = {"grid": {"model.width": [4, 8]}, "seeds": 3}
    _, points = expand_sweep(config, toy_registry)
    assert [len(g) for g in group_by_shape(points, toy_registry)] == [3, 3]
    ToyEnsemble.calls.clear()
    path = run_sweep(config, "", toy_registry, jobs=0)
    assert ToyEnsemble.calls == [3] * 30 * 2  # two cells, 30 steps each, 3 members
    rows, _ = summarize_sweep(path, toy_registry, indicators=False)
    for point, row in zip(points, rows):
        alone = start_run(point.config, "", toy_registry, runs_dir=tmp_path / "alone")
        assert row["status"] == "finished" and row["steps"] == 30
        np.testing.assert_allclose(
            Run(path / point.run).final_state()["W"], alone.final_state()["W"], rtol=1e-10
        )


def test_a_batch_groups_its_points_as_the_driver_says(tmp_path, toy_registry, monkeypatch):
    """The driver tells which points train together (their keys computed once, there);
    a batch without that computes the keys itself."""
    import core.sweep._worker as worker
    from core.sweep import run_batch, together_key

    config = _config(tmp_path, toy_registry, 3, steps=5)
    config["sweep"] = {"grid": {"model.width": [4]}, "seeds": 3}
    _, points = expand_sweep(config, toy_registry)
    items = [{"index": p.index, "run": p.run, "config": p.config} for p in points]
    key = together_key(points[0].config, toy_registry)
    job = {"sweep": str(tmp_path / "s"), "source": "", "items": items}
    ToyEnsemble.calls.clear()
    run_batch({**job, "items": [{**item, "group": 0} for item in items]}, toy_registry)
    assert ToyEnsemble.calls == [3] * 5
    computed = []
    monkeypatch.setattr(worker, "together_key", lambda config, registry: computed.append(1) or key)
    ToyEnsemble.calls.clear()
    run_batch({**job, "sweep": str(tmp_path / "t")}, toy_registry)  # no keys sent
    assert ToyEnsemble.calls == [3] * 5 and len(computed) == 3
    computed.clear()
    ToyEnsemble.calls.clear()
    alone = [{**item, "group": None} for item in items]  # the driver's word: alone
    out = run_batch({**job, "sweep": str(tmp_path / "u"), "items": alone}, toy_registry)
    assert ToyEnsemble.calls == [] and not computed  # each point stepped on its own
    assert [r["status"] for r in out["results"]] == ["finished"] * 3


def test_sweep_ensemble_key_caps_the_members_trained_together(tmp_path, toy_registry):
    config = _config(tmp_path, toy_registry, 3, steps=5)
    config["sweep"] = {"grid": {"model.width": [4]}, "seeds": 5, "ensemble": 2}
    ToyEnsemble.calls.clear()
    path = run_sweep(config, "", toy_registry, jobs=0)
    assert ToyEnsemble.calls == [2] * 10  # 5 seeds: ensembles of 2, 2 and a lone run
    rows, _ = summarize_sweep(path, toy_registry, indicators=False)
    assert [r["status"] for r in rows] == ["finished"] * 5
    for bad in (0, 2.0, True):
        config["sweep"]["ensemble"] = bad
        with pytest.raises(ConfigError, match="sweep.ensemble must be an int >= 1"):
            expand_sweep(config, toy_registry)


def test_members_save_once_at_the_end_and_a_member_killed_before_resumes_from_step_0(
    tmp_path, toy_registry, monkeypatch
):
    """Without a saver due, an ensemble member writes one checkpoint (the final one),
    a run alone two (step 0 and the end); a member that never saved restarts whole."""
    from core.store import RunStore

    writes = []
    original = RunStore.write_checkpoint

    def counting(self, state):
        writes.append((self.path.name, state["loop"]["step"]))
        return original(self, state)

    monkeypatch.setattr(RunStore, "write_checkpoint", counting)
    no_saver = {"savers": {}}
    together, statuses, _ = _together(tmp_path / "t", toy_registry, steps=20, **no_saver)
    assert statuses == ["finished"] * len(SEEDS)
    assert sorted(writes) == sorted((run.path.name, 20) for run in together)
    writes.clear()
    (alone,) = _alone(tmp_path / "a", toy_registry, seeds=SEEDS[:1], steps=20, **no_saver)
    assert writes == [(alone.path.name, 0), (alone.path.name, 20)]

    # a member whose process died before its first save: no checkpoint, resumed from 0
    execution = prepare_run(
        _config(tmp_path / "k", toy_registry, SEEDS[0], steps=20, **no_saver), "", toy_registry
    )
    execution.begin(save=False)
    execution.lock.release()  # as the kernel does when the process dies
    resumed = prepare_resume(execution.path, toy_registry)
    assert resumed.fresh
    execute([resumed])
    run = Run(execution.path)
    assert run.meta["status"] == "finished" and run.meta["resumes"][-1]["from_step"] == 0
    np.testing.assert_array_equal(run.final_state()["W"], alone.final_state()["W"])
    np.testing.assert_array_equal(run.scalars["step"], alone.scalars["step"])


def test_sweep_members_write_meta_json_once_at_their_first_save(
    tmp_path, toy_registry, monkeypatch
):
    """Points trained together write meta.json once (at their end, here the first
    save: a new file, not a replacement); a point alone writes it at its start too."""
    from core.store import RunStore
    from core.sweep import run_points

    writes = []
    original = RunStore.write_meta

    def counting(self, meta):
        writes.append((self.path.name, meta["status"]))
        return original(self, meta)

    monkeypatch.setattr(RunStore, "write_meta", counting)
    no_saver = {"savers": {}}
    items = [
        (tmp_path / f"p{s}", _config(tmp_path, toy_registry, s, steps=20, **no_saver))
        for s in SEEDS
    ]
    results = run_points(items, registry=toy_registry)
    assert [r["status"] for r in results] == ["finished"] * len(SEEDS)
    assert sorted(writes) == sorted((f"p{s}", "finished") for s in SEEDS)
    for seed in SEEDS:  # the whole record, written once
        meta = Run(tmp_path / f"p{seed}").meta
        assert (meta["seed"], meta["steps"], meta["width"]) == (seed, 20, 16)
        assert meta["started"] and meta["ended"] and meta["pid"]

    writes.clear()
    alone = _config(tmp_path, toy_registry, SEEDS[0], steps=20, **no_saver)
    run_points([(tmp_path / "alone", alone)], registry=toy_registry)
    assert writes[0] == ("alone", "running") and writes[-1] == ("alone", "finished")
