"""Animations (core/animation.py, plot.py --animate), the live view (core/live.py,
plugins/live.py, runner.py --live) and the neurons figure of a measure-valued run."""

import importlib.util
import io
import math
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import ROOT, subprocess_env, toy_config
from PIL import Image
from tiny_runs import BUILTINS, make_run

import plot
from core import animation, live
from core.animation import PANEL_WIDTH, RunView, animate, subsample
from core.config import resolve
from core.loop import start_run
from core.registry import Registry
from core.store import load_run
from plugins.live import Live
from plugins.plots import MASS_AREA, Neurons, Trajectories

DPI = 20


def _gif(path):
    with Image.open(path) as image:
        return image.n_frames, image.size


@pytest.fixture(scope="module")
def registry():
    modules = BUILTINS + ["plugins.data", "plugins.inits", "plugins.jko", "plugins.live"]
    return Registry(builtins=modules, entry_points=False)


@pytest.fixture(scope="module")
def jko_run(tmp_path_factory, registry):
    """A few JKO steps on a 5 x 5 grid: snapshots hold the masses ``p``."""
    config = {
        "experiment": "tiny_jko",
        "seed": 0,
        "model": {"scaling": "standard", "loss": "mse"},
        "data": {"name": "sinus", "n": 8, "bias": True},
        "init": {"name": "grid", "per_axis": 5, "extent": 2.0, "signs": "both"},
        "algorithm": {"name": "jko", "tau": 3.0, "gamma": 0.05, "proxf": "scipy"},
        "stoppers": {"max_steps": {"steps": 4}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 1}},
        "savers": {"periodic": {"every_seconds": 0.0}},
        "run": {"display": "off"},
    }
    runs = tmp_path_factory.mktemp("jko")
    return start_run(resolve(config, registry), "", registry, runs_dir=runs)


# -- choosing frames -----------------------------------------------------------------
def test_subsample_is_log_spaced_with_first_and_last():
    steps = np.arange(0, 10001)
    assert subsample(steps, 5).tolist() == [0, 9, 99, 999, 10000]
    # evenly spaced in log(1 + step): each the snapshot nearest to the ideal step
    ideal = np.expm1(np.linspace(0.0, np.log1p(10000), 9))
    assert np.all(np.abs(steps[subsample(steps, 9)] - ideal) <= 0.5 + 1e-9)


def test_subsample_keeps_frames_distinct_where_snapshots_crowd():
    steps = np.array([0, 1, 2, 3, 1000])
    chosen = subsample(steps, 4)
    assert chosen.tolist() == [0, 2, 3, 4]  # distinct, increasing, first and last
    assert subsample(steps, 10).tolist() == [0, 1, 2, 3, 4]  # fewer snapshots: all
    assert subsample(steps, 1).tolist() == [4]


# -- animations ----------------------------------------------------------------------
def test_animation_of_a_small_run_has_one_frame_per_chosen_snapshot(tmp_path):
    run = make_run(tmp_path, steps=40, every=10)  # snapshots at 0, 10, 20, 30, 40
    result = animate(run, frames=3, dpi=DPI, progress=False)
    assert result.path == run.path / "plots" / "animation.gif"
    assert result.steps.tolist() == [0, 10, 40]
    # 1-D inputs with a bias: neurons in the (w, b) plane, the fit, the loss
    size = (round(3 * PANEL_WIDTH * DPI), round(4.0 * DPI))
    assert result.size == size
    assert _gif(result.path) == (3, size)


def test_animation_of_higher_dimensional_inputs_projects_the_neurons(tmp_path):
    run = make_run(tmp_path, dim=3, steps=30, every=10)  # 4 snapshots, d = 4
    result = animate(run, frames=50, dpi=DPI, progress=False)
    size = (round(2 * PANEL_WIDTH * DPI), round(4.0 * DPI))  # projection and loss
    assert _gif(result.path) == (4, size)


def test_projection_is_the_top_principal_plane(tmp_path):
    run = make_run(tmp_path, dim=3, steps=30, every=10)
    frames = animation.frames_of_run(run, range(len(run.snapshots)))
    setting = animation.setting_from_run(run, frames)
    assert setting.mode == "projection"
    points = np.concatenate([f.W.T for f in frames])
    spread = np.var((points - setting.center) @ setting.basis, axis=0).sum()
    other = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 2)))[0]
    assert spread >= np.var((points - setting.center) @ other, axis=0).sum()
    assert np.allclose(setting.basis.T @ setting.basis, np.eye(2))


