"""Minibatches (a seeded shuffle per epoch) and step-size schedules of ``gd`` / ``gd_numpy``."""

import numpy as np
import pytest
from conftest import ROOT, kill_9_and_resume

from core import model
from core.components import Problem
from core.errors import ConfigError
from core.params import validate_params
from core.registry import Registry
from core.store import load_state, save_state
from plugins.gd import GD, GDNumpy
from plugins.gd._minibatch import EpochShuffle
from plugins.gd._schedule import learning_rate

torch = pytest.importorskip("torch")


def _problem(seed=0, n=11, d=3, m=6):
    rng = np.random.default_rng(seed)
    return Problem(
        X=rng.normal(size=(n, d)),
        Y=rng.normal(size=n),
        W0=rng.normal(size=(d, m)),
        a0=rng.normal(size=m),
        scaling="ntk",
        rng=np.random.default_rng(100 + seed),
    )


def _algorithm(cls, problem, **params):
    algorithm = cls(**validate_params("algorithm", {"lr": 0.05, **params}, cls.params))
    algorithm.check(algorithm.config)
    algorithm.setup(problem)
    return algorithm


def _run(algorithm, steps):
    for _ in range(steps):
        algorithm.step()
        algorithm.loss()
    return algorithm


# -- the shuffle ----------------------------------------------------------------------
def test_every_epoch_visits_every_point_once_in_a_new_order():
    shuffle = EpochShuffle(n=10, batch_size=4, seed_word=3)
    epochs = [np.concatenate([shuffle.next_batch() for _ in range(3)]) for _ in range(4)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(10))
    assert len({tuple(order) for order in epochs}) == 4
    assert [len(EpochShuffle(10, 4, 3).next_batch()) for _ in range(1)] == [4]


def test_shuffle_state_round_trips_mid_epoch():
    a = EpochShuffle(10, 3, 5)
    for _ in range(5):
        a.next_batch()
    b = EpochShuffle(10, 3, 0)
    b.load_state_dict(a.state_dict())
    for _ in range(9):
        np.testing.assert_array_equal(a.next_batch(), b.next_batch())


def test_batch_size_at_least_n_is_full_batch():
    problem = _problem()
    full = _run(_algorithm(GDNumpy, problem), 10).state()
    big = _algorithm(GDNumpy, problem, batch_size=problem.n)
    assert big.shuffle_ is None
    np.testing.assert_array_equal(_run(big, 10).state()["W"], full["W"])


# -- the minibatch step is SGD on the batch's loss ----------------------------------------
@pytest.mark.parametrize("cls", [GD, GDNumpy], ids=["gd", "gd_numpy"])
def test_a_minibatch_step_is_a_gradient_step_on_the_batch(cls):
    problem = _problem()
    algorithm = _algorithm(cls, problem, batch_size=4, optimizer="sgd")
    reference = EpochShuffle(problem.n, 4, algorithm.shuffle_.seed_word)
    W, a = problem.W0.copy(), problem.a0.copy()
    for _ in range(7):  # crosses two epoch boundaries (batches of 4, 4, 3)
        rows = reference.next_batch()
        _, gW, ga = model.loss_and_grad(problem.X[rows], problem.Y[rows], W, a, "ntk")
        W, a = W - 0.05 * gW, a - 0.05 * ga
        algorithm.step()
    state = algorithm.state()
    np.testing.assert_allclose(state["W"], W, rtol=1e-12)
    np.testing.assert_allclose(state["a"], a, rtol=1e-12)
    assert algorithm.loss() == pytest.approx(
        model.loss(problem.X, problem.Y, W, a, "ntk"), rel=1e-12
    )


def test_torch_and_numpy_draw_the_same_batches():
    params = {"batch_size": 3, "optimizer": "momentum"}
    a = _run(_algorithm(GD, _problem(), **params), 20).state()
    b = _run(_algorithm(GDNumpy, _problem(), **params), 20).state()
    np.testing.assert_allclose(a["W"], b["W"], rtol=1e-12)


def test_the_order_comes_from_the_seed():
    W = [
        _run(_algorithm(GDNumpy, _problem(seed), batch_size=3), 8).state()["W"]
        for seed in (0, 0, 1)
    ]
    np.testing.assert_array_equal(W[0], W[1])
    seeds = [_algorithm(GDNumpy, _problem(s), batch_size=3).shuffle_.seed_word for s in (0, 1)]
    assert seeds[0] != seeds[1]


