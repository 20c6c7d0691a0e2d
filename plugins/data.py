r"""Data sets: 1-D curves, random inputs and labels, planted teachers, local files.

Conventions shared by every data set here:

- ``d`` is the input dimension *without* the bias. With ``bias=True`` a constant-1
  column is appended last, so ``X`` has ``d + 1`` columns and ``Data.bias`` is True.
- ``Y`` has shape ``(n,)`` for one output and ``(n, k)`` for ``k > 1`` outputs.
- ``n_test > 0`` adds held-out data drawn from the same distribution (for a file:
  rows held out at random). The training data are drawn first, so they do not
  depend on ``n_test``.
- Every random choice uses the ``rng`` given to ``load`` (the run's data stream), in
  a documented order; a parameter equal to 0 (``noise``) draws nothing.
"""

import warnings
import zipfile
from pathlib import Path

import numpy as np

from core import model
from core.components import Data, DataSet
from core.errors import ConfigError
from core.hookspecs import hookimpl
from core.params import Param

__all__ = [
    "LABELS",
    "append_bias",
    "unit_rows",
    "draw_labels",
    "Linear",
    "Sinus",
    "Uniform",
    "Normal",
    "Sphere",
    "TeacherLinear",
    "ReluTeacher",
    "FileData",
]


# -- helpers -------------------------------------------------------------------------


def append_bias(X, bias):
    """Append the constant-1 bias column last when ``bias`` is true.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    bias : bool

    Returns
    -------
    X : ndarray, shape (n, d + 1) if ``bias`` else (n, d)
    """
    if not bias:
        return X
    return np.hstack([X, np.ones((X.shape[0], 1))])


def unit_rows(X):
    """Scale every row of ``X`` ``(n, d)`` to unit Euclidean norm."""
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _label_shape(n, k):
    return (n,) if k == 1 else (n, k)


def _normal_labels(shape, rng):
    return rng.standard_normal(shape)


def _uniform_labels(shape, rng):
    return rng.uniform(-1.0, 1.0, shape)


def _sign_labels(shape, rng):
    # Polaczyk & Cyranka normalise a 1-D uniform draw to unit norm: that is its sign.
    return np.where(rng.uniform(-1.0, 1.0, shape) < 0, -1.0, 1.0)


def _zero_labels(shape, rng):
    return np.zeros(shape)


_LABEL_DRAWS = {
    "normal": _normal_labels,
    "uniform": _uniform_labels,
    "sign": _sign_labels,
    "zero": _zero_labels,
}
LABELS = tuple(_LABEL_DRAWS)


def draw_labels(kind, n, k, rng):
    """Random labels independent of the inputs.

    Parameters
    ----------
    kind : {"normal", "uniform", "sign", "zero"}
        N(0, 1); U[-1, 1]; the sign of a U[-1, 1] draw, exactly +1 or -1 (the
        construction of Polaczyk & Cyranka, TMLR, for one output); all zero.
    n, k : int
        Number of points and of outputs.
    rng : numpy.random.Generator

    Returns
    -------
    Y : ndarray, shape (n,) if ``k == 1`` else (n, k)
    """
    return _LABEL_DRAWS[kind](_label_shape(n, k), rng)


def _add_noise(Y, noise, rng):
    """``Y + noise * N(0, 1)`` (drawing nothing when ``noise == 0``)."""
    if noise == 0:
        return Y
    return Y + noise * rng.standard_normal(Y.shape)


def _train_and_test(sample, n, n_test, bias):
    """Draw training data, then held-out data, with ``sample(n, held_out) -> (X, Y)``."""
    X, Y = sample(n, False)
    X_test = Y_test = None
    if n_test:
        X_test, Y_test = sample(n_test, True)
    return Data(X, Y, X_test, Y_test, bias=bias)


def _gaussian_inputs(n, d, rng, normalize_rows=False, scale=1.0):
    """``scale * N(0, I_d)`` rows, optionally scaled to unit norm, shape ``(n, d)``."""
    X = rng.standard_normal((n, d))
    if normalize_rows:
        X = unit_rows(X)
    return scale * X


def _size_params(n, d=None):
    params = [Param("n", int, n, "number of training points", low=1)]
    if d is not None:
        params.append(Param("d", int, d, "input dimension, without the bias column", low=1))
    params.append(
        Param("n_test", int, 0, "held-out points from the same distribution (0: none)", low=0)
    )
    return tuple(params)


