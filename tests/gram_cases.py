"""Shared cases of the gram-path tests (``tests/plugins/test_gd_gram*.py``): the
optimizer settings the fast path accepts, a small NTK problem, and how an algorithm is
built, stepped and compared."""

import numpy as np

from core.components import Problem
from core.params import validate_params
from core.threads import limit_threads

OPTIMIZERS = {
    "sgd": {"optimizer": "sgd"},
    "sgd_decay": {"optimizer": "sgd", "weight_decay": 0.05},
    "momentum": {"optimizer": "momentum", "momentum": 0.9},
    "momentum_decay": {"optimizer": "momentum", "momentum": 0.8, "weight_decay": 0.05},
    "nesterov_decay": {"optimizer": "momentum", "nesterov": True, "weight_decay": 0.02},
}


def make_problem(n=10, d=4, m=20, k=None, seed=0):
    """A seeded NTK-scaled problem with ``k`` outputs (one when None)."""
    rng = np.random.default_rng(seed)
    tail = () if k is None else (k,)
    return Problem(
        X=rng.normal(size=(n, d)) / np.sqrt(d),
        Y=rng.normal(size=(n,) + tail),
        W0=rng.normal(size=(d, m)),
        a0=rng.normal(size=(m,) + tail),
        scaling="ntk",
        loss="half_sum",
    )


def build(cls, problem, **params):
    """An algorithm of class ``cls`` (lr 0.05 unless given) set up on ``problem``."""
    params = validate_params("algorithm", {"lr": 0.05, **params}, cls.params)
    cls.check(params)
    algorithm = cls(**params)
    algorithm.setup(problem)
    return algorithm


def run(algorithm, steps):
    """``steps`` steps, each read its loss, on one thread (tiny matrices)."""
    with limit_threads(1):
        for _ in range(steps):
            algorithm.step()
            algorithm.loss()
    return algorithm


def relative(a, b):
    """Largest entry-wise difference of two states' W and a, relative to ``b``'s."""
    return max(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k])) for k in ("W", "a"))


def checkpoint_and_resume(make, path, before=37, after=50):
    """A gram run checkpointed after ``before`` steps and resumed from the file.

    ``make(**params)`` builds an algorithm of the problem under test. Returns ``(saved,
    uninterrupted, resumed)``: the state dict written to ``path``, the run that went on
    ``after`` steps, and a fresh one loaded from ``path`` that took the same steps.
    """
    from core.store import load_state, save_state

    uninterrupted = make(gradient="gram")
    run(uninterrupted, before)
    saved = uninterrupted.state_dict()  # a checkpoint refreshes, as the run loop's does
    save_state(path, saved)
    run(uninterrupted, after)
    resumed = make(gradient="gram")
    resumed.load_state_dict(load_state(path))
    resumed.loss()
    run(resumed, after)
    return saved, uninterrupted, resumed
