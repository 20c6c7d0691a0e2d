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

import math
import sys
import time

from .cli import StopSignals
from .components import LoopContext
from .display import Display
from .durability import current_group
from .kinds import KIND
from .problem import build_problem, seed_streams
from .provenance import git_commit, iso, utc_now, versions
from .run_folder import create_run_folder, reopen_run_folder
from .store import Run, TraceWriter, atomic_write_json
from .threads import limit_threads, resolve_threads

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
    "git_commit",
]


def prepare_run(
    config,
    source="",
    registry=None,
    runs_dir=None,
    config_path=None,
    path=None,
    display=None,
    threads=None,
    record_start=True,
):
    """Create a run directory for a resolved config, ready to execute.

    The problem is built first (a data set that fails leaves no folder); then the
    folder is made and locked (``run.lock``), ``config.py``, ``config.json``,
    ``problem.npz`` and ``meta.json`` (status ``running``) are written, and the
    algorithm, stoppers, loggers and savers are set up. A failure in that set-up
    is recorded as status ``failed`` before it is raised.

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
    threads : int, optional
        Threads to use when ``config["run"]["threads"]`` is 0 (automatic); sweep
        workers pass 1.
    record_start : bool
        Write ``meta.json`` now (default). False (an ensemble member,
        :func:`core.sweep.run_points`) leaves it to the run's first save, often its
        final one: a tiny run then writes it once, as a new file (replacing a file
        makes ext4 flush the new data: 0.11 ms against 0.05 for a new
        ``meta.json`` on the development disk, in a group commit). Until then the
        folder is not listed as a run, and a process killed before that save leaves
        a folder without ``meta.json``, which a sweep starts again from scratch. A
        set-up that fails still records ``failed``.

    Returns
    -------
    execution : Execution
        Run it with :func:`execute`.
    """
    registry = registry or _default_registry()
    problem, arrays = build_problem(config, registry)
    store, meta, lock = create_run_folder(
        config, source, arrays, problem, runs_dir, config_path, path, record_start
    )
    return Execution(
        store,
        config,
        registry,
        problem,
        meta,
        checkpoint=None,
        display=display,
        lock=lock,
        threads=threads,
    )


def prepare_resume(path, registry=None, overrides=(), display=None, threads=None, lock=None):
    """Reopen a saved run at its checkpoint, ready to continue with :func:`execute`.

    A run another process is writing is refused before anything is read but its
    lock and ``meta.json``. ``overrides`` (``key=value``) may change what a resume
    may change (:func:`core.run_folder.check_resume_changes`: stoppers, loggers,
    savers, display, threads, resume-safe algorithm parameters); the config is
    rewritten, and the accepted changes recorded in this resume's entry of
    ``meta.json``, only once the run is set up again. ``lock``: the run's
    :class:`core.locks.FolderLock`, when the caller already holds it.
    """
    registry = registry or _default_registry()
    reopened = reopen_run_folder(path, registry, overrides, lock=lock)
    execution = Execution(
        reopened.store,
        reopened.config,
        registry,
        reopened.problem,
        reopened.meta,
        checkpoint=reopened.checkpoint,
        display=display,
        lock=reopened.lock,
        threads=threads,
    )
    if reopened.changes:
        atomic_write_json(reopened.store.path / "config.json", reopened.config)
    reopened.store.write_meta(reopened.meta)
    return execution


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


def _build_section(config, registry, kind_name):
    section = KIND[kind_name].section
    return [registry.get(kind_name, name)(**params) for name, params in config[section].items()]


def _record_failure(store, meta, exc):
    """A run that never started must not read "running"."""
    meta.update(status="failed", reason=describe_error(exc), ended=iso(utc_now()))
    store.write_meta(meta)


