r"""The closed-form loss and gradient of :func:`core.model_torch.loss_and_grad`, batched.

Same formula over a leading run axis of length ``B`` (``torch.bmm``). Matrix products
give each slice the bits of ``mm``; the matrix-vector products of a one-output network
(``relu(Z) a``, ``relu(Z)^T R``) are batched as row-vector products, which differ from
``mv`` by rounding. :data:`OPS` bundles what
:class:`plugins.gd._ensemble.Ensemble` needs.

This module imports torch at its top: :mod:`plugins.gd._torch` imports it lazily.
"""

import numpy as np
import torch

from core.model import loss_factor, output_scale

__all__ = ["loss_and_grad", "OPS"]


def loss_and_grad(X, Y, W, a, scaling="standard", loss="mse", need_grad=True):
    """Losses and gradients of ``B`` networks on their data, without autograd.

    Parameters
    ----------
    X : Tensor, shape (B, n, d)
    Y : Tensor, shape (B, n) or (B, n, k)
    W : Tensor, shape (B, d, m)
    a : Tensor, shape (B, m) or (B, m, k), as ``Y``
    scaling, loss : str
        See :func:`core.model.output_scale` and :func:`core.model.loss_factor`.
    need_grad : bool
        False: the losses only (``grad_W``, ``grad_a`` are None).

    Returns
    -------
    values : list of float, length B
    grad_W : Tensor, shape (B, d, m)
    grad_a : Tensor, shape of ``a``
    """
    vector = Y.ndim == 2
    with torch.no_grad():
        s = float(output_scale(W.shape[2], scaling))
        c = loss_factor(X.shape[1], 1 if vector else Y.shape[2], loss)
        H = torch.bmm(X, W).relu_()  # Z is needed only through its mask, sign(H)
        # one output: row-vector products (1, m) x (m, n), (1, n) x (n, m); bmm with a
        # one-column right factor is several times slower on CPU
        if vector:
            out = torch.bmm(a.unsqueeze(1), H.transpose(1, 2)).squeeze(1)
        else:
            out = torch.bmm(H, a)
        R = s * out - Y
        values = (c * torch.sum(R * R, dim=tuple(range(1, R.ndim)))).tolist()
        if not need_grad:
            return values, None, None
        g = 2.0 * c * s
        if vector:
            grad_a = g * torch.bmm(R.unsqueeze(1), H).squeeze(1)
        else:
            grad_a = g * torch.bmm(H.transpose(1, 2), R)
        # the 0/1 mask as floats, sign(relu(Z)): a bool mask multiplies through a slow
        # type promotion; 1 * R_i * a_j has the bits of R_i a_j
        back = torch.sign(H)
        if vector:
            back.mul_(R.unsqueeze(2)).mul_(a.unsqueeze(1))
        else:
            back.mul_(torch.bmm(R, a.transpose(1, 2)))
        grad_W = g * torch.bmm(X.transpose(1, 2), back)
    return values, grad_W, grad_a


class OPS:
    """Tensor operations of an ensemble of ``gd`` members."""

    stack = staticmethod(torch.stack)
    loss_and_grad = staticmethod(loss_and_grad)

    @staticmethod
    def take(A, batches):
        """Rows ``batches[b]`` of ``A[b]``: ``(B, n, ...) -> (B, len(batch), ...)``."""
        index = torch.as_tensor(np.stack(batches), device=A.device)
        rows = torch.arange(len(batches), device=A.device)[:, None]
        return A[rows, index]

    @staticmethod
    def norms(grads):
        """Frobenius norm over the named stacked gradients, per member (a list)."""
        total = sum(torch.sum(g * g, dim=tuple(range(1, g.ndim))) for g in grads.values())
        return total.sqrt().tolist()

    @staticmethod
    def update(optimizer, params, grads):
        with torch.no_grad():
            optimizer.step(params, grads)
