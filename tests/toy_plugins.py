"""Small deterministic plugins for the core tests (registered via RELULAB_PLUGINS).

``toy_sgd`` is minibatch SGD with momentum on the two-layer model: its minibatches
come from the problem's random stream, so an exact resume must restore that
stream's state as well as the parameters and the momentum buffers.

``toy_ensemble`` is full-batch heavy-ball GD on the same model, ``batchable``: its
``step_together`` advances R members as one program on stacked (R, d, m) arrays.
"""

import os
import signal
import time

import numpy as np

from core import model
from core.components import Algorithm, Data, DataSet, Init, Logger, Metric
from core.hookspecs import hookimpl
from core.params import Param


class ToyData(DataSet):
    """1-D sinus with a bias column."""

    name = "toy_data"
    params = (
        Param("n", int, 12, "points", low=1),
        Param("no_features", bool, False, "give X of shape (n, 0) (a broken data set)"),
        Param("fail", bool, False, "load() raises (an unreadable data file, say)"),
    )

    def load(self, rng):
        if self.fail:
            raise FileNotFoundError("toy data file missing")
        x = np.linspace(-1, 1, self.n)
        X = np.zeros((self.n, 0)) if self.no_features else np.c_[x, np.ones_like(x)]
        return Data(X, np.sin(3 * x) + 0.1 * rng.normal(size=self.n), bias=not self.no_features)


class ToyInit(Init):
    """Gaussian first layer, +-1 second layer."""

    name = "toy_init"

    def initialize(self, d, m, k, rng):
        return rng.normal(size=(d, m)), rng.choice([-1.0, 1.0], size=m)


class ToySGD(Algorithm):
    """Minibatch SGD with momentum; can sleep, blow up or raise on request."""

    name = "toy_sgd"
    params = (
        Param("lr", float, 0.01, "step size", low=0, resume_safe=True),
        Param("momentum", float, 0.9, "heavy-ball momentum", low=0, high=1),
        Param("batch", int, 6, "minibatch size", low=1),
        Param("sleep", float, 0.0, "seconds to sleep per step", low=0, resume_safe=True),
        Param("nan_at", int, -1, "step at which the parameters become NaN (-1: never)"),
        Param("raise_at", int, -1, "step at which step() raises (-1: never)"),
        Param("fail_setup", bool, False, "setup() raises"),
        Param("fail_loss", bool, False, "loss() raises"),
    )

    def setup(self, problem):
        if self.fail_setup:
            raise ValueError("toy setup failure")
        self.problem = problem
        self.rng = problem.rng
        self.W = problem.W0.copy()
        self.a = problem.a0.copy()
        self.vW = np.zeros_like(self.W)
        self.va = np.zeros_like(self.a)
        self.t = 0

    def step(self):
        if self.sleep:
            time.sleep(self.sleep)
        p = self.problem
        idx = self.rng.choice(p.n, size=min(self.batch, p.n), replace=False)
        _, gW, ga = model.loss_and_grad(p.X[idx], p.Y[idx], self.W, self.a)
        self.vW = self.momentum * self.vW + gW
        self.va = self.momentum * self.va + ga
        self.W -= self.lr * self.vW
        self.a -= self.lr * self.va
        self.t += 1
        if self.t == self.nan_at:
            self.W[:] = np.nan
        if self.t == self.raise_at:
            raise RuntimeError(f"toy failure at step {self.t}")

    def loss(self):
        if self.fail_loss:
            raise ArithmeticError("toy loss failure")
        return model.loss(self.problem.X, self.problem.Y, self.W, self.a)

    def state(self):
        return {"W": self.W.copy(), "a": self.a.copy()}

    def scalars(self):
        _, gW, ga = model.loss_and_grad(self.problem.X, self.problem.Y, self.W, self.a)
        return {"grad_norm": float(np.sqrt(np.sum(gW**2) + np.sum(ga**2)))}

    def state_dict(self):
        return {
            "W": self.W,
            "a": self.a,
            "vW": self.vW,
            "va": self.va,
            "t": self.t,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state):
        self.W, self.a = state["W"].copy(), state["a"].copy()
        self.vW, self.va = state["vW"].copy(), state["va"].copy()
        self.t = state["t"]
        self.rng.bit_generator.state = state["rng"]