def _bias_param(default):
    return Param("bias", bool, default, "append a constant-1 bias column (last)")


_NOISE = Param("noise", float, 0.0, "standard deviation of Gaussian label noise", low=0)
_LABEL_PARAMS = (
    Param("labels", str, "normal", "label distribution", choices=LABELS),
    Param("k", int, 1, "number of outputs (Y has shape (n,) when 1, else (n, k))", low=1),
)


# -- 1-D curves ----------------------------------------------------------------------


class _Curve(DataSet):
    """Base of the 1-D data sets ``y = curve(x) (+ noise)``."""

    def curve(self, x):
        """Noise-free targets at inputs ``x`` ``(n,)``."""
        raise NotImplementedError

    def load(self, rng):
        """Inputs, then noise; training data first, then held-out data.

        Held-out inputs are uniform in ``[low, high]`` whatever the ``spacing``
        (a second grid would repeat the training inputs).
        """
        if not self.low < self.high:
            raise ConfigError(
                f"data ({self.name}): low must be below high; got low={self.low!r}, "
                f"high={self.high!r}"
            )

        def sample(n, held_out):
            if self.spacing == "grid" and not held_out:
                x = np.linspace(self.low, self.high, n)
            else:
                x = rng.uniform(self.low, self.high, n)
            y = _add_noise(self.curve(x), self.noise, rng)
            return append_bias(x[:, None], self.bias), y

        return _train_and_test(sample, self.n, self.n_test, self.bias)


def _curve_params(n, low, high):
    return _size_params(n) + (
        Param("low", float, low, "smallest input"),
        Param("high", float, high, "largest input"),
        Param(
            "spacing",
            str,
            "grid",
            "inputs evenly spaced ('grid') or drawn uniformly in [low, high]",
            choices=("grid", "uniform"),
        ),
        _NOISE,
        _bias_param(True),
    )


class Linear(_Curve):
    r"""1-D line y = slope * x + intercept (+ noise), with a bias column by default.

    .. math:: y_i = \mathrm{slope} \, x_i + \mathrm{intercept} + \mathrm{noise}\,\xi_i,
              \qquad \xi_i \sim N(0, 1).

    The defaults are Gradient-Work's ``linear2d`` data (``vmerckle/Gradient-Work``,
    ``code/configsGenData.py``): x evenly spaced in [-0.5, 0.5], y = 0.2 x + 0.2.

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, 2) (x, 1) or (n, 1) without bias; ``Y`` : (n,).
    """

    name = "linear"
    params = _curve_params(20, -0.5, 0.5) + (
        Param("slope", float, 0.2, "slope of the line"),
        Param("intercept", float, 0.2, "value at x = 0"),
    )

    def curve(self, x):
        return self.slope * x + self.intercept


class Sinus(_Curve):
    r"""1-D sine y = amplitude * sin(frequency * x + phase) + slope * x + offset (+ noise).

    .. math:: y_i = A \sin(\omega x_i + \varphi) + b x_i + c + \mathrm{noise}\,\xi_i.

    The defaults are Gradient-Work's ``sinus`` data (``vmerckle/Gradient-Work``,
    ``code/configsGenData.py``): x evenly spaced in [-0.5, 0.5],
    y = sin(10 x - pi/2) + 0.2 x - 0.5 (about 1.6 periods; a few hundred neurons
    trained by gradient descent fit its 20 points in seconds). Set ``phase``,
    ``slope`` and ``offset`` to 0 for a plain ``amplitude * sin(frequency * x)``.

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, 2) (x, 1) or (n, 1) without bias; ``Y`` : (n,).
    """

    name = "sinus"
    params = _curve_params(20, -0.5, 0.5) + (
        Param("amplitude", float, 1.0, "amplitude A of the sine"),
        Param("frequency", float, 10.0, "angular frequency omega (radians per unit of x)"),
        Param("phase", float, -np.pi / 2, "phase phi added inside the sine (radians)"),
        Param("slope", float, 0.2, "slope b of the added linear trend"),
        Param("offset", float, -0.5, "constant c added to the targets"),
    )

    def curve(self, x):
        return (
            self.amplitude * np.sin(self.frequency * x + self.phase) + self.slope * x + self.offset
        )


