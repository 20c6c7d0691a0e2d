"""Tests of plugins/data.py: shapes, seeding, the mathematics of each data set, files."""

import numpy as np
import pytest
from conftest import plugin_builder

from core import model
from core.errors import ConfigError
from core.params import validate_params
from core.registry import Registry

SYNTHETIC = ("linear", "sinus", "uniform", "normal", "sphere", "teacher_linear", "relu_teacher")
# Settings under which every data set draws something at random.
RANDOM_SETTINGS = {
    "linear": {"spacing": "uniform"},
    "sinus": {"noise": 0.1},
    "uniform": {},
    "normal": {},
    "sphere": {},
    "teacher_linear": {},
    "relu_teacher": {},
}


@pytest.fixture(scope="module")
def registry():
    return Registry(builtins=["plugins.data", "plugins.inits"], entry_points=False)


@pytest.fixture
def make(registry):
    """``make(name, **params)`` builds the data plugin from its declared defaults."""
    return plugin_builder(registry, "data")


def load(dataset, seed=0):
    return dataset.load(np.random.default_rng(seed))


def test_all_data_sets_are_registered(registry):
    assert set(registry.names("data")) == set(SYNTHETIC) | {"file"}
    assert not registry.failures


def test_every_data_set_loads_with_its_declared_defaults(registry, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(6.0).reshape(3, 2), Y=np.arange(3.0))
    needed = {"file": {"path": str(path)}}  # the one value a user must give
    for name in registry.names("data"):
        cls = registry.get("data", name)
        params = validate_params(f"data ({name})", needed.get(name, {}), cls.params)
        data = cls(**params).load(np.random.default_rng(0))
        assert data.X.ndim == 2 and data.X.dtype == np.float64
        assert data.Y.shape[0] == data.X.shape[0]
        assert np.isfinite(data.X).all() and np.isfinite(data.Y).all()
        assert cls.describe(), name


@pytest.mark.parametrize("name", SYNTHETIC)
@pytest.mark.parametrize("bias", [False, True])
def test_shapes_and_bias_column_last(make, name, bias):
    dataset = make(name, n=7, n_test=3, bias=bias)
    d = getattr(dataset, "d", 1)
    data = load(dataset)
    assert data.bias is bias
    for X, Y, n in ((data.X, data.Y, 7), (data.X_test, data.Y_test, 3)):
        assert X.shape == (n, d + int(bias))
        assert Y.shape == (n,)
        if bias:
            assert np.array_equal(X[:, -1], np.ones(n))


@pytest.mark.parametrize("name", ["uniform", "normal", "sphere", "relu_teacher"])
def test_k_outputs_give_two_dimensional_targets(make, name):
    data = load(make(name, n=5, k=3, n_test=2))
    assert data.Y.shape == (5, 3) and data.Y_test.shape == (2, 3)


def test_without_n_test_there_is_no_held_out_data(make):
    data = load(make("normal"))
    assert data.X_test is None and data.Y_test is None
    assert set(data.arrays()) == {"X", "Y"}


@pytest.mark.parametrize("name", SYNTHETIC)
def test_same_seed_same_arrays_other_seed_other_arrays(make, name):
    dataset = make(name, n_test=4, **RANDOM_SETTINGS[name])
    first, again, other = load(dataset, 3), load(dataset, 3), load(dataset, 4)
    for key, value in first.arrays().items():
        assert np.array_equal(value, again.arrays()[key]), key
    assert not np.array_equal(first.Y, other.Y)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_training_data_do_not_depend_on_n_test(make, name):
    alone = load(make(name, **RANDOM_SETTINGS[name]))
    with_test = load(make(name, n_test=5, **RANDOM_SETTINGS[name]))
    assert np.array_equal(alone.X, with_test.X) and np.array_equal(alone.Y, with_test.Y)


# -- 1-D curves ----------------------------------------------------------------------


def test_linear_is_the_line_on_an_even_grid(make):
    data = load(make("linear", n=11, low=-1, high=2, slope=3, intercept=-0.5))
    x = np.linspace(-1, 2, 11)
    assert np.array_equal(data.X[:, 0], x)
    assert np.allclose(data.Y, 3 * x - 0.5, rtol=0, atol=1e-15)


def test_linear_uniform_spacing_stays_in_range_and_test_inputs_are_drawn(make):
    data = load(make("linear", n=200, n_test=50, low=1, high=3, spacing="uniform"))
    for X in (data.X, data.X_test):
        assert X[:, 0].min() >= 1 and X[:, 0].max() < 3
    grid = load(make("linear", n=5, n_test=5))
    assert not np.array_equal(grid.X_test[:, 0], grid.X[:, 0])  # not a second grid