class ToyEnsemble(Algorithm):
    """Full-batch heavy-ball GD (s_m = 1, mse, k = 1), trainable as a batched ensemble."""

    name = "toy_ensemble"
    batchable = True
    params = (
        Param("lr", float, 0.05, "step size", low=0),
        Param("momentum", float, 0.9, "heavy-ball momentum", low=0, high=1),
        Param("nan_seed", int, -1, "the member with this seed becomes NaN at step 3"),
        Param("interrupt_at", int, -1, "step at which a SIGTERM is sent to this process"),
        Param("sleep", float, 0.0, "seconds to sleep per step (or per ensemble step)", low=0),
        Param("die_at", int, -1, "step at which the process is killed (SIGKILL) ..."),
        Param("kill_file", str, "", "... if this file exists (it is removed first)"),
    )
    calls = []
    """Sizes of the ensembles ``step_together`` was called with (tests read it)."""

    def setup(self, problem):
        self.problem = problem
        self.W, self.a = problem.W0.astype(float), problem.a0.astype(float).copy()
        self.vW, self.va = np.zeros_like(self.W), np.zeros_like(self.a)
        self.t = 0

    def _update(self, gW, ga):
        self.vW = self.momentum * self.vW + gW
        self.va = self.momentum * self.va + ga
        self.W = self.W - self.lr * self.vW
        self.a = self.a - self.lr * self.va
        self.t += 1
        if self.t == 3 and self.problem.seed == self.nan_seed:
            self.W = np.full_like(self.W, np.nan)
        if self.t == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.t == self.die_at and self.kill_file and os.path.exists(self.kill_file):
            os.remove(self.kill_file)
            os.kill(os.getpid(), signal.SIGKILL)

    def step(self):
        time.sleep(self.sleep)
        p = self.problem
        _, gW, ga = model.loss_and_grad(p.X, p.Y, self.W, self.a)
        self._update(gW, ga)

    @classmethod
    def step_together(cls, algorithms):
        cls.calls.append(len(algorithms))
        time.sleep(algorithms[0].sleep)
        X = np.stack([alg.problem.X for alg in algorithms])  # (R, n, d)
        Y = np.stack([alg.problem.Y for alg in algorithms])  # (R, n)
        W = np.stack([alg.W for alg in algorithms])  # (R, d, m)
        a = np.stack([alg.a for alg in algorithms])  # (R, m)
        Z = X @ W  # (R, n, m)
        H = np.maximum(Z, 0)
        R = np.einsum("rnm,rm->rn", H, a) - Y
        c = 2.0 / X.shape[1]
        ga = c * np.einsum("rnm,rn->rm", H, R)
        gW = c * np.einsum("rnd,rnm->rdm", X, (Z > 0) * R[:, :, None] * a[:, None, :])
        for r, alg in enumerate(algorithms):
            alg._update(gW[r], ga[r])

    def loss(self):
        return model.loss(self.problem.X, self.problem.Y, self.W, self.a)

    def state(self):
        return {"W": self.W.copy(), "a": self.a.copy()}

    def state_dict(self):
        return {"W": self.W, "a": self.a, "vW": self.vW, "va": self.va, "t": self.t}

    def load_state_dict(self, state):
        self.W, self.a = state["W"].copy(), state["a"].copy()
        self.vW, self.va = state["vW"].copy(), state["va"].copy()
        self.t = state["t"]


class ToyLogger(Logger):
    """Appends one line per hook call to a file; can fail in setup or close."""

    name = "toy_logger"
    params = (
        Param("file", str, "", "where to append 'setup', 'observe STEP', 'close STATUS'"),
        Param("fail_setup", bool, False, "setup() raises"),
        Param("fail_close", bool, False, "close() raises"),
    )

    def _write(self, line):
        if self.file:
            with open(self.file, "a") as fh:
                fh.write(line + "\n")

    def setup(self, ctx):
        self._write("setup")
        if self.fail_setup:
            raise OSError("toy logger cannot open its file")

    def observe(self, ctx):
        if ctx.final:
            self._write(f"final {ctx.step} {ctx.run_dir.name}")

    def close(self, ctx):
        self._write(f"close {ctx.status if ctx is not None else None}")
        if self.fail_close:
            raise ConnectionError("toy logger lost its server")


class ToyThreads(Metric):
    """The most threads any loaded BLAS / OpenMP library would use now."""

    name = "toy_threads"

    def compute(self, algorithm, problem):
        from threadpoolctl import threadpool_info

        return {"blas_threads": max((p["num_threads"] for p in threadpool_info()), default=0)}


@hookimpl
def relulab_loggers():
    return [ToyLogger]


@hookimpl
def relulab_metrics():
    return [ToyThreads]


@hookimpl
def relulab_algorithms():
    return [ToySGD, ToyEnsemble]


@hookimpl
def relulab_datasets():
    return [ToyData]


@hookimpl
def relulab_inits():
    return [ToyInit]
