"""Loggers mirroring a run into the tracking tools researchers already use.

``tensorboard`` writes TensorBoard event files (``torch.utils.tensorboard``, extra
``tensorboard``); ``mlflow`` logs to an MLflow tracking store (an SQLite database by
default, or any tracking URI; extra ``mlflow``). Both are *mirrors*: relulab's own
trace is written as always (by the ``scalars`` logger), these copy what a run
records into the tool, at their own cadence (``every``, ``per_decade``, like
``scalars``): the loss, the elapsed seconds, the algorithm's scalars and the
``metrics`` they name (computed again, as ``scalars`` computes its own), and the
resolved config as hyper-parameters (dotted keys, ``algorithm.lr``; lists and dicts
as JSON text).

A resumed run continues the same TensorBoard run (the same folder) and the same
MLflow run (its id is kept in ``RUN/mlflow.json``), and the tool ends up holding each
logged step once, however the previous process ended: a resume restarts at the
checkpoint's step C, so it first finds the last step S the tool holds (events a
killed process wrote but had not flushed are lost), sends the steps S < t <= C from
relulab's own trace (the ``scalars`` rows, at this logger's cadence), and then logs
from C + 1 on; what the tool holds beyond C is hidden (TensorBoard's
``purge_step``) or, being the same values (a resume is deterministic), left as is
and not sent again (MLflow, whose metric points cannot be deleted).
"""

import contextlib
import json
import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np

from core.errors import PluginError
from core.hookspecs import hookimpl
from core.params import Param
from core.store import atomic_write_json, read_json, read_stream
from plugins.loggers import Scalars, on_cadence

__all__ = ["TensorBoard", "MLflow", "hyperparameters", "MLFLOW_FILE"]

MLFLOW_FILE = "mlflow.json"
"""The file in the run folder that names the MLflow run a resume continues."""


def hyperparameters(run_dir):
    """The run's resolved config as ``{dotted key: int | float | str | bool}``.

    Read from ``RUN/config.json``; lists, dicts and None become JSON text (the
    types both TensorBoard's hparams and MLflow's params accept).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = pathlib.Path(tmp, "config.json").write_text(
    ...         '{"seed": 0, "model": {"width": 8}, "algorithm": {"betas": [0.9, 0.99]}}'
    ...     )
    ...     hyperparameters(tmp)
    {'seed': 0, 'model.width': 8, 'algorithm.betas': '[0.9, 0.99]'}
    """
    from core.run_folder import config_values

    out = {}
    for key, value in config_values(read_json(Path(run_dir) / "config.json")).items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = json.dumps(value, sort_keys=True)
    return out


_MIRROR_PARAMS = tuple(p for p in Scalars.params if p.name in ("every", "per_decade", "metrics"))


class _Mirror(Scalars):
    """A ``scalars``-like logger whose rows go to a tracking tool, not to the trace."""

    def row(self, ctx):
        """``{name: float}``: loss, elapsed, the algorithm's scalars and the metrics."""
        row = {"loss": ctx.loss, "elapsed": ctx.elapsed}
        row.update(ctx.algorithm.scalars())
        for metric in self._metrics:
            row.update(metric.compute(ctx.algorithm, ctx.problem))
        out = {}
        for key, value in row.items():
            value = np.asarray(value)
            if value.size == 1 and value.dtype.kind in "biuf":
                out[key] = float(value.reshape(()))
        return out

    def record(self, ctx):
        self.write(ctx.step, self.row(ctx))

    def write(self, step, row):
        raise NotImplementedError

    def backfill(self, ctx, after):
        """Write the saved trace's ``scalars`` rows of steps ``after < t <= ctx.step``.

        Only the steps this logger's cadence logs (the run's last step too, when
        the trace has it); columns that are not single numbers are left out.
        Returns the number of rows written.
        """
        if ctx.run_dir is None or ctx.step <= after:
            return 0
        columns = read_stream(Path(ctx.run_dir) / "trace", "scalars")
        if "step" not in columns:
            return 0
        steps = np.asarray(columns["step"])
        keys = [k for k, v in columns.items() if k != "step" and np.asarray(v).ndim == 1]
        written = 0
        for i in np.flatnonzero((steps > after) & (steps <= ctx.step)):
            step = int(steps[i])
            if step != ctx.step and not on_cadence(step, self.every, self.per_decade):
                continue
            row = {k: float(columns[k][i]) for k in keys if columns[k].dtype.kind in "biuf"}
            self.write(step, row)
            written += 1
        return written