def test_linear_noise_has_the_requested_standard_deviation(make):
    n, noise = 20_000, 0.3
    data = load(make("linear", n=n, noise=noise))
    residual = data.Y - (0.2 * data.X[:, 0] + 0.2)
    # n * s^2 / noise^2 ~ chi2(n): relative sd of s^2 is sqrt(2 / n) = 1%; allow 5 sd.
    assert abs(np.mean(residual**2) / noise**2 - 1) < 5 * np.sqrt(2 / n)


def test_curve_rejects_an_empty_interval(make):
    with pytest.raises(ConfigError, match="low must be below high"):
        load(make("linear", low=1, high=1))


def test_sinus_formula_and_gradient_work_defaults(make):
    data = load(make("sinus", amplitude=2, frequency=3, phase=0.5, slope=-1, offset=4))
    x = data.X[:, 0]
    assert np.allclose(data.Y, 2 * np.sin(3 * x + 0.5) - x + 4, rtol=0, atol=1e-14)
    default = load(make("sinus"))
    x = np.linspace(-0.5, 0.5, 20)
    assert np.array_equal(default.X, np.column_stack([x, np.ones(20)]))
    expected = np.sin(10 * x - np.pi / 2) + 0.2 * x - 0.5
    assert np.allclose(default.Y, expected, rtol=0, atol=1e-14)


# -- random inputs, random labels ----------------------------------------------------


def test_uniform_inputs_lie_in_the_cube(make):
    data = load(make("uniform", n=500, d=4))
    assert data.X.min() >= -1 and data.X.max() < 1


def test_tmlr_setting_unit_rows_and_labels_exactly_plus_minus_one(make):
    data = load(make("uniform", n=200, d=20, normalize_rows=True, labels="sign"))
    assert np.allclose(np.linalg.norm(data.X, axis=1), 1, rtol=0, atol=1e-14)
    assert set(np.unique(data.Y)) == {-1.0, 1.0}


@pytest.mark.parametrize("labels", ["normal", "uniform", "sign", "zero"])
def test_label_kinds(make, labels):
    Y = load(make("uniform", n=2000, k=2, labels=labels)).Y
    if labels == "zero":
        assert not Y.any()
    elif labels == "sign":
        assert np.array_equal(np.abs(Y), np.ones_like(Y))
    elif labels == "uniform":
        assert Y.min() >= -1 and Y.max() < 1 and Y.min() < -0.9 and Y.max() > 0.9
    else:  # N(0, 1): 4000 draws; sd of the sample variance is sqrt(2/4000) = 2.2%
        assert abs(Y.var() - 1) < 5 * np.sqrt(2 / Y.size)


def test_normal_options_rescale_the_same_gaussian_draw(make):
    plain = load(make("normal", n=50, d=6)).X
    unit = load(make("normal", n=50, d=6, normalize_rows=True)).X
    scaled = load(make("normal", n=50, d=6, scale_by_sqrt_n=True)).X
    assert np.allclose(unit, plain / np.linalg.norm(plain, axis=1, keepdims=True), atol=1e-15)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1, rtol=0, atol=1e-14)
    assert np.allclose(scaled * np.sqrt(50), plain, rtol=1e-15, atol=0)


def test_normal_scaled_held_out_inputs_use_the_training_n(make):
    data = load(make("normal", n=10_000, d=3, n_test=10_000, scale_by_sqrt_n=True))
    # Entries ~ N(0, 1/n) for both sets; chi2 spread of 30 000 draws is 0.8%.
    for X in (data.X, data.X_test):
        assert abs(np.mean(X**2) * 10_000 - 1) < 5 * np.sqrt(2 / X.size)


def test_normal_options_exclude_each_other(make):
    with pytest.raises(ConfigError, match="normalize_rows and scale_by_sqrt_n"):
        load(make("normal", normalize_rows=True, scale_by_sqrt_n=True))


def test_sphere_is_normal_scaled_to_unit_rows(make):
    sphere = load(make("sphere", n=30, d=5, bias=True))
    normal = load(make("normal", n=30, d=5, bias=True, normalize_rows=True))
    assert np.array_equal(sphere.X, normal.X) and np.array_equal(sphere.Y, normal.Y)
    assert np.allclose(np.linalg.norm(sphere.X[:, :-1], axis=1), 1, rtol=0, atol=1e-14)


def test_sphere_points_have_the_moments_of_the_uniform_law(make):
    # Uniform on S^(d-1): E[x] = 0 and E[x x^T] = I / d.
    X = load(make("sphere", n=20_000, d=4)).X
    assert np.abs(X.mean(axis=0)).max() < 5 * np.sqrt(1 / 4 / 20_000)
    assert np.abs(X.T @ X / 20_000 - np.eye(4) / 4).max() < 0.01


