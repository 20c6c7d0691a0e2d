"""The NTK fast path ``gradient="gram"`` of ``gd`` equals the plain path within a bounded
drift, reports the same gradient norm, checkpoints in the plain layout, and is refused
where it does not apply."""

import numpy as np
import pytest
from gram_cases import (
    OPTIMIZERS,
    build,
    checkpoint_and_resume,
    make_problem,
    relative,
    run,
)

from core.errors import ConfigError
from core.store import load_state
from plugins.gd import GD

torch = pytest.importorskip("torch")


def _algorithm(problem, **params):
    return build(GD, problem, **params)


@pytest.mark.parametrize("train", ["both", "first"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_gram_equals_plain_over_a_few_hundred_steps(optimizer, train):
    problem = make_problem(k=2 if train == "both" else None)
    params = {**OPTIMIZERS[optimizer], "train": train}
    plain = run(_algorithm(problem, gradient="closed_form", **params), 300)
    gram = run(_algorithm(problem, gradient="gram", gram_refresh=100, **params), 300)
    assert relative(gram.state(), plain.state()) < 1e-12
    assert gram.loss() == pytest.approx(plain.loss(), rel=1e-11)
    assert gram.scalars()["grad_norm"] == pytest.approx(plain.scalars()["grad_norm"], rel=1e-10)
    if train == "first":
        np.testing.assert_array_equal(gram.state()["a"], problem.a0)


@pytest.mark.parametrize("optimizer", ["momentum_decay"])
def test_drift_against_the_plain_path_stays_bounded_over_10000_steps(optimizer):
    """Float64, 10 000 steps: the refreshed Z = X W keeps the two paths within 1e-9."""
    problem = make_problem()
    params = {**OPTIMIZERS[optimizer], "lr": 0.1}
    plain = run(_algorithm(problem, gradient="closed_form", **params), 10_000)
    gram = run(_algorithm(problem, gradient="gram", **params), 10_000)
    assert gram._gram.n_refreshes >= 10_000 // 200
    assert relative(gram.state(), plain.state()) < 1e-9
    assert gram.loss() == pytest.approx(plain.loss(), rel=1e-8)


def test_z_tracks_x_w_between_refreshes():
    """Without refreshes Z drifts from X W by rounding only (float64, 2000 steps)."""
    problem = make_problem()
    gram = run(
        _algorithm(problem, gradient="gram", gram_refresh=10**9, **OPTIMIZERS["momentum"]), 2000
    )
    Z = gram._gram.Z.numpy().copy()
    W = gram.state()["W"]  # materialises W (and refreshes)
    assert np.max(np.abs(Z - problem.X @ W)) < 1e-10 * np.max(np.abs(Z))
    np.testing.assert_allclose(gram._gram.Z.numpy(), problem.X @ W, rtol=1e-13, atol=1e-13)


def test_float32_gram_stays_close_to_float64():
    problem = make_problem(n=30, d=40, m=50)
    exact = run(_algorithm(problem, gradient="closed_form", optimizer="momentum"), 1000)
    fast = run(_algorithm(problem, gradient="gram", optimizer="momentum", dtype="float32"), 1000)
    assert relative(fast.state(), exact.state()) < 1e-4


@pytest.mark.parametrize("optimizer", ["sgd_decay", "momentum_decay"])
def test_gram_checkpoints_resume_bitwise_and_on_the_plain_path(optimizer, tmp_path):
    problem = make_problem()
    params = OPTIMIZERS[optimizer]
    saved, uninterrupted, resumed = checkpoint_and_resume(
        lambda **kw: _algorithm(problem, **params, **kw), tmp_path / "checkpoint.npz"
    )
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.state()[key], uninterrupted.state()[key])
    assert set(saved["optimizer"]["state"]) == ({"0", "1"} if "momentum" in optimizer else set())

    plain = _algorithm(problem, gradient="closed_form", **params)
    plain.load_state_dict(load_state(tmp_path / "checkpoint.npz"))
    run(plain, 50)
    assert relative(plain.state(), uninterrupted.state()) < 1e-12
    back = _algorithm(problem, gradient="gram", **params)
    back.load_state_dict(plain.state_dict())
    run(back, 10)
    run(plain, 10)
    assert relative(back.state(), plain.state()) < 1e-12


def test_refresh_every_k_steps():
    gram = run(_algorithm(make_problem(), gradient="gram", gram_refresh=7), 50)
    assert gram._gram.n_refreshes == 50 // 7


@pytest.mark.parametrize(
    "values, match",
    [
        ({"optimizer": "adamw"}, r"algorithm\.gradient='gram' needs algorithm\.optimizer"),
        (
            {"batch_size": 4},
            r"algorithm\.gradient='gram' needs full batches \(algorithm\.batch_size",
        ),
        ({"gram_refresh": 0}, r"algorithm\.gram_refresh"),
    ],
)
def test_refused_where_it_does_not_apply(values, match):
    with pytest.raises(ConfigError, match=match) as info:
        _algorithm(make_problem(), gradient="gram", **values)
    assert "\n" not in str(info.value)
