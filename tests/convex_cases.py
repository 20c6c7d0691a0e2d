"""Shared case of the convex solver tests (``tests/plugins/convex/``): a small problem
with a bias column, labels of a planted ReLU network plus noise, and sampled gates."""

import numpy as np


def planted_problem(n, d, P, beta_frac=0.05, seed=0):
    """``(X, y, masks, beta)``: ``X`` (n, d) with a bias column, ``y`` (n,) of three
    planted ReLU neurons plus noise 0.1, at most ``P`` distinct non-empty gate patterns
    ``masks`` (n, P'), ``beta = beta_frac ||X^T y||_inf``."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.standard_normal((n, d - 1)), np.ones(n)])
    W = rng.standard_normal((d, 3))
    y = np.maximum(X @ W, 0) @ np.array([1.0, -1.0, 0.5]) + 0.1 * rng.standard_normal(n)
    masks = X @ rng.standard_normal((d, 2 * P)) >= 0
    masks = np.unique(masks[:, masks.any(axis=0)], axis=1)[:, :P]
    beta = beta_frac * float(np.max(np.abs(X.T @ y)))
    return X, y, masks, beta


def through_checkpoint(state):
    """``state`` written and read back as a run's checkpoint is (``core.store.save_state``:
    arrays through .npz, no pickle, the rest through JSON)."""
    import tempfile
    from pathlib import Path

    from core.store import load_state, save_state

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.npz"
        save_state(path, state)
        return load_state(path)
