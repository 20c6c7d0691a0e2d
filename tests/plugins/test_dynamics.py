"""Training-dynamics metrics (plugins/dynamics) and their math (core/quantities).

Hand-built networks with known pattern flips, corners, moves and gradients; the Gram
matrix H(0) against its closed-form limit H^inf with a Hoeffding tolerance in
1/sqrt(m); the published inits and data; the metrics through the real run loop
(against gd's own gradient norm and the trace's loss) and across a resume.
"""

import math

import numpy as np
import pytest

from core import model, quantities
from core.components import Problem
from core.config import resolve
from core.loop import resume_run, start_run
from core.registry import Registry
from plugins.dynamics import (
    ActivationPatterns,
    Corners,
    GradChange,
    LiveNeurons,
    LossChange,
    NeuronShift,
    NtkGram,
    PreactNorm,
    fit_slope,
)


def make(cls, **params):
    """A metric with its declared defaults, as the config resolver would build it."""
    return cls(**{**{p.name: p.default for p in cls.params}, **params})


class Fake:
    """An algorithm whose state is set by hand: ``state()``, ``loss()``, ``train``."""

    def __init__(self, W, a, loss=1.0, train="both"):
        self.W, self.a, self._loss, self.train = W, a, loss, train

    def state(self):
        return {"W": self.W, "a": self.a}

    def loss(self):
        return self._loss


def problem(X, W0, a0=None, Y=None, scaling="standard", loss="mse"):
    X = np.asarray(X, dtype=float)
    W0 = np.asarray(W0, dtype=float)
    a0 = np.ones(W0.shape[1]) if a0 is None else np.asarray(a0, dtype=float)
    Y = np.zeros(X.shape[0]) if Y is None else np.asarray(Y, dtype=float)
    return Problem(X=X, Y=Y, W0=W0, a0=a0, scaling=scaling, loss=loss)


# -- activation patterns ---------------------------------------------------------------


def test_pattern_hamming_distances_count_the_flipped_entries():
    # X = I: the pattern is W > 0 itself, so flipping the sign of k entries flips k bits
    W0 = np.array([[1.0, -1.0, 2.0], [1.0, 1.0, -3.0], [-1.0, 2.0, 1.0], [0.5, 0.5, 0.5]])
    p = problem(np.eye(4), W0)
    W1 = W0.copy()
    W1[0, 0] = W1[2, 1] = -5.0  # two flips from W0
    W2 = W1.copy()
    W2[1, 2] = 4.0  # one more
    metric = make(ActivationPatterns, fractions=True)
    rows = [metric.compute(Fake(W, np.ones(3)), p) for W in (W0, W1, W2, W0)]
    assert [r["hamming_init"] for r in rows] == [0, 2, 3, 0]
    assert math.isnan(rows[0]["hamming_prev"])
    assert [r["hamming_prev"] for r in rows[1:]] == [2, 1, 3]
    assert [r["patterns_visited"] for r in rows] == [1, 2, 3, 3]
    assert rows[2]["hamming_init_frac"] == 3 / 12 and rows[3]["hamming_prev_frac"] == 3 / 12
    # a zero pre-activation is inactive (relu'(0) = 0): W0 -> 0 at an active entry flips it
    W3 = W0.copy()
    W3[3, 0] = 0.0
    assert quantities.pattern_change(W3, np.ones(3), p)["hamming_init"] == 1


