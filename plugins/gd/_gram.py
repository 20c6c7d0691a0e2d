r"""The NTK fast path of ``gd`` and ``gd_numpy`` (``gradient="gram"``): full-batch SGD /
momentum in the space of pre-activations.

With :math:`Z = X W` ``(n, m)``, the gradient of the loss is
:math:`\nabla_W L = X^\top G` with :math:`G = \partial L / \partial Z = 2 c s_m
\,(R a^\top) \odot 1[Z > 0]` (:mod:`core.model`), so every quantity the optimizer
builds from gradients lies in :math:`X^\top(\cdot)` plus multiples of the weights.
Multiplying the updates of ``torch.optim.SGD`` (learning rate :math:`\eta`, momentum
:math:`\mu`, weight decay :math:`\lambda`, buffer :math:`b`) by :math:`X` on the left,
with :math:`K = X X^\top` ``(n, n)`` computed once:

.. math::

    g &= X^\top G + \lambda W            &&\Rightarrow\quad X g = K G + \lambda Z \\
    b &\leftarrow \mu b + g \ (b = g \text{ first}) &&\Rightarrow\quad
        B_Z \leftarrow \mu B_Z + K G + \lambda Z \\
    W &\leftarrow W - \eta\, \delta,\ \ \delta = b \text{ (or } g + \mu b
        \text{ Nesterov, or } g \text{ without momentum)}
        &&\Rightarrow\quad Z \leftarrow Z - \eta\, X\delta.

So a step costs one ``(n, n) x (n, m)`` product (fused with the update of
:math:`Z` or :math:`B_Z` by an in-place ``gemm`` when nothing else needs :math:`K G`:
the gradient norm of ``scalars()`` and weight decay do) (:math:`2 n^2 m` flops) instead
of the two ``(n, d) x (d, m)`` products of a forward and backward pass (:math:`4 n d m`):
half the flops at :math:`n = d`, :math:`2d/n` times fewer for :math:`n < d`. The
second layer's gradient :math:`2 c s_m\, \mathrm{relu}(Z)^\top R` and the loss read
:math:`Z` directly, so training both layers keeps the saving; ``a`` is updated by the
algorithm's own optimizer. The reported gradient norm is
:math:`\|X^\top G\|_F^2 = \sum (G \odot K G)` (plus :math:`\|\nabla_a L\|^2`).

Element-wise passes
-------------------
Besides the product, a step reads and writes ``(n, m)`` arrays (a *pass*: one
``(n, m)`` array read or written once; 32 MB at n = 1000, m = 8000 in float32), all
into preallocated buffers. With one output (``a`` a vector) ``G = diag(r) M diag(a)``
with :math:`r = 2 c s_m R` and the 0/1 mask :math:`M = 1[Z > 0]`, and the backends
keep :math:`r` on the small side where they can:

- torch: ``relu(Z)`` into the work array (2), ``relu(Z) a`` (1), ``relu(Z)^T r`` (1),
  ``sign_`` then ``mul_(a)`` in place: :math:`M \mathrm{diag}(a)` (4); the product takes
  :math:`K \mathrm{diag}(r)` (``(n, n)``) and updates ``Z`` in place (``addmm_``);
  ``S += -eta diag(r) M diag(a)`` by one ``addcmul_`` (3). 11 passes.
- numpy: the mask as bools (1 + 1/4), ``relu(Z) = Z * mask`` into the work array
  (2 + 1/4), ``relu(Z) a`` (1), ``relu(Z)^T r`` (1), ``r a^T`` into the work array (1)
  then ``*= mask`` (2 + 1/4): ``G`` itself; the product by BLAS ``gemm`` with
  ``beta = 1`` into ``Z`` (scipy's, in place), ``S += -eta G`` by BLAS ``axpy`` (3).
  About 11.8 passes (numpy has no three-operand ``addcmul``, and its ``sign`` and
  masked ufuncs are ten times slower than a pass).

Heavy-ball momentum adds ``P <- mu P + diag(r) G`` (5) and ``Z -= eta B_Z``,
``S -= eta P`` (3 each); the product then updates ``B_Z`` in place (``beta = mu``).

The weights
-----------
They are kept implicitly. Since :math:`g` and :math:`b` are linear in :math:`G`,
:math:`W` and :math:`b`, from a *base* :math:`(W_b, B_b)` (the weights and buffer at the
last refresh) they stay of the form

.. math::

    W = w_1 W_b + w_2 B_b + X^\top S, \qquad b = b_1 W_b + b_2 B_b + X^\top P,

with four scalars and two ``(n, m)`` matrices updated by the same recurrences:
:math:`g \leftrightarrow (\lambda w_1, \lambda w_2, G + \lambda S)`,
:math:`b \leftarrow \mu b + g` and :math:`W \leftarrow W - \eta\delta` coefficient by
coefficient (element-wise work only; without weight decay :math:`w_1 = 1`,
:math:`w_2 = b_1 = 0`). :meth:`GramPath.refresh` materialises :math:`W` and
:math:`b` (two ``(d, n) x (n, m)`` products), makes them the new base and recomputes
:math:`Z = X W`, :math:`B_Z = X b` exactly, so rounding does not accumulate in
:math:`Z`: every ``gram_refresh`` steps (2 products with SGD, 4 with momentum: 1 % and
2 % of the steps' products at the default 200), and whenever the weights are read
(``state()``, ``state_dict()``, the ``W`` property). The refresh also drops the cached
gradient, so a run resumed from a checkpoint continues bit for bit as the uninterrupted
one. Checkpoints hold ``W`` and its buffer in the plain layout: a gram run resumes on
the plain path and the reverse.

Not for AdamW (its update is not linear in the gradient) nor minibatches (the
gradient of a batch is not :math:`X^\top G`): refused by the config check
(:func:`plugins.gd._params.check_dynamics`).

The math above is written once, in :class:`GramPath`; the array kernels of one step
are a backend's (:class:`TorchKernels`, :class:`NumpyKernels`).

References
----------
Du, Zhai, Poczos & Singh, "Gradient descent provably optimizes over-parameterized
neural networks", ICLR 2019 (the Gram matrix :math:`H_{ij} = x_i \cdot x_j
\sum_r 1\{\ldots\}/m` is :math:`K` masked by the activation patterns).
"""

