"""Population loss of Safran & Shamir: closed forms against quadrature and finite
differences, the symmetries, batched descent, the algorithm and data plugins in runs."""

import numpy as np
import pytest

from core.config import resolve
from core.errors import ConfigError
from core.loop import execute, prepare_run, resume_run, start_run
from core.registry import Registry
from core.store import Run
from plugins.population import (
    NewtonPolish,
    compact_form,
    descend,
    kernel,
    population_grad,
    population_hessian,
    population_loss,
    reconstruct,
    teacher_matrix,
)

RNG = np.random.default_rng(20180712)


def _fd_grad(W, V, h=1e-6):
    G = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = h
        G[idx] = (population_loss(W + E, V) - population_loss(W - E, V)) / (2 * h)
    return G


def _fd_hessian(W, V, h=1e-6):
    d, m = W.shape
    H = np.zeros((m * d, m * d))
    for i in range(m):
        for a in range(d):
            E = np.zeros_like(W)
            E[a, i] = h
            column = (population_grad(W + E, V) - population_grad(W - E, V)) / (2 * h)
            H[:, i * d + a] = column.T.ravel()
    return H


def _rotation(d, angle, i=0, j=1):
    R = np.eye(d)
    R[[i, i, j, j], [i, j, i, j]] = [np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)]
    return R


# ---- the kernel -------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.0, 0.3, np.pi / 2, 2.5, np.pi])
def test_kernel_equals_the_gaussian_integral_in_the_plane(t):
    # E[relu(w.x) relu(v.x)] in 2-D: the radial integral int r^3 exp(-r^2/2) dr / (2 pi)
    # = 1 / pi times the angular integral of relu(cos phi) relu(cos(phi - t)).
    phi = (np.arange(200_000) + 0.5) * (2 * np.pi / 200_000)
    angular = np.sum(np.maximum(np.cos(phi), 0) * np.maximum(np.cos(phi - t), 0)) * (
        2 * np.pi / 200_000
    )
    w = np.array([[1.5], [0.0]])
    v = 0.7 * np.array([[np.cos(t)], [np.sin(t)]])
    assert kernel(w, v)[0, 0] == pytest.approx(1.5 * 0.7 * angular / np.pi, rel=1e-8, abs=1e-12)


def test_loss_at_zero_and_of_one_neuron():
    V = np.eye(4)
    # F(0) = 1/2 E[g^2] = 1/2 (k / 2 + k (k - 1) / (2 pi))
    assert population_loss(np.zeros((4, 4)), V) == pytest.approx(0.5 * (2 + 12 / (2 * np.pi)))
    # a single neuron equal to v_1 against the teacher v_1: zero
    assert population_loss(np.eye(4)[:, :1], np.eye(4)[:, :1]) == 0.0


# ---- gradient and Hessian against finite differences ----------------------------------


@pytest.mark.parametrize("shape", [(5, 4, 3), (4, 4, 4), (6, 7, 4)])
def test_gradient_and_hessian_match_finite_differences(shape):
    d, m, k = shape
    W = RNG.standard_normal((d, m))
    V = RNG.standard_normal((d, k))
    np.testing.assert_allclose(population_grad(W, V), _fd_grad(W, V), atol=1e-8)
    H = population_hessian(W, V)
    np.testing.assert_allclose(H, H.T, atol=0)
    np.testing.assert_allclose(H, _fd_hessian(W, V), atol=2e-7)


def _near_degenerate(eps):
    """Student neurons at angle eps from v_1, pi - eps from v_2, eps from each other."""
    V = np.eye(4)
    W = np.zeros((4, 4))
    W[:, 0] = 1.3 * _rotation(4, eps, 0, 2) @ V[:, 0]
    W[:, 1] = -0.8 * _rotation(4, eps, 1, 3) @ V[:, 1]
    W[:, 2] = 0.6 * _rotation(4, eps, 2, 3) @ np.array([0.0, 0.0, 1.0, 1.0]) / np.sqrt(2)
    W[:, 3] = 0.9 * np.array([0.0, 0.0, 1.0, 1.0]) / np.sqrt(2)
    return W, V


