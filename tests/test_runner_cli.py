"""The ``relulab`` command (installed by ``pip install -e .``) and runner.py's arguments."""

import errno
import json
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, subprocess_env, toy_config

from core.store import load_run
from plugins.gd import GD

RELULAB = Path(sys.executable).parent / "relulab"


def _run(argv, cwd=ROOT, env=None):
    return subprocess.run(
        argv,
        cwd=cwd,
        env=subprocess_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _relulab(*args, **kwargs):
    assert RELULAB.is_file(), f"{RELULAB} is missing: 'pip install -e .' installs the command"
    return _run([str(RELULAB), *args], **kwargs)


def _script(script, *args):
    return _run([sys.executable, str(ROOT / script), *args])


def _one_line_error(out, *words):
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def _config_file(tmp_path, steps=30, **sections):
    config = toy_config(tmp_path / "runs", **sections)
    config["stoppers"]["max_steps"]["steps"] = steps
    path = tmp_path / "toy_run.py"
    path.write_text(f"config = {config!r}\n")
    return path


# -- the relulab command ------------------------------------------------------------
def test_installed_command_works_outside_the_repository(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "RELULAB_PLUGINS", "RELULAB_RUNS_DIR")
    }
    version = _relulab("--version", cwd=tmp_path, env=env)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("relulab ")
    listing = _relulab("plugins", "--json", cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr
    names = {(p["kind"], p["name"]) for p in json.loads(listing.stdout)["plugins"]}
    assert {("algorithm", "gd"), ("algorithm", "jko"), ("stopper", "max_steps")} <= names


def test_help_lists_the_commands():
    out = _relulab("--help")
    assert out.returncode == 0, out.stderr
    for command in ("run", "plot", "postprocess", "plugins"):
        assert f"\n  {command} " in out.stdout
    run_help = _relulab("run", "--help")
    assert run_help.returncode == 0 and run_help.stdout.startswith("usage: relulab run")
    assert "--resume" in run_help.stdout and "--runs-dir" in run_help.stdout


def test_no_or_unknown_command_is_a_one_line_error():
    _one_line_error(_relulab(), "no command given", "run, plot, postprocess, plugins")
    _one_line_error(_relulab("plto", "latest"), "unknown command 'plto'", "did you mean 'plot'?")


@pytest.mark.slow
def test_run_postprocess_plot_resume_as_the_scripts_do(tmp_path):
    path = _config_file(tmp_path)
    dry = _relulab("run", str(path), "--dry-run", "algorithm.lr=0.02")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == _script("runner.py", str(path), "--dry-run", "algorithm.lr=0.02").stdout
    assert json.loads(dry.stdout)["algorithm"]["lr"] == 0.02

    out = _relulab("run", str(path))
    assert out.returncode == 0, out.stderr
    run_dir = Path(out.stdout.strip().splitlines()[-1])
    assert run_dir.parent.parent == tmp_path / "runs" and load_run(run_dir).meta["steps"] == 30

    post = _relulab("postprocess", str(run_dir), "--json")
    assert post.returncode == 0, post.stderr
    assert json.loads(post.stdout) == json.loads(
        _script("postprocess.py", str(run_dir), "--json").stdout
    )

    plot = _relulab("plot", "latest", "--runs-dir", str(tmp_path / "runs"), "--only", "loss")
    assert plot.returncode == 0, plot.stderr
    assert (run_dir / "plots" / "loss.png").is_file()

    more = _relulab(
        "run",
        "--resume",
        "latest",
        "--runs-dir",
        str(tmp_path / "runs"),
        "stoppers.max_steps.steps=50",
    )
    assert more.returncode == 0, more.stderr
    assert Path(more.stdout.strip().splitlines()[-1]) == run_dir
    assert load_run(run_dir).meta["steps"] == 50


def test_exit_codes_are_the_scripts(tmp_path):
    path = _config_file(tmp_path, algorithm={"name": "toy_sgd", "lr": 1e6})
    out = _relulab("run", str(path))
    assert out.returncode == 3, out.stderr  # diverged
    _one_line_error(_relulab("run", str(path), "algorithm.lr=-1"), "must be a float")
    _one_line_error(_relulab("postprocess", str(tmp_path / "nowhere")), "nowhere")


def test_plugins_json_lists_everything_the_table_does():
    out = _relulab("plugins", "--json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert listing == json.loads(_script("runner.py", "--list-plugins", "--json").stdout)
    assert listing["failures"] == []
    by_name = {(p["kind"], p["name"]): p for p in listing["plugins"]}
    toy = by_name[("algorithm", "toy_sgd")]
    assert set(toy) == {
        "kind",
        "name",
        "provider",
        "version",
        "module",
        "available",
        "missing",
        "install_hint",
        "duplicate",
        "description",
        "params",
    }
    assert toy["provider"] == "RELULAB_PLUGINS" and toy["module"] == "toy_plugins"
    assert toy["available"] is True and toy["install_hint"] is None and not toy["duplicate"]
    gd = by_name[("algorithm", "gd")]
    assert gd["provider"] == "relulab" and gd["version"]
    assert gd["description"] == GD.describe() and gd["description"]
    lr = next(p for p in gd["params"] if p["name"] == "lr")
    assert (
        lr
        == {
            "name": "lr",
            "type": "float",
            "default": 0.01,
            "allowed": "a float in (0, inf)",
            "resume_safe": True,
            "doc": lr["doc"],
        }
        and lr["doc"]
    )
    for plugin in listing["plugins"]:
        assert plugin["available"] == (plugin["install_hint"] is None), plugin["name"]


def test_plugins_name_shows_its_parameters():
    out = _relulab("plugins", "max_steps")
    assert out.returncode == 0, out.stderr
    assert "stopper 'max_steps'" in out.stdout and "steps" in out.stdout
    _one_line_error(_relulab("plugins", "max_stepz"), "did you mean 'max_steps'?")


def test_plugins_json_needs_list_plugins():
    out = _script("runner.py", "configs/gd_sinus.py", "--json")
    assert out.returncode == 2 and "--json goes with --list-plugins" in out.stderr


# -- runner.py's arguments ------------------------------------------------------------
def test_overrides_may_follow_options(tmp_path):
    path = _config_file(tmp_path)
    out = _script("runner.py", str(path), "--dry-run", "model.width=5")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model"]["width"] == 5
    out = _script(
        "runner.py",
        "--dry-run",
        str(path),
        "model.width=7",
        "--runs-dir",
        str(tmp_path / "elsewhere"),
        "algorithm.lr=0.5",
    )
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    assert (config["model"]["width"], config["algorithm"]["lr"]) == (7, 0.5)
    assert config["run"]["runs_dir"] == str(tmp_path / "elsewhere")


def test_runs_dir_is_passed_not_written_to_the_environment(tmp_path, monkeypatch):
    import runner

    monkeypatch.delenv("RELULAB_RUNS_DIR", raising=False)
    monkeypatch.setenv("RELULAB_PLUGINS", "toy_plugins")
    path = _config_file(tmp_path)
    code = runner.main([str(path), "--runs-dir", str(tmp_path / "other")])
    assert code == 0
    assert "RELULAB_RUNS_DIR" not in os.environ
    (run_dir,) = (tmp_path / "other" / "toy").iterdir()
    assert load_run(run_dir).meta["status"] == "finished"
    assert not (tmp_path / "runs").exists()


def test_runs_dir_variable_is_read_and_the_option_wins(tmp_path):
    path = _config_file(tmp_path)
    first = _script("runner.py", str(path))
    assert first.returncode == 0, first.stderr
    env = subprocess_env()
    env["RELULAB_RUNS_DIR"] = str(tmp_path / "runs")
    found = _run([sys.executable, str(ROOT / "postprocess.py"), "latest", "--json"], env=env)
    assert found.returncode == 0, found.stderr
    env["RELULAB_RUNS_DIR"] = str(tmp_path / "empty")
    again = _run(
        [
            sys.executable,
            str(ROOT / "runner.py"),
            "--resume",
            "latest",
            "--runs-dir",
            str(tmp_path / "runs"),
            "stoppers.max_steps.steps=40",
        ],
        env=env,
    )
    assert again.returncode == 0, again.stderr
    assert load_run(again.stdout.strip().splitlines()[-1]).meta["steps"] == 40


# -- user-fixable errors about a given path: exit 2, one line naming it ---------------
def test_runs_dir_that_is_a_file(tmp_path):
    path = _config_file(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    _one_line_error(_script("runner.py", str(path), "--runs-dir", str(blocker)), str(blocker))
    _one_line_error(
        _script("runner.py", str(path), "--runs-dir", str(blocker / "sub")), str(blocker)
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_runs_dir(tmp_path):
    path = _config_file(tmp_path)
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        _one_line_error(
            _script("runner.py", str(path), "--runs-dir", str(read_only)), str(read_only)
        )
    finally:
        read_only.chmod(0o755)


def test_a_runs_dir_that_refuses_the_run_folder_is_a_user_error(tmp_path, monkeypatch, capsys):
    """As root cannot meet a read-only directory: the file system refuses the mkdir."""
    import runner

    monkeypatch.setenv("RELULAB_PLUGINS", "toy_plugins")
    runs_dir = tmp_path / "read_only"
    mkdir = pathlib.Path.mkdir

    def refusing_mkdir(self, *args, **kwargs):
        if self == runs_dir / "toy" or runs_dir / "toy" in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", refusing_mkdir)
    assert runner.main([str(_config_file(tmp_path)), "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(runs_dir / "toy") in err[0]
    assert "Permission denied" in err[0] and "--debug" not in err[0]