import contextlib

import numpy as np

from core.model import loss_factor, output_scale

__all__ = ["GramPath", "TorchKernels", "NumpyKernels"]


class GramPath:
    """The implicit weights and pre-activations of one ``gd`` / ``gd_numpy`` run on the
    gram path.

    Parameters
    ----------
    algorithm : plugins.gd._base.CachedGradientDescent
        Set up with ``gradient="gram"``: its ``X`` ``(n, d)``, ``Y``, ``params_``,
        ``optimizer_`` (which keeps updating ``a``; ``W``'s buffer lives here between
        refreshes) and ``optimizer_kwargs_`` (``momentum``, ``nesterov``,
        ``weight_decay``). Torch tensors or numpy arrays, which selects the kernels.

    Attributes
    ----------
    K : array, shape (n, n)
        ``X X^T``.
    Z : array, shape (n, m)
        The pre-activations ``X W``, updated every step.
    n_refreshes : int
        Exact recomputations done (for tests).
    """

    def __init__(self, algorithm):
        self.algorithm = algorithm
        X = algorithm.X
        self.ops = NumpyKernels() if isinstance(X, np.ndarray) else TorchKernels()
        self.K = X @ X.T
        self._Kr = None  # K diag(r), (n, n), allocated once
        options = algorithm.optimizer_kwargs_  # sgd or momentum (the config check)
        self.momentum = options["momentum"] if algorithm.optimizer == "momentum" else 0.0
        self.nesterov = bool(options.get("nesterov", False)) and self.momentum > 0
        self.decay = options["weight_decay"]
        self.n_refreshes = 0
        self.reset()

    # -- the base -----------------------------------------------------------------------
    def reset(self):
        """Take the algorithm's ``W`` and ``W``'s momentum buffer as the new base."""
        alg, ops = self.algorithm, self.ops
        self.Wb = alg.params_["W"]
        self.Bb = ops.pop_buffer(alg.optimizer_)
        self.w1, self.w2, self.b1, self.b2 = 1.0, 0.0, 0.0, 1.0
        self.Z = alg.X @ self.Wb
        self.S = ops.zeros_like(self.Z)
        if self.momentum:
            self.P = ops.zeros_like(self.S)
            self.Bz = None if self.Bb is None else alg.X @ self.Bb

    def _materialise(self, c1, c2, coefficients):
        """``c1 W_b + c2 B_b + X^T coefficients`` ``(d, m)``."""
        base = self.Wb * c1 if c1 != 1.0 else self.Wb
        if c2 != 0.0 and self.Bb is not None:
            base = base + self.Bb * c2
        return self.ops.addmm(base, self.algorithm.X.T, coefficients)

    def refresh(self):
        """Materialise ``W`` (and its buffer) into the algorithm, rebase, recompute ``Z``."""
        alg = self.algorithm
        W = self._materialise(self.w1, self.w2, self.S)
        if self.momentum and self.Bz is not None:
            self.ops.put_buffer(alg.optimizer_, self._materialise(self.b1, self.b2, self.P))
        alg.params_["W"] = W
        self.reset()
        self.n_refreshes += 1
        alg._cache = None  # evaluated on the drifted Z: re-evaluate on the exact one

    def W(self):
        """The current first layer ``(d, m)``, after a refresh."""
        self.refresh()
        return self.algorithm.params_["W"]

    def optimizer_state(self):
        """The optimizer's ``state_dict`` with ``W``'s buffer, after a refresh."""
        self.refresh()
        optimizer = self.algorithm.optimizer_
        if self.Bb is not None:
            self.ops.put_buffer(optimizer, self.Bb)
        try:
            return optimizer.state_dict()
        finally:
            self.ops.pop_buffer(optimizer)

    # -- one step -----------------------------------------------------------------------
    def evaluate(self, need_grad):
        """Loss and ``{"G": (n, m), "rows": (n,) or None, "a": ...}`` from ``Z``.

        The gradient in ``Z`` is ``diag(rows) G`` (``G`` itself when ``rows`` is None);
        ``G`` lives in the kernels' work array until the next evaluation. ``"KG"``
        (``K diag(rows) G``) is added when the gradient norm is asked for.
        """
        alg, problem, ops = self.algorithm, self.algorithm.problem, self.ops
        Y, a, Z = alg.Y, alg.params_["a"], self.Z
        s = float(output_scale(Z.shape[1], problem.scaling))
        c = loss_factor(Z.shape[0], 1 if Y.ndim == 1 else Y.shape[1], problem.loss)
        with ops.no_grad():
            H = ops.relu(Z)
            R = s * (H @ a) - Y
            value = float(c * (R * R).sum())
            if not need_grad:
                return value, None
            r = (2.0 * c * s) * R
            grads = {}
            if alg.train == "both":
                grads["a"] = H.T @ r
            grads["G"], grads["rows"] = ops.backward(r, a)
        return value, grads

    def _K_rows(self, rows):
        """``K diag(rows)`` ``(n, n)`` in a preallocated array (``K`` when ``rows`` is None)."""
        if rows is None:
            return self.K
        if self._Kr is None:
            self._Kr = self.K * 0
        return self.ops.mul(self.K, rows, out=self._Kr)

    def grad_norm(self, grads):
        """``sqrt(||X^T diag(rows) G||^2 + ||grad_a||^2)``, the norm of the loss gradient."""
        G, rows = grads["G"], grads["rows"]
        if "KG" not in grads:
            grads["KG"] = self._K_rows(rows) @ G  # kept for the update
        per_row = (G * grads["KG"]).sum(1)
        total = float((per_row if rows is None else per_row * rows).sum())
        if "a" in grads:
            total += float((grads["a"] ** 2).sum())
        return total**0.5

    def update(self, grads, lr):
        """One SGD / momentum step in ``Z`` and in the coefficients (module docstring)."""
        ops = self.ops
        G, rows, KG = grads["G"], grads["rows"], grads.get("KG")
        mu, decay = self.momentum, self.decay
        with ops.no_grad():
            fused = not decay and not self.nesterov and KG is None
            if not mu and fused:  # plain GD: Z <- Z - lr K G in one product
                ops.addmm_(self.Z, self._K_rows(rows), G, alpha=-lr)
                ops.add_rows_(self.S, rows, G, -lr)
            elif mu and fused and self.Bz is not None:  # heavy ball: B_Z <- mu B_Z + K G
                ops.addmm_(self.Bz, self._K_rows(rows), G, beta=mu)
                ops.scale_(self.P, mu)
                ops.add_rows_(self.P, rows, G, 1.0)
                self.b1, self.b2 = mu * self.b1, mu * self.b2
                ops.add_(self.Z, self.Bz, -lr)
                ops.add_(self.S, self.P, -lr)
                self.w1, self.w2 = self.w1 - lr * self.b1, self.w2 - lr * self.b2
            else:
                self._general_update(G, rows, KG, lr)
        self._update_a(grads, lr)

    def _general_update(self, G, rows, KG, lr):
        """Weight decay, Nesterov, the first momentum step or a cached ``K G``."""
        ops, mu, decay = self.ops, self.momentum, self.decay
        if KG is None:
            KG = self._K_rows(rows) @ G
        G = ops.scale_rows(G, rows)  # the gradient itself (G's buffer is not reused)
        if decay:
            gz, gs = KG + decay * self.Z, G + decay * self.S
            g1, g2 = decay * self.w1, decay * self.w2
        else:
            gz, gs, g1, g2 = KG, G, 0.0, 0.0
        if mu:
            if self.Bz is None:
                self.Bz, self.P = ops.copy(gz), ops.copy(gs)
                self.Bb = ops.zeros_like(self.algorithm.params_["W"])
                self.b1, self.b2 = g1, g2
            else:
                ops.scale_(self.Bz, mu)
                ops.add_(self.Bz, gz, 1.0)
                ops.scale_(self.P, mu)
                ops.add_(self.P, gs, 1.0)
                self.b1, self.b2 = mu * self.b1 + g1, mu * self.b2 + g2
            if self.nesterov:
                dz, ds = gz + mu * self.Bz, gs + mu * self.P
                d1, d2 = g1 + mu * self.b1, g2 + mu * self.b2
            else:
                dz, ds, d1, d2 = self.Bz, self.P, self.b1, self.b2
        else:
            dz, ds, d1, d2 = gz, gs, g1, g2
        ops.add_(self.Z, dz, -lr)
        ops.add_(self.S, ds, -lr)
        self.w1, self.w2 = self.w1 - lr * d1, self.w2 - lr * d2

    def _update_a(self, grads, lr):
        """The algorithm's optimizer step on ``a``, then the periodic refresh."""
        alg = self.algorithm
        if "a" in grads:
            alg.optimizer_.lr = lr
            with self.ops.no_grad():
                alg.optimizer_.step(alg.params_, {"a": grads["a"]})
        if (alg.n_steps + 1) % alg.gram_refresh == 0:
            self.refresh()


