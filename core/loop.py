"""The one run loop: stoppers -> algorithm step -> loggers -> display -> savers.

:func:`start_run` creates a run directory and runs a resolved config;
:func:`resume_run` continues a saved run from its checkpoint. Both return the
:class:`core.store.Run`. Whatever ends the loop (a stopper, a non-finite loss,
Ctrl-C or SIGTERM, an exception), the final save happens and ``meta.json`` records
status and reason; ``finished`` is written only after that save succeeded.

Underneath, :func:`prepare_run` / :func:`prepare_resume` give an
:class:`Execution` (one run's algorithm, stoppers, loggers, savers and trace) and
:func:`execute` drives one or several of them; several runs of a batchable
algorithm advance in lockstep through one ``step_together`` call per step.
"""

import datetime as _dt
import functools
import math
import os
import platform
import socket
import subprocess
import sys
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

__all__ = [
    "start_run",
    "resume_run",
    "prepare_run",
    "prepare_resume",
    "execute",
    "Execution",
    "describe_error",
    "build_problem",
    "seed_streams",
    "versions",
]


def _utc_now():
    return _dt.datetime.now(_dt.UTC)


def _iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def versions():
    """Versions of relulab, Python, numpy and torch (None when absent), read once."""
    return dict(_versions())


@functools.cache
def _versions():
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


GIT_CACHE_SECONDS = 30.0
"""How long :func:`git_commit` reuses its answer (a sweep starts many runs a second)."""

_git_cache = {}


def git_commit(path=None):
    """Commit hash of the project checkout (with ``+dirty``), or None.

    Asked of git at most every ``GIT_CACHE_SECONDS`` per checkout.
    """
    path = str(path or Path(__file__).resolve().parent.parent)
    now = time.monotonic()
    cached = _git_cache.get(path)
    if cached is None or now - cached[0] > GIT_CACHE_SECONDS:
        cached = _git_cache[path] = (now, _ask_git(path))
    return cached[1]


def _ask_git(path):
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


def prepare_run(config, source="", registry=None, runs_dir=None, config_path=None,
                path=None, display=None, threads=None):
    """Create a run directory for a resolved config, ready to execute.

    Writes ``config.py``, ``config.json``, ``meta.json`` (status ``running``) and
    ``problem.npz``, and sets up the algorithm, stoppers, loggers and savers. A
    failure on the way is recorded as status ``failed`` before it is raised.

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
    display : str, optional
        Live display mode, overriding ``config["run"]["display"]``.

    Returns
    -------
    execution : Execution
        Run it with :func:`execute`.
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
        _record_failure(store, meta, exc)
        raise
    meta.update(bias=bool(problem.bias), n=problem.n, d=problem.d, width=problem.m)
    atomic_save_npz(store.path / "problem.npz", arrays)
    return Execution(store, config, registry, problem, meta, checkpoint=None, display=display)


def prepare_resume(path, registry=None, overrides=(), display=None, threads=None):
    """Reopen a saved run at its checkpoint, ready to continue with :func:`execute`.

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
    return Execution(store, config, registry, problem, meta, checkpoint=checkpoint,
                     display=display)


def start_run(config, source="", registry=None, runs_dir=None, config_path=None, path=None):
    """Create a run directory for a resolved config and run it to the end.

    Parameters are those of :func:`prepare_run`. Returns the :class:`Run`; an
    exception that failed the run is re-raised after the final save.
    """
    execution = prepare_run(config, source, registry, runs_dir, config_path, path)
    return _finish_alone(execution)


def resume_run(path, registry=None, overrides=()):
    """Continue a saved run from its checkpoint, appending to the same trace.

    ``overrides`` (``key=value``) may change e.g. the stoppers to extend a run.
    """
    return _finish_alone(prepare_resume(path, registry, overrides))


def _finish_alone(execution):
    execute([execution])
    if execution.error is not None:
        raise execution.error
    return Run(execution.path)


def _default_registry():
    from .registry import get_registry

    return get_registry()


def describe_error(exc):
    """``"Type: message"``, as a failed run's reason records an exception."""
    return f"{type(exc).__name__}: {exc}"


def _record_failure(store, meta, exc):
    """A run that never started must not read "running"."""
    meta.update(status="failed", reason=describe_error(exc), ended=_iso(_utc_now()))
    store.write_meta(meta)


