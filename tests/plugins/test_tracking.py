"""Tests of plugins/tracking.py: what TensorBoard and MLflow read back, across resumes."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import CORE_PLUGINS, ROOT, subprocess_env, toy_config, wait_for_steps

from core.config import resolve
from core.errors import PluginError
from core.loop import resume_run, start_run
from core.registry import Registry
from core.store import load_run, read_json

PLUGINS = CORE_PLUGINS + ["toy_plugins", "plugins.tracking"]


@pytest.fixture(scope="module")
def registry():
    return Registry(builtins=PLUGINS, entry_points=False)


def _start(runs_dir, registry, loggers, steps=20):
    config = toy_config(
        runs_dir,
        stoppers={"max_steps": {"steps": steps}},
        loggers=loggers,
        savers={"periodic": {"every_seconds": 0.0, "every_steps": 5}},
    )
    return start_run(resolve(config, registry), "", registry)


def test_plugins_declare_their_extras(registry):
    tensorboard = registry.entry("logger", "tensorboard")
    mlflow = registry.entry("logger", "mlflow")
    assert tensorboard.cls.extra == "tensorboard" and mlflow.cls.extra == "mlflow"
    assert tensorboard.install_hint == 'pip install "relulab[tensorboard]"'
    assert mlflow.install_hint == 'pip install "relulab[mlflow]"'


# -- TensorBoard -------------------------------------------------------------------


def _tensorboard(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    return accumulator


def _tb_series(accumulator, tag):
    events = accumulator.Scalars(tag)
    return np.array([e.step for e in events]), np.array([e.value for e in events])


def test_tensorboard_reads_back_scalars_and_hparams_across_a_resume(tmp_path, registry):
    pytest.importorskip("torch")
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = _start(tmp_path, registry, {"tensorboard": {}})
    steps, values = _tb_series(_tensorboard(run.path), "loss")
    np.testing.assert_array_equal(steps, np.arange(21))
    np.testing.assert_allclose(values, run.scalars["loss"], rtol=1e-6)

    resume_run(run.path, registry, ["stoppers.max_steps.steps=40"])
    run = load_run(run.path)
    accumulator = _tensorboard(run.path)
    steps, values = _tb_series(accumulator, "loss")
    np.testing.assert_array_equal(steps, np.arange(41))  # every step once
    np.testing.assert_allclose(values, run.scalars["loss"], rtol=1e-6)
    steps, values = _tb_series(accumulator, "grad_norm")
    np.testing.assert_allclose(values, run.scalars["grad_norm"], rtol=1e-6)
    assert len(list((run.path / "tensorboard").glob("events.out.tfevents.*"))) == 2

    content = accumulator.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model.width"].number_value == 16
    assert hparams["algorithm.name"].string_value == "toy_sgd"
    assert hparams["seed"].number_value == 3
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert [m.name.tag for m in experiment.experiment.metric_infos] == ["loss"]


# -- MLflow ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """One SQLite store for the module (making its tables takes seconds)."""
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _history(client, run_id, key):
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return np.array([m.step for m in points]), np.array([m.value for m in points])


def test_mlflow_reads_back_metrics_and_params_across_a_resume(tmp_path, registry, tracking_uri):
    from mlflow.tracking import MlflowClient

    loggers = {"mlflow": {"tracking_uri": tracking_uri, "experiment": "relulab-test"}}
    run = _start(tmp_path, registry, loggers)
    ids = read_json(run.path / "mlflow.json")
    client = MlflowClient(tracking_uri=tracking_uri)
    remote = client.get_run(ids["run_id"])
    assert remote.info.status == "FINISHED" and remote.info.run_name == run.path.name
    assert remote.data.params["model.width"] == "16"
    assert remote.data.params["algorithm.name"] == "toy_sgd"
    assert remote.data.tags["relulab.run_dir"] == str(run.path.resolve())
    assert client.get_experiment(ids["experiment_id"]).name == "relulab-test"
    steps, values = _history(client, ids["run_id"], "loss")
    np.testing.assert_array_equal(steps, np.arange(21))
    np.testing.assert_allclose(values, run.scalars["loss"], rtol=1e-12)

    resume_run(run.path, registry, ["stoppers.max_steps.steps=40"])
    run = load_run(run.path)
    assert read_json(run.path / "mlflow.json") == ids  # the same MLflow run
    remote = client.get_run(ids["run_id"])
    assert remote.info.status == "FINISHED"
    steps, values = _history(client, ids["run_id"], "loss")
    np.testing.assert_array_equal(steps, np.arange(41))
    np.testing.assert_allclose(values, run.scalars["loss"], rtol=1e-12)
    steps, values = _history(client, ids["run_id"], "grad_norm")
    np.testing.assert_allclose(values, run.scalars["grad_norm"], rtol=1e-12)
    runs = client.search_runs([ids["experiment_id"]])
    assert [r.info.run_id for r in runs] == [ids["run_id"]]


SLOW = """
config = {{
    "experiment": "slow", "seed": 5, "model": {{"width": 8}},
    "data": {{"name": "toy_data"}}, "init": {{"name": "toy_init"}},
    "algorithm": {{"name": "toy_sgd", "sleep": 0.02}},
    "stoppers": {{"max_steps": {{"steps": 60}}}},
    "loggers": {{
        "scalars": {{"every": 1}},
        "tensorboard": {{"flush_seconds": 0.05}},
        "mlflow": {{"tracking_uri": {uri!r}}},
    }},
    "savers": {{"periodic": {{"every_seconds": 0.0, "every_steps": 7}}}},
    "run": {{"display": "off"}},
}}
"""


@pytest.mark.slow
def test_killed_run_resumed_holds_every_step_once(tmp_path, registry, tracking_uri):
    pytest.importorskip("torch")
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient

    config_path = tmp_path / "slow.py"
    config_path.write_text(SLOW.format(uri=tracking_uri))
    runs_dir = tmp_path / "runs"
    env = subprocess_env()
    env["RELULAB_PLUGINS"] = "toy_plugins"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "runner.py"), str(config_path), "--runs-dir", str(runs_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_dir = wait_for_steps(runs_dir, proc, min_steps=10)
    finally:
        proc.kill()
        proc.wait()
    assert load_run(run_dir).status == "crashed"
    ids = json.loads((run_dir / "mlflow.json").read_text())
    client = MlflowClient(tracking_uri=tracking_uri)
    assert client.get_run(ids["run_id"]).info.status == "RUNNING"

    resume_run(run_dir, registry=registry)
    run = load_run(run_dir)
    assert run.status == "finished" and run.meta["steps"] == 60
    expected = run.scalars["loss"]
    np.testing.assert_array_equal(run.scalars["step"], np.arange(61))
    steps, values = _history(client, ids["run_id"], "loss")
    np.testing.assert_array_equal(steps, np.arange(61))
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert client.get_run(ids["run_id"]).info.status == "FINISHED"
    steps, values = _tb_series(_tensorboard(run_dir), "loss")
    np.testing.assert_array_equal(steps, np.arange(61))
    np.testing.assert_allclose(values, expected, rtol=1e-6)


@pytest.mark.parametrize("name, module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_unavailable_without_their_extra(registry, monkeypatch, name, module):
    import core.registry

    importable = core.registry._importable
    monkeypatch.setattr(core.registry, "_importable", lambda m: m != module and importable(m))
    with pytest.raises(PluginError, match=rf'pip install "relulab\[{name}\]"'):
        registry.get("logger", name)