class _Kernels:
    """What the kernels of both backends share (generic array arithmetic)."""

    work = None  # (n, m): relu(Z), then G

    @staticmethod
    def scale_(C, beta):
        """``C <- beta C`` in place (2 passes)."""
        C *= beta

    @staticmethod
    def scale_rows(G, rows):
        """``diag(rows) G`` (a new array; ``G`` when ``rows`` is None)."""
        return G if rows is None else G * rows[:, None]


class TorchKernels(_Kernels):
    """The array kernels of :class:`GramPath` for torch tensors (any device)."""

    def __init__(self):
        import torch

        self.torch = torch

    def no_grad(self):
        return self.torch.no_grad()

    def relu(self, Z):
        """``relu(Z)`` into the work array (2 passes)."""
        if self.work is None or self.work.shape != Z.shape:
            self.work = self.torch.empty_like(Z)
        return self.torch.clamp_min(Z, 0, out=self.work)

    def backward(self, r, a):
        """``(G, rows)`` with the gradient in ``Z`` equal to ``diag(rows) G``, in the work
        array holding ``relu(Z)``: ``M diag(a)`` and ``r`` (4 passes), or ``M * (r a^T)``
        for several outputs. ``sign(relu(Z))`` is the 0/1 mask as floats (a bool mask
        multiplies through a slow type promotion)."""
        mask = self.work.sign_()
        if a.ndim == 1:
            return mask.mul_(a), r
        return mask.mul_(r @ a.T), None

    def mul(self, x, y, out):
        return self.torch.mul(x, y, out=out)

    @staticmethod
    def addmm_(C, A, B, alpha=1.0, beta=1.0):
        """``C <- beta C + alpha A B`` in place."""
        C.addmm_(A, B, beta=beta, alpha=alpha)

    def addmm(self, C, A, B):
        """``C + A B`` (a new tensor)."""
        return self.torch.addmm(C, A, B)

    @staticmethod
    def add_rows_(C, rows, G, alpha):
        """``C <- C + alpha diag(rows) G`` in place (3 passes)."""
        if rows is None:
            C.add_(G, alpha=alpha)
        else:
            C.addcmul_(rows[:, None], G, value=alpha)

    @staticmethod
    def add_(C, D, alpha):
        """``C <- C + alpha D`` in place (3 passes)."""
        C.add_(D, alpha=alpha)

    def zeros_like(self, x):
        return self.torch.zeros_like(x)

    @staticmethod
    def copy(x):
        return x.clone()

    @staticmethod
    def pop_buffer(optimizer):
        """Take ``W``'s momentum buffer out of a :mod:`plugins.gd._torch_optim` optimizer."""
        entry = optimizer.state.pop("W", None)
        return None if entry is None else entry["momentum_buffer"]

    @staticmethod
    def put_buffer(optimizer, buffer):
        optimizer.state["W"] = {"momentum_buffer": buffer}


