"""The Newton polish of population gradient descent: the same end points as plain
gradient descent, refused at saddles, batched equal to one at a time, exact resume."""

import numpy as np
import pytest
from conftest import kill_9_and_resume

from core.registry import Registry
from plugins.population import (
    NewtonPolish,
    compact_form,
    descend,
    population_grad,
    population_hessian,
    population_loss,
)
from plugins.population._census import is_global

RNG = np.random.default_rng(2018_0712)


def _xavier(k, n, rng=RNG):
    return rng.standard_normal((n, k, k)) / np.sqrt(k)


@pytest.mark.parametrize("k", [6, 8, 10])
def test_polish_ends_where_gradient_descent_does(k):
    W0 = _xavier(k, 6)
    V = np.broadcast_to(np.eye(k), W0.shape)
    W_gd, steps_gd, g_gd = descend(W0, V, 5 / k, 1e-12, 10**6)
    W, steps, g, newton, _ = descend(
        W0, V, 5 / k, 1e-12, 10**6, polish=NewtonPolish(), full_output=True
    )
    assert (g <= 1e-12).all() and (g_gd <= 1e-12).all()
    assert (newton > 0).all() and (steps < steps_gd).all()
    # gradient descent stops within tol / lambda_min of the critical point; the
    # polish lands on it
    np.testing.assert_allclose(W, W_gd, atol=1e-9)
    for b in range(len(W0)):
        assert np.linalg.norm(population_grad(W[b], V[b])) <= 1e-12
        assert is_global(W[b], V[b]) == is_global(W_gd[b], V[b])
        if not is_global(W[b], V[b]):
            vals, p, _ = compact_form(W[b])
            vals_gd, p_gd, _ = compact_form(W_gd[b])
            assert p.tolist() == p_gd.tolist()
            np.testing.assert_allclose(vals, vals_gd, atol=1e-9)


def test_polish_is_refused_at_a_saddle_and_gradient_descent_kept():
    # all neurons equal along (1, ..., 1): gradient descent stays in the symmetric
    # subspace and converges to a saddle (Hessian eigenvalue below -1)
    k = 5
    W0 = np.full((1, k, k), 0.3)
    V = np.eye(k)[None]
    W_gd, steps_gd, _ = descend(W0, V, 0.5, 1e-12, 10_000)
    W, steps, g, newton, next_try = descend(
        W0, V, 0.5, 1e-12, 10_000, polish=NewtonPolish(below=1.0), full_output=True
    )
    assert g[0] <= 1e-12
    assert np.linalg.eigvalsh(population_hessian(W[0], V[0])).min() < -1.0
    assert newton[0] == 0 and next_try[0] < 1e-6  # tried at every decade, refused
    # a refused try leaves the point alone: the path is plain gradient descent's
    np.testing.assert_array_equal(W, W_gd)
    assert steps[0] == steps_gd[0]


def test_polish_refuses_a_flat_minimum():
    # a split teacher neuron (n = k + 1): the Hessian is singular along the split,
    # so no Newton step, whatever the gradient norm
    k = 4
    V = np.eye(k)
    W = np.concatenate([V[:, :1] * 0.4, V[:, :1] * 0.6, V[:, 1:]], axis=1)
    assert np.linalg.norm(population_grad(W, V)) < 1e-14
    assert np.linalg.eigvalsh(population_hessian(W, V)).min() < 1e-10
    W0 = (W + 1e-5 * RNG.standard_normal(W.shape))[None]
    _, steps, _, newton, next_try = descend(
        W0, V[None], 5 / k, 1e-12, 50, polish=NewtonPolish(), full_output=True
    )
    assert steps[0] == 50 and newton[0] == 0 and next_try[0] < NewtonPolish().below


def test_batched_polish_equals_one_initialisation_at_a_time():
    k = 8
    W0 = _xavier(k, 6)
    V = np.broadcast_to(np.eye(k), W0.shape)
    polish = NewtonPolish()
    W, steps, g, newton, next_try = descend(
        W0, V, 5 / k, 1e-12, 10**6, polish=polish, full_output=True
    )
    for b in range(len(W0)):
        Wb, sb, gb, nb, tb = descend(
            W0[b : b + 1], V[b : b + 1], 5 / k, 1e-12, 10**6, polish=polish, full_output=True
        )
        np.testing.assert_allclose(W[b], Wb[0], atol=1e-13)
        assert abs(int(steps[b]) - int(sb[0])) <= 2 and newton[b] == nb[0]
    # a stream through few slots too
    Ws, steps_s, gs = descend(W0, V, 5 / k, 1e-12, 10**6, slots=2, polish=polish)
    np.testing.assert_allclose(Ws, W, atol=1e-13)
    assert (gs <= 1e-12).all()


