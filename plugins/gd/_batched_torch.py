r"""The closed-form loss and gradient of :func:`core.model_torch.loss_and_grad`, batched.

The formula of :func:`core.model_torch.loss_and_grad` over a leading run axis of length
``B`` (``torch.bmm``), with every ``(B, n, m)`` array in a buffer reused from step to
step (:class:`Evaluator`): a fresh ``(B, n, m)`` tensor per operation costs more than
the operation (the allocator hands back new pages, which fault on first touch).

One output (``Y`` of shape ``(B, n)``), with ``Z = X W``, ``H = relu(Z)``, ``D = 1{Z > 0}``,
``R = s H a - Y`` and ``g = 2 c s``::

    G      = (X * R)^T D           (d, m): one (n, d) scaling and one n x d x m product
    grad_W = g G diag(a)           = g X^T (D * R a^T)
    grad_a = g sum_k W_k: * G_k:   = g H^T R   (since H_ij R_i = D_ij sum_k X_ik W_kj R_i)

so the backward pass reads ``D`` once in a matrix product, and the ``(n, m)`` outer
product ``R a^T``, its masking and the matrix-vector product ``H^T R`` are not formed:
per step, besides the two ``n x d x m`` products, the ``(B, n, m)`` passes are ``relu``,
the mask and the forward's ``H a``. The results equal the unbatched formula to float
rounding (the same sums, grouped differently). Several outputs (``Y`` of shape
``(B, n, k)``) use the unbatched formula batched (``back = (R a^T) * D``).

Matrix products give each slice the bits of ``mm`` for the same operands; the
regrouping above and the matrix-vector products of a one-output network (batched as
row-vector products, not ``mv``) differ from training one by one by rounding only.

:class:`OPS` bundles what :class:`plugins.gd._ensemble.Ensemble` needs. This module
imports torch at its top: :mod:`plugins.gd._torch` imports it lazily.
"""

import numpy as np
import torch

from core.model import loss_factor, output_scale

__all__ = ["Evaluator", "OPS"]


class _Buffers:
    """Preallocated tensors of one evaluation shape (see :class:`Evaluator`).

    Attributes
    ----------
    H, D : Tensor, shape (B, n, m)
        ``relu(Z)`` and the 0/1 mask ``sign(H)`` (one output); ``back`` for several.
    out : Tensor, shape (B, 1, n) or (B, n, k)
    R : Tensor, shape (B, n) or (B, n, k)
    XR : Tensor, shape (B, n, d)
    G : Tensor, shape (B, d, m)
    flat : Tensor, shape (B, d m + m k)
        The gradients, flattened per member: ``grad_W`` then ``grad_a`` are views.
    values : Tensor, shape (B,)
    """

    def __init__(self, X, Y, W, a):
        B, n, d = X.shape
        m = W.shape[2]
        options = {"dtype": W.dtype, "device": W.device}
        self.vector = Y.ndim == 2
        k = 1 if self.vector else Y.shape[2]
        self.H = torch.empty((B, n, m), **options)
        self.D = torch.empty((B, n, m), **options)
        self.out = torch.empty((B, 1, n) if self.vector else (B, n, k), **options)
        self.R = torch.empty(Y.shape, **options)
        self.gR = torch.empty(Y.shape, **options)
        self.XR = torch.empty((B, n, d), **options)
        self.G = torch.empty((B, d, m), **options)
        self.WG = torch.empty((B, d, m), **options)
        self.Ga = torch.empty((B, m, k), **options)
        self.values = torch.empty((B,), **options)
        self.flat = torch.empty((B, d * m + m * k), **options)
        self.grad_W = self.flat[:, : d * m].view(B, d, m)
        self.grad_a = self.flat[:, d * m :].view(a.shape)
        self.norms = torch.empty((B,), **options)