class NumpyKernels(_Kernels):
    """The array kernels of :class:`GramPath` for numpy arrays.

    In-place products and sums by scipy's BLAS (``gemm`` with ``beta``, ``axpy``): numpy
    has no ``C += A @ B`` without an ``(n, m)`` temporary.
    """

    def __init__(self):
        self.mask = None  # (n, m) bools: Z > 0
        self._blas = {}

    def no_grad(self):
        return contextlib.nullcontext()

    def _blas_function(self, name, array):
        key = (name, array.dtype)
        if key not in self._blas:
            from scipy.linalg import blas

            self._blas[key] = blas.get_blas_funcs(name, (array,))
        return self._blas[key]

    def relu(self, Z):
        """The mask ``Z > 0`` as bools, and ``relu(Z) = Z * mask`` into the work array
        (as :func:`core.model.loss_and_grad`; 3.5 passes)."""
        if self.work is None or self.work.shape != Z.shape or self.work.dtype != Z.dtype:
            self.work = np.empty_like(Z)
            self.mask = np.empty(Z.shape, dtype=bool)
        np.greater(Z, 0, out=self.mask)
        return np.multiply(Z, self.mask, out=self.work)

    def backward(self, r, a):
        """``G = (r a^T) * mask`` in the work array (3.25 passes), ``rows`` None."""
        if a.ndim == 1:
            np.multiply(r[:, None], a, out=self.work)
        else:
            np.matmul(r, a.T, out=self.work)
        return np.multiply(self.work, self.mask, out=self.work), None

    @staticmethod
    def mul(x, y, out):
        return np.multiply(x, y, out=out)

    def addmm_(self, C, A, B, alpha=1.0, beta=1.0):
        """``C <- beta C + alpha A B`` in place for C-ordered ``C`` (BLAS ``gemm`` on the
        transposes: ``C^T = beta C^T + alpha B^T A^T``)."""
        gemm = self._blas_function("gemm", C)
        out = gemm(alpha, B.T, A.T, beta=beta, c=C.T, overwrite_c=True)
        if not np.may_share_memory(out, C):  # C not contiguous: BLAS worked on a copy
            C[...] = out.T

    @staticmethod
    def addmm(C, A, B):
        """``C + A B`` (a new array)."""
        return C + A @ B

    def add_rows_(self, C, rows, G, alpha):
        """``C <- C + alpha diag(rows) G`` in place."""
        self.add_(C, self.scale_rows(G, rows), alpha)

    def add_(self, C, D, alpha):
        """``C <- C + alpha D`` in place (BLAS ``axpy``, 3 passes)."""
        if not (C.flags.c_contiguous and D.flags.c_contiguous and C.dtype == D.dtype):
            C += alpha * D
            return
        axpy = self._blas_function("axpy", C)
        out = axpy(D.reshape(-1), C.reshape(-1), a=alpha)
        if not np.may_share_memory(out, C):
            C[...] = out.reshape(C.shape)

    @staticmethod
    def zeros_like(x):
        return np.zeros_like(x)

    @staticmethod
    def copy(x):
        return x.copy()

    @staticmethod
    def pop_buffer(optimizer):
        """Take ``W``'s momentum buffer out of a :class:`plugins.gd._numpy_optim.NumpySGD`."""
        return optimizer.buffers.pop("W", None)

    @staticmethod
    def put_buffer(optimizer, buffer):
        optimizer.buffers["W"] = buffer
