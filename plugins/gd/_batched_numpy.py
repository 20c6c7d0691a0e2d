r"""The closed-form loss and gradient of :func:`core.model.loss_and_grad`, batched in numpy.

Same formula and the same operations in the same order, over a leading run axis of
length ``B``; ``np.matmul`` on stacked arrays calls BLAS once per slice, so slice
``b`` of every result is bit-equal to :func:`core.model.loss_and_grad` on member ``b``.
The ``(B, n, m)`` arrays live in buffers reused from step to step (:class:`Evaluator`,
``out=`` arguments: the same operations, without a fresh allocation per step).
:data:`OPS` bundles what :class:`plugins.gd._ensemble.Ensemble` needs.
"""

import numpy as np

from core.model import loss_factor, output_scale

__all__ = ["Evaluator", "OPS"]


class _Buffers:
    """Preallocated arrays of one evaluation shape (see :class:`Evaluator`)."""

    def __init__(self, X, Y, W, a):
        B, n, d = X.shape
        m, dtype = W.shape[2], W.dtype
        self.vector = Y.ndim == 2
        self.Z = np.empty((B, n, m), dtype)
        self.active = np.empty((B, n, m), bool)
        self.back = np.empty((B, n, m), dtype)
        self.grad_W = np.empty((B, d, m), dtype)


class Evaluator:
    """Losses and gradients of ``B`` networks on their data.

    Parameters
    ----------
    names : tuple of str
        The trained parameters (``("W", "a")`` or ``("W",)``): the gradients returned.
    scaling, loss : str
        See :func:`core.model.output_scale` and :func:`core.model.loss_factor`.

    Notes
    -----
    ``grads["W"]`` is a buffer that the next call with the same shapes overwrites.
    """

    def __init__(self, names, scaling="standard", loss="mse"):
        self.names, self.scaling, self.loss = tuple(names), scaling, loss
        self._buffers = {}

    def __call__(self, X, Y, W, a, need_grad=True):
        """Losses and (with ``need_grad``) gradients.

        Parameters
        ----------
        X : ndarray, shape (B, n, d)
        Y : ndarray, shape (B, n) or (B, n, k)
        W : ndarray, shape (B, d, m)
        a : ndarray, shape (B, m) or (B, m, k), as ``Y``
        need_grad : bool

        Returns
        -------
        values : list of float, length B
        grads : dict of str -> ndarray, or None
            ``W`` ``(B, d, m)`` and / or ``a`` (shape of ``a``): the trained ones.
        """
        key = (X.shape, Y.shape, W.shape, W.dtype)
        b = self._buffers.get(key)
        if b is None:
            b = self._buffers[key] = _Buffers(X, Y, W, a)
        vector = b.vector
        n = X.shape[1]
        s = output_scale(W.shape[2], self.scaling)
        c = loss_factor(n, 1 if vector else Y.shape[2], self.loss)
        Z = np.matmul(X, W, out=b.Z)
        active = np.greater(Z, 0, out=b.active)
        H = np.multiply(Z, active, out=Z)
        R = s * ((H @ a[:, :, None])[:, :, 0] if vector else H @ a) - Y
        values = (c * np.sum((R * R).reshape(R.shape[0], -1), axis=1)).tolist()
        if not need_grad:
            return values, None
        g = 2.0 * c * s
        grads = {}
        if "a" in self.names:
            Ht = np.swapaxes(H, 1, 2)
            grads["a"] = g * ((Ht @ R[:, :, None])[:, :, 0] if vector else Ht @ R)
        if vector:
            back = np.multiply(R[:, :, None], a[:, None, :], out=b.back)
        else:
            back = np.matmul(R, np.swapaxes(a, 1, 2), out=b.back)
        np.multiply(back, active, out=back)
        grad_W = np.matmul(np.swapaxes(X, 1, 2), back, out=b.grad_W)
        grads["W"] = np.multiply(g, grad_W, out=grad_W)
        return values, {k: grads[k] for k in self.names}

    @staticmethod
    def norms(grads):
        """Frobenius norm over the named stacked gradients, per member (a list)."""
        total = sum(np.sum(g * g, axis=tuple(range(1, g.ndim))) for g in grads.values())
        return np.sqrt(total).tolist()


class OPS:
    """Array operations of an ensemble of ``gd_numpy`` members."""

    stack = staticmethod(np.stack)
    Evaluator = Evaluator

    @staticmethod
    def take(A, batches):
        """Rows ``batches[b]`` of ``A[b]``: ``(B, n, ...) -> (B, len(batch), ...)``."""
        return A[np.arange(len(batches))[:, None], np.stack(batches)]

    @staticmethod
    def stack_params(dicts):
        """The members' ``W`` and ``a``, each stacked along a new leading axis."""
        return {k: np.stack([p[k] for p in dicts]) for k in ("W", "a")}

    @staticmethod
    def update(optimizer, params, grads):
        """One update of the stacked ``params``; False: the buffers stay where they were."""
        optimizer.step(params, grads)
        return False