def test_pattern_metric_after_a_resume_and_with_restored_state():
    rng = np.random.default_rng(0)
    X, W0 = rng.normal(size=(30, 4)), rng.normal(size=(4, 9))
    p = problem(X, W0)
    walk = [W0 + 0.3 * t * rng.normal(size=W0.shape) for t in range(5)]
    whole = make(ActivationPatterns)
    rows = [whole.compute(Fake(W, np.ones(9)), p) for W in walk]
    # a fresh instance (what --resume builds today) starting at step 2
    fresh = make(ActivationPatterns)
    first = fresh.compute(Fake(walk[2], np.ones(9)), p)
    assert first["hamming_init"] == rows[2]["hamming_init"]
    assert math.isnan(first["hamming_prev"]) and math.isnan(first["patterns_visited"])
    second = fresh.compute(Fake(walk[3], np.ones(9)), p)
    assert second["hamming_prev"] == rows[3]["hamming_prev"]
    assert math.isnan(second["patterns_visited"])
    # with the state restored, the continuation equals the uninterrupted one
    head = make(ActivationPatterns)
    for W in walk[:3]:
        head.compute(Fake(W, np.ones(9)), p)
    tail = make(ActivationPatterns)
    tail.load_state_dict(head.state_dict())
    assert [tail.compute(Fake(W, np.ones(9)), p) for W in walk[3:]] == rows[3:]


def test_float32_run_is_at_zero_distance_from_its_rounded_start():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    W0 = rng.normal(size=(3, 40))
    W0[:, 0] = [1.0, 1e-9, 0.0]  # rounding moves this one
    p = problem(X, W0)
    W32 = W0.astype(np.float32)
    algorithm = Fake(W32, np.ones(40, dtype=np.float32))
    assert make(ActivationPatterns).compute(algorithm, p)["hamming_init"] == 0
    shift = make(NeuronShift).compute(algorithm, p)
    assert shift == {"neuron_shift_max": 0.0, "neuron_shift_fro": 0.0}
    assert make(NtkGram).compute(algorithm, p)["gram_change"] == 0.0
    # the float64 distance of the same weights is the rounding error, not zero
    assert quantities.distance_from_init(W32, algorithm.a, p)["dist_W"] > 0


# -- corners, live neurons, norms, moves -----------------------------------------------


def test_corners_count_small_pre_activations():
    W = np.array([[0.0, 1e-9, -1e-9, 1e-7, 2.0]])  # X = [[1], [-1]]: each twice
    p = problem([[1.0], [-1.0]], W)
    algorithm = Fake(W, np.ones(5))
    assert make(Corners).compute(algorithm, p) == {"corners": 6}
    out = make(Corners, threshold=1e-6, fractions=True).compute(algorithm, p)
    assert out == {"corners": 8, "corners_frac": 0.8}
    assert make(Corners, threshold=0.0).compute(algorithm, p) == {"corners": 0}


def test_live_neurons_and_preactivation_norm():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    W = np.array([[1.0, -1.0, -1.0, 0.0], [-2.0, -1.0, 2.0, 0.0]])  # neurons 1 and 3 dead
    p = problem(X, W)
    assert make(LiveNeurons).compute(Fake(W, np.ones(4)), p) == {
        "live_neurons": 2,
        "live_frac": 0.5,
    }
    Z = X @ W
    expected = math.sqrt(sum(z * z for z in Z.ravel()))
    assert make(PreactNorm).compute(Fake(W, np.ones(4)), p)["preact_norm"] == pytest.approx(
        expected
    )


def test_neuron_shift_is_the_largest_column_move():
    W0 = np.zeros((2, 3))
    W = np.array([[3.0, 1.0, 0.0], [4.0, 0.0, 0.0]])
    out = make(NeuronShift).compute(Fake(W, np.ones(3)), problem(np.eye(2), W0))
    assert out["neuron_shift_max"] == 5.0
    assert out["neuron_shift_fro"] == pytest.approx(math.sqrt(26.0))


# -- loss and gradient changes ---------------------------------------------------------


def test_relative_loss_change():
    metric, p = make(LossChange), problem(np.eye(1), np.ones((1, 1)))
    values = [metric.compute(Fake(None, None, loss=v), p)["rel_loss_change"] for v in (4, 3, 3, 6)]
    assert math.isnan(values[0]) and values[1:] == [0.25, 0.0, 1.0]
    restored = make(LossChange)
    restored.load_state_dict(metric.state_dict())
    assert restored.compute(Fake(None, None, loss=3.0), p)["rel_loss_change"] == 0.5