@pytest.mark.parametrize("eps", [1e-3, 1e-6, 1e-9])
def test_near_degenerate_angles_match_finite_differences(eps):
    W, V = _near_degenerate(eps)
    np.testing.assert_allclose(population_grad(W, V), _fd_grad(W, V, h=1e-5), atol=1e-9)
    # F is twice but not three times differentiable across t = 0: O(h) differences
    np.testing.assert_allclose(population_hessian(W, V), _fd_hessian(W, V, h=1e-6), atol=2e-5)


def test_exactly_degenerate_angles_are_the_limits():
    W0, V = _near_degenerate(0.0)  # t = 0, t = pi and two parallel students, exactly
    for f in (population_loss, population_grad, population_hessian):
        exact, near = f(W0, V), f(_near_degenerate(1e-10)[0], V)
        np.testing.assert_allclose(exact, near, atol=1e-8)
        assert np.all(np.isfinite(exact))
    # h_1 vanishes at t = 0 and t = pi; h_2 is I / 2 at t = 0 (the limit, not I)
    H = population_hessian(W0, V)
    np.testing.assert_allclose(H[8:12, 12:16], 0.5 * np.eye(4), atol=1e-15)


def test_zero_neuron_contributes_nothing_and_has_zero_gradient():
    W = RNG.standard_normal((4, 3))
    V = np.eye(4)[:, :2]
    W0 = np.concatenate([W, np.zeros((4, 1))], axis=1)
    assert population_loss(W0, V) == pytest.approx(population_loss(W, V), abs=1e-15)
    G = population_grad(W0, V)
    np.testing.assert_array_equal(G[:, 3], 0.0)
    np.testing.assert_allclose(G[:, :3], population_grad(W, V), atol=1e-15)
    H = population_hessian(W0, V)
    np.testing.assert_array_equal(H[12:, 12:], 0.5 * np.eye(4))
    np.testing.assert_array_equal(H[12:, :12], 0.0)
    np.testing.assert_allclose(H[:12, :12], population_hessian(W, V), atol=1e-15)


# ---- at the teacher --------------------------------------------------------------------


@pytest.mark.parametrize("teacher", ["identity", "orthonormal", "general"])
def test_at_the_teacher_loss_and_gradient_vanish_and_the_hessian_is_psd(teacher):
    k, d = 5, 7
    if teacher == "general":
        V = RNG.standard_normal((d, k))
    else:
        V = teacher_matrix(k, d, teacher, rng=np.random.default_rng(1))
    assert abs(population_loss(V, V)) < 1e-14
    assert np.abs(population_grad(V, V)).max() < 1e-14
    H = population_hessian(V, V)
    np.testing.assert_allclose(H, H.T, atol=1e-15)
    assert np.linalg.eigvalsh(H).min() > -1e-12


# ---- symmetries ------------------------------------------------------------------------


def test_loss_is_invariant_under_permuting_coordinates_and_neurons():
    k = 6
    V = np.eye(k)
    W = RNG.standard_normal((k, k)) / np.sqrt(k)
    P = np.eye(k)[RNG.permutation(k)]
    Q = np.eye(k)[:, RNG.permutation(k)]
    assert population_loss(P @ W @ Q, V) == pytest.approx(population_loss(W, V), rel=1e-13)
    # the gradient is equivariant under the same action
    np.testing.assert_allclose(population_grad(P @ W @ Q, V), P @ population_grad(W, V) @ Q)
    # and for any teacher, F(R W; R V) = F(W; V) for a rotation R
    R = np.linalg.qr(RNG.standard_normal((k, k)))[0]
    V2 = RNG.standard_normal((k, 3))
    assert population_loss(R @ W, R @ V2) == pytest.approx(population_loss(W, V2), rel=1e-12)


def test_batched_gradient_equals_one_point_at_a_time():
    W = RNG.standard_normal((5, 4, 6))
    V = RNG.standard_normal((5, 4, 3))
    G, F = population_grad(W, V, return_loss=True)
    for b in range(5):
        g, f = population_grad(W[b], V[b], return_loss=True)
        np.testing.assert_allclose(G[b], g, rtol=1e-14, atol=1e-15)
        assert F[b] == pytest.approx(f, rel=1e-14)