def test_trails_join_each_neuron_to_its_earlier_positions():
    X = np.column_stack([np.linspace(-1, 1, 5), np.ones(5)])
    frames = [
        animation.Frame(t, np.array([[t, -t], [1.0, 2.0]]), np.array([1.0, -1.0])) for t in range(3)
    ]
    setting = animation.setting_of(X, X[:, 0], True, "standard", [f.W for f in frames], False)
    view = RunView(setting)
    view.show(frames[2], frames[:2], [0, 1, 2], [1.0, 0.5, 0.2])
    trails = view.neurons.trails
    segments, colours = trails.get_segments(), trails.get_colors()
    assert len(segments) == 4  # two neurons, two steps back
    for segment, colour in zip(segments, colours):
        neuron = 0 if segment[0][1] == 1.0 else 1  # its bias tells the neuron
        assert segment[1][0] - segment[0][0] == (1 if neuron == 0 else -1)  # one step on
        assert np.allclose(
            colour[:3], [0.839, 0.153, 0.157] if neuron == 0 else [0.122, 0.467, 0.706], atol=1e-3
        )


def test_jko_animation_draws_the_mass_on_the_grid(jko_run):
    frames = animation.frames_of_run(jko_run, [0, len(jko_run.snapshots) - 1])
    setting = animation.setting_from_run(jko_run, frames)
    assert setting.mode == "mass"
    view = RunView(setting)
    view.show(frames[-1], [], [0], [1.0])
    images = [ax.images[0].get_array() for ax in view.fig.axes if ax.images]
    assert [image.shape for image in images] == [(5, 5), (5, 5)]
    p, a = frames[-1].p, frames[-1].a
    assert math.isclose(images[0].sum(), p[a >= 0].sum())
    assert math.isclose(images[1].sum(), p[a < 0].sum())
    result = animate(jko_run, frames=2, dpi=DPI, progress=False)
    assert _gif(result.path) == (2, (round(4 * PANEL_WIDTH * DPI), round(4.0 * DPI)))


def test_plot_animate_writes_the_gif_and_mp4_without_ffmpeg_is_one_line(
    tmp_path, monkeypatch, capsys
):
    run = make_run(tmp_path, steps=20, every=10)
    argv = [str(run.path), "--animate", "--frames", "2", "--dpi", str(DPI), "--fps", "5"]
    assert plot.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(run.path / "plots" / "animation.gif")
    assert _gif(run.path / "plots" / "animation.gif")[0] == 2

    monkeypatch.setattr(animation.shutil, "which", lambda name: None)
    assert plot.main([*argv, "--format", "mp4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ffmpeg" in err[0] and err[0].startswith("error: ")
    assert not (run.path / "plots" / "animation.mp4").exists()


# -- the neurons figure of a measure-valued run ---------------------------------------
def test_jko_neurons_figure_sizes_markers_by_mass(jko_run):
    fig = Neurons().draw(jko_run)["neurons"]
    final = jko_run.snapshots.at(-1)
    p, a = final["p"], final["a"]
    top = p.max()
    collections = [ax.collections[0] for ax in fig.axes[:2]]  # then the colour bars
    assert len(collections) == 2  # one panel per sign
    for dots, pick in zip(collections, (a >= 0, a < 0)):
        assert np.allclose(dots.get_sizes(), MASS_AREA * p[pick] / top)
        assert np.allclose(dots.get_array(), p[pick])  # colour is the mass too
    assert p.max() - p.min() > 0.05  # the masses moved: sizes differ


def test_jko_run_has_no_trajectories_figure(jko_run):
    assert not Trajectories().applies(jko_run)  # fixed positions: nothing to trace


# -- the live view -------------------------------------------------------------------
def _no_display_env():
    env = subprocess_env()
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND"):
        env.pop(name, None)
    return env


def test_live_without_a_display_says_so_in_one_line_and_the_run_completes(tmp_path):
    config = toy_config(tmp_path / "runs")
    config["stoppers"]["max_steps"]["steps"] = 30
    path = tmp_path / "toy_run.py"
    path.write_text(f"config = {config!r}\n")
    out = subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), str(path), "--live"],
        cwd=ROOT,
        env=_no_display_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines == [
        "live view: no display (DISPLAY is not set); the run goes on with the terminal view"
    ]
    run = load_run(out.stdout.strip().splitlines()[-1])
    assert run.meta["status"] == "finished" and run.meta["steps"] == 30
    assert "live" in run.config["loggers"]


def test_live_is_refused_for_a_sweep(tmp_path):
    config = toy_config(tmp_path / "runs", sweep={"grid": {"model.width": [4, 8]}})
    path = tmp_path / "toy_sweep.py"
    path.write_text(f"config = {config!r}\n")
    out = subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), str(path), "--live"],
        cwd=ROOT,
        env=_no_display_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --live shows one run and a sweep runs many; "
        "watch a point with plot.py RUN --animate once it has run"
    ]
    assert not (tmp_path / "runs").exists()