def test_gradient_change_uses_spectral_norms_maximised_over_tensors():
    now = {"W": np.diag([3.0, 1.0]), "a": np.array([0.0, 1.0])}
    previous = {"W": np.eye(2), "a": np.array([0.0, 2.0])}
    # numerator max(||diag(2, 0)||_2, ||(0, -1)||) = 2; denominator max(1, 2) = 2
    assert quantities.gradient_change(now, previous) == 1.0
    # the spectral norm, not the Frobenius norm: [[1, 1], [1, 1]] has norm 2 (Frobenius 2)
    # and [[1, 0], [0, 1]] norm 1 (Frobenius sqrt 2)
    assert quantities.spectral_norm(np.ones((2, 2))) == pytest.approx(2.0)
    assert quantities.spectral_norm(np.eye(2)) == pytest.approx(1.0)
    assert quantities.gradient_norm_sum(now) == pytest.approx(math.sqrt(10.0) + 1.0)


def test_spectral_norm_is_the_largest_singular_value():
    rng = np.random.default_rng(2)
    for shape in ((3, 40), (40, 3), (5, 5)):
        g = rng.normal(size=shape)
        assert quantities.spectral_norm(g) == pytest.approx(np.linalg.norm(g, 2), rel=1e-12)
    assert quantities.spectral_norm(np.array([3.0, -4.0])) == 5.0
    assert quantities.spectral_norm(np.zeros((2, 3))) == 0.0


def test_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=12)
    W, a = rng.normal(size=(3, 5)), rng.normal(size=5)
    p = problem(X, W, a, Y, scaling="ntk", loss="half_sum")
    grads = quantities.loss_gradients(W, a, p)
    h = 1e-6
    for name, array in (("W", W), ("a", a)):
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += h
            minus[index] -= h
            args = {"W": W, "a": a}
            up = model.loss(X, Y, **{**args, name: plus}, scaling="ntk", loss="half_sum")
            down = model.loss(X, Y, **{**args, name: minus}, scaling="ntk", loss="half_sum")
            assert grads[name][index] == pytest.approx((up - down) / (2 * h), abs=1e-6)


def test_grad_change_metric_follows_the_trained_layers():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=10)
    W0, a = rng.normal(size=(3, 4)), rng.normal(size=4)
    p = problem(X, W0, a, Y)
    W1 = W0 + 0.1 * rng.normal(size=W0.shape)
    first = make(GradChange)
    rows = [first.compute(Fake(W, a, train="first"), p) for W in (W0, W1)]
    g0 = quantities.loss_gradients(W0, a, p, ("W",))
    g1 = quantities.loss_gradients(W1, a, p, ("W",))
    assert math.isnan(rows[0]["grad_change"])
    assert rows[0]["grad_norm_sum"] == pytest.approx(np.linalg.norm(g0["W"]))
    top = np.linalg.svd(g1["W"] - g0["W"], compute_uv=False)[0]
    assert rows[1]["grad_change"] == pytest.approx(top / np.linalg.svd(g0["W"])[1][0])
    both = make(GradChange)
    both.compute(Fake(W0, a, train="both"), p)
    G0 = quantities.loss_gradients(W0, a, p)
    G1 = quantities.loss_gradients(W1, a, p)
    assert both.compute(Fake(W1, a, train="both"), p)["grad_change"] == pytest.approx(
        quantities.gradient_change(G1, G0)
    )
    assert make(GradChange, layers="W").compute(Fake(W0, a), p)["grad_norm_sum"] == pytest.approx(
        np.linalg.norm(g0["W"])
    )


# -- Du et al.'s Gram matrix -----------------------------------------------------------