def test_hessians_written_into_a_buffer_equal_fresh_ones_and_later_calls_leave_them():
    from plugins.population._objective import hessian_stack

    W, V = RNG.standard_normal((3, 4, 5)), RNG.standard_normal((3, 4, 2))
    fresh = hessian_stack(W, V)
    buffer = np.empty_like(fresh)
    assert hessian_stack(W, V, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, fresh)
    # the intermediates are reused between calls; a returned Hessian is never one
    kept = fresh.copy()
    hessian_stack(RNG.standard_normal((3, 4, 5)), V)
    np.testing.assert_array_equal(fresh, kept)
    with pytest.raises(ValueError, match="C-contiguous"):
        hessian_stack(W, V, out=np.empty_like(fresh).transpose(0, 2, 1))
    # each point's Hessian is its own: one at a time gives the stack's entries
    for b in range(3):
        np.testing.assert_array_equal(hessian_stack(W[b : b + 1], V[b : b + 1])[0], fresh[b])


# ---- descent ---------------------------------------------------------------------------


def test_batched_descent_equals_one_initialisation_at_a_time():
    k = 6
    W0 = RNG.standard_normal((8, k, k)) / np.sqrt(k)
    V = np.broadcast_to(np.eye(k), (8, k, k))
    W, steps, g = descend(W0, V, 5 / k, 1e-12, 50_000)
    assert (g <= 1e-12).all()
    for b in range(8):
        Wb, sb, gb = descend(W0[b : b + 1], V[b : b + 1], 5 / k, 1e-12, 50_000)
        np.testing.assert_allclose(W[b], Wb[0], atol=1e-11)
        assert abs(int(steps[b]) - int(sb[0])) <= 1
    # the gradient norm reported is the closed form's at the end point
    np.testing.assert_allclose(
        g, [np.linalg.norm(population_grad(W[b], V[b])) for b in range(8)], rtol=1e-3
    )


@pytest.mark.parametrize("teacher", ["identity", "general"])
def test_the_stack_gradient_equals_the_closed_form_and_each_point_alone(teacher):
    from plugins.population._objective import _Teacher, stack_gradient

    W = RNG.standard_normal((6, 5, 5))
    W[2, :, 3] = 0.0  # a zero neuron
    if teacher == "identity":
        V = np.broadcast_to(np.eye(5, 4), (6, 5, 4)).copy()
    else:
        V = RNG.standard_normal((6, 5, 4))
    expected = population_grad(W, V)
    stacked = stack_gradient(W, _Teacher(V))
    np.testing.assert_allclose(stacked, expected, atol=1e-14)
    for b in range(len(W)):  # one point at a time (zero neuron included): the same bits
        one = _Teacher(V[b : b + 1])
        for _ in range(2):  # the second call reuses the buffers kept on the teacher
            np.testing.assert_array_equal(stack_gradient(W[b : b + 1], one), stacked[b : b + 1])


def test_a_stream_through_few_slots_equals_one_batch():
    k = 6
    W0 = RNG.standard_normal((7, k, k)) / np.sqrt(k)
    V = np.broadcast_to(np.eye(k), W0.shape)
    W, steps, g = descend(W0, V, 5 / k, 1e-12, 50_000)
    Ws, steps_s, gs = descend(W0, V, 5 / k, 1e-12, 50_000, slots=3)
    np.testing.assert_allclose(Ws, W, atol=1e-11)
    assert np.abs(steps_s - steps).max() <= 1 and (gs <= 1e-12).all()


def test_descent_leaves_converged_points_alone_and_respects_the_cap():
    k = 4
    start = np.stack([np.eye(k), np.eye(k) + 0.05 * RNG.standard_normal((k, k))])
    W, steps, g = descend(start, np.stack([np.eye(k)] * 2), 0.5, 1e-12, 7)
    np.testing.assert_array_equal(W[0], np.eye(k))
    assert steps.tolist() == [0, 7] and g[1] > 1e-12


def test_published_k7_spurious_minimum_is_reproduced():
    # ItaySafran/Overparameterization README: the k = 7 non-global minimum found, with
    # p = [1, 6] and these values (10 digits).
    vals = np.array(
        [[-0.6327039049, 0.2616910758, 0.0], [0.1859910463, 0.9969227988, -0.0350801559]]
    )
    V = np.eye(7)
    W = reconstruct(vals, [1, 6])
    assert np.linalg.norm(population_grad(W, V)) < 1e-9
    end, _, g = descend(W[None], V[None], 5 / 7, 1e-12, 10_000)
    assert g[0] <= 1e-12
    found, p, _ = compact_form(end[0])
    assert p.tolist() == [1, 6]
    np.testing.assert_allclose(found, vals, atol=1e-10)
    assert np.linalg.eigvalsh(population_hessian(end[0], V)).min() > 1e-4  # a strict minimum
    assert population_loss(end[0], V) > 0.02  # not global