class Execution:
    """One run being executed: its algorithm, stoppers, loggers, savers and trace.

    Made by :func:`prepare_run` or :func:`prepare_resume`; :func:`execute` drives
    it. After the run, ``status`` and ``reason`` are those written to
    ``meta.json`` and ``error`` is the exception that failed it (or None).
    """

    def __init__(self, store, config, registry, problem, meta, checkpoint, display=None):
        try:
            algo_cfg = dict(config["algorithm"])
            algorithm = registry.get("algorithm", algo_cfg.pop("name"))(**algo_cfg)
            algorithm.registry = registry  # to look up the plugins it names (a prox...)
            algorithm.setup(problem)
            self.stoppers = _build_all(config, registry, "stoppers")
            self.loggers = _build_all(config, registry, "loggers")
            self.savers = _build_all(config, registry, "savers")
        except BaseException as exc:
            _record_failure(store, meta, exc)
            raise
        self.store, self.config, self.meta, self.algorithm = store, config, meta, algorithm
        self.fresh = checkpoint is None
        run_cfg = config["run"]
        self.max_pending = run_cfg["max_pending_mb"] * 2**20
        if checkpoint is None:
            self.trace = TraceWriter(store.trace_dir, 0)
            self.trace.drop_chunks_from(0)
            step, self.elapsed_before = 0, 0.0
        else:
            loop_state = checkpoint["loop"]
            self.trace = TraceWriter(store.trace_dir, loop_state["n_chunks"])
            self.trace.drop_chunks_from(loop_state["n_chunks"])
            algorithm.load_state_dict(checkpoint["algorithm"])
            step, self.elapsed_before = loop_state["step"], loop_state["elapsed"]
        self.ctx = LoopContext(step=step, elapsed=self.elapsed_before, loss=algorithm.loss(),
                               algorithm=algorithm, problem=problem, trace=self.trace,
                               registry=registry)
        for logger in self.loggers:
            logger.setup(self.ctx)
        if checkpoint is not None:
            for logger, state in zip(self.loggers, checkpoint.get("loggers", [])):
                logger.load_state_dict(state)
        self.keep_checkpoint = any(s.checkpoint for s in self.savers) or not self.savers
        self.display = Display(display or run_cfg["display"], title=config["experiment"],
                               refresh_per_second=run_cfg["refresh_per_second"])
        self.status = self.reason = self.error = None
        self.ended = False

    @property
    def path(self):
        return self.store.path

    def begin(self):
        """Start the clock; a new run records and saves its step 0."""
        self.t_start = time.perf_counter()
        self.last_save = (self.t_start, self.ctx.step)
        if self.fresh:
            for logger in self.loggers:
                logger.observe(self.ctx)
            self.save()
        self.display.start(self.ctx.step)

    def save(self, final=False):
        """Flush the trace, write the checkpoint and (unless final) meta."""
        ctx = self.ctx
        self.trace.flush()
        if self.keep_checkpoint:
            self.store.write_checkpoint({
                "loop": {"step": ctx.step, "elapsed": ctx.elapsed,
                         "n_chunks": self.trace.next_chunk},
                "algorithm": self.algorithm.state_dict(),
                "loggers": [lg.state_dict() for lg in self.loggers],
            })
        self.meta.update(steps=ctx.step, wall_time=ctx.elapsed, heartbeat=_iso(_utc_now()),
                         final_loss=_finite_or_none(ctx.loss))
        if not final:
            self.store.write_meta(self.meta)
        self.last_save = (time.perf_counter(), ctx.step)

    def fraction(self):
        """Progress in [0, 1] towards the nearest stopper, or None."""
        values = [p for p in (s.progress(self.ctx) for s in self.stoppers) if p is not None]
        return max(values) if values else None

    def stop_request(self, signals):
        """``(status, reason)`` if the run must end before its next step, else None."""
        ctx = self.ctx
        if signals.requested:
            return "interrupted", signals.requested
        if not math.isfinite(ctx.loss):
            return "diverged", f"non-finite loss ({ctx.loss})"
        hit = next(((s, r) for s in self.stoppers if (r := s.should_stop(ctx))), None)
        return (hit[0].status, hit[1]) if hit else None

    def advance(self):
        """Book-keeping after the algorithm stepped: loss, loggers, display, saves."""
        ctx = self.ctx
        ctx.step += 1
        ctx.loss = self.algorithm.loss()
        now = time.perf_counter()
        ctx.elapsed = self.elapsed_before + (now - self.t_start)
        ctx.since_save_steps = ctx.step - self.last_save[1]
        ctx.since_save_seconds = now - self.last_save[0]
        for logger in self.loggers:
            logger.observe(ctx)
        self.display.update(ctx.step, ctx.loss, ctx.elapsed, self.fraction())
        if self.trace.pending_bytes > self.max_pending or any(
            s.should_save(ctx) for s in self.savers
        ):
            self.save()

    def end(self, status, reason, error=None):
        """Final observation and save, then ``meta.json`` with the outcome.

        A failing final save leaves ``meta.json`` as it was (``running``, read
        as ``crashed``: the run resumes from its last good checkpoint).
        """
        self.ended = True
        ctx = self.ctx
        self.error = error
        try:
            self.display.update(ctx.step, ctx.loss, ctx.elapsed, self.fraction(), force=True)
            self.display.stop()
        except Exception as exc:  # a broken display must not cost the final save
            print(f"warning: display failed: {describe_error(exc)}", file=sys.stderr)
        try:
            ctx.final = True
            try:
                for logger in self.loggers:
                    logger.observe(ctx)
            except Exception as exc:  # keep what we have; report the first problem
                if error is None:
                    status, reason, self.error = "failed", describe_error(exc), exc
            self.save(final=True)
            self.meta.update(status=status, reason=reason, ended=_iso(_utc_now()))
            self.store.write_meta(self.meta)
            self.status, self.reason = status, reason
        except Exception as exc:
            self.error = self.error or exc