def unit_rows(n, d, rng):
    X = rng.normal(size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_gram_matrix_matches_its_definition():
    rng = np.random.default_rng(5)
    X, W = rng.normal(size=(6, 3)), rng.normal(size=(3, 7))
    W[:, 0] = 0.0  # w.x = 0 counts as >= 0
    H = quantities.ntk_gram(X, W)
    for i in range(6):
        for j in range(6):
            both = sum(W[:, r] @ X[i] >= 0 and W[:, r] @ X[j] >= 0 for r in range(7))
            assert H[i, j] == pytest.approx(X[i] @ X[j] * both / 7, rel=1e-14, abs=1e-15)


def test_gram_at_initialisation_approaches_h_infinity_like_one_over_sqrt_m():
    rng = np.random.default_rng(6)
    n = 8
    X = unit_rows(n, 4, rng)
    H_inf = quantities.ntk_gram_infinity(X)
    errors = {}
    for m in (100, 1600, 25600):
        W = rng.normal(size=(4, m))
        errors[m] = np.abs(quantities.ntk_gram(X, W) - H_inf).max()
        # each entry is a mean of m variables in an interval of length |x_i.x_j| <= 1:
        # Hoeffding and a union bound over n^2 entries, failure probability 1e-6
        assert errors[m] <= math.sqrt(math.log(2 * n * n / 1e-6) / (2 * m))
    assert errors[25600] < errors[100] / 4  # the expected ratio is sqrt(256) = 16


def test_h_infinity_closed_form_and_positive_definiteness():
    rng = np.random.default_rng(7)
    X = unit_rows(30, 3, rng)  # n > d: X X^T is singular, H^inf is not
    H = quantities.ntk_gram_infinity(X)
    G = X @ X.T
    np.testing.assert_allclose(
        H, G * (np.pi - np.arccos(np.clip(G, -1, 1))) / (2 * np.pi), atol=1e-15
    )
    assert np.linalg.eigvalsh(G)[0] < 1e-12
    assert quantities.lambda_0(X) > 1e-6
    np.testing.assert_allclose(np.diag(H), 0.5)  # x.x (pi - 0) / (2 pi)
    # a scaled input keeps its angles: H^inf scales with the norms, as E_w[H] does
    scaled = X * np.arange(1, 31)[:, None]
    np.testing.assert_allclose(
        quantities.ntk_gram_infinity(scaled), H * np.outer(np.arange(1, 31), np.arange(1, 31))
    )
    # an input repeated (parallel, same direction): two equal rows, singular
    assert abs(quantities.lambda_0(np.vstack([X, X[:1]]))) < 1e-12


def test_ntk_gram_metric_keeps_the_reference():
    rng = np.random.default_rng(8)
    X = unit_rows(10, 3, rng)
    W0 = rng.normal(size=(3, 50))
    p = problem(X, W0)
    metric = make(NtkGram)
    start = metric.compute(Fake(W0, np.ones(50)), p)
    assert start["gram_change"] == 0.0
    assert start["gram_lambda_0"] == pytest.approx(quantities.lambda_0(X), rel=1e-12)
    H0 = quantities.ntk_gram(X, W0)
    assert start["gram_lambda_min"] == pytest.approx(np.linalg.eigvalsh(H0)[0], rel=1e-12)
    W1 = -W0
    out = metric.compute(Fake(W1, np.ones(50)), p)
    H1 = quantities.ntk_gram(X, W1)
    assert out["gram_change"] == pytest.approx(np.linalg.norm(H1 - H0, 2), rel=1e-12)
    assert quantities.ntk_spectrum(W1, np.ones(50), p) == pytest.approx(out, rel=1e-12)


def test_fit_slope_of_a_power_law():
    m = np.array([100.0, 1000.0, 10000.0])
    assert fit_slope(m, 3.0 / np.sqrt(m)) == pytest.approx(-0.5, abs=1e-12)
    assert math.isnan(fit_slope([1.0], [1.0]))


# -- the published inits and data -----------------------------------------------------


@pytest.fixture(scope="module")
def builtin():
    return Registry(entry_points=False)


@pytest.mark.parametrize("m", [1, 2, 3, 7, 60, 2828])
def test_basicnet_inits_have_exactly_half_negative_signs(builtin, m):
    one_layer = builtin.build(
        "init",
        "normal",
        {"second_layer": "signed", "a_scale_mode": "inv_sqrt_m"},
    )
    W0, a0 = one_layer.initialize(20, m, 1, np.random.default_rng(m))
    assert W0.shape == (20, m) and a0.shape == (m,)
    assert np.count_nonzero(a0 < 0) == m // 2
    np.testing.assert_array_equal(np.abs(a0), np.full(m, 1 / math.sqrt(m)))
    two_layer = builtin.build(
        "init", "normal", {"second_layer": "uniform", "a_scale_mode": "inv_sqrt_m"}
    )
    _, a0 = two_layer.initialize(20, m, 1, np.random.default_rng(m))
    assert np.all(np.abs(a0) <= 1 / math.sqrt(m))


def test_polaczyk_cyranka_data_are_unit_rows_and_sign_labels(builtin):
    data = builtin.build(
        "data", "uniform", {"n": 200, "d": 20, "normalize_rows": True, "labels": "sign"}
    ).load(np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(data.X, axis=1), 1.0, rtol=1e-15)
    assert set(np.unique(data.Y)) == {-1.0, 1.0} and data.X.shape == (200, 20)


# -- through the run loop -------------------------------------------------------------

ALL = [
    "activation_patterns",
    "corners",
    "loss_change",
    "grad_change",
    "neuron_shift",
    "preact_norm",
    "live_neurons",
    "ntk_gram",
]


def run_config(tmp_path, steps):
    return {
        "experiment": "dynamics",
        "seed": 3,
        "model": {"width": 40, "scaling": "ntk", "loss": "half_sum"},
        "data": {"name": "sphere", "n": 15, "d": 4},
        "init": {"name": "normal", "second_layer": "rademacher"},
        "algorithm": {"name": "gd_numpy", "lr": 0.2, "train": "first"},
        "stoppers": {"max_steps": {"steps": steps}},
        "loggers": {"scalars": {"every": 1, "metrics": ALL}},
        "savers": {"periodic": {"every_seconds": 0.0}},
        "run": {"display": "off", "runs_dir": str(tmp_path)},
    }


def test_metrics_in_a_gd_run_agree_with_the_trace_and_gd(tmp_path, builtin):
    run = start_run(resolve(run_config(tmp_path, 30), builtin), "", builtin)
    s = run.scalars
    loss = s["loss"]
    np.testing.assert_allclose(
        s["rel_loss_change"][1:], np.abs(np.diff(loss)) / loss[:-1], rtol=1e-12
    )
    # only W is trained: the sum of tensor norms is gd's own gradient norm
    np.testing.assert_allclose(s["grad_norm_sum"], s["grad_norm"], rtol=1e-10)
    assert s["hamming_init"][0] == 0 and s["neuron_shift_max"][0] == 0.0
    assert np.all(np.diff(s["patterns_visited"]) >= 0)
    assert s["patterns_visited"][-1] <= 31
    # Du et al.: GD on W with a +-1 fixed stays close to H(0) and decays the loss
    assert np.all(s["gram_lambda_0"] == s["gram_lambda_0"][0])
    assert loss[-1] < loss[0] * math.exp(-s["gram_lambda_0"][0] * 0.2 * 30)


def test_metrics_after_resume(tmp_path, builtin):
    short = start_run(resolve(run_config(tmp_path / "a", 10), builtin), "", builtin)
    resumed = resume_run(short.path, builtin, overrides=["stoppers.max_steps.steps=20"])
    whole = start_run(resolve(run_config(tmp_path / "b", 20), builtin), "", builtin)
    s, w = resumed.scalars, whole.scalars
    assert list(s["step"]) == list(w["step"])
    after = np.flatnonzero(s["step"] > 10)
    np.testing.assert_array_equal(s["hamming_init"], w["hamming_init"])
    np.testing.assert_allclose(s["neuron_shift_max"], w["neuron_shift_max"], rtol=1e-12)
    # the scalars logger checkpoints the metrics' state: the resumed run logs what an
    # uninterrupted one does, including the comparisons with the previous evaluation
    for key in ("hamming_prev", "rel_loss_change", "grad_change", "patterns_visited"):
        np.testing.assert_allclose(s[key][after], w[key][after], rtol=1e-10)
    assert np.all(np.isfinite(s["patterns_visited"][after]))
