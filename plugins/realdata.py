r"""Real data sets: scikit-learn's bundled digits, and MNIST from the user's own files.

Nothing is downloaded. ``digits`` reads the 1797 8x8 images shipped inside
scikit-learn (extra ``sklearn``); ``mnist`` reads IDX files (gzipped or not) or an
``.npz`` archive the user already has.

Both turn labelled images into a regression problem the same way
(:meth:`_LabelledImages.prepare`), in this order:

1. keep the images of the chosen ``classes`` (all by default);
2. draw a random permutation of them with the run's data ``rng`` (the only random
   draw): its first ``n`` rows are the training set, the next ``n_test`` the
   held-out set (``n = 0``: every row not held out), each kept in file order;
3. scale the pixels to [0, 1] (``normalize``);
4. with ``pca = p > 0``, centre by the training mean and project on the training
   set's top ``p`` principal directions (numpy SVD; each direction's sign fixed so
   that its largest entry is positive); held-out rows use the same mean and directions;
5. targets: ``"value"``, the class digit as a float, ``Y`` shape ``(n,)``;
   ``"onehot"``, one column per chosen class in the order of ``classes``, ``Y``
   shape ``(n, k)``; ``"sign"`` (two classes only), -1 for the first class and +1
   for the second, ``Y`` shape ``(n,)``;
6. append the bias column (``bias``, on by default).

Gradient-Work (``vmerckle/Gradient-Work``) fits MNIST by regression on the one-hot
labels in the same way.
"""

import gzip
import zipfile
from pathlib import Path

import numpy as np

from core.components import Data, DataSet
from core.errors import ConfigError
from core.hookspecs import hookimpl
from core.params import Param
from plugins.data import append_bias

