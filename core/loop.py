"""The one run loop: stoppers -> algorithm step -> loggers -> display -> savers.

:func:`start_run` creates a run directory and runs a resolved config;
:func:`resume_run` continues a saved run from its checkpoint. Both return the
:class:`core.store.Run`. Whatever ends the loop (a stopper, a non-finite loss,
Ctrl-C or SIGTERM, an exception), the final save happens and ``meta.json`` records
status and reason; ``finished`` is written only after that save succeeded.
"""

import datetime as _dt
import math
import os
import platform
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

from .cli import StopSignals
from .components import LoopContext, Problem
from .config import resolve
from .display import Display
from .errors import RunStoreError
from .store import (
    Run,
    RunStore,
    TraceWriter,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    load_npz,
)

__all__ = ["start_run", "resume_run", "build_problem", "seed_streams", "versions"]


def _utc_now():
    return _dt.datetime.now(_dt.UTC)


def _iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def versions():
    """Versions of relulab, Python, numpy and torch (None when absent)."""
    import importlib.metadata
    import sys

    out = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        out["relulab"] = importlib.metadata.version("relulab")
    except importlib.metadata.PackageNotFoundError:
        out["relulab"] = "dev"
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            out["torch"] = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            out["torch"] = None
    else:
        out["torch"] = torch.__version__
    return out


def git_commit(path=None):
    """Commit hash of the project checkout (with ``+dirty``), or None."""
    path = path or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5,
        )
        if out.returncode != 0:
            return None
        commit = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def seed_streams(seed):
    """Independent generators for data, init and algorithm, all from ``seed``."""
    data_ss, init_ss, algo_ss = np.random.SeedSequence(seed).spawn(3)
    return (np.random.default_rng(data_ss), np.random.default_rng(init_ss),
            np.random.default_rng(algo_ss))


def build_problem(config, registry, arrays=None):
    """Build the :class:`Problem` of a resolved config.

    Parameters
    ----------
    config : dict
        Resolved config.
    registry : core.registry.Registry
    arrays : dict, optional
        Saved ``problem.npz`` arrays (on resume): used instead of regenerating.

    Returns
    -------
    problem : Problem
    arrays : dict of ndarray
        What to store in ``problem.npz``.
    """
    rng_data, rng_init, rng_algo = seed_streams(config["seed"])
    data_cfg = dict(config["data"])
    data_cls = registry.get("data", data_cfg.pop("name"))
    bias = bool(getattr(data_cls, "bias_column", False)) or bool(data_cfg.get("bias", False))
    if arrays is None:
        data = data_cls(**data_cfg).load(rng_data)
        bias = data.bias
        init_cfg = dict(config["init"])
        init = registry.get("init", init_cfg.pop("name"))(**init_cfg)
        k = 1 if data.Y.ndim == 1 else data.Y.shape[1]
        W0, a0 = init.initialize(data.X.shape[1], config["model"]["width"], k, rng_init)
        if data.Y.ndim == 2 and a0.ndim == 1:
            a0 = a0[:, None]
        arrays = {**data.arrays(), "W0": W0, "a0": a0, "bias": np.array(bias)}
    problem = Problem(
        X=arrays["X"], Y=arrays["Y"], W0=arrays["W0"], a0=arrays["a0"],
        scaling=config["model"]["scaling"], loss=config["model"]["loss"],
        bias=bool(arrays.get("bias", bias)), seed=config["seed"], rng=rng_algo,
        X_test=arrays.get("X_test"), Y_test=arrays.get("Y_test"),
        extras={k[len("extra."):]: v for k, v in arrays.items() if k.startswith("extra.")},
    )
    return problem, arrays


def _build_all(config, registry, section):
    return [registry.get(section.rstrip("s"), name)(**params)
            for name, params in config[section].items()]