@pytest.mark.parametrize("cls", [GD, GDNumpy], ids=["gd", "gd_numpy"])
@pytest.mark.parametrize("optimizer", ["momentum", "adamw"])
def test_state_dict_continues_exactly_mid_epoch(cls, optimizer, tmp_path):
    params = {"batch_size": 4, "optimizer": optimizer}
    uninterrupted = _run(_algorithm(cls, _problem(), **params), 20)
    first = _run(_algorithm(cls, _problem(), **params), 7)  # mid-epoch (11 points, batches of 4)
    save_state(tmp_path / "checkpoint.npz", first.state_dict())
    second = _algorithm(cls, _problem(), **params)
    second.load_state_dict(load_state(tmp_path / "checkpoint.npz"))
    _run(second, 13)
    for key in ("W", "a"):
        np.testing.assert_array_equal(second.state()[key], uninterrupted.state()[key])


@pytest.mark.parametrize("name", ["gd_numpy", "gd_closed_form"])
def test_minibatch_ensemble_equals_one_by_one(name):
    cls = GDNumpy if name == "gd_numpy" else GD
    extra = {} if cls is GDNumpy else {"gradient": "closed_form"}
    params = {"batch_size": 4, "optimizer": "momentum", **extra}
    problems = [_problem(seed) for seed in range(3)]
    members = [_algorithm(cls, p, **params) for p in problems]
    for member in members:
        member.loss()
    for _ in range(15):
        cls.step_together(members)
        for member in members:
            member.loss()
    assert members[0]._ensemble is not None
    for member, seed in zip(members, range(3)):
        alone = _run(_algorithm(cls, _problem(seed), **params), 15)
        for key in ("W", "a"):
            if cls is GDNumpy:
                np.testing.assert_array_equal(member.state()[key], alone.state()[key])
            else:
                np.testing.assert_allclose(member.state()[key], alone.state()[key], rtol=1e-12)
        assert member.loss() == pytest.approx(alone.loss(), rel=1e-12)


# -- schedules ------------------------------------------------------------------------
def test_step_schedule_values():
    lrs = [learning_rate(t, 0.2, "step", [3, 5], 0.5) for t in range(7)]
    assert lrs == [0.2, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05]


@pytest.mark.parametrize("cls", [GD, GDNumpy], ids=["gd", "gd_numpy"])
def test_step_schedule_is_plain_gd_with_the_decayed_rate(cls):
    problem = _problem()
    algorithm = _algorithm(
        cls, problem, optimizer="sgd", lr_schedule="step", lr_milestones=[2, 4], lr_gamma=0.1
    )
    W, a = problem.W0.copy(), problem.a0.copy()
    for t in range(6):
        assert algorithm.scalars()["lr"] == pytest.approx(0.05 * 0.1 ** ((t >= 2) + (t >= 4)))
        _, gW, ga = model.loss_and_grad(problem.X, problem.Y, W, a, "ntk")
        lr = 0.05 * 0.1 ** ((t >= 2) + (t >= 4))
        W, a = W - lr * gW, a - lr * ga
        algorithm.step()
        algorithm.loss()
    np.testing.assert_allclose(algorithm.state()["W"], W, rtol=1e-12)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"batch_size": 0}, "algorithm.batch_size"),
        ({"lr_schedule": "cosine"}, "algorithm.lr_schedule"),
        ({"lr_milestones": [5, 3]}, "algorithm.lr_milestones"),
        ({"lr_milestones": [0]}, "algorithm.lr_milestones"),
        ({"lr_schedule": "step"}, "algorithm.lr_milestones"),
        ({"lr_gamma": 0.0}, "algorithm.lr_gamma"),
    ],
)
def test_bad_dynamics_params_name_their_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        GDNumpy.check(validate_params("algorithm", values, GDNumpy.params))


# -- kill -9 ----------------------------------------------------------------------------
STEPS = 600
OVERRIDES = [
    f"stoppers.max_steps.steps={STEPS}",
    "algorithm.name=gd_numpy",
    "algorithm.batch_size=7",
    "algorithm.lr_schedule='step'",
    "algorithm.lr_milestones=[200, 400]",
    "model.width=40",
    "savers.periodic={'every_seconds': 0.0, 'every_steps': 3}",
    "run.display=off",
]


def test_minibatch_run_resumes_bitwise_after_kill_9(tmp_path):
    reference, killed, resumed = kill_9_and_resume(
        ROOT / "configs" / "gd_sinus.py", OVERRIDES, tmp_path, Registry(entry_points=False)
    )
    assert killed.meta["status"] == "crashed" and killed.meta["steps"] < STEPS
    assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == STEPS
    np.testing.assert_array_equal(resumed.scalars["step"], np.arange(STEPS + 1))
    np.testing.assert_array_equal(resumed.scalars["loss"], reference.scalars["loss"])
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[key], reference.final_state()[key])
