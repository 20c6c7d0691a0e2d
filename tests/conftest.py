"""Shared fixtures: the repository root, a registry with the toy plugins, toy configs."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

CORE_PLUGINS = ["plugins.stoppers", "plugins.loggers", "plugins.savers", "plugins.metrics"]


@pytest.fixture(scope="session")
def toy_registry():
    """Registry of the core loop plugins plus tests/toy_plugins.py (no entry points).

    A registry is read-only once built, so one instance serves the whole session.
    """
    from core.registry import Registry

    return Registry(builtins=CORE_PLUGINS + ["toy_plugins"], entry_points=False)


@pytest.fixture(scope="session")
def batchable_registry():
    """:func:`toy_registry` plus ``toy_batchable``: ``toy_sgd`` declared ``batchable``
    (a sweep groups its seeds for ``step_together``, which steps them one by one)."""
    from toy_plugins import ToySGD

    from core.hookspecs import hookimpl
    from core.registry import Registry

    class BatchableSGD(ToySGD):
        name = "toy_batchable"
        batchable = True

    class Plugin:
        @hookimpl
        def relulab_algorithms():
            return [BatchableSGD]

    return Registry(
        builtins=CORE_PLUGINS + ["toy_plugins"],
        entry_points=False,
        extra_plugins=[(Plugin, "test")],
    )


def toy_config(runs_dir, **sections):
    """A raw config of the toy plugins writing to ``runs_dir``; sections override."""
    config = {
        "experiment": "toy",
        "seed": 3,
        "model": {"width": 16},
        "data": {"name": "toy_data"},
        "init": {"name": "toy_init"},
        "algorithm": {"name": "toy_sgd"},
        "stoppers": {"max_steps": {"steps": 200}, "divergence": {}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 20}},
        "savers": {"periodic": {"every_seconds": 0.0, "every_steps": 25}},
        "run": {"runs_dir": str(runs_dir), "display": "off"},
    }
    from core.config import merge

    return merge(config, sections)


def subprocess_env():
    """Environment for CLI subprocesses: toy plugins importable and registered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    env["RELULAB_PLUGINS"] = "toy_plugins"
    return env


def plugin_builder(registry, kind):
    """``build(name, **params)``: the ``kind`` plugin ``name`` with its declared defaults."""
    from core.params import validate_params

    def build(name, **params):
        cls = registry.get(kind, name)
        return cls(**validate_params(f"{kind} ({name})", params, cls.params))

    return build


def wait_for_steps(runs_dir, proc, min_steps):
    """The folder of the run under ``runs_dir/<experiment>/`` once its meta.json
    reports ``min_steps`` steps; fails with the process's stderr if it ends first."""
    import json
    import time

    while True:
        for meta_path in Path(runs_dir).glob("*/*/meta.json"):
            try:
                if json.loads(meta_path.read_text()).get("steps", 0) >= min_steps:
                    return meta_path.parent
            except ValueError:  # caught mid-replace on a file system without atomic reads
                pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)


def _mapped_shm_inodes():
    """Inodes of the ``/dev/shm`` files some live process maps (its named semaphores)."""
    try:
        device = os.stat("/dev/shm").st_dev
    except OSError:
        return set()
    tag = f"{os.major(device):02x}:{os.minor(device):02x}"
    inodes = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps") as maps:
                for line in maps:
                    fields = line.split()
                    if len(fields) >= 5 and fields[3] == tag:
                        inodes.add(int(fields[4]))
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
    return inodes


def orphan_semaphores_cleaned(before):
    """Unlink the multiprocessing semaphores made since ``before`` that no process maps.

    Killing a sweep's process group with SIGKILL kills its resource tracker too,
    which would have unlinked its pool's named semaphores (``/dev/shm/sem.mp-*``):
    they would stay until the machine restarts. A live process maps the semaphores
    it uses (glibc maps each one it opens), so one mapped by no process is an orphan;
    those of other tests running meanwhile are mapped and stay.

    Parameters
    ----------
    before : set of str
        The ``sem.mp-*`` names present before the killed processes started.

    Returns
    -------
    removed : list of str
    """
    names = semaphore_names() - before
    mapped = _mapped_shm_inodes()
    removed = []
    for name in sorted(names):
        path = os.path.join("/dev/shm", name)
        try:
            if os.stat(path).st_ino not in mapped:
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass
    return removed


def semaphore_names():
    """The ``sem.mp-*`` names in ``/dev/shm`` now (empty where there is none)."""
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("sem.mp-")}
    except OSError:
        return set()


def kill_9_and_resume(config_file, overrides, tmp_path, registry, min_steps=10, inspect=None):
    """Run a config to the end in-process, then again in ``runner.py``, killed with
    SIGKILL once ``min_steps`` steps are saved, and resumed in-process.

    ``inspect(run_dir)``, when given, is called on the killed run before the resume.

    Returns
    -------
    reference : core.store.Run
        The uninterrupted run.
    killed : core.store.Run
        The killed run as it was found (status ``crashed``), before the resume.
    resumed : core.store.Run
        The same folder after ``resume_run``.
    """
    import subprocess
    import sys

    from core.config import load
    from core.loop import resume_run, start_run
    from core.store import load_run

    overrides = list(overrides)
    config, source, _ = load(
        config_file, overrides + [f"run.runs_dir={tmp_path / 'ref'}"], registry
    )
    reference = start_run(config, source, registry)
    runs_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "runner.py"),
            str(config_file),
            "--runs-dir",
            str(runs_dir),
            *overrides,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = wait_for_steps(runs_dir, proc, min_steps=min_steps)
    proc.kill()
    proc.wait()
    killed = load_run(run_dir)
    assert killed.meta  # read (and cached) before the resume rewrites it
    if inspect is not None:
        inspect(run_dir)
    return reference, killed, resume_run(run_dir, registry)
