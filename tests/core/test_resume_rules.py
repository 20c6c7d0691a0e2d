"""Reliability of runs: concurrent resumes, what a resume may change, set-up failures.

Each test reproduces a way data was lost or a run damaged (issue 13) and checks it holds.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, subprocess_env, toy_config, wait_for_steps

from core.config import load, resolve
from core.errors import ConfigError
from core.loop import resume_run, start_run
from core.store import load_run

CONFIG = """
config = {{
    "experiment": "toy", "seed": 5, "model": {{"width": 16}},
    "data": {{"name": "toy_data"}}, "init": {{"name": "toy_init"}},
    "algorithm": {{"name": "toy_sgd", "sleep": {sleep}}},
    "stoppers": {{"max_steps": {{"steps": {steps}}}}},
    "loggers": {{"scalars": {{"every": 1}}, "snapshots": {{"every": 10}}}},
    "savers": {{"periodic": {{"every_seconds": 0.0, "every_steps": 3}}}},
    "run": {{"display": "off"}},
}}
"""


def _run(tmp_path, registry, **sections):
    config = resolve(toy_config(tmp_path / "runs", **sections), registry)
    return start_run(config, "# source\n", registry)


def _runner(*args):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "runner.py"), *map(str, args)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_resumes_started_together_one_wins_and_the_run_is_whole(tmp_path, toy_registry):
    steps = 150
    config_path = tmp_path / "toy.py"
    config_path.write_text(CONFIG.format(sleep=0.004, steps=steps))
    config, source, _ = load(config_path, [f"run.runs_dir={tmp_path / 'ref'}"], toy_registry)
    reference = start_run(config, source, toy_registry).final_state()
    for trial in range(4):
        runs_dir = tmp_path / f"trial{trial}"
        first = _runner(config_path, "--runs-dir", runs_dir)
        run_dir = wait_for_steps(runs_dir, first, min_steps=5)
        first.kill()
        first.wait()
        assert load_run(run_dir).meta["status"] == "crashed"
        both = [_runner("--resume", run_dir), _runner("--resume", run_dir)]
        codes = sorted(p.wait(timeout=120) for p in both)
        errors = " ".join(p.stderr.read() for p in both)
        assert codes == [0, 2], errors
        assert "in use by another process" in errors and "Traceback" not in errors
        run = load_run(run_dir)
        assert run.meta["status"] == "finished" and run.meta["steps"] == steps
        np.testing.assert_array_equal(run.scalars["step"], np.arange(steps + 1))
        for key in ("W", "a"):
            np.testing.assert_array_equal(run.final_state()[key], reference[key])


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.width=50", "model.width"),
        ("seed=7", "seed"),
        ("data.n=5", "data.n"),
        ("model.scaling='ntk'", "model.scaling"),
        ("algorithm.momentum=0.5", "algorithm.momentum"),
        ("algorithm.name='toy_ensemble'", "algorithm"),
    ],
)
def test_a_resume_that_would_change_the_problem_is_refused_and_touches_nothing(
    tmp_path, toy_registry, override, key
):
    run = _run(tmp_path, toy_registry)
    before = {name: (run.path / name).read_bytes() for name in ("config.json", "meta.json")}
    with pytest.raises(ConfigError, match=rf"--resume cannot change {key}.*new run"):
        resume_run(run.path, toy_registry, overrides=[override])
    assert {name: (run.path / name).read_bytes() for name in before} == before
    again = resume_run(run.path, toy_registry, overrides=["stoppers.max_steps.steps=210"])
    assert again.meta["status"] == "finished" and again.meta["steps"] == 210


def test_accepted_changes_are_recorded_in_the_resume_entry(tmp_path, toy_registry):
    run = _run(tmp_path, toy_registry)
    resumed = resume_run(
        run.path, toy_registry, overrides=["stoppers.max_steps.steps=250", "algorithm.lr=0.02"]
    )
    entry = resumed.meta["resumes"][-1]
    assert entry["from_step"] == 200
    assert entry["changes"] == {
        "algorithm.lr": [0.01, 0.02],
        "stoppers.max_steps.steps": [200, 250],
    }
    assert resumed.config["algorithm"]["lr"] == 0.02 and resumed.meta["steps"] == 250


def test_a_parameter_added_since_the_run_was_made_is_not_a_change(tmp_path, toy_registry):
    """A run saved before a plugin gained a parameter resumes with overrides: the new
    parameter takes its default, and only what the override changes is a change."""
    run = _run(tmp_path, toy_registry)
    config = json.loads((run.path / "config.json").read_text())
    del config["algorithm"]["nan_at"]  # as if saved before toy_sgd declared it
    (run.path / "config.json").write_text(json.dumps(config))
    resumed = resume_run(run.path, toy_registry, overrides=["stoppers.max_steps.steps=210"])
    assert resumed.meta["resumes"][-1]["changes"] == {"stoppers.max_steps.steps": [200, 210]}
    assert resumed.config["algorithm"]["nan_at"] == -1
    with pytest.raises(ConfigError, match=r"cannot change algorithm\.nan_at \(-1 -> 5\)"):
        resume_run(run.path, toy_registry, overrides=["algorithm.nan_at=5"])


def test_the_config_is_rewritten_only_once_the_resume_started(tmp_path, toy_registry):
    run = _run(tmp_path, toy_registry)
    config_before = (run.path / "config.json").read_bytes()
    with pytest.raises(OSError, match="toy logger cannot open"):
        resume_run(
            run.path,
            toy_registry,
            overrides=["stoppers.max_steps.steps=230", "loggers.toy_logger={'fail_setup': True}"],
        )
    assert (run.path / "config.json").read_bytes() == config_before
    assert load_run(run.path).meta["status"] == "failed"
    again = resume_run(run.path, toy_registry, overrides=["stoppers.max_steps.steps=230"])
    assert again.meta["status"] == "finished" and again.meta["steps"] == 230


def test_a_resume_that_does_nothing_leaves_no_entry(tmp_path, toy_registry):
    run = _run(tmp_path, toy_registry)
    again = resume_run(run.path, toy_registry)
    assert again.meta["status"] == "finished" and again.meta["resumes"] == []


@pytest.mark.parametrize(
    "sections, error, reason",
    [
        ({"algorithm": {"fail_loss": True}}, ArithmeticError, "ArithmeticError: toy loss failure"),
        ({"loggers": {"toy_logger": {"fail_setup": True}}}, OSError, "toy logger cannot open"),
    ],
)
def test_a_failure_anywhere_in_set_up_is_failed_with_its_reason(
    tmp_path, toy_registry, sections, error, reason
):
    with pytest.raises(error):
        _run(tmp_path, toy_registry, **sections)
    (run_dir,) = (tmp_path / "runs" / "toy").iterdir()
    meta = load_run(run_dir).meta
    assert meta["status"] == "failed" and reason in meta["reason"]


def test_a_failing_load_state_dict_fails_the_resume_with_its_reason(
    tmp_path, toy_registry, monkeypatch
):
    import toy_plugins

    run = _run(tmp_path, toy_registry)

    def broken(self, state):
        raise KeyError("state")

    monkeypatch.setattr(toy_plugins.ToySGD, "load_state_dict", broken)
    with pytest.raises(KeyError):
        resume_run(run.path, toy_registry, overrides=["stoppers.max_steps.steps=300"])
    meta = load_run(run.path).meta
    assert meta["status"] == "failed" and meta["reason"] == "KeyError: 'state'"


def test_loggers_are_closed_once_whatever_the_status(tmp_path, toy_registry):
    log = tmp_path / "log.txt"
    run = _run(tmp_path, toy_registry, loggers={"toy_logger": {"file": str(log)}})
    assert log.read_text().splitlines() == ["setup", f"final 200 {run.path.name}", "close finished"]
    log.unlink()
    _run(
        tmp_path, toy_registry, algorithm={"nan_at": 7}, loggers={"toy_logger": {"file": str(log)}}
    )
    assert log.read_text().splitlines()[-1] == "close diverged"
    log.unlink()
    with pytest.raises(RuntimeError):
        _run(
            tmp_path,
            toy_registry,
            algorithm={"raise_at": 5},
            loggers={"toy_logger": {"file": str(log)}},
        )
    assert log.read_text().splitlines()[-1] == "close failed"
    log.unlink()
    with pytest.raises(ConnectionError):
        _run(tmp_path, toy_registry, loggers={"toy_logger": {"file": str(log), "fail_close": True}})
    assert log.read_text().splitlines().count("close finished") == 1
    metas = [load_run(p).meta for p in (tmp_path / "runs" / "toy").iterdir()]
    meta = max(metas, key=lambda m: m["created"])
    assert meta["status"] == "failed" and "toy logger lost its server" in meta["reason"]


def test_a_data_set_that_fails_leaves_no_run_folder(tmp_path, toy_registry):
    good = _run(tmp_path, toy_registry)
    with pytest.raises(FileNotFoundError):
        _run(tmp_path, toy_registry, data={"fail": True})
    with pytest.raises(ConfigError, match=r"at least one point and one feature"):
        _run(tmp_path, toy_registry, data={"no_features": True})
    assert list((tmp_path / "runs" / "toy").iterdir()) == [good.path]
    assert load_run("latest", runs_dir=tmp_path / "runs").path == good.path


def test_numpy_scalars_in_a_config_are_plain_numbers(tmp_path, toy_registry):
    config = resolve(
        toy_config(
            tmp_path, seed=np.int64(4), algorithm={"lr": np.float32(0.5), "batch": np.int64(3)}
        ),
        toy_registry,
    )
    assert config["seed"] == 4 and type(config["seed"]) is int
    assert config["algorithm"]["lr"] == 0.5 and type(config["algorithm"]["lr"]) is float
    assert type(config["algorithm"]["batch"]) is int
    json.dumps(config)


@pytest.mark.parametrize(
    "name", ["   ", "\n", "../x", ".hidden", "a" * 256, "a\x00b", "a/b", " padded"]
)
def test_experiment_names_that_cannot_be_folders_are_refused(tmp_path, toy_registry, name):
    with pytest.raises(ConfigError, match="experiment must be a folder name"):
        resolve(toy_config(tmp_path, experiment=name), toy_registry)