def test_display_problem():
    assert live.display_problem({}, "linux") == "no display (DISPLAY is not set)"
    assert live.display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert live.display_problem({}, "darwin") is None
    assert "draws no window" in live.display_problem(
        {"DISPLAY": ":0", "MPLBACKEND": "pdf"}, "linux"
    )


def _tiny_live_config(**live_params):
    return {
        "experiment": "tiny",
        "seed": 1,
        "model": {"width": 6},
        "data": {"name": "tiny_data", "n": 10},
        "init": {"name": "tiny_init"},
        "algorithm": {"name": "toy_sgd", "lr": 0.02, "batch": 10},
        "stoppers": {"max_steps": {"steps": 30}},
        "loggers": {"snapshots": {"every": 10}, "scalars": {}, "live": live_params},
        "savers": {"periodic": {"every_seconds": 0.0}},
        "run": {"display": "off"},
    }


def test_live_file_view_draws_the_final_state(tmp_path, registry):
    config = _tiny_live_config(file=True)
    run = start_run(resolve(config, registry), "", registry, runs_dir=tmp_path)
    assert run.meta["status"] == "finished"
    with Image.open(run.path / "plots" / "live.png") as image:
        assert image.format == "PNG"
        assert image.size == (round(3 * PANEL_WIDTH * 80), round(4.0 * 80))


@pytest.mark.skipif(
    shutil.which("Xvfb") is None or importlib.util.find_spec("tkinter") is None,
    reason="needs Xvfb (a virtual X display) and tkinter",
)
def test_live_window_opens_and_stays_open_after_the_run(tmp_path, registry, monkeypatch, capfd):
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", "1280x480x24"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    started = []
    try:
        monkeypatch.setenv("DISPLAY", ":" + xvfb.stdout.readline().decode().strip())
        monkeypatch.delenv("MPLBACKEND", raising=False)
        spawn = live.spawn

        def spawn_and_keep(*args, **kwargs):
            started.append(spawn(*args, **kwargs))
            return started[-1]

        monkeypatch.setattr(live, "spawn", spawn_and_keep)
        run = start_run(resolve(_tiny_live_config(), registry), "", registry, runs_dir=tmp_path)
        assert run.meta["status"] == "finished"
        assert len(started) == 1
        assert started[0].poll() is None  # the window shows the last state until closed
        assert "live view" not in capfd.readouterr().err  # no fallback line: a window opened
    finally:
        for proc in started:
            proc.terminate()
            proc.wait()
        xvfb.terminate()
        xvfb.wait()


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _fake_viewer(logger, clock, send_cost):
    """The logger talking to a viewer that is always ready; sending takes ``send_cost``."""
    logger._proc = types.SimpleNamespace(stdin=io.BytesIO(), poll=lambda: None)
    logger._poll = lambda timeout=0.0: True
    write = logger._proc.stdin.write

    def slow_write(data):
        clock.now += send_cost
        return write(data)

    logger._proc.stdin.write = slow_write


def _observe_for(logger, clock, seconds, step_time):
    algorithm = types.SimpleNamespace(state=lambda: {"W": np.ones((2, 3)), "a": np.ones(3)})
    ctx = types.SimpleNamespace(step=0, loss=1.0, final=False, algorithm=algorithm, status=None)
    while clock.now < seconds:
        ctx.step += 1
        ctx.loss = 1.0 / ctx.step
        logger.observe(ctx)
        clock.now += step_time
    return ctx


def test_live_logger_sends_at_most_refresh_per_second_within_its_budget(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("plugins.live.time.perf_counter", clock)
    fast = Live(refresh_per_second=4.0, budget=0.02, trail=8, file=False)
    fast._steps, fast._losses, fast._next, fast.spent, fast.sent = [], [], 0.0, 0.0, 0
    _fake_viewer(fast, clock, send_cost=0.0)
    _observe_for(fast, clock, seconds=10.0, step_time=1e-3)
    assert 39 <= fast.sent <= 41  # 4 a second, not one a step
    messages = []
    stream = io.BytesIO(fast._proc.stdin.getvalue())
    while (message := live.read_message(stream.read)) is not None:
        messages.append(message)
    steps = np.concatenate([m["steps"] for m in messages])
    assert steps.tolist() == list(range(1, len(steps) + 1))  # every loss reaches the view
    assert messages[-1]["W"].shape == (2, 3)

    clock.now = 0.0
    slow = Live(refresh_per_second=4.0, budget=0.02, trail=8, file=False)
    slow._steps, slow._losses, slow._next, slow.spent, slow.sent = [], [], 0.0, 0.0, 0
    _fake_viewer(slow, clock, send_cost=0.05)  # a big network: 50 ms a send
    _observe_for(slow, clock, seconds=100.0, step_time=1e-3)
    assert slow.spent <= 0.02 * 100.0 + 0.05  # the budget holds: 2 % of the loop's time
    assert slow.sent >= 35
