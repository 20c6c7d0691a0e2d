"""Ctrl-C at a terminal stops a sweep with the usual lines: a local pool or a Dask LocalCluster.

Ctrl-C at a terminal sends SIGINT to the whole foreground process group: the
driver, and the pool's or the ``LocalCluster``'s worker processes. Each engine must
end with the one-line messages and exit code 130, without a traceback from any
process; a resume then finishes every point.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, subprocess_env, toy_config

from core.store import load_run
from core.sweep import load_sweep

STEPS = 200


def _statuses(runs_dir):
    out = []
    for meta in runs_dir.glob("toy/*/runs/*/meta.json"):
        try:
            out.append(json.loads(meta.read_text()))
        except (OSError, ValueError):
            pass
    return out


def _runner(*args):
    return [sys.executable, str(ROOT / "runner.py"), *args]


@pytest.mark.parametrize(
    "engine", [["--jobs", "2"], ["--dask", "local", "--jobs", "2"]], ids=["pool", "dask"]
)
def test_ctrl_c_at_a_terminal_ends_with_one_line_messages(tmp_path, engine):
    if "--dask" in engine:
        pytest.importorskip("distributed")
    runs_dir = tmp_path / "runs"
    config = toy_config(
        runs_dir,
        stoppers={"max_steps": {"steps": STEPS}},
        algorithm={"name": "toy_sgd", "sleep": 0.01},
        savers={"periodic": {"every_steps": 20}},
    )
    config["sweep"] = {"grid": {"model.width": [4, 8]}, "seeds": 3}
    config["run"]["display"] = "plain"
    config_file = tmp_path / "sweep_config.py"
    config_file.write_text(f"config = {config!r}\n")
    proc = subprocess.Popen(
        _runner(str(config_file), *engine),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # its own process group, as a terminal's
    # the sweep has finitely many steps: the loop ends when a point runs or the sweep ends
    while not any(m["status"] == "running" and m["steps"] >= 5 for m in _statuses(runs_dir)):
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.strip().splitlines()
    assert lines[1].startswith("interrupted: running points "), err
    assert lines[-1].startswith("interrupted with ") and "python runner.py --resume" in lines[-1]
    statuses = {m["status"] for m in _statuses(runs_dir)}
    assert statuses <= {"finished", "interrupted"}, statuses  # every point ended cleanly

    sweep_dir = tmp_path / "runs" / "toy" / out.strip().splitlines()[-1].split("/")[-1]
    again = subprocess.run(
        _runner("--resume", str(sweep_dir), "--jobs", "2"),
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    for point in load_sweep(sweep_dir)["points"]:
        steps = load_run(sweep_dir / point["run"]).scalars["step"]
        np.testing.assert_array_equal(steps, np.arange(STEPS + 1))