# -- random inputs with random labels ------------------------------------------------


class Uniform(DataSet):
    """Inputs uniform in the cube [-1, 1]^d (rows optionally on the unit sphere), random labels.

    Draw order per set (training, then held-out): ``X`` ``(n, d)``, then ``Y``.

    The setting of Polaczyk & Cyranka (TMLR, "Improved overparametrization bounds
    for global convergence of SGD for shallow neural networks"; code
    ``MIMUW-RL/improved_overparametrization_tmlr``) is ``n=200, d=20,
    normalize_rows=True, labels="sign"``: cube draws scaled to unit norm (not uniform
    on the sphere) and labels exactly +1 or -1, no bias.

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, d) or (n, d + 1) with bias; ``Y`` : (n,) or (n, k).
    """

    name = "uniform"
    params = (
        _size_params(200, 20)
        + (Param("normalize_rows", bool, False, "scale every input row to unit norm"),)
        + _LABEL_PARAMS
        + (_bias_param(False),)
    )

    def load(self, rng):
        def sample(n, held_out):
            X = rng.uniform(-1.0, 1.0, (n, self.d))
            if self.normalize_rows:
                X = unit_rows(X)
            return append_bias(X, self.bias), draw_labels(self.labels, n, self.k, rng)

        return _train_and_test(sample, self.n, self.n_test, self.bias)


class Normal(DataSet):
    """Gaussian inputs N(0, I_d) (optionally on the sphere or scaled by 1/sqrt(n)), random labels.

    Draw order per set (training, then held-out): ``X`` ``(n, d)``, then ``Y``; the
    options rescale the same draw, so with one seed
    ``X(normalize_rows) = unit_rows(X)`` and ``X(scale_by_sqrt_n) = X / sqrt(n)``.

    Published settings:

    - Du, Zhai, Poczos & Singh (ICLR 2019) as run in the report seed:
      ``n=1000, d=1000, normalize_rows=True, labels="normal", bias=True`` (its
      ``nn.Linear`` first layer has a bias; the row normalisation comes before the
      bias column is appended; its output layer's bias has no counterpart here).
    - Wang, Hua, Candes & Pilanci (2022), ``pilancilab/Neural-recovery``:
      ``scale_by_sqrt_n=True`` gives their ``X = randn(n, d) / sqrt(n)`` (held-out
      inputs are divided by the training ``sqrt(n)`` too).

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, d) or (n, d + 1) with bias; ``Y`` : (n,) or (n, k).
    """

    name = "normal"
    params = (
        _size_params(100, 10)
        + (
            Param("normalize_rows", bool, False, "scale every input row to unit norm"),
            Param("scale_by_sqrt_n", bool, False, "divide the inputs by sqrt(n)"),
        )
        + _LABEL_PARAMS
        + (_bias_param(False),)
    )

    def load(self, rng):
        if self.normalize_rows and self.scale_by_sqrt_n:
            raise ConfigError(
                "data (normal): normalize_rows and scale_by_sqrt_n exclude each other; "
                "set at most one to true"
            )
        scale = 1.0 / np.sqrt(self.n) if self.scale_by_sqrt_n else 1.0

        def sample(n, held_out):
            X = _gaussian_inputs(n, self.d, rng, self.normalize_rows, scale)
            return append_bias(X, self.bias), draw_labels(self.labels, n, self.k, rng)

        return _train_and_test(sample, self.n, self.n_test, self.bias)


class Sphere(DataSet):
    """Inputs uniform on the unit sphere S^(d-1), Gaussian labels N(0, 1) by default.

    The theory setting of Du, Zhai, Poczos & Singh (ICLR 2019): unit inputs, so
    that ``H^inf_ij = x_i.x_j (pi - arccos(x_i.x_j)) / (2 pi)``. A point is a
    Gaussian draw scaled to unit norm (uniform on the sphere by rotation
    invariance); with one seed this equals ``normal`` with ``normalize_rows=True``.

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, d) or (n, d + 1) with bias; ``Y`` : (n,) or (n, k).
    """

    name = "sphere"
    params = _size_params(100, 10) + _LABEL_PARAMS + (_bias_param(False),)

    def load(self, rng):
        def sample(n, held_out):
            X = _gaussian_inputs(n, self.d, rng, normalize_rows=True)
            return append_bias(X, self.bias), draw_labels(self.labels, n, self.k, rng)

        return _train_and_test(sample, self.n, self.n_test, self.bias)