def execute(executions):
    """Run executions to their end in lockstep; return their statuses.

    One execution is the ordinary run loop: stoppers -> ``algorithm.step()`` ->
    loggers -> display -> savers. Several (all of one algorithm class) advance
    together: each step, every member still going checks its stoppers, and the
    rest are advanced by one call of the class's
    :meth:`core.components.Algorithm.step_together` (a batched program for
    ``batchable`` algorithms); a member that stops (a stopper, a non-finite loss,
    a failing logger) is ended and dropped, the others go on. Ctrl-C / SIGTERM
    ends every member ``interrupted``; an exception in a shared step fails every
    member it was stepping. Each member's clock is the wall time of the whole
    lockstep loop.

    Returns
    -------
    statuses : list of str or None
        As written to each run's ``meta.json`` (None where the final save failed).
    """
    executions = list(executions)
    classes = {type(ex.algorithm) for ex in executions}
    if len(classes) > 1:
        raise ValueError("executions run together must share one algorithm class; got "
                         + ", ".join(sorted(c.__name__ for c in classes)))
    active = []
    with StopSignals() as signals:
        try:
            for ex in executions:
                try:
                    ex.begin()
                    active.append(ex)
                except Exception as exc:
                    ex.end("failed", describe_error(exc), exc)
            while active:
                active = [ex for ex in active if not _ended_by(ex, ex.stop_request(signals))]
                if not active:
                    break
                try:
                    if len(active) == 1:
                        active[0].algorithm.step()
                    else:
                        type(active[0].algorithm).step_together([ex.algorithm for ex in active])
                except Exception as exc:
                    for ex in active:
                        ex.end("failed", describe_error(exc), exc)
                    break
                active = [ex for ex in active if _advanced(ex)]
        except BaseException as exc:
            interrupt = isinstance(exc, KeyboardInterrupt)
            for ex in executions:
                if not ex.ended:
                    ex.end(*(("interrupted", "SIGINT") if interrupt else
                             ("failed", describe_error(exc), exc)))
            if not interrupt:
                raise
    return [ex.status for ex in executions]


def _ended_by(execution, request):
    if request is not None:
        execution.end(*request)
    return request is not None


def _advanced(execution):
    try:
        execution.advance()
        return True
    except Exception as exc:
        execution.end("failed", describe_error(exc), exc)
        return False


def _finite_or_none(x):
    return float(x) if x is not None and math.isfinite(x) else None

