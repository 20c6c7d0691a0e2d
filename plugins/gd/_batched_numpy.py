r"""The closed-form loss and gradient of :func:`core.model.loss_and_grad`, batched in numpy.

Same formula and the same operations in the same order, over a leading run axis of
length ``B``; ``np.matmul`` on stacked arrays calls BLAS once per slice, so slice
``b`` of every result is bit-equal to :func:`core.model.loss_and_grad` on member ``b``.
:data:`OPS` bundles what :class:`plugins.gd._ensemble.Ensemble` needs.
"""

import numpy as np

from core.model import loss_factor, output_scale

__all__ = ["loss_and_grad", "OPS"]


def loss_and_grad(X, Y, W, a, scaling="standard", loss="mse", need_grad=True):
    """Losses and gradients of ``B`` networks on their data.

    Parameters
    ----------
    X : ndarray, shape (B, n, d)
    Y : ndarray, shape (B, n) or (B, n, k)
    W : ndarray, shape (B, d, m)
    a : ndarray, shape (B, m) or (B, m, k), as ``Y``
    scaling, loss : str
        See :func:`core.model.output_scale` and :func:`core.model.loss_factor`.
    need_grad : bool
        False: the losses only (``grad_W``, ``grad_a`` are None).

    Returns
    -------
    values : list of float, length B
    grad_W : ndarray, shape (B, d, m)
    grad_a : ndarray, shape of ``a``
    """
    vector = Y.ndim == 2
    n = X.shape[1]
    s = output_scale(W.shape[2], scaling)
    c = loss_factor(n, 1 if vector else Y.shape[2], loss)
    Z = X @ W
    active = Z > 0
    H = np.multiply(Z, active, out=Z)
    R = s * ((H @ a[:, :, None])[:, :, 0] if vector else H @ a) - Y
    values = (c * np.sum((R * R).reshape(R.shape[0], -1), axis=1)).tolist()
    if not need_grad:
        return values, None, None
    g = 2.0 * c * s
    Ht = np.swapaxes(H, 1, 2)
    grad_a = g * ((Ht @ R[:, :, None])[:, :, 0] if vector else Ht @ R)
    if vector:
        back = np.multiply(R[:, :, None], a[:, None, :], dtype=H.dtype)
    else:
        back = R @ np.swapaxes(a, 1, 2)
    np.multiply(back, active, out=back)
    grad_W = g * (np.swapaxes(X, 1, 2) @ back)
    return values, grad_W, grad_a


class OPS:
    """Array operations of an ensemble of ``gd_numpy`` members."""

    stack = staticmethod(np.stack)
    loss_and_grad = staticmethod(loss_and_grad)

    @staticmethod
    def take(A, batches):
        """Rows ``batches[b]`` of ``A[b]``: ``(B, n, ...) -> (B, len(batch), ...)``."""
        return A[np.arange(len(batches))[:, None], np.stack(batches)]

    @staticmethod
    def norms(grads):
        """Frobenius norm over the named stacked gradients, per member (a list)."""
        total = sum(np.sum(g * g, axis=tuple(range(1, g.ndim))) for g in grads.values())
        return np.sqrt(total).tolist()

    @staticmethod
    def update(optimizer, params, grads):
        optimizer.step(params, grads)