# -- planted teachers ----------------------------------------------------------------


class TeacherLinear(DataSet):
    r"""Planted linear neuron: y = X w* (+ noise), w* a unit vector (Wang et al. 2022).

    .. math:: y = X w^\star + \sigma_\mathrm{eff} \, \xi, \qquad \|w^\star\|_2 = 1,

    the setting of Wang, Hua, Candes & Pilanci (2022), "Overparameterized ReLU
    neural networks learn the simplest models: neural isometry and exact recovery"
    (code ``pilancilab/Neural-recovery``, ``ReLU_skip/*.py``). With
    ``scale_by_sqrt_n`` (their setting), ``X = randn(n, d) / sqrt(n)`` and the noise
    is ``noise / sqrt(n) * N(0, 1)``; otherwise ``X = randn(n, d)`` and the noise is
    ``noise * N(0, 1)``.

    ``inputs``: ``"gaussian"``; ``"cubed"`` (entries cubed, their ``--optx 1``; their
    ``--optx 3`` runs the same code path); ``"whitened"`` (X replaced by ``U`` of its
    thin SVD when ``n >= d``, else by ``Vh``: their ``--optx 2``).
    ``planted``: ``"gaussian"`` (w* ~ N(0, I_d) normalised; the README's runs,
    ``--optw 0``) or ``"min_singular"`` (the last right singular vector of the
    training X, their script's default ``--optw 1``).

    Draw order: training ``X``, then ``w*`` (``gaussian``), then the training noise,
    then held-out ``X`` and noise. The bias column, if any, is appended after the
    labels are computed (w* does not act on it).

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, d) or (n, d + 1) with bias; ``Y`` : (n,).
    """

    name = "teacher_linear"
    params = _size_params(100, 20) + (
        Param("scale_by_sqrt_n", bool, True, "X = randn(n, d) / sqrt(n), noise / sqrt(n)"),
        Param(
            "inputs",
            str,
            "gaussian",
            "input variant of Wang et al.",
            choices=("gaussian", "cubed", "whitened"),
        ),
        Param(
            "planted",
            str,
            "gaussian",
            "w*: normalised Gaussian, or the last right singular vector of X",
            choices=("gaussian", "min_singular"),
        ),
        _NOISE,
        _bias_param(False),
    )

    def _inputs(self, n, rng):
        """Inputs ``(n, d)`` of the chosen variant (held-out sets use the training n)."""
        X = rng.standard_normal((n, self.d))
        if self.scale_by_sqrt_n:
            X = X / np.sqrt(self.n)
        if self.inputs == "cubed":
            X = X**3
        elif self.inputs == "whitened":
            U, _, Vh = np.linalg.svd(X, full_matrices=False)
            X = U if n >= self.d else Vh
        return X

    def _planted(self, X, rng):
        """The planted unit vector ``w*`` ``(d,)``."""
        if self.planted == "min_singular":
            return np.linalg.svd(X, full_matrices=False)[2][-1]
        w = rng.standard_normal(self.d)
        return w / np.linalg.norm(w)

    def _labels(self, X, w_star, rng):
        noise = self.noise / np.sqrt(self.n) if self.scale_by_sqrt_n else self.noise
        return _add_noise(X @ w_star, noise, rng)

    def load(self, rng):
        X = self._inputs(self.n, rng)
        w_star = self._planted(X, rng)
        Y = self._labels(X, w_star, rng)
        X_test = Y_test = None
        if self.n_test:
            X_test = self._inputs(self.n_test, rng)
            Y_test = self._labels(X_test, w_star, rng)
            X_test = append_bias(X_test, self.bias)
        return Data(append_bias(X, self.bias), Y, X_test, Y_test, bias=self.bias)


