"""Small problems shared by the JKO tests: 1-D data with a bias on a grid of positions."""

import numpy as np

from core.components import Problem
from core.params import validate_params
from plugins.jko import JKO


def grid_positions(per_axis, extent):
    """``(2, per_axis**2)`` grid of [-extent, extent]^2, weight slowest (the grid init's layout)."""
    t = np.linspace(-extent, extent, per_axis)
    w, b = np.meshgrid(t, t, indexing="ij")
    return np.stack([w.ravel(), b.ravel()])


def grid_problem(
    per_axis=6,
    extent=1.0,
    n=8,
    signs="both",
    mass=1.0,
    seed=0,
    scaling="standard",
    loss="mse",
    jitter=0.0,
):
    """Sinus data (Gradient-Work's) and grid positions; ``jitter`` scales random masses."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-0.5, 0.5, n)
    X = np.c_[x, np.ones(n)]
    y = np.sin(10 * x - np.pi / 2) + 0.2 * x - 0.5
    G = grid_positions(per_axis, extent)
    P = G.shape[1]
    if signs == "both":
        W, s = np.hstack([G, G]), np.r_[np.ones(P), -np.ones(P)]
    elif signs == "random":
        W, s = G, rng.choice([-1.0, 1.0], size=P)
    else:
        W, s = G, np.ones(P)
    p = mass * (1.0 + jitter * rng.random(W.shape[1]))
    return Problem(X=X, Y=y, W0=W, a0=s * p, scaling=scaling, loss=loss, bias=True, seed=seed)


def make_jko(problem, **params):
    """A set-up ``jko`` algorithm with validated parameters."""
    algo = JKO(**validate_params("algorithm (jko)", params, JKO.params))
    algo.setup(problem)
    return algo


def spacing(per_axis, extent):
    """Grid spacing ``h``."""
    return 2.0 * extent / (per_axis - 1)