# ---- the plugins in runs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def registry():
    return Registry(entry_points=False, plugin_modules=())


def _config(tmp_path, registry, seed=0, k=5, **changes):
    raw = {
        "experiment": "population",
        "seed": seed,
        "model": {"width": k, "scaling": "standard", "loss": "half_mse"},
        "data": {"name": "gaussian_teacher", "k": k, "n": 20},
        "init": {"name": "xavier", "mode": "fan_in", "second_layer": "positive"},
        "algorithm": {"name": "population_gd", "iterations": 50},
        "stoppers": {"solved": {}, "max_steps": {"steps": 2000}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 0}},
        "savers": {},
        "run": {"runs_dir": str(tmp_path / "runs"), "display": "off"},
    }
    for key, value in changes.items():
        section, name = key.split("__")
        if value is None:
            raw[section].pop(name, None)
        else:
            raw[section][name] = value
    return resolve(raw, registry)


def test_run_converges_to_tolerance_from_the_xavier_init(tmp_path, registry):
    run = start_run(_config(tmp_path, registry, seed=3), "", registry)
    assert run.meta["status"] == "finished" and run.meta["reason"] == "solved"
    W0 = run.problem["W0"]
    V = run.problem["extra.V"]
    np.testing.assert_array_equal(V, np.eye(5))
    np.testing.assert_array_equal(run.problem["a0"], 1.0)
    W, steps, g, newton, _ = descend(
        W0[None], V[None], 5 / 5, 1e-12, 10**6, polish=NewtonPolish(), full_output=True
    )
    final = run.snapshots.at(-1)
    np.testing.assert_allclose(final["W"], W[0], atol=1e-12)
    np.testing.assert_array_equal(final["a"], 1.0)
    assert run.scalars["iterations"][-1] == steps[0]
    assert run.scalars["newton_steps"][-1] == newton[0] > 0
    # the polish ends where plain gradient descent does, in fewer steps
    W_gd, steps_gd, _ = descend(W0[None], V[None], 5 / 5, 1e-12, 10**6)
    np.testing.assert_allclose(final["W"], W_gd[0], atol=1e-10)
    assert steps[0] < steps_gd[0]
    assert run.scalars["grad_norm"][-1] <= 1e-12
    assert run.scalars["loss"][-1] == pytest.approx(population_loss(final["W"], V), abs=1e-15)
    # the loss logged at step 0 is F at the init
    assert run.scalars["loss"][0] == pytest.approx(population_loss(W0, V), rel=1e-12)


def test_ensemble_equals_runs_alone_and_resume_continues_exactly(tmp_path, registry):
    seeds = (0, 1, 2, 3)
    together = [prepare_run(_config(tmp_path, registry, s), "", registry) for s in seeds]
    assert execute(together) == ["finished"] * 4
    for s, ex in zip(seeds, together):
        alone = start_run(_config(tmp_path, registry, s), "", registry)
        a, b = Run(ex.path), alone
        # the starts measured as one stack (start_together) are each run's own, bitwise
        for key in ("loss", "grad_norm"):
            assert a.scalars[key][0] == b.scalars[key][0]
        np.testing.assert_allclose(a.snapshots.at(-1)["W"], b.snapshots.at(-1)["W"], atol=1e-11)
        assert abs(a.scalars["iterations"][-1] - b.scalars["iterations"][-1]) <= 1
    # a run cut one step before its end (inside its Newton polish) and resumed ends
    # where the uninterrupted one does, bitwise
    uninterrupted = Run(together[1].path)
    cut = _config(tmp_path, registry, 1)
    cut["stoppers"]["max_steps"]["steps"] = uninterrupted.meta["steps"] - 1
    first = start_run(cut, "", registry)
    assert first.meta["reason"] == "max_steps"
    resumed = resume_run(first.path, registry, ["stoppers.max_steps.steps=2000"])
    np.testing.assert_array_equal(
        resumed.snapshots.at(-1)["W"], uninterrupted.snapshots.at(-1)["W"]
    )
    for key in ("iterations", "newton_steps", "grad_norm"):
        assert resumed.scalars[key][-1] == uninterrupted.scalars[key][-1]