class Evaluator:
    """Losses and gradients of ``B`` networks on their data, without autograd.

    Parameters
    ----------
    names : tuple of str
        The trained parameters (``("W", "a")`` or ``("W",)``): the gradients computed.
    scaling, loss : str
        See :func:`core.model.output_scale` and :func:`core.model.loss_factor`.

    Notes
    -----
    The gradients returned are views of buffers that the next call with the same
    shapes overwrites: use them (update, norms) before evaluating again, or copy them.
    """

    def __init__(self, names, scaling="standard", loss="mse"):
        self.names, self.scaling, self.loss = tuple(names), scaling, loss
        self._buffers = {}
        self._last = None  # (grads, buffers) of the last evaluation with gradients

    def _buffers_for(self, X, Y, W, a):
        key = (X.shape, Y.shape, W.shape, W.dtype, W.device)
        buffers = self._buffers.get(key)
        if buffers is None:
            buffers = self._buffers[key] = _Buffers(X, Y, W, a)
        return buffers

    def __call__(self, X, Y, W, a, need_grad=True):
        """Losses and (with ``need_grad``) gradients.

        Parameters
        ----------
        X : Tensor, shape (B, n, d)
        Y : Tensor, shape (B, n) or (B, n, k)
        W : Tensor, shape (B, d, m)
        a : Tensor, shape (B, m) or (B, m, k), as ``Y``
        need_grad : bool

        Returns
        -------
        values : list of float, length B
        grads : dict of str -> Tensor, or None
            ``W`` ``(B, d, m)`` and / or ``a`` (shape of ``a``): the trained ones.
        """
        b = self._buffers_for(X, Y, W, a)
        n = X.shape[1]
        s = float(output_scale(W.shape[2], self.scaling))
        c = loss_factor(n, 1 if b.vector else Y.shape[2], self.loss)
        with torch.no_grad():
            H = torch.bmm(X, W, out=b.H).relu_()
            if b.vector:  # (1, m) x (m, n): bmm with a one-column right factor is slower
                out = torch.bmm(a.unsqueeze(1), H.transpose(1, 2), out=b.out).squeeze(1)
            else:
                out = torch.bmm(H, a, out=b.out)
            if s == 1.0:  # 1 * x is x: one pass fewer
                R = torch.sub(out, Y, out=b.R)
            else:
                R = torch.mul(out, s, out=b.R).sub_(Y)
            flat_R = R.view(R.shape[0], -1)
            values = torch.linalg.vecdot(flat_R, flat_R, out=b.values).mul_(c).tolist()
            if not need_grad:
                return values, None
            g = 2.0 * c * s
            D = torch.sign(H, out=b.D)
            if b.vector:
                gR = torch.mul(R, g, out=b.gR).unsqueeze(2)
                G = torch.bmm(torch.mul(X, gR, out=b.XR).transpose(1, 2), D, out=b.G)
                torch.mul(G, a.unsqueeze(1), out=b.grad_W)
                if "a" in self.names:
                    torch.sum(torch.mul(W, G, out=b.WG), dim=1, out=b.grad_a)
            else:
                if "a" in self.names:
                    torch.mul(torch.bmm(H.transpose(1, 2), R, out=b.Ga), g, out=b.grad_a)
                back = torch.bmm(R, a.transpose(1, 2), out=b.H).mul_(D)  # H is used up
                torch.mul(torch.bmm(X.transpose(1, 2), back, out=b.G), g, out=b.grad_W)
        grads = {"W": b.grad_W, "a": b.grad_a}
        grads = {k: grads[k] for k in self.names}
        self._last = (grads, b)
        return values, grads

    def norms(self, grads):
        """Frobenius norm over the named stacked gradients, per member (a list)."""
        if self._last is not None and grads is self._last[0]:
            b = self._last[1]
            flat = b.flat if "a" in grads else b.flat[:, : b.grad_W[0].numel()]
            return torch.linalg.vector_norm(flat, dim=1, out=b.norms).tolist()
        total = sum(torch.sum(g * g, dim=tuple(range(1, g.ndim))) for g in grads.values())
        return total.sqrt().tolist()


class OPS:
    """Tensor operations of an ensemble of ``gd`` members."""

    stack = staticmethod(torch.stack)
    Evaluator = Evaluator

    @staticmethod
    def take(A, batches):
        """Rows ``batches[b]`` of ``A[b]``: ``(B, n, ...) -> (B, len(batch), ...)``."""
        index = torch.as_tensor(np.stack(batches), device=A.device)
        rows = torch.arange(len(batches), device=A.device)[:, None]
        return A[rows, index]

    @staticmethod
    def update(optimizer, params, grads):
        """One update of the stacked ``params`` by the ensemble's ``optimizer``.

        SGD and momentum with their buffers in place run as ``torch._foreach_*``
        operations over the parameter tensors (one call for ``W`` and ``a``
        together): on CPU these apply, tensor by tensor, the kernels of
        :meth:`plugins.gd._torch_optim.TorchSGD.step` in its order, so the result is
        bit-equal; anything else calls ``optimizer.step``.
        """
        with torch.no_grad():
            if not _foreach_sgd(optimizer, params, grads):
                optimizer.step(params, grads)


def _foreach_sgd(optimizer, params, grads):
    """:meth:`TorchSGD.step` as ``_foreach`` calls; False (nothing done) if not applicable."""
    from ._torch_optim import TorchSGD

    if type(optimizer) is not TorchSGD:
        return False
    names = list(grads)
    momentum = optimizer.momentum
    if momentum != 0 and any(name not in optimizer.state for name in names):
        return False  # the first step creates the buffers
    ps = [params[name] for name in names]
    gs = [grads[name] for name in names]
    if optimizer.weight_decay != 0:
        gs = torch._foreach_add(gs, ps, alpha=optimizer.weight_decay)
    if momentum != 0:
        bufs = [optimizer.state[name]["momentum_buffer"] for name in names]
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, gs, alpha=1)
        gs = torch._foreach_add(gs, bufs, alpha=momentum) if optimizer.nesterov else bufs
    torch._foreach_add_(ps, gs, alpha=-optimizer.lr)
    return True