def start_run(config, source="", registry=None, runs_dir=None, config_path=None, path=None):
    """Create a run directory for a resolved config and run it to the end.

    Parameters
    ----------
    config : dict
        Resolved config (:func:`core.config.resolve`).
    source : str
        The config file's text, copied to ``config.py``.
    registry : Registry, optional
    runs_dir : path, optional
        Root of the run store (default: ``config["run"]["runs_dir"]``).
    config_path : str, optional
        Recorded in meta.
    path : path, optional
        Exact run directory to create (sweeps use it); default
        ``runs_dir/<experiment>/<UTC stamp>-<short id>``.

    Returns
    -------
    run : core.store.Run
    """
    registry = registry or _default_registry()
    runs_dir = runs_dir or config["run"]["runs_dir"]
    now = _utc_now()
    if path is not None:
        store = RunStore.create_at(path)
    else:
        store = RunStore.create(runs_dir, config["experiment"],
                                now.strftime("%Y%m%dT%H%M%SZ"), os.urandom(3).hex())
    atomic_write_bytes(store.path / "config.py", source.encode())
    atomic_write_json(store.path / "config.json", config)
    meta = {
        "status": "running",
        "reason": None,
        "experiment": config["experiment"],
        "run_id": store.path.name,
        "config_file": str(config_path) if config_path else None,
        "created": _iso(now),
        "started": _iso(now),
        "ended": None,
        "steps": 0,
        "wall_time": 0.0,
        "seed": config["seed"],
        "versions": versions(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "resumes": [],
    }
    store.write_meta(meta)
    try:
        problem, arrays = build_problem(config, registry)
    except BaseException as exc:
        meta.update(status="failed", reason=f"{type(exc).__name__}: {exc}", ended=_iso(_utc_now()))
        store.write_meta(meta)
        raise
    meta.update(bias=bool(problem.bias), n=problem.n, d=problem.d, width=problem.m)
    atomic_save_npz(store.path / "problem.npz", arrays)
    _execute(store, config, registry, problem, meta, checkpoint=None)
    return Run(store.path)


def resume_run(path, registry=None, overrides=()):
    """Continue a saved run from its checkpoint, appending to the same trace.

    ``overrides`` (``key=value``) may change e.g. the stoppers to extend a run.
    """
    from .config import apply_overrides

    registry = registry or _default_registry()
    store = RunStore.open(path)
    run = Run(store.path)
    meta = run.meta
    if meta.get("status") == "running":
        raise RunStoreError(f"run {store.path} is still running (pid {meta.get('pid')})")
    config = run.config
    if overrides:
        config = resolve(apply_overrides(config, overrides), registry)
        atomic_write_json(store.path / "config.json", config)
    arrays = load_npz(store.path / "problem.npz")
    problem, _ = build_problem(config, registry, arrays=arrays)
    checkpoint = store.read_checkpoint()
    now = _iso(_utc_now())
    meta.update(status="running", reason=None, ended=None, pid=os.getpid(),
                host=socket.gethostname())
    meta.setdefault("resumes", []).append(
        {"at": now, "from_step": checkpoint["loop"]["step"] if checkpoint else 0,
         "overrides": list(overrides)}
    )
    store.write_meta(meta)
    _execute(store, config, registry, problem, meta, checkpoint=checkpoint)
    return Run(store.path)


def _default_registry():
    from .registry import get_registry

    return get_registry()


def _execute(store, config, registry, problem, meta, checkpoint):
    try:
        algo_cfg = dict(config["algorithm"])
        algorithm = registry.get("algorithm", algo_cfg.pop("name"))(**algo_cfg)
        algorithm.registry = registry  # to look up the plugins it names (a prox...)
        algorithm.setup(problem)
        stoppers = _build_all(config, registry, "stoppers")
        loggers = _build_all(config, registry, "loggers")
        savers = _build_all(config, registry, "savers")
    except BaseException as exc:  # a run that never started must not read "running"
        meta.update(status="failed", reason=f"{type(exc).__name__}: {exc}",
                    ended=_iso(_utc_now()))
        store.write_meta(meta)
        raise
    run_cfg = config["run"]
    max_pending = run_cfg["max_pending_mb"] * 2**20

    if checkpoint is None:
        trace = TraceWriter(store.trace_dir, 0)
        trace.drop_chunks_from(0)
        step, elapsed_before = 0, 0.0
    else:
        loop_state = checkpoint["loop"]
        trace = TraceWriter(store.trace_dir, loop_state["n_chunks"])
        trace.drop_chunks_from(loop_state["n_chunks"])
        algorithm.load_state_dict(checkpoint["algorithm"])
        step, elapsed_before = loop_state["step"], loop_state["elapsed"]
    ctx = LoopContext(step=step, elapsed=elapsed_before, loss=algorithm.loss(),
                      algorithm=algorithm, problem=problem, trace=trace, registry=registry)
    for logger in loggers:
        logger.setup(ctx)
    if checkpoint is not None:
        for logger, state in zip(loggers, checkpoint.get("loggers", [])):
            logger.load_state_dict(state)

    t_start = time.perf_counter()
    last_save = [t_start, step]
    keep_checkpoint = any(s.checkpoint for s in savers) or not savers

    def save(final=False):
        trace.flush()
        if keep_checkpoint:
            store.write_checkpoint({
                "loop": {"step": ctx.step, "elapsed": ctx.elapsed, "n_chunks": trace.next_chunk},
                "algorithm": algorithm.state_dict(),
                "loggers": [lg.state_dict() for lg in loggers],
            })
        meta.update(steps=ctx.step, wall_time=ctx.elapsed, heartbeat=_iso(_utc_now()),
                    final_loss=_finite_or_none(ctx.loss))
        if not final:
            store.write_meta(meta)
        last_save[:] = [time.perf_counter(), ctx.step]

    def fraction():
        values = [p for p in (s.progress(ctx) for s in stoppers) if p is not None]
        return max(values) if values else None

    display = Display(run_cfg["display"], title=config["experiment"],
                      refresh_per_second=run_cfg["refresh_per_second"])
    status, reason, error = "finished", None, None
    with StopSignals() as signals:
        try:
            if checkpoint is None:
                for logger in loggers:
                    logger.observe(ctx)
                save()
            display.start(step)
            while True:
                if signals.requested:
                    status, reason = "interrupted", signals.requested
                    break
                if not math.isfinite(ctx.loss):
                    status, reason = "diverged", f"non-finite loss ({ctx.loss})"
                    break
                hit = next(((s, r) for s in stoppers if (r := s.should_stop(ctx))), None)
                if hit:
                    status, reason = hit[0].status, hit[1]
                    break
                algorithm.step()
                ctx.step += 1
                ctx.loss = algorithm.loss()
                now = time.perf_counter()
                ctx.elapsed = elapsed_before + (now - t_start)
                ctx.since_save_steps = ctx.step - last_save[1]
                ctx.since_save_seconds = now - last_save[0]
                for logger in loggers:
                    logger.observe(ctx)
                display.update(ctx.step, ctx.loss, ctx.elapsed, fraction())
                if trace.pending_bytes > max_pending or any(s.should_save(ctx) for s in savers):
                    save()
        except KeyboardInterrupt:
            status, reason = "interrupted", "SIGINT"
        except Exception as exc:
            status, reason, error = "failed", f"{type(exc).__name__}: {exc}", exc
        finally:
            display.update(ctx.step, ctx.loss, ctx.elapsed, fraction(), force=True)
            display.stop()
            ctx.final = True
            try:
                for logger in loggers:
                    logger.observe(ctx)
            except Exception as exc:  # keep what we have; report the first problem
                if error is None:
                    status, reason, error = "failed", f"{type(exc).__name__}: {exc}", exc
            save(final=True)
            meta.update(status=status, reason=reason, ended=_iso(_utc_now()))
            store.write_meta(meta)
    if error is not None:
        raise error
    return status


def _finite_or_none(x):
    return float(x) if x is not None and math.isfinite(x) else None

