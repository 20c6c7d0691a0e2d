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

import math

import numpy as np
import torch

from core.model import loss_factor, output_scale

from ._torch_optim import TorchSGD

__all__ = ["Evaluator", "OPS"]


class _Buffers:
    """Preallocated tensors, views and constants of one evaluation shape (see :class:`Evaluator`).

    Attributes
    ----------
    H, D : Tensor, shape (B, n, m)
        ``relu(Z)`` and the 0/1 mask ``sign(H)``; with one output ``H`` then becomes
        the mask (``D`` unused), with several ``H`` then holds ``(R a^T) * D``.
    out : Tensor, shape (B, 1, n) or (B, n, k)
    R, gR : Tensor, shape of ``Y``
        Residuals and ``g R``.
    XR : Tensor, shape (B, n, d)
    G, WG : Tensor, shape (B, d, m)
    flat : Tensor, shape (B, d m + m k)
        The gradients, flattened per member: ``grad_W`` then ``grad_a`` are views.
    values, norms : Tensor, shape (B,)
    s, c, g : float
        Output scale, loss factor and ``2 c s``; ``s_``, ``c_``, ``g_`` are 0-d tensors of
        them in the working dtype (an operation with a Python number costs a few
        microseconds more; the value is rounded to the dtype either way).
    """

    def __init__(self, X, Y, W, a, scaling, loss):
        B, n, d = X.shape
        m = W.shape[2]
        options = {"dtype": W.dtype, "device": W.device}
        self.vector = Y.ndim == 2
        k = 1 if self.vector else Y.shape[2]
        self.s = float(output_scale(m, scaling))
        self.c = loss_factor(n, k, loss)
        self.g = 2.0 * self.c * self.s
        self.s_, self.c_, self.g_ = (torch.tensor(v, **options) for v in (self.s, self.c, self.g))
        self.H = torch.empty((B, n, m), **options)
        self.HT = self.H.transpose(1, 2)
        self.D = None if self.vector else torch.empty((B, n, m), **options)
        self.out = torch.empty((B, 1, n) if self.vector else (B, n, k), **options)
        self.out_rows = self.out.squeeze(1) if self.vector else self.out
        self.R = torch.empty(Y.shape, **options)
        self.RR = torch.empty(Y.shape, **options)
        self.R_flat, self.RR_flat = self.R.view(B, -1), self.RR.view(B, -1)
        self.gR = torch.empty(Y.shape, **options)
        self.gR_col = self.gR.unsqueeze(2) if self.vector else None
        self.XR = torch.empty((B, n, d), **options)
        self.XRT = self.XR.transpose(1, 2)
        self.G = torch.empty((B, d, m), **options)
        self.WG = torch.empty((B, d, m), **options)
        self.Ga = torch.empty((B, m, k), **options)
        self.values = torch.empty((B,), **options)
        self.flat = torch.empty((B, d * m + m * k), **options)
        self.grad_W = self.flat[:, : d * m].view(B, d, m)
        self.grad_a = self.flat[:, d * m :].view(a.shape)
        self.norms = torch.empty((B,), **options)
        self.grads = None  # {name: view} of the trained ones, made at the first call
        self._a = self._X = None  # the inputs whose views are held

    def a_rows(self, a):
        """``a`` as ``(B, 1, m)`` (one output) or ``a^T`` ``(B, k, m)``, the view kept."""
        if a is not self._a:
            self._a, self._a_rows = a, a.unsqueeze(1) if self.vector else a.transpose(1, 2)
        return self._a_rows

    def XT(self, X):
        """``X^T`` ``(B, d, n)``, the view kept."""
        if X is not self._X:
            self._X, self._XT = X, X.transpose(1, 2)
        return self._XT


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
    shapes overwrites (the same dict every time): use them (update, norms) before
    evaluating again, or copy them.
    """

    def __init__(self, names, scaling="standard", loss="mse"):
        self.names, self.scaling, self.loss = tuple(names), scaling, loss
        self._grad_a = "a" in self.names
        self._buffers = {}
        self._last = None  # (grads, buffers) of the last evaluation with gradients

    def _buffers_for(self, X, Y, W, a):
        key = (X.shape, Y.shape, W.shape, W.dtype, W.device)
        buffers = self._buffers.get(key)
        if buffers is None:
            buffers = _Buffers(X, Y, W, a, self.scaling, self.loss)
            self._buffers[key] = buffers
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
        with torch.no_grad():
            H = torch.bmm(X, W, out=b.H).relu_()
            if b.vector:  # (1, m) x (m, n): bmm with a one-column right factor is slower
                torch.bmm(b.a_rows(a), b.HT, out=b.out)
            else:
                torch.bmm(H, a, out=b.out)
            if b.s == 1.0:  # 1 * x is x: one pass fewer
                R = torch.sub(b.out_rows, Y, out=b.R)
            else:
                R = torch.mul(b.out_rows, b.s_, out=b.R).sub_(Y)
            torch.mul(R, R, out=b.RR)
            values = torch.sum(b.RR_flat, dim=1, out=b.values).mul_(b.c_).tolist()
            if not need_grad:
                return values, None
            if b.vector:  # the mask in place: H is used up (a second (B, n, m) array,
                # written out of place, costs 2-4x the pass once the two outgrow the cache)
                D = H.sign_()
                torch.mul(R, b.g_, out=b.gR)
                torch.mul(X, b.gR_col, out=b.XR)
                G = torch.bmm(b.XRT, D, out=b.G)
                torch.mul(G, b.a_rows(a), out=b.grad_W)
                if self._grad_a:
                    torch.sum(torch.mul(W, G, out=b.WG), dim=1, out=b.grad_a)
            else:
                D = torch.sign(H, out=b.D)
                if self._grad_a:
                    torch.mul(torch.bmm(b.HT, R, out=b.Ga), b.g_, out=b.grad_a)
                back = torch.bmm(R, b.a_rows(a), out=b.H).mul_(D)  # H is used up
                torch.mul(torch.bmm(b.XT(X), back, out=b.G), b.g_, out=b.grad_W)
        if b.grads is None:  # the same dict every call: the ensemble reuses its slices
            grads = {"W": b.grad_W, "a": b.grad_a}
            b.grads = {k: grads[k] for k in self.names}
        self._last = (b.grads, b)
        return values, b.grads

    def norms(self, grads):
        """Frobenius norm over the named stacked gradients, per member (a list)."""
        if self._last is not None and grads is self._last[0]:
            b = self._last[1]
            flat = b.flat if self._grad_a else b.flat[:, : b.grad_W[0].numel()]
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
    def stack_params(dicts):
        """The members' ``W`` and ``a`` stacked, as views of one ``(B, d m + m k)`` tensor.

        One flat tensor per member row (``W`` then ``a``) lets momentum SGD update both
        layers in one pass (:func:`_flat_momentum`); ``W`` ``(B, d, m)`` and ``a``
        ``(B, m)`` or ``(B, m, k)`` are its views, member ``i``'s slices contiguous.
        """
        W, a = torch.stack([p["W"] for p in dicts]), torch.stack([p["a"] for p in dicts])
        B = W.shape[0]
        flat = torch.cat([W.reshape(B, -1), a.reshape(B, -1)], dim=1)
        return dict(zip(("W", "a"), _views(flat, W.shape, a.shape)))

    @staticmethod
    def update(optimizer, params, grads):
        """One update of the stacked ``params`` by the ensemble's ``optimizer``.

        Returns True when the optimizer's buffers were replaced (the members' views
        of them must be made again). Momentum SGD on both layers, when parameters,
        gradients and buffers are each one flat tensor, is three passes over them
        (:func:`_flat_momentum`); SGD and momentum otherwise run as
        ``torch._foreach_*`` operations (one call for ``W`` and ``a``); anything
        else calls ``optimizer.step``. Both fast paths apply the kernels of
        :meth:`plugins.gd._torch_optim.TorchSGD.step` in its order, element by
        element, so the result equals ``optimizer.step``'s.
        """
        with torch.no_grad():
            relinked = _flat_momentum(optimizer, params, grads)
            if relinked is not None:
                return relinked
            if not _foreach_sgd(optimizer, params, grads):
                optimizer.step(params, grads)
        return False


def _views(flat, *shapes):
    """Consecutive views of the rows of ``flat`` ``(B, D)`` with the given shapes."""
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape[1:])
        out.append(flat[:, start : start + size].view(shape))
        start += size
    return out


_FLAT_OF = {}  # (id(W), id(a)) -> (W, a, flat or None): the answers for the tensors held


def _flat_of(W, a):
    """The ``(B, D)`` tensor whose row views ``W`` and ``a`` are (in that order), or None.

    The answer is kept for the pair (an ensemble asks about the same tensors every
    step; reading tensor attributes costs microseconds each).
    """
    hit = _FLAT_OF.get((id(W), id(a)))
    if hit is not None and hit[0] is W and hit[1] is a:
        return hit[2]
    if len(_FLAT_OF) >= 64:
        _FLAT_OF.clear()
    flat = _find_flat(W, a)
    _FLAT_OF[id(W), id(a)] = (W, a, flat)
    return flat


def _find_flat(W, a):
    base = W._base
    if base is None or a._base is not base or base.dim() != 2 or not base.is_contiguous():
        return None
    size = W[0].numel()
    if (
        base.shape[1] != size + a[0].numel()
        or W.data_ptr() != base.data_ptr()
        or a.data_ptr() != base.data_ptr() + size * base.element_size()
        or W.stride(0) != base.shape[1]
        or a.stride(0) != base.shape[1]
    ):
        return None
    return base


_CONSTANTS = {}


def _constant(value, like):
    """A cached 0-d tensor of ``value`` with ``like``'s dtype and device."""
    key = (value, like.dtype, like.device)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return _CONSTANTS[key]