class ReluTeacher(DataSet):
    r"""Planted two-layer ReLU teacher: y = sum_j v_j relu(u_j . x) (+ noise).

    .. math:: y_i = \sum_{j=1}^{m^\star} v_j \, \mathrm{relu}(u_j \cdot x_i)
              + \mathrm{noise}\,\xi_i,

    computed with :func:`core.model.forward` (standard scaling) on the inputs as the
    student sees them: with ``bias=True`` the teacher's neurons have ``d + 1``
    entries and act on the bias column too.

    ``teacher_weights``: ``"normal"`` (u_j ~ N(0, I)) or ``"identity"`` (u_j = e_j,
    needs ``m_star <= d``: with ``m_star = d``, ``teacher_output="positive"`` and
    Gaussian inputs this is the teacher V = I of Safran & Shamir's census,
    ``ItaySafran/Overparameterization``, sampled instead of in closed form).
    ``teacher_output``: v_j = +1 or -1 at random (``"sign"``), N(0, 1)
    (``"normal"``) or +1 (``"positive"``); shape ``(m_star,)`` or ``(m_star, k)``.

    Draw order: the teacher (:meth:`draw_teacher`: U, then v) first, then per set
    (training, then held-out) the inputs and the noise. Hence with one seed,
    ``Y == core.model.forward(X, *draw_teacher(rng))`` when ``noise == 0``.

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, d) or (n, d + 1) with bias; ``Y`` : (n,) or (n, k).
    """

    name = "relu_teacher"
    params = _size_params(200, 10) + (
        Param("m_star", int, 5, "number of teacher neurons", low=1),
        Param(
            "teacher_weights",
            str,
            "normal",
            "teacher neurons u_j: N(0, I) or the first m_star unit vectors",
            choices=("normal", "identity"),
        ),
        Param(
            "teacher_output",
            str,
            "sign",
            "teacher output weights v_j: random +-1, N(0, 1) or +1",
            choices=("sign", "normal", "positive"),
        ),
        Param(
            "inputs",
            str,
            "gaussian",
            "inputs N(0, I_d) or uniform on the unit sphere",
            choices=("gaussian", "sphere"),
        ),
        Param("k", int, 1, "number of outputs", low=1),
        _NOISE,
        _bias_param(False),
    )

    def draw_teacher(self, rng):
        """The teacher network.

        Parameters
        ----------
        rng : numpy.random.Generator

        Returns
        -------
        U : ndarray, shape (d + bias, m_star)
            Teacher neurons as columns.
        v : ndarray, shape (m_star,) if ``k == 1`` else (m_star, k)
            Teacher output weights.
        """
        d_in = self.d + int(self.bias)
        if self.teacher_weights == "identity":
            if self.m_star > self.d:
                raise ConfigError(
                    f"data (relu_teacher): teacher_weights='identity' needs m_star <= d; "
                    f"got m_star={self.m_star}, d={self.d}"
                )
            U = np.eye(d_in, self.m_star)
        else:
            U = rng.standard_normal((d_in, self.m_star))
        shape = _label_shape(self.m_star, self.k)
        if self.teacher_output == "sign":
            v = rng.choice(np.array([-1.0, 1.0]), size=shape)
        elif self.teacher_output == "normal":
            v = rng.standard_normal(shape)
        else:
            v = np.ones(shape)
        return U, v

    def load(self, rng):
        U, v = self.draw_teacher(rng)

        def sample(n, held_out):
            X = _gaussian_inputs(n, self.d, rng, normalize_rows=self.inputs == "sphere")
            X = append_bias(X, self.bias)
            return X, _add_noise(model.forward(X, U, v), self.noise, rng)

        return _train_and_test(sample, self.n, self.n_test, self.bias)


# -- local files ---------------------------------------------------------------------


