r"""Data plugin ``gaussian_teacher``: a ReLU teacher under Gaussian inputs (Safran & Shamir).

The teacher is :math:`g(x) = \sum_{j=1}^k \mathrm{relu}(v_j \cdot x)` on
:math:`x \sim N(0, I_d)`, its neurons the columns of ``V`` (d, k), stored as
``Data.extras["V"]`` (``extra.V`` in ``problem.npz``, ``Problem.extras["V"]`` for the
algorithm). ``teacher``:

``"identity"``
    ``V`` the first ``k`` columns of ``I_d`` (Safran & Shamir: ``d = k``, ``V = I``).
``"orthonormal"``
    ``k`` orthonormal columns, the Q factor of a Gaussian (d, k) matrix from the
    run's data stream (signs fixed so that R has a positive diagonal).
``"given"``
    ``V`` from the config (a list of ``d`` rows of ``k`` numbers).

The population loss needs no data (``population_gd`` computes it in closed form);
the ``n`` sample points ``X ~ N(0, I_d)`` with ``Y = g(X)`` exist for what reads a
run's data: the ``fit`` figure, sample losses of ``postprocess.py`` (with
``model.loss = "half_mse"`` the sample loss estimates the population loss). Draw
order: ``V`` (``orthonormal`` only), then ``X``.
"""

import numpy as np

from core.components import Data, DataSet
from core.errors import ConfigError
from core.params import Param

__all__ = ["GaussianTeacher", "teacher_matrix", "TEACHERS"]

TEACHERS = ("identity", "orthonormal", "given")


def teacher_matrix(k, d, teacher="identity", V=None, rng=None):
    """The teacher's neurons as columns.

    Parameters
    ----------
    k, d : int
        Teacher width and input dimension (``d >= k`` unless ``teacher="given"``).
    teacher : {"identity", "orthonormal", "given"}
    V : array-like, shape (d, k), optional
        The given teacher (``teacher="given"`` only).
    rng : numpy.random.Generator, optional
        Draws the orthonormal teacher.

    Returns
    -------
    V : ndarray, shape (d, k), float64

    Examples
    --------
    >>> teacher_matrix(2, 3).tolist()
    [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    >>> Q = teacher_matrix(3, 5, "orthonormal", rng=np.random.default_rng(0))
    >>> bool(np.allclose(Q.T @ Q, np.eye(3)))
    True
    """
    if teacher == "identity":
        return np.eye(d, k)
    if teacher == "orthonormal":
        Q, R = np.linalg.qr(rng.standard_normal((d, k)))
        return Q * np.where(np.diag(R) < 0, -1.0, 1.0)[None, :]
    if teacher == "given":
        return np.asarray(V, dtype=np.float64).reshape(d, k)
    raise ValueError(f"teacher must be one of {TEACHERS}; got {teacher!r}")


class GaussianTeacher(DataSet):
    """A ReLU teacher sum_j relu(v_j . x), x ~ N(0, I_d), as ground truth (module docstring)."""

    name = "gaussian_teacher"
    params = (
        Param("k", int, 10, "teacher width (number of teacher neurons)", low=1),
        Param("d", int, None, "input dimension (None: d = k)", low=1, nullable=True),
        Param("teacher", str, "identity", "the teacher's neurons V (d, k)", choices=TEACHERS),
        Param(
            "V",
            list,
            None,
            "teacher='given': V as d rows of k numbers",
            nullable=True,
        ),
        Param("n", int, 100, "sample points for figures and sample losses", low=1),
    )

    @classmethod
    def check(cls, params):
        k, d = params["k"], params["d"] if params["d"] is not None else params["k"]
        teacher, V = params["teacher"], params["V"]
        if teacher == "given":
            if V is None:
                raise ConfigError("data (gaussian_teacher).V is required when teacher='given'")
            try:
                array = np.asarray(V, dtype=np.float64)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"data (gaussian_teacher).V must be d rows of k numbers; got {V!r}"
                ) from None
            if array.shape != (d, k) or not np.isfinite(array).all():
                raise ConfigError(
                    f"data (gaussian_teacher).V must be d = {d} rows of k = {k} finite "
                    f"numbers; got shape {array.shape}"
                )
        else:
            if V is not None:
                raise ConfigError(
                    f"data (gaussian_teacher).V is only used with teacher='given'; "
                    f"got teacher={teacher!r}"
                )
            if d < k:
                raise ConfigError(
                    f"data (gaussian_teacher).d must be >= k = {k} for teacher={teacher!r}; got {d}"
                )

    def load(self, rng):
        d = self.d if self.d is not None else self.k
        V = teacher_matrix(self.k, d, self.teacher, self.V, rng)
        X = rng.standard_normal((self.n, d))
        Y = np.maximum(X @ V, 0.0).sum(axis=1)
        return Data(X, Y, extras={"V": V})