class Execution:
    """One run being executed: its algorithm, stoppers, loggers, savers and trace.

    Made by :func:`prepare_run` or :func:`prepare_resume`; :func:`execute` drives
    it. After the run, ``status`` and ``reason`` are those written to
    ``meta.json`` and ``error`` is the exception that failed it (or None). The
    run's lock is held from construction to the end of :meth:`end`; whatever
    fails during construction is recorded as status ``failed`` (and the loggers
    set up so far are closed) before it is raised.
    """

    def __init__(
        self,
        store,
        config,
        registry,
        problem,
        meta,
        checkpoint,
        display=None,
        lock=None,
        threads=None,
    ):
        self.store, self.config, self.meta, self.lock = store, config, meta, lock
        self.loggers = []
        self.ended = False
        self.recorded = False  # the final meta.json written (then equal to self.meta)
        try:
            self._setup(config, registry, problem, checkpoint, display, threads)
        except BaseException as exc:
            try:
                _record_failure(store, meta, exc)
                self._close_loggers(None)
            finally:
                self._release()
            raise

    def _setup(self, config, registry, problem, checkpoint, display, threads):
        run_cfg = config["run"]
        self.threads = resolve_threads(
            run_cfg["threads"] or threads or 0, problem, worker=bool(threads)
        )
        self.meta["threads"] = self.threads
        with limit_threads(self.threads):
            self._build(config, registry, problem, checkpoint)
        self.keep_checkpoint = any(s.checkpoint for s in self.savers) or not self.savers
        self.display = Display(
            display or run_cfg["display"],
            title=config["experiment"],
            refresh_per_second=run_cfg["refresh_per_second"],
        )
        self.status = self.reason = self.error = None

    def _build(self, config, registry, problem, checkpoint):
        """The algorithm (set up, checkpoint restored), stoppers, loggers, savers, trace."""
        algo_cfg = dict(config["algorithm"])
        algorithm = registry.get("algorithm", algo_cfg.pop("name"))(**algo_cfg)
        algorithm.setup(problem)
        self.algorithm = algorithm
        self.stoppers = _build_section(config, registry, "stopper")
        loggers = _build_section(config, registry, "logger")
        self.savers = _build_section(config, registry, "saver")
        self.fresh = checkpoint is None
        self.max_pending = config["run"]["max_pending_mb"] * 2**20
        if checkpoint is None:
            new = self.store.created  # an empty trace/ just made: nothing to check or drop
            self.trace = TraceWriter(self.store.trace_dir, 0, new=new)
            if not new:
                self.trace.drop_chunks_from(0)
            step, self.elapsed_before = 0, 0.0
        else:
            loop_state = checkpoint["loop"]
            self.trace = TraceWriter(self.store.trace_dir, loop_state["n_chunks"])
            self.trace.drop_chunks_from(loop_state["n_chunks"])
            algorithm.load_state_dict(checkpoint["algorithm"])
            step, self.elapsed_before = loop_state["step"], loop_state["elapsed"]
        self.start_step = step
        self.ctx = LoopContext(
            step=step,
            elapsed=self.elapsed_before,
            loss=math.nan,  # read at begin(), after the ensemble's start_together
            algorithm=algorithm,
            problem=problem,
            trace=self.trace,
            registry=registry,
            run_dir=self.store.path,
        )
        for logger in loggers:
            logger.setup(self.ctx)
            self.loggers.append(logger)
        if checkpoint is not None:
            for logger, state in zip(self.loggers, checkpoint.get("loggers", [])):
                logger.load_state_dict(state)

    def _close_loggers(self, ctx):
        """``close`` every set-up logger once; return the first error (or None)."""
        first = None
        loggers, self.loggers = self.loggers, []
        for logger in loggers:
            try:
                logger.close(ctx)
            except Exception as exc:
                first = first or exc
        return first

    def _release(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def path(self):
        return self.store.path

    def begin(self, save=True):
        """Read the loss, start the clock; a new run records its step 0 and, with
        ``save``, saves it.

        Members of an ensemble (:func:`execute` with several executions) do not save
        step 0: their first save is a saver's or the final one, so a batch of tiny
        runs makes one durable save per member. Nothing is lost: a run killed
        before its first save has no checkpoint and a resume starts it from step 0.
        """
        self.ctx.loss = self.algorithm.loss()
        self.t_start = time.perf_counter()
        self.last_save = (self.t_start, self.ctx.step)
        if self.fresh:
            for logger in self.loggers:
                logger.observe(self.ctx)
            if save:
                self.save()
        self.display.start(self.ctx.step)

    def save(self, final=False):
        """Flush the trace, write the checkpoint and (unless final) meta."""
        ctx = self.ctx
        self.trace.flush()
        if self.keep_checkpoint:
            self.store.write_checkpoint(
                {
                    "loop": {
                        "step": ctx.step,
                        "elapsed": ctx.elapsed,
                        "n_chunks": self.trace.next_chunk,
                    },
                    "algorithm": self.algorithm.state_dict(),
                    "loggers": [lg.state_dict() for lg in self.loggers],
                }
            )
        self.meta.update(
            steps=ctx.step,
            wall_time=ctx.elapsed,
            heartbeat=iso(utc_now()),
            final_loss=_finite_or_none(ctx.loss),
        )
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
        for stopper in self.stoppers:
            reason = stopper.should_stop(ctx)
            if reason:
                return stopper.status, reason
        return None

    def advance(self):
        """Book-keeping after the algorithm stepped: loss, loggers, display, saves.

        Runs once per step and member: the display gets :meth:`fraction` as a
        callable (it asks only when it redraws) and the savers are asked in a plain loop.
        """
        ctx = self.ctx
        ctx.step += 1
        ctx.loss = self.algorithm.loss()
        now = time.perf_counter()
        ctx.elapsed = self.elapsed_before + (now - self.t_start)
        ctx.since_save_steps = ctx.step - self.last_save[1]
        ctx.since_save_seconds = now - self.last_save[0]
        for logger in self.loggers:
            logger.observe(ctx)
        self.display.update(ctx.step, ctx.loss, ctx.elapsed, self.fraction, now=now)
        save = self.trace.pending_bytes > self.max_pending
        if not save:
            for saver in self.savers:
                if saver.should_save(ctx):
                    save = True
                    break
        if save:
            self.save()

    def end(self, status, reason, error=None):
        """Final observation and save, loggers closed, then ``meta.json`` with the outcome.

        A failing final save leaves ``meta.json`` as it was (``running``, read
        as ``crashed``: the run resumes from its last good checkpoint). The run's
        lock is released last, whatever happened.
        """
        self.ended = True
        ctx = self.ctx
        self.error = error
        handed = False  # the lock's release handed to _record_end
        try:
            self.display.update(ctx.step, ctx.loss, ctx.elapsed, self.fraction(), force=True)
            self.display.stop()
        except Exception as exc:  # a broken display must not cost the final save
            print(f"warning: display failed: {describe_error(exc)}", file=sys.stderr)
        try:
            ctx.final = True
            ctx.status, ctx.reason = status, reason
            try:
                for logger in self.loggers:
                    logger.observe(ctx)
            except Exception as exc:  # keep what we have; report the first problem
                if error is None:
                    status, reason, self.error = "failed", describe_error(exc), exc
            self.save(final=True)
            ctx.status, ctx.reason = status, reason
            closing = self._close_loggers(ctx)
            if closing is not None and self.error is None:
                status, reason, self.error = "failed", describe_error(closing), closing
            self._forget_idle_resume()
            self.meta.update(status=status, reason=reason, ended=iso(utc_now()))
            self.status, self.reason = status, reason
            group = current_group()
            if group is None:
                self._record_end()
            else:  # after the run's other files are durable (core.durability)
                group.defer(self._record_end)
            handed = True
        except Exception as exc:
            self.error = self.error or exc
        finally:
            self._close_loggers(ctx)
            if not handed:
                self._release()

    def _record_end(self):
        """Write the final ``meta.json``, then release the run's lock (whatever happened)."""
        try:
            self.store.write_meta(self.meta)
            self.recorded = True
        except Exception as exc:
            self.error = self.error or exc
            self.status = self.reason = None  # meta.json still says running: crashed
        finally:
            self._release()

    def _forget_idle_resume(self):
        """A resume that made no step and changed nothing leaves no entry in meta."""
        resumes = self.meta.get("resumes") or []
        if (
            not self.fresh
            and resumes
            and self.ctx.step == self.start_step
            and (not resumes[-1].get("changes"))
        ):
            resumes.pop()


def execute(executions):
    """Run executions to their end in lockstep; return their statuses.

    One execution is the ordinary run loop: stoppers -> ``algorithm.step()`` ->
    loggers -> display -> savers, after one call of the class's
    :meth:`core.components.Algorithm.start_together` for all members. Several
    (all of one algorithm class) advance together: each step, every member still
    going checks its stoppers, and the rest are advanced by one call of the class's
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
        raise ValueError(
            "executions run together must share one algorithm class; got "
            + ", ".join(sorted(c.__name__ for c in classes))
        )
    active = []
    group = current_group()
    threads = max((ex.threads for ex in executions), default=1)
    with StopSignals() as signals, limit_threads(threads):
        try:
            _start_together(executions)
            for ex in executions:
                try:
                    ex.begin(save=len(executions) == 1)
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
                if group is not None:  # record members that ended, sync periodic saves
                    group.commit_if_due()
        except BaseException as exc:
            interrupt = isinstance(exc, KeyboardInterrupt)
            for ex in executions:
                if not ex.ended:
                    ex.end(
                        *(
                            ("interrupted", "SIGINT")
                            if interrupt
                            else ("failed", describe_error(exc), exc)
                        )
                    )
            if not interrupt:
                raise
    return [ex.status for ex in executions]


def _start_together(executions):
    """One ``start_together`` call for all members (each measures its own start if it fails)."""
    if executions:
        try:
            type(executions[0].algorithm).start_together([ex.algorithm for ex in executions])
        except Exception:
            pass  # not the members' error: each member's begin() measures its own start


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