def test_hessians_built_one_at_a_time_past_the_memory_cap_give_the_same_end_points(
    monkeypatch,
):
    import plugins.population._descent as descent_module

    k = 8  # near copies of one point: they try the polish in the same iteration
    W0 = _xavier(k, 1) + 1e-9 * RNG.standard_normal((5, k, k))
    V = np.broadcast_to(np.eye(k), W0.shape)
    built = []
    real = descent_module.hessian_stack

    def counting(W, *args, **kwargs):
        built.append(W.shape[0])
        return real(W, *args, **kwargs)

    monkeypatch.setattr(descent_module, "hessian_stack", counting)
    W, steps, g, newton, _ = descend(
        W0, V, 5 / k, 1e-12, 10**6, polish=NewtonPolish(), full_output=True
    )
    batched = list(built)
    built.clear()
    monkeypatch.setattr(descent_module, "HESSIAN_BYTES", 8 * k**4)  # one Hessian at a time
    Wc, steps_c, gc, newton_c, _ = descend(
        W0, V, 5 / k, 1e-12, 10**6, polish=NewtonPolish(), full_output=True
    )
    assert max(batched) > 1 and max(built) == 1 and len(built) >= len(batched)
    np.testing.assert_allclose(Wc, W, atol=1e-13)
    assert (gc <= 1e-12).all() and (newton_c == newton).all()
    assert np.abs(steps_c - steps).max() <= 2


def test_calls_of_few_iterations_continue_like_one_call():
    # the run loop calls descend for `iterations` steps at a time, passing next_try on
    k = 7
    W0 = _xavier(k, 3)
    V = np.broadcast_to(np.eye(k), W0.shape)
    polish = NewtonPolish(below=1e-2)
    W_one, steps_one, _, newton_one, _ = descend(
        W0, V, 5 / k, 1e-12, 10**6, polish=polish, full_output=True
    )
    W, total, newton, tries = W0, np.zeros(3, dtype=int), np.zeros(3, dtype=int), None
    for _ in range(10_000):
        W, steps, g, n, tries = descend(
            W, V, 5 / k, 1e-12, 25, polish=polish, next_try=tries, full_output=True
        )
        total += steps
        newton += n
        if (g <= 1e-12).all():
            break
    assert (g <= 1e-12).all()
    # the same gradient-descent path; the polish may be cut at a call's end and
    # restarted from a fresh Hessian, so Newton iterates may differ at rounding level
    np.testing.assert_allclose(W, W_one, atol=1e-12)
    assert (np.abs(total - steps_one) <= 3).all() and (newton > 0).all()


def test_armijo_steps_go_down_a_curved_valley_where_the_gradient_norm_refuses_newton():
    # initialisation 23 of bench_census's 50 at k = 20: at step 3 361 the gradient
    # (norm 1e-3) lies along the Hessian's softest direction (eigenvalue 3.7e-3)
    k = 20
    W0 = np.random.default_rng(1020).standard_normal((50, k, k))[23:24] / np.sqrt(k)
    V = np.broadcast_to(np.eye(k), W0.shape)
    W, _, _ = descend(W0, V, 5 / k, 1e-12, 3361)
    G, H = population_grad(W[0], V[0]), population_hessian(W[0], V[0])
    assert np.linalg.eigvalsh(H)[0] > 1e-3
    delta = np.linalg.solve(H, G.T.ravel()).reshape(k, k).T
    for scale in (0.5, 0.25):  # damped Newton steps: F falls, the gradient norm rises
        W_new = W[0] - scale * delta
        assert np.linalg.norm(population_grad(W_new, V[0])) > np.linalg.norm(G)
        assert population_loss(W_new, V[0]) < population_loss(W[0], V[0]) - 1e-5
    plain = descend(W, V, 5 / k, 1e-12, 20_000, polish=NewtonPolish(armijo=None))
    armijo = descend(W, V, 5 / k, 1e-12, 20_000, polish=NewtonPolish())
    assert plain[1][0] > 9000 and armijo[1][0] < 50  # steps from here
    assert plain[2][0] <= 1e-12 and armijo[2][0] <= 1e-12
    np.testing.assert_allclose(armijo[0], plain[0], atol=1e-9)  # the same minimum


def test_settings_are_checked():
    for bad in (
        {"below": 0.0},
        {"margin": -1.0},
        {"retry": 1.0},
        {"damping": -1},
        {"armijo": 0.0},
        {"armijo": 1.0},
    ):
        with pytest.raises(ValueError):
            NewtonPolish(**bad)


CONFIG = """
from configs.population_census import config as census
from relulab import merge

config = {key: value for key, value in merge(census, {}).items() if key != "sweep"}
"""


def test_population_run_resumes_bitwise_after_kill_9(tmp_path):
    config_file = tmp_path / "population_one.py"
    config_file.write_text(CONFIG)
    overrides = [
        "data.k=10",
        "model.width=10",
        "seed=3",
        "algorithm.iterations=5",
        "algorithm.newton_below=0.3",  # tries early: refusals put next_try in the state
        "stoppers.max_steps.steps=100000",
        "loggers.scalars.every=1",
        "savers.periodic={'every_seconds': 0.0, 'every_steps': 1}",
        "run.display=off",
    ]
    reference, killed, resumed = kill_9_and_resume(
        config_file, overrides, tmp_path, Registry(entry_points=False), min_steps=40
    )
    assert killed.meta["status"] == "crashed"
    assert reference.meta["reason"] == "solved" and resumed.meta["reason"] == "solved"
    assert resumed.meta["steps"] == reference.meta["steps"]
    for key in ("loss", "grad_norm", "iterations", "newton_steps"):
        np.testing.assert_array_equal(resumed.scalars[key], reference.scalars[key])
    assert reference.scalars["newton_steps"][-1] > 0
    np.testing.assert_array_equal(resumed.final_state()["W"], reference.final_state()["W"])