def _flat_momentum(optimizer, params, grads):
    """Heavy-ball :meth:`TorchSGD.step` on ``W`` and ``a`` as one flat tensor each.

    ``buf = momentum buf + grad`` and ``param -= lr buf`` over the flat rows of
    parameters, gradients and buffers: 3 operations instead of 6. Returns None
    (nothing done) when it does not apply: another optimizer, Nesterov or weight
    decay, one layer, no buffers yet, parameters or gradients not flat; True when
    the buffers were first moved into a flat tensor, else False.
    """
    if (
        type(optimizer) is not TorchSGD
        or optimizer.momentum == 0
        or optimizer.nesterov
        or optimizer.weight_decay != 0
        or tuple(grads) != ("W", "a")
        or "W" not in optimizer.state
        or "a" not in optimizer.state
    ):
        return None
    P = _flat_of(params["W"], params["a"])
    G = _flat_of(grads["W"], grads["a"])
    if P is None or G is None or G.shape != P.shape:
        return None
    state = optimizer.state
    M = _flat_of(state["W"]["momentum_buffer"], state["a"]["momentum_buffer"])
    moved = M is None
    if moved:
        M = torch.empty_like(P)
        for name, view in zip(("W", "a"), _views(M, params["W"].shape, params["a"].shape)):
            view.copy_(state[name]["momentum_buffer"])
            state[name]["momentum_buffer"] = view
    M.mul_(_constant(optimizer.momentum, M)).add_(G)
    P.add_(M, alpha=-optimizer.lr)
    return moved


def _foreach_sgd(optimizer, params, grads):
    """:meth:`TorchSGD.step` as ``_foreach`` calls; False (nothing done) if not applicable."""
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