@contextlib.contextmanager
def _quiet(*names):
    """Lower the chatter of the named loggers (database set-up messages) to warnings,
    and silence the SQLAlchemy deprecation notice MLflow's own store code raises (about
    its ``noload`` loader strategy: nothing a relulab user can act on)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="The ``noload`` loader strategy", category=DeprecationWarning
            )
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class TensorBoard(_Mirror):
    """Mirror the run's scalars and its config (as hparams) into TensorBoard event files.

    Event files go to ``log_dir`` (default ``RUN/tensorboard``; ``tensorboard
    --logdir runs`` shows every run). Scalars are tagged by name (``loss``,
    ``elapsed``, ``grad_norm``...) at the run's step; the config is written once, as
    the HParams plugin's session (each dotted key a hyper-parameter, ``loss`` its
    metric). A resume appends a new event file to the same folder and purges the
    steps after the checkpoint (TensorBoard's ``purge_step``).
    """

    name = "tensorboard"
    requires = ("torch", "tensorboard")
    extra = "tensorboard"
    params = _MIRROR_PARAMS + (
        Param("log_dir", str, "", "folder of the event files ('': RUN/tensorboard)"),
        Param("flush_seconds", float, 10.0, "write buffered events at least this often", low=0),
    )

    def _log_dir(self, ctx):
        if self.log_dir:
            return Path(self.log_dir).expanduser()
        if ctx.run_dir is None:
            raise PluginError("logger tensorboard: the run has no folder; set log_dir")
        return Path(ctx.run_dir) / "tensorboard"

    def setup(self, ctx):
        super().setup(ctx)
        from torch.utils.tensorboard import SummaryWriter

        log_dir = self._log_dir(ctx)
        files = sorted(log_dir.glob("events.out.tfevents.*")) if log_dir.is_dir() else []
        self._writer = SummaryWriter(
            log_dir=str(log_dir),
            purge_step=ctx.step + 1 if files else None,
            flush_secs=self.flush_seconds,
        )
        if not files:
            if ctx.run_dir is not None:
                self._write_hparams(ctx)
            return
        self.backfill(ctx, after=_last_event_step(files, upto=ctx.step))

    def _write_hparams(self, ctx):
        from torch.utils.tensorboard.summary import hparams

        summaries = hparams(hyperparameters(ctx.run_dir), {"loss": ctx.loss})
        writer = self._writer._get_file_writer()
        for summary in summaries:
            writer.add_summary(summary)

    def write(self, step, row):
        for key, value in row.items():
            self._writer.add_scalar(key, value, global_step=step)

    def close(self, ctx):
        writer = getattr(self, "_writer", None)
        if writer is not None:
            self._writer = None
            writer.flush()
            writer.close()


def _last_event_step(files, upto):
    """The largest step ``<= upto`` of a scalar event in TensorBoard event ``files`` (-1)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    last = -1
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("summary") and event.step <= upto:
                last = max(last, event.step)
    return last


_MLFLOW_STATUS = {
    "finished": "FINISHED",
    "diverged": "FAILED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}


class MLflow(_Mirror):
    """Mirror the run's scalars and its config (as params) into an MLflow run.

    ``tracking_uri``: any MLflow tracking URI; default ``sqlite:///<runs
    root>/mlflow.db`` (one database for all the runs of the runs root; a sweep's
    points share ``SWEEP/mlflow.db``). To browse them, install the full ``mlflow``
    (its server is not in ``mlflow-skinny``) and run ``mlflow ui --backend-store-uri
    sqlite:///runs/mlflow.db``. (MLflow 3 refuses the ``./mlruns`` file store unless
    ``MLFLOW_ALLOW_FILE_STORE=true``.) The MLflow experiment is the
    run's experiment (or ``experiment``), the MLflow run is named after the run's
    folder and tagged ``relulab.run_dir``; the config is logged as params when the
    MLflow run is made. Metrics are buffered and sent every ``flush_seconds`` and at
    the end; the run's final status becomes the MLflow run's (``FINISHED``,
    ``FAILED``, ``KILLED``; ``RUNNING`` again while resumed). A resume that changes
    ``tracking_uri`` starts a new MLflow run in the new store. SQLite serialises
    writers: for sweeps on many workers, an MLflow tracking server's ``http://`` URI
    scales better. The ids are kept in
    ``RUN/mlflow.json``, which a resume reads to continue the same MLflow run.
    """

    name = "mlflow"
    requires = ("mlflow", "sqlalchemy", "alembic")
    extra = "mlflow"
    params = _MIRROR_PARAMS + (
        Param("tracking_uri", str, "", "MLflow tracking URI ('': sqlite:///<runs root>/mlflow.db)"),
        Param("experiment", str, "", "MLflow experiment name ('': the run's experiment)"),
        Param("flush_seconds", float, 5.0, "send buffered metrics at least this often", low=0),
    )

    def _uri(self, run_dir):
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{Path(run_dir).resolve().parent.parent / 'mlflow.db'}"

    def setup(self, ctx):
        super().setup(ctx)
        if ctx.run_dir is None:
            raise PluginError("logger mlflow: the run has no folder to keep its MLflow run id")
        from mlflow.tracking import MlflowClient

        run_dir = Path(ctx.run_dir)
        uri = self._uri(run_dir)
        self._pending = []
        self._run_id = None
        self._held = -1  # steps up to this one are in the MLflow run already
        self._flushed = time.monotonic()
        with _quiet("mlflow", "alembic"):
            self._client = MlflowClient(tracking_uri=uri)
            ids_path = run_dir / MLFLOW_FILE
            saved = read_json(ids_path) if ids_path.is_file() else None
            if saved and saved.get("tracking_uri") == uri:
                self._run_id = saved["run_id"]
                self._client.update_run(self._run_id, status="RUNNING")
                history = self._client.get_metric_history(self._run_id, "loss")
                held = max((m.step for m in history), default=-1)
                self.backfill(ctx, after=held)
                self._held = held
                return
            meta = read_json(run_dir / "meta.json")
            name = self.experiment or meta.get("experiment") or "relulab"
            experiment = self._client.get_experiment_by_name(name)
            experiment_id = (
                experiment.experiment_id if experiment else self._client.create_experiment(name)
            )
            run = self._client.create_run(
                experiment_id,
                run_name=run_dir.name,
                tags={"relulab.run_dir": str(run_dir.resolve())},
            )
            self._run_id = run.info.run_id
            self._log_params(hyperparameters(run_dir))
            atomic_write_json(
                ids_path,
                {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": self._run_id},
            )

    def _log_params(self, values):
        from mlflow.entities import Param as MlflowParam

        # MLflow refuses param values over 6000 characters: long lists are cut there
        params = [MlflowParam(k, str(v)[:6000]) for k, v in values.items()]
        for start in range(0, len(params), 100):  # MLflow takes 100 params per batch
            self._client.log_batch(self._run_id, params=params[start : start + 100])

    def write(self, step, row):
        from mlflow.entities import Metric

        if step <= self._held:
            return
        stamp = int(time.time() * 1000)
        for key, value in row.items():
            value = value if math.isfinite(value) else float("nan")
            self._pending.append(Metric(key, value, stamp, step))
        if time.monotonic() - self._flushed >= self.flush_seconds:
            self._flush()

    def _flush(self):
        self._flushed = time.monotonic()
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), 1000):  # MLflow takes 1000 metrics per batch
            self._client.log_batch(self._run_id, metrics=pending[start : start + 1000])

    def close(self, ctx):
        run_id = getattr(self, "_run_id", None)
        if run_id is None:
            return
        try:
            self._flush()
        finally:
            self._run_id = None
            status = _MLFLOW_STATUS.get(getattr(ctx, "status", None), "FAILED")
            self._client.set_terminated(run_id, status=status)


@hookimpl
def relulab_loggers():
    return [TensorBoard, MLflow]
