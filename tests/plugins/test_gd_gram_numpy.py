"""``gradient="gram"`` of ``gd_numpy``: the NTK fast path on numpy arrays equals the
plain closed-form path within a bounded drift, equals ``gd``'s gram path, reports the
same gradient norm, checkpoints in the plain layout (resumed bitwise, also after a
kill -9), and is refused where it does not apply. Mirrors ``test_gd_gram.py``."""

import numpy as np
import pytest
from conftest import ROOT, kill_9_and_resume
from gram_cases import (
    OPTIMIZERS,
    build,
    checkpoint_and_resume,
    make_problem,
    relative,
    run,
)

from core.errors import ConfigError
from core.registry import Registry
from core.store import load_state
from core.threads import limit_threads
from plugins.gd import GDNumpy, _gram


def _algorithm(problem, cls=GDNumpy, **params):
    return build(cls, problem, **params)


@pytest.mark.parametrize("train", ["both", "first"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_gram_equals_plain_over_a_few_hundred_steps(optimizer, train):
    problem = make_problem(k=2 if train == "both" else None)
    params = {**OPTIMIZERS[optimizer], "train": train}
    plain = run(_algorithm(problem, **params), 300)
    gram = run(_algorithm(problem, gradient="gram", gram_refresh=100, **params), 300)
    assert relative(gram.state(), plain.state()) < 1e-12
    assert gram.loss() == pytest.approx(plain.loss(), rel=1e-11)
    assert gram.scalars()["grad_norm"] == pytest.approx(plain.scalars()["grad_norm"], rel=1e-10)
    if train == "first":
        np.testing.assert_array_equal(gram.state()["a"], problem.a0)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_one_output_vector_case_equals_plain(optimizer):
    """``a`` a vector (the bench's case): ``G = (r a^T) * mask`` and BLAS in place."""
    problem = make_problem(n=12, d=5, m=30)
    plain = run(_algorithm(problem, **OPTIMIZERS[optimizer]), 200)
    gram = run(_algorithm(problem, gradient="gram", **OPTIMIZERS[optimizer]), 200)
    assert relative(gram.state(), plain.state()) < 1e-12
    assert gram.scalars()["grad_norm"] == pytest.approx(plain.scalars()["grad_norm"], rel=1e-10)


@pytest.mark.parametrize("k", [None, 2])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov_decay"])
@pytest.mark.parametrize("backend", ["gd_numpy", "gd"])
def test_row_blocks_equal_the_plain_path(backend, optimizer, k, monkeypatch):
    """Evaluated by blocks of 3 rows (the deferred S, P, Z updates block by block, and
    flushed at the refreshes), the gram path still equals the plain one."""
    if backend == "gd":
        pytest.importorskip("torch")
        from plugins.gd import GD as cls
    else:
        cls = GDNumpy
    monkeypatch.setattr(_gram, "BLOCK_BYTES", 3 * 20 * 8)  # 3 rows of m = 20 float64
    problem = make_problem(n=10, m=20, k=k)
    params = OPTIMIZERS[optimizer]
    plain = run(_algorithm(problem, cls, gradient="closed_form", **params), 200)
    gram = run(_algorithm(problem, cls, gradient="gram", gram_refresh=70, **params), 200)
    with limit_threads(1):  # as in run()
        assert [b.stop for b in gram._gram._blocks()] == [3, 6, 9, 10]
    with limit_threads(2):  # several threads: one block (fewer parallel regions)
        assert [b.stop for b in gram._gram._blocks()] == [10]
    assert relative(gram.state(), plain.state()) < 1e-12
    assert gram.scalars()["grad_norm"] == pytest.approx(plain.scalars()["grad_norm"], rel=1e-10)


@pytest.mark.parametrize("optimizer", ["momentum_decay", "sgd"])
def test_drift_against_the_plain_path_stays_bounded_over_10000_steps(optimizer):
    """Float64, 10 000 steps: the refreshed Z = X W keeps the two paths within 1e-9."""
    problem = make_problem()
    params = {**OPTIMIZERS[optimizer], "lr": 0.1}
    plain = run(_algorithm(problem, **params), 10_000)
    gram = run(_algorithm(problem, gradient="gram", **params), 10_000)
    assert gram._gram.n_refreshes >= 10_000 // 200
    assert relative(gram.state(), plain.state()) < 1e-9
    assert gram.loss() == pytest.approx(plain.loss(), rel=1e-8)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_numpy_gram_equals_torch_gram(optimizer):
    """One GramPath on two kernel sets: ``gd_numpy`` and ``gd`` (float64) agree."""
    pytest.importorskip("torch")
    from plugins.gd import GD

    problem = make_problem(k=2)
    params = {**OPTIMIZERS[optimizer], "gradient": "gram", "gram_refresh": 50}
    fast_numpy = run(_algorithm(problem, **params), 200)
    fast_torch = run(_algorithm(problem, GD, **params), 200)
    assert relative(fast_numpy.state(), fast_torch.state()) < 1e-12
    assert fast_numpy._gram.n_refreshes == fast_torch._gram.n_refreshes


def test_z_tracks_x_w_between_refreshes():
    """Without refreshes Z drifts from X W by rounding only (float64, 2000 steps)."""
    problem = make_problem()
    gram = run(
        _algorithm(problem, gradient="gram", gram_refresh=10**9, **OPTIMIZERS["momentum"]), 2000
    )
    Z = gram._gram.Z.copy()
    W = gram.state()["W"]  # materialises W (and refreshes)
    assert np.max(np.abs(Z - problem.X @ W)) < 1e-10 * np.max(np.abs(Z))
    np.testing.assert_allclose(gram._gram.Z, problem.X @ W, rtol=1e-13, atol=1e-13)


def test_float32_gram_stays_close_to_float64():
    problem = make_problem(n=30, d=40, m=50)
    exact = run(_algorithm(problem, optimizer="momentum"), 1000)
    fast = run(_algorithm(problem, gradient="gram", optimizer="momentum", dtype="float32"), 1000)
    assert fast._gram.Z.dtype == np.float32 and fast.state()["W"].dtype == np.float32
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
    buffers = set(saved["optimizer"]["buffers"])
    assert buffers == ({"W", "a"} if "momentum" in optimizer else set())

    plain = _algorithm(problem, **params)
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


def test_gram_members_of_an_ensemble_step_one_by_one():
    """``step_together`` leaves gram members to their own steps: the same as alone."""
    params = {**OPTIMIZERS["momentum"], "gradient": "gram"}
    members = [_algorithm(make_problem(seed=s), **params) for s in (1, 2)]
    alone = [run(_algorithm(make_problem(seed=s), **params), 20) for s in (1, 2)]
    for _ in range(20):
        GDNumpy.step_together(members)
        for member in members:
            member.loss()
    for member, reference in zip(members, alone):
        for key in ("W", "a"):
            np.testing.assert_array_equal(member.state()[key], reference.state()[key])


@pytest.mark.parametrize(
    "values, match",
    [
        ({"optimizer": "adamw"}, r"algorithm\.gradient='gram' needs algorithm\.optimizer"),
        (
            {"batch_size": 4},
            r"algorithm\.gradient='gram' needs full batches \(algorithm\.batch_size",
        ),
        ({"gram_refresh": 0}, r"algorithm\.gram_refresh"),
        ({"gradient": "autograd"}, r"algorithm\.gradient"),
    ],
)
def test_refused_where_it_does_not_apply(values, match):
    with pytest.raises(ConfigError, match=match) as info:
        _algorithm(make_problem(), **{"gradient": "gram", **values})
    assert "\n" not in str(info.value)


# -- kill -9 ----------------------------------------------------------------------------
STEPS = 400
OVERRIDES = [
    f"stoppers.max_steps.steps={STEPS}",
    "algorithm.name=gd_numpy",
    "algorithm.gradient='gram'",
    "algorithm.gram_refresh=50",
    "algorithm.weight_decay=0.01",
    "model.width=40",
    "savers.periodic={'every_seconds': 0.0, 'every_steps': 3}",
    "run.display=off",
]


def test_gram_run_resumes_bitwise_after_kill_9(tmp_path):
    reference, killed, resumed = kill_9_and_resume(
        ROOT / "configs" / "gd_sinus.py", OVERRIDES, tmp_path, Registry(entry_points=False)
    )
    assert killed.meta["status"] == "crashed" and killed.meta["steps"] < STEPS
    assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == STEPS
    np.testing.assert_array_equal(resumed.scalars["loss"], reference.scalars["loss"])
    np.testing.assert_array_equal(resumed.scalars["grad_norm"], reference.scalars["grad_norm"])
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[key], reference.final_state()[key])