def test_start_together_measures_each_member_as_it_alone(tmp_path, registry):
    members = [
        prepare_run(_config(tmp_path, registry, s, k=k), "", registry).algorithm
        for s in range(3)
        for k in (4, 6)  # two shapes: two stacks
    ]
    alone = [
        prepare_run(_config(tmp_path, registry, s, k=k), "", registry).algorithm
        for s in range(3)
        for k in (4, 6)
    ]
    type(members[0]).start_together(members)
    for together, single in zip(members, alone):
        assert together._loss is not None  # measured by the stack, not on demand
        assert together.loss() == single.loss()
        assert together.grad_norm == single.grad_norm
        V = single.V
        assert single.loss() == pytest.approx(float(population_loss(single.W, V)), rel=1e-13)
        G = population_grad(single.W, V)
        assert single.grad_norm == pytest.approx(float(np.linalg.norm(G)), rel=1e-12)


def test_orthonormal_and_given_teachers_and_wider_students(tmp_path, registry):
    run = start_run(
        _config(tmp_path, registry, seed=5, k=4, data__teacher="orthonormal", data__d=6),
        "",
        registry,
    )
    V = run.problem["extra.V"]
    assert V.shape == (6, 4) and run.meta["reason"] == "solved"
    np.testing.assert_allclose(V.T @ V, np.eye(4), atol=1e-14)
    other = Run(
        start_run(
            _config(tmp_path, registry, seed=6, k=4, data__teacher="orthonormal", data__d=6),
            "",
            registry,
        ).path
    )
    assert not np.allclose(other.problem["extra.V"], V)  # drawn from the run's seed
    given = [[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]
    run = start_run(
        _config(
            tmp_path,
            registry,
            k=2,
            data__teacher="given",
            data__V=given,
            data__d=3,
            model__width=2,
            algorithm__lr=0.5,
        ),
        "",
        registry,
    )
    assert run.meta["reason"] == "solved"  # (5 / k = 2.5 diverges for k = 2)
    np.testing.assert_array_equal(run.problem["extra.V"], given)
    X, Y = run.problem["X"], run.problem["Y"]
    np.testing.assert_allclose(Y, np.maximum(X @ np.array(given), 0).sum(axis=1))
    # a student wider than the teacher: W0 (d, n), the loss goes down
    wide = _config(tmp_path, registry, seed=2, k=3, model__width=5, algorithm__lr=0.3)
    wide["stoppers"]["max_steps"]["steps"] = 4
    run = start_run(wide, "", registry)
    assert run.snapshots.at(-1)["W"].shape == (3, 5)
    assert run.scalars["loss"][-1] < 0.5 * run.scalars["loss"][0]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"data__teacher": "given"}, "data (gaussian_teacher).V is required"),
        ({"data__teacher": "given", "data__V": [[1.0]]}, "must be d = 5 rows of k = 5"),
        ({"data__V": [[1.0]]}, "only used with teacher='given'"),
        ({"data__d": 3}, "data (gaussian_teacher).d must be >= k = 5"),
        ({"data__teacher": "orthogonal"}, "teacher must be one of"),
    ],
)
def test_data_errors_name_the_key(tmp_path, registry, changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _config(tmp_path, registry, **changes)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model__loss": "mse"}, "model.loss must be 'half_mse'"),
        ({"model__scaling": "ntk"}, "model.scaling must be 'standard'"),
    ],
)
def test_algorithm_refuses_other_model_conventions(tmp_path, registry, changes, message):
    with pytest.raises(ConfigError, match=message):
        start_run(_config(tmp_path, registry, **changes), "", registry)


def test_algorithm_needs_a_teacher(tmp_path, registry):
    config = _config(tmp_path, registry)
    config["data"] = resolve({**config, "data": {"name": "sinus"}}, registry)["data"]
    with pytest.raises(ConfigError, match="needs a teacher"):
        start_run(config, "", registry)