# -- planted teachers ----------------------------------------------------------------


def test_teacher_linear_labels_are_x_times_a_unit_vector(make):
    data = load(make("teacher_linear", n=60, d=15, n_test=10))
    w_star, *_ = np.linalg.lstsq(data.X, data.Y, rcond=None)
    assert np.isclose(np.linalg.norm(w_star), 1, rtol=0, atol=1e-12)
    assert np.allclose(data.X @ w_star, data.Y, rtol=0, atol=1e-14)
    assert np.allclose(data.X_test @ w_star, data.Y_test, rtol=0, atol=1e-14)
    # Wang et al.'s scaling: entries ~ N(0, 1/n).
    assert 0.5 < np.mean(data.X**2) * 60 < 1.5


def test_teacher_linear_with_bias_leaves_the_bias_out_of_the_labels(make):
    data = load(make("teacher_linear", n=40, d=5, bias=True))
    coef, *_ = np.linalg.lstsq(data.X, data.Y, rcond=None)
    assert abs(coef[-1]) < 1e-12 and np.isclose(np.linalg.norm(coef[:-1]), 1, atol=1e-12)


def test_teacher_linear_min_singular_direction(make):
    data = load(make("teacher_linear", n=30, d=8, planted="min_singular"))
    w_star, *_ = np.linalg.lstsq(data.X, data.Y, rcond=None)
    smallest = np.linalg.svd(data.X, compute_uv=False)[-1]
    assert np.isclose(np.linalg.norm(w_star), 1, atol=1e-12)
    assert np.isclose(np.linalg.norm(data.Y), smallest, rtol=1e-12)


@pytest.mark.parametrize("n, d", [(30, 8), (8, 30)])
def test_teacher_linear_whitened_inputs_are_orthonormal(make, n, d):
    X = load(make("teacher_linear", n=n, d=d, inputs="whitened")).X
    gram = X.T @ X if n >= d else X @ X.T
    assert np.allclose(gram, np.eye(min(n, d)), atol=1e-13)


def test_teacher_linear_cubed_inputs_cube_the_gaussian_draw(make):
    plain = load(make("teacher_linear", n=20, d=4)).X
    cubed = load(make("teacher_linear", n=20, d=4, inputs="cubed")).X
    assert np.allclose(cubed, plain**3, rtol=1e-14, atol=0)


def test_teacher_linear_noise_is_scaled_by_sqrt_n(make):
    n, d, noise = 20_000, 3, 2.0
    data = load(make("teacher_linear", n=n, d=d, noise=noise))
    clean = load(make("teacher_linear", n=n, d=d))
    assert np.array_equal(data.X, clean.X)
    residual = data.Y - clean.Y  # the same w* is drawn before the noise
    assert abs(np.mean(residual**2) / (noise**2 / n) - 1) < 5 * np.sqrt(2 / n)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("k", [1, 2])
def test_relu_teacher_labels_are_the_teacher_network(make, bias, k):
    dataset = make("relu_teacher", n=50, d=4, m_star=3, k=k, bias=bias, n_test=5)
    U, v = dataset.draw_teacher(np.random.default_rng(7))
    assert U.shape == (4 + int(bias), 3) and v.shape == ((3,) if k == 1 else (3, k))
    assert np.array_equal(np.abs(v), np.ones_like(v))
    data = load(dataset, 7)
    assert np.array_equal(data.Y, model.forward(data.X, U, v))
    assert np.array_equal(data.Y_test, model.forward(data.X_test, U, v))


def test_relu_teacher_identity_teacher_on_the_sphere(make):
    dataset = make(
        "relu_teacher",
        d=4,
        m_star=4,
        teacher_weights="identity",
        teacher_output="positive",
        inputs="sphere",
    )
    data = load(dataset)
    assert np.allclose(np.linalg.norm(data.X, axis=1), 1, rtol=0, atol=1e-14)
    assert np.allclose(data.Y, np.maximum(data.X, 0).sum(axis=1), rtol=0, atol=1e-15)
    with pytest.raises(ConfigError, match="m_star <= d"):
        load(make("relu_teacher", d=3, m_star=4, teacher_weights="identity"))


def test_relu_teacher_noise_is_added_after_the_teacher(make):
    clean = load(make("relu_teacher", n=10_000))
    noisy = load(make("relu_teacher", n=10_000, noise=0.5))
    assert np.array_equal(clean.X, noisy.X)
    residual = noisy.Y - clean.Y
    assert abs(np.mean(residual**2) / 0.25 - 1) < 5 * np.sqrt(2 / 10_000)


# -- files ---------------------------------------------------------------------------


