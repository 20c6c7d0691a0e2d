"""A real third-party plugin: pip-install examples/relulab-example-plugin, use it, remove it."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, subprocess_env, toy_config

from core.store import load_run

EXAMPLE = ROOT / "examples" / "relulab-example-plugin"


def _pip(*args):
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def installed_example():
    out = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(EXAMPLE))
    assert out.returncode == 0, out.stderr
    try:
        yield
    finally:
        _pip("uninstall", "-y", "relulab-example-plugin")


def _runner(*args):
    env = subprocess_env()
    env["COLUMNS"] = "250"
    return subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_third_party_plugin_is_listed_and_runs(installed_example, tmp_path):
    listing = _runner("--list-plugins")
    assert listing.returncode == 0, listing.stderr
    line = next(row for row in listing.stdout.splitlines() if "heavy_ball" in row)
    assert "relulab-example-plugin" in line and "available" in line
    as_json = _runner("--list-plugins", "--json")
    assert as_json.returncode == 0, as_json.stderr
    (entry,) = [p for p in json.loads(as_json.stdout)["plugins"] if p["name"] == "heavy_ball"]
    assert entry["provider"] == "relulab-example-plugin" and entry["version"] == "0.1.0"
    assert entry["module"] == "relulab-example-plugin:heavy_ball" and entry["available"]
    assert [p["name"] for p in entry["params"]] == ["lr", "beta"]

    config = toy_config(tmp_path / "runs", algorithm={"name": "heavy_ball", "lr": 0.002})
    config["stoppers"]["max_steps"]["steps"] = 300
    path = tmp_path / "hb.py"
    path.write_text(f"config = {config!r}\n")
    out = _runner(str(path))
    assert out.returncode == 0, out.stderr
    run = load_run(out.stdout.strip().splitlines()[-1])
    assert run.meta["status"] == "finished" and run.config["algorithm"]["name"] == "heavy_ball"
    loss = run.scalars["loss"]
    assert loss[-1] < 0.1 * loss[0] and np.all(np.isfinite(loss))


def test_plugin_is_gone_after_uninstall():
    listing = _runner("--list-plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    assert "heavy_ball" not in {p["name"] for p in json.loads(listing.stdout)["plugins"]}