class FileData(DataSet):
    """Data read from a local .npz or .csv file (never downloaded).

    ``.npz``: arrays ``x_key`` (shape (n, d), or (n,) for one feature) and ``y_key``
    (shape (n,) or (n, k)), read with ``allow_pickle=False``. ``.csv``: numbers only,
    the last ``y_columns`` columns are the targets, ``skip_header`` leading lines are
    skipped, ``#`` starts a comment. Relative paths are taken from the working
    directory. With ``n_test > 0``, that many rows drawn at random with ``rng`` are
    held out (both parts keep the file's row order).

    Raises
    ------
    ConfigError
        Naming the path and the problem: no path, missing file, unsupported
        extension, missing array, non-numeric or non-finite content, bad shapes.

    Returns
    -------
    Data
        ``X`` : ndarray, shape (n, d) or (n, d + 1) with bias; ``Y`` : (n,) or (n, k).
    """

    name = "file"
    params = (
        Param("path", str, "", "path of the .npz or .csv file"),
        Param("x_key", str, "X", "name of the inputs array in a .npz"),
        Param("y_key", str, "Y", "name of the targets array in a .npz"),
        Param("y_columns", int, 1, "number of last .csv columns that are targets", low=1),
        Param("skip_header", int, 0, "number of leading .csv lines to skip", low=0),
        Param("delimiter", str, ",", "column separator of a .csv"),
        Param("n_test", int, 0, "rows held out at random as test data (0: none)", low=0),
        _bias_param(False),
    )

    def _fail(self, path, problem):
        return ConfigError(f"data (file): {str(path)!r}: {problem}")

    def _read_npz(self, path):
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise self._fail(path, f"cannot read as .npz ({exc})") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise self._fail(path, "is a single .npy array, not a .npz archive")
        with archive:
            arrays = []
            for key in (self.x_key, self.y_key):
                if key not in archive.files:
                    raise self._fail(
                        path,
                        f"has no array {key!r}; arrays: {', '.join(archive.files) or '(none)'}",
                    )
                try:
                    arrays.append(archive[key])
                except (ValueError, OSError) as exc:
                    raise self._fail(path, f"cannot read array {key!r} ({exc})") from exc
        X, Y = (self._numeric(path, key, a) for key, a in zip((self.x_key, self.y_key), arrays))
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or Y.ndim not in (1, 2):
            raise self._fail(
                path,
                f"{self.x_key!r} must have shape (n, d) or (n,) and {self.y_key!r} shape "
                f"(n,) or (n, k); got {X.shape} and {Y.shape}",
            )
        return X, Y

    def _read_csv(self, path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # empty file: checked below
                table = np.loadtxt(
                    path,
                    delimiter=self.delimiter,
                    skiprows=self.skip_header,
                    ndmin=2,
                    dtype=np.float64,
                )
        except (OSError, ValueError) as exc:
            raise self._fail(path, f"is not a numeric table ({exc})") from exc
        if table.shape[0] == 0:
            raise self._fail(path, "has no data rows")
        if table.shape[1] <= self.y_columns:
            raise self._fail(
                path,
                f"has {table.shape[1]} columns; y_columns={self.y_columns} leaves no inputs",
            )
        X, Y = table[:, : -self.y_columns], table[:, -self.y_columns :]
        return X, (Y[:, 0] if self.y_columns == 1 else Y)

    def _numeric(self, path, key, array):
        if array.dtype.kind not in "biuf":
            raise self._fail(path, f"array {key!r} is not real numbers (dtype {array.dtype})")
        return np.asarray(array, dtype=np.float64)

    def load(self, rng):
        if not self.path:
            raise ConfigError("data (file): path is not set; give a .npz or .csv file")
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise self._fail(path, "no such file")
        suffix = path.suffix.lower()
        if suffix == ".npz":
            X, Y = self._read_npz(path)
        elif suffix == ".csv":
            X, Y = self._read_csv(path)
        else:
            raise self._fail(path, f"unsupported extension {suffix!r}; use .npz or .csv")
        if X.shape[0] != Y.shape[0]:
            raise self._fail(path, f"inputs have {X.shape[0]} rows but targets {Y.shape[0]}")
        if not (np.isfinite(X).all() and np.isfinite(Y).all()):
            raise self._fail(path, "contains non-finite values (nan or inf)")
        n_rows = X.shape[0]
        if self.n_test >= n_rows:
            raise self._fail(path, f"n_test={self.n_test} leaves no training rows of {n_rows}")
        X_test = Y_test = None
        if self.n_test:
            order = rng.permutation(n_rows)
            test_rows, train_rows = np.sort(order[: self.n_test]), np.sort(order[self.n_test :])
            X_test, Y_test = append_bias(X[test_rows], self.bias), Y[test_rows]
            X, Y = X[train_rows], Y[train_rows]
        return Data(append_bias(X, self.bias), Y, X_test, Y_test, bias=self.bias)


@hookimpl
def relulab_datasets():
    return [Linear, Sinus, Uniform, Normal, Sphere, TeacherLinear, ReluTeacher, FileData]