def test_npz_round_trip_with_bias(make, tmp_path):
    X, Y = np.random.default_rng(0).standard_normal((2, 9, 3))
    path = tmp_path / "data.npz"
    np.savez(path, inputs=X, targets=Y)
    data = load(make("file", path=str(path), x_key="inputs", y_key="targets", bias=True))
    assert np.array_equal(data.X, np.column_stack([X, np.ones(9)]))
    assert np.array_equal(data.Y, Y) and data.bias


def test_npz_one_feature_and_integer_arrays(make, tmp_path):
    path = tmp_path / "ints.npz"
    np.savez(path, X=np.arange(4), Y=np.arange(4) ** 2)
    data = load(make("file", path=str(path)))
    assert data.X.shape == (4, 1) and data.X.dtype == np.float64
    assert np.array_equal(data.Y, [0.0, 1.0, 4.0, 9.0])


def test_csv_round_trip_with_header_and_two_targets(make, tmp_path):
    table = np.random.default_rng(1).standard_normal((6, 5))
    path = tmp_path / "data.csv"
    np.savetxt(path, table, delimiter=",", header="x1,x2,x3,y1,y2", comments="")
    data = load(make("file", path=str(path), skip_header=1, y_columns=2))
    assert np.array_equal(data.X, table[:, :3]) and np.array_equal(data.Y, table[:, 3:])
    single = load(make("file", path=str(path), skip_header=1))
    assert single.Y.shape == (6,) and np.array_equal(single.Y, table[:, 4])


def test_file_held_out_rows_partition_the_file(make, tmp_path):
    X = np.arange(20.0).reshape(10, 2)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, Y=X[:, 0])
    data = load(make("file", path=str(path), n_test=3), seed=5)
    rows = np.concatenate([data.X, data.X_test])
    assert data.X.shape == (7, 2) and data.X_test.shape == (3, 2)
    assert sorted(map(tuple, rows)) == sorted(map(tuple, X))
    assert np.array_equal(data.Y, data.X[:, 0]) and np.array_equal(data.Y_test, data.X_test[:, 0])
    assert np.all(np.diff(data.X[:, 0]) > 0)  # file order kept
    again = load(make("file", path=str(path), n_test=3), seed=5)
    assert np.array_equal(again.X_test, data.X_test)


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


BAD_FILES = {
    "missing": (lambda p: p / "absent.npz", {}, "no such file"),
    "extension": (lambda p: _touch(p / "data.json", "{}"), {}, "unsupported extension"),
    "no key": (
        lambda p: _write_npz(p / "k.npz", inputs=np.ones((2, 2)), Y=np.ones(2)),
        {},
        "has no array 'X'; arrays: inputs, Y",
    ),
    "object array": (
        lambda p: _write_npz(p / "o.npz", X=np.array([{}, 1], dtype=object), Y=np.ones(2)),
        {},
        "cannot read array 'X'",
    ),
    "strings": (
        lambda p: _write_npz(p / "s.npz", X=np.array(["a", "b"]), Y=np.ones(2)),
        {},
        "not real numbers",
    ),
    "not a zip": (lambda p: _touch(p / "z.npz", "hello"), {}, "cannot read as .npz"),
    "rows": (
        lambda p: _write_npz(p / "r.npz", X=np.ones((3, 2)), Y=np.ones(2)),
        {},
        "3 rows but targets 2",
    ),
    "nan": (
        lambda p: _write_npz(p / "n.npz", X=np.array([[np.nan]]), Y=np.ones(1)),
        {},
        "non-finite",
    ),
    "text in csv": (lambda p: _touch(p / "t.csv", "1,2\n3,abc\n"), {}, "not a numeric table"),
    "header not skipped": (lambda p: _touch(p / "h.csv", "x,y\n1,2\n"), {}, "not a numeric"),
    "empty csv": (lambda p: _touch(p / "e.csv", ""), {}, "no data rows"),
    "only targets": (lambda p: _touch(p / "o.csv", "1,2\n"), {"y_columns": 2}, "no inputs"),
    "all held out": (
        lambda p: _write_npz(p / "a.npz", X=np.ones((3, 1)), Y=np.ones(3)),
        {"n_test": 3},
        "leaves no training rows",
    ),
}


def _touch(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_raise_config_errors_naming_the_path(make, tmp_path, case):
    make_path, params, problem = BAD_FILES[case]
    path = make_path(tmp_path)
    with pytest.raises(ConfigError) as info:
        load(make("file", path=str(path), **params))
    assert str(path) in str(info.value) and problem in str(info.value)


def test_file_without_a_path_says_so(make):
    with pytest.raises(ConfigError, match="path is not set"):
        load(make("file"))