__all__ = ["read_idx", "pca_project", "Digits", "Mnist"]

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"): big-endian.
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path):
    """Read one IDX file (the MNIST format), gzipped or not.

    The header is two zero bytes, a type code (0x08 unsigned byte ... 0x0E double),
    the number of dimensions, then one big-endian uint32 per dimension; the data
    follow in C order. A gzip file is recognised by its magic bytes, whatever its name.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    array : ndarray, shape given by the header (``(N, 28, 28)`` uint8 for MNIST images,
        ``(N,)`` for labels), native byte order.

    Raises
    ------
    ConfigError
        Naming the file: unreadable, not IDX, or a size that does not match the header.

    Examples
    --------
    >>> import io, os, tempfile
    >>> raw = bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big") + bytes([7, 1, 4])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "labels-idx1-ubyte")
    ...     _ = open(path, "wb").write(raw)
    ...     read_idx(path).tolist()
    [7, 1, 4]
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise ConfigError(f"{str(path)!r}: cannot read as an IDX file ({exc})") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise ConfigError(f"{str(path)!r}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError(f"{str(path)!r}: IDX header truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ConfigError(
            f"{str(path)!r}: IDX header says shape {shape} ({expected} bytes of data) but "
            f"the file holds {len(raw) - header}"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def pca_project(X, p, X_other=None):
    """Project on the top ``p`` principal directions of ``X`` (numpy SVD).

    Parameters
    ----------
    X : ndarray, shape (n, q)
        Rows the directions are fitted on (centred by their mean).
    p : int
        Number of directions, ``1 <= p <= min(n, q)``.
    X_other : ndarray, shape (n_other, q), optional
        Rows projected with the same mean and directions.

    Returns
    -------
    Z : ndarray, shape (n, p)
        ``(X - mean) @ V`` with ``V`` (q, p) the top right singular vectors, each with
        its largest-magnitude entry made positive (a deterministic sign).
    Z_other : ndarray, shape (n_other, p), or None

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.1]])
    >>> Z, _ = pca_project(X, 1)
    >>> (np.round(Z[:, 0], 2) + 0.0).tolist()
    [-2.0, 0.0, 2.0]
    """
    mean = X.mean(axis=0)
    _, _, Vh = np.linalg.svd(X - mean, full_matrices=False)
    V = Vh[:p].T
    signs = np.sign(V[np.abs(V).argmax(axis=0), np.arange(p)])
    V = V * np.where(signs == 0, 1.0, signs)
    Z_other = None if X_other is None else (X_other - mean) @ V
    return (X - mean) @ V, Z_other


_TARGETS = ("value", "onehot", "sign")


def _common_params(n, pixel_max):
    return (
        Param("n", int, n, "training images drawn at random (0: all not held out)", low=0),
        Param("n_test", int, 0, "held-out images drawn from the remaining ones", low=0),
        Param(
            "classes",
            list,
            [],
            "digits to keep, in this order (empty: all ten)",
            item_type=int,
        ),
        Param(
            "target",
            str,
            "onehot",
            "regression target: the digit's value (n,), one-hot (n, k), or -1/+1 "
            "for two classes (n,)",
            choices=_TARGETS,
        ),
        Param("normalize", bool, True, f"divide the pixels by {pixel_max} (into [0, 1])"),
        Param(
            "pca", int, 0, "project the inputs on this many principal directions (0: none)", low=0
        ),
        Param("bias", bool, True, "append a constant-1 bias column (last)"),
    )


class _LabelledImages(DataSet):
    """Shared preparation of labelled images into a regression :class:`Data`."""

    pixel_max = 1.0

    def images(self):
        """``(X, labels)``: ndarray (N, q) pixels and (N,) integer labels."""
        raise NotImplementedError

    def _classes(self, labels):
        present = sorted(int(c) for c in np.unique(labels))
        classes = list(self.classes) or present
        if len(set(classes)) != len(classes):
            raise ConfigError(f"data ({self.name}).classes has repeated digits: {classes}")
        missing = [c for c in classes if c not in present]
        if missing:
            raise ConfigError(
                f"data ({self.name}).classes: no image of class {missing[0]}; present: {present}"
            )
        if self.target == "sign" and len(classes) != 2:
            raise ConfigError(
                f"data ({self.name}): target='sign' needs exactly two classes; got "
                f"classes={classes}"
            )
        return classes

    def _targets(self, labels, classes):
        if self.target == "value":
            return labels.astype(np.float64)
        if self.target == "sign":
            return np.where(labels == classes[0], -1.0, 1.0)
        return (labels[:, None] == np.asarray(classes)[None, :]).astype(np.float64)

    def prepare(self, X, labels, rng):
        """Steps 1-6 of the module docstring on images ``X`` (N, q) and ``labels`` (N,)."""
        classes = self._classes(labels)
        keep = np.flatnonzero(np.isin(labels, classes))
        available = keep.size
        n = self.n or available - self.n_test
        if n < 1 or n + self.n_test > available:
            raise ConfigError(
                f"data ({self.name}): n={self.n} and n_test={self.n_test} need more than the "
                f"{available} images of classes {classes}"
            )
        order = keep[rng.permutation(available)]
        train, test = np.sort(order[:n]), np.sort(order[n : n + self.n_test])
        X = np.asarray(X, dtype=np.float64)
        if self.normalize:
            X = X / self.pixel_max
        X_train, X_test = X[train], X[test] if self.n_test else None
        if self.pca:
            if self.pca > min(X_train.shape):
                raise ConfigError(
                    f"data ({self.name}).pca={self.pca} exceeds min(n, pixels) = "
                    f"{min(X_train.shape)}"
                )
            X_train, X_test = pca_project(X_train, self.pca, X_test)
        Y_train = self._targets(labels[train], classes)
        Y_test = self._targets(labels[test], classes) if self.n_test else None
        if X_test is not None:
            X_test = append_bias(X_test, self.bias)
        return Data(append_bias(X_train, self.bias), Y_train, X_test, Y_test, bias=self.bias)

    def load(self, rng):
        X, labels = self.images()
        return self.prepare(X, labels, rng)


class Digits(_LabelledImages):
    """scikit-learn's bundled 8x8 digits (1797 images, no download), as regression.

    ``sklearn.datasets.load_digits``: 64 pixels in 0..16 per image, about 180 images
    of each digit (UCI optical recognition of handwritten digits, test part).
    Preparation: see the module docstring.

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, 64 + bias) or (n, pca + bias); ``Y`` : (n, k)
        one-hot over the k chosen classes, or (n,) for ``target="value"``/``"sign"``.
    """

    name = "digits"
    requires = ("sklearn",)
    extra = "sklearn"
    pixel_max = 16.0
    params = _common_params(500, 16)

    def images(self):
        from sklearn.datasets import load_digits

        X, labels = load_digits(return_X_y=True)
        return X, labels.astype(np.int64)


_MNIST_HELP = (
    "put train-images-idx3-ubyte and train-labels-idx1-ubyte (optionally .gz; t10k-* for "
    "files='t10k') in that folder, or set data.path to an .npz with arrays x (N, 28, 28) "
    "and y (N,)"
)


class Mnist(_LabelledImages):
    """MNIST from the user's own files: IDX (gzipped or not) or an .npz; nothing downloaded.

    ``path`` is a folder holding ``<files>-images-idx3-ubyte`` and
    ``<files>-labels-idx1-ubyte`` (``<files>`` is ``train`` or ``t10k``; the names
    may end in ``.gz``, and ``-idx`` may be ``.idx``), or an ``.npz`` file with arrays
    ``x`` (N, 28, 28) or (N, 784) and ``y`` (N,) read with ``allow_pickle=False``.
    Relative paths are taken from the working directory. Pixels in 0..255.
    Preparation: see the module docstring.

    Raises
    ------
    ConfigError
        One line naming what is missing and where to put it, or what is wrong with a file.

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, 784 + bias) or (n, pca + bias); ``Y`` : (n, k)
        one-hot over the k chosen classes, or (n,) for ``target="value"``/``"sign"``.
    """

    name = "mnist"
    pixel_max = 255.0
    params = (
        Param("path", str, "data/mnist", "folder of the IDX files, or an .npz with x and y"),
        Param("files", str, "train", "which IDX pair of the folder", choices=("train", "t10k")),
    ) + _common_params(1000, 255)

    def _fail(self, path, problem):
        return ConfigError(f"data (mnist): {str(path)!r}: {problem}")

    def _find(self, folder, kind, ndim):
        stem = f"{self.files}-{kind}"
        for sep in ("-", "."):
            for suffix in ("", ".gz"):
                candidate = folder / f"{stem}{sep}idx{ndim}-ubyte{suffix}"
                if candidate.is_file():
                    return candidate
        raise self._fail(folder, f"no {stem}-idx{ndim}-ubyte[.gz]; {_MNIST_HELP}")

    def _read_npz(self, path):
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise self._fail(path, f"cannot read as .npz ({exc})") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise self._fail(path, "is a single .npy array, not a .npz archive with x and y")
        with archive:
            for key in ("x", "y"):
                if key not in archive.files:
                    found = ", ".join(archive.files) or "(none)"
                    raise self._fail(path, f"has no array {key!r} (arrays: {found}); {_MNIST_HELP}")
            try:
                return archive["x"], archive["y"]
            except (ValueError, OSError) as exc:
                raise self._fail(path, f"cannot read its arrays ({exc})") from exc

    def images(self):
        path = Path(self.path).expanduser()
        if path.suffix.lower() == ".npz":
            if not path.is_file():
                raise self._fail(path, f"no such file; {_MNIST_HELP}")
            X, labels = self._read_npz(path)
        elif path.is_dir():
            X = read_idx(self._find(path, "images", 3))
            labels = read_idx(self._find(path, "labels", 1))
        else:
            raise self._fail(path, f"no such folder; {_MNIST_HELP}")
        if X.dtype.kind not in "biuf" or labels.dtype.kind not in "iu":
            raise self._fail(
                path, f"images must be numbers and labels integers; got {X.dtype}, {labels.dtype}"
            )
        if X.ndim < 2 or labels.ndim != 1 or X.shape[0] != labels.shape[0]:
            raise self._fail(
                path, f"images (N, ...) and labels (N,) do not match: {X.shape}, {labels.shape}"
            )
        X = X.reshape(X.shape[0], -1)
        if not np.isfinite(X).all():
            raise self._fail(path, "images contain non-finite values")
        return X, labels.astype(np.int64)


@hookimpl
def relulab_datasets():
    return [Digits, Mnist]
