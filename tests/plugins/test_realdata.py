"""Tests of plugins/realdata.py: digits shapes, the IDX reader, MNIST files, errors."""

import gzip

import numpy as np
import pytest
from conftest import plugin_builder

from core.errors import ConfigError, PluginError
from core.registry import Registry
from plugins.realdata import pca_project, read_idx


@pytest.fixture(scope="module")
def registry():
    return Registry(builtins=["plugins.realdata"], entry_points=False)


@pytest.fixture
def make(registry):
    return plugin_builder(registry, "data")


def write_idx(path, array, compress=False):
    """An IDX file of unsigned bytes, written by hand from the format's definition."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def fake_mnist(n=60, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def test_both_are_registered(registry):
    assert {"digits", "mnist"} <= set(registry.names("data"))
    entry = registry.entry("data", "digits")
    assert entry.cls.requires == ("sklearn",) and entry.cls.extra == "sklearn"


def test_digits_shapes_and_targets(make):
    pytest.importorskip("sklearn")
    data = make("digits", n=100, n_test=40).load(np.random.default_rng(0))
    assert data.X.shape == (100, 65) and data.Y.shape == (100, 10)
    assert data.X_test.shape == (40, 65) and data.Y_test.shape == (40, 10)
    assert np.all(data.X[:, -1] == 1.0) and 0 <= data.X[:, :-1].min() <= data.X.max() <= 1
    assert np.all(data.Y.sum(axis=1) == 1.0)
    value = make("digits", n=50, target="value", bias=False).load(np.random.default_rng(0))
    assert value.X.shape == (50, 64) and value.Y.shape == (50,)
    # the same seed draws the same images: one-hot and value targets agree
    onehot = make("digits", n=50, bias=False).load(np.random.default_rng(0))
    assert np.array_equal(onehot.Y.argmax(axis=1), value.Y)


def test_digits_classes_sign_and_pca(make):
    pytest.importorskip("sklearn")
    data = make("digits", n=0, classes=[3, 8], target="sign", pca=5).load(np.random.default_rng(1))
    from sklearn.datasets import load_digits

    labels = load_digits().target
    assert data.X.shape == (int(np.isin(labels, [3, 8]).sum()), 6)
    assert set(np.unique(data.Y)) == {-1.0, 1.0}
    # principal coordinates of the training rows are centred and uncorrelated
    Z = data.X[:, :-1]
    assert np.allclose(Z.mean(axis=0), 0, atol=1e-12)
    cov = Z.T @ Z
    assert np.allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-8)
    assert np.all(np.diff(np.diag(cov)) <= 0)
    onehot = make("digits", n=30, classes=[8, 3]).load(np.random.default_rng(1))
    assert onehot.Y.shape == (30, 2)
    with pytest.raises(ConfigError, match="target='sign' needs exactly two classes"):
        make("digits", classes=[1, 2, 3], target="sign").load(np.random.default_rng(0))
    with pytest.raises(ConfigError, match="n=5000"):
        make("digits", n=5000).load(np.random.default_rng(0))


def test_pca_project_matches_a_direct_eigendecomposition():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 6)) @ rng.standard_normal((6, 6))
    Z, Z_other = pca_project(X, 3, X[:5])
    centred = X - X.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    expected = centred @ vectors[:, ::-1][:, :3]
    assert np.allclose(np.abs(Z), np.abs(expected))
    assert np.allclose(Z_other, Z[:5])


@pytest.mark.parametrize("compress", [False, True])
def test_idx_file_written_here_is_parsed(tmp_path, compress):
    images, labels = fake_mnist(12)
    write_idx(tmp_path / "img", images, compress)
    write_idx(tmp_path / "lab", labels, compress)
    assert np.array_equal(read_idx(tmp_path / "img"), images)
    assert np.array_equal(read_idx(tmp_path / "lab"), labels)
    # a big-endian int32 file
    values = np.array([[1, -2], [70000, 3]], dtype=">i4")
    header = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") * 2
    (tmp_path / "ints").write_bytes(header + values.tobytes())
    assert read_idx(tmp_path / "ints").tolist() == [[1, -2], [70000, 3]]


def test_idx_errors_name_the_file(tmp_path):
    (tmp_path / "bad").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ConfigError, match="bad.*not an IDX file"):
        read_idx(tmp_path / "bad")
    images, _ = fake_mnist(3)
    write_idx(tmp_path / "short", images)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-10])
    with pytest.raises(ConfigError, match="short.*header says shape"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_idx_folder(make, tmp_path, compress):
    images, labels = fake_mnist(60)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    data = make("mnist", path=str(tmp_path), n=20, n_test=10, target="value").load(
        np.random.default_rng(0)
    )
    assert data.X.shape == (20, 785) and data.Y.shape == (20,)
    assert data.X_test.shape == (10, 785)
    # every training row is one of the images, scaled to [0, 1], with its own label
    flat = images.reshape(60, -1) / 255.0
    rows = [int(np.flatnonzero((flat == x).all(axis=1))[0]) for x in data.X[:, :-1]]
    assert np.array_equal(data.Y, labels[rows].astype(float))
    test_rows = [int(np.flatnonzero((flat == x).all(axis=1))[0]) for x in data.X_test[:, :-1]]
    assert not set(rows) & set(test_rows)
    again = make("mnist", path=str(tmp_path), n=20, n_test=10, target="value").load(
        np.random.default_rng(0)
    )
    assert np.array_equal(again.X, data.X)


def test_mnist_npz_and_pca(make, tmp_path):
    images, labels = fake_mnist(50)
    np.savez(tmp_path / "mnist.npz", x=images, y=labels.astype(np.int64))
    data = make("mnist", path=str(tmp_path / "mnist.npz"), n=12, pca=8, classes=[0, 1, 2]).load(
        np.random.default_rng(0)
    )
    assert data.X.shape == (12, 9) and data.Y.shape == (12, 3)  # of the 15 images of 0, 1, 2
    assert np.allclose(data.X[:, :-1].mean(axis=0), 0, atol=1e-12)


def test_mnist_npz_refuses_objects(make, tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 3), y=np.arange(3))
    with pytest.raises(ConfigError, match="obj.npz.*cannot read"):
        make("mnist", path=str(tmp_path / "obj.npz")).load(np.random.default_rng(0))


def test_missing_files_say_what_to_put_where(make, tmp_path):
    with pytest.raises(ConfigError) as info:
        make("mnist", path=str(tmp_path)).load(np.random.default_rng(0))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "train-images-idx3-ubyte" in message and ".npz" in message
    with pytest.raises(ConfigError, match="no such file"):
        make("mnist", path=str(tmp_path / "none.npz")).load(np.random.default_rng(0))
    with pytest.raises(ConfigError, match="no such folder"):
        make("mnist", path=str(tmp_path / "absent")).load(np.random.default_rng(0))
    np.savez(tmp_path / "other.npz", X=np.zeros((2, 4)), Y=np.zeros(2))
    with pytest.raises(ConfigError, match="has no array 'x'"):
        make("mnist", path=str(tmp_path / "other.npz")).load(np.random.default_rng(0))


def test_digits_is_unavailable_with_the_install_hint_without_sklearn(registry, monkeypatch):
    import core.registry

    importable = core.registry._importable
    monkeypatch.setattr(core.registry, "_importable", lambda m: m != "sklearn" and importable(m))
    entry = next(e for e in registry.entries("data") if e.name == "digits")
    assert not entry.available and entry.missing == ["sklearn"]
    with pytest.raises(PluginError, match=r'pip install "relulab\[sklearn\]"'):
        registry.get("data", "digits")
    assert registry.get("data", "mnist")  # needs nothing optional
