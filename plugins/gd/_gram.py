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
with :math:`r = 2 c s_m R` and the 0/1 mask :math:`M = 1[Z > 0]`:

- torch: ``relu(Z)`` into the work array (2), ``relu(Z) a`` (1), ``relu(Z)^T r`` (1),
  ``sign_`` then ``mul_(a)`` in place: :math:`M \mathrm{diag}(a)` (4), :math:`r` kept
  on the small side: the product takes :math:`K \mathrm{diag}(r)` (``(n, n)``) and
  updates ``Z`` in place (``addmm_``, 2), ``S += -eta diag(r) M diag(a)`` by one
  ``addcmul_`` (3). 13 passes (the plain autograd step: 13, and two products).
- numpy: the mask as bools (1.25), ``relu(Z) = Z * mask`` into the work array (2.25),
  ``relu(Z) a``, ``relu(Z)^T r`` (2), ``r a^T`` into the work array (1) then ``*=
  mask`` (2.25): ``G`` itself; the product by scipy's BLAS ``gemm`` with ``beta = 1``
  into ``Z`` in place (2); ``S += -eta G`` as ``G *= -eta``, ``S += G`` (5). 15.75
  (numpy has no three-operand ``addcmul``, and its ``sign`` and masked ufuncs are ten
  times slower than a pass).

Heavy-ball momentum adds ``P <- mu P + diag(r) G``, ``Z -= eta B_Z``, ``S -= eta P``;
the product then updates ``B_Z`` in place (``beta = mu``).

On one thread most of these passes do not reach memory: :meth:`GramPath.evaluate`
works by row blocks of :data:`BLOCK_BYTES` (a residual needs only its own row), and the
element-wise part of an update (all but the product) is deferred to the next
evaluation, which applies it block by block just before the block's ``relu``. Per step,
memory then sees ``Z`` read, ``S`` (``P``, ``B_Z``) read and written, the old ``G`` read
and the new one written, and the product's ``Z``: 7 passes with SGD instead of 13
(measured on one core at n = 1000, m = 8000, float32: the element-wise work of a step,
14 ms in blocks against about 21 ms for the previous whole-array operations). On several
threads the arrays are one block (:data:`BLOCK_BYTES`). The deferred part is applied to
every row (:meth:`GramPath._flush`) before ``S`` or ``P`` are read.

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

__all__ = ["GramPath", "TorchKernels", "NumpyKernels", "BLOCK_BYTES"]

BLOCK_BYTES = 2**21
"""Bytes of one row block of an ``(n, m)`` array in :meth:`GramPath.evaluate` on one
thread (2 MiB: the blocks of ``Z``, ``S`` and the work array stay in cache while a block
is worked on). Measured on one core at n = 1000, m = 8000, float32, the element-wise time
of a step: 16.0, 13.9, 14.8, 17.3 ms with blocks of 1, 2, 4, 8 MiB, 18.3 ms unblocked.
On several threads every kernel of a block is a parallel region to synchronise: a step
took 901 ms in blocks against 644 ms unblocked with torch's 2 threads on the loaded
2-core machine (1053 / 669 ms for numpy's), so there the arrays are one block."""


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
        self._buffers = None  # the kernels' (n, m) work arrays, allocated once
        self._pending = None  # the deferred part of the last update (see _apply_pending)
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
        self._pending = None
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
        self._flush()
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
        ``G`` lives in the work array until the next evaluation. ``"KG"``
        (``K diag(rows) G``) is added when the gradient norm is asked for.

        Row block by row block (:meth:`_blocks`, about :data:`BLOCK_BYTES` each): a
        block's deferred update (:meth:`_apply_pending`), ``relu``, its residuals (a
        residual needs only its own row), its share of ``relu(Z)^T r`` and of ``G``, while
        the block is in cache; only ``Z``, ``S`` (and ``P``, ``B_Z``) and ``G`` go
        through memory.
        """
        alg, problem, ops = self.algorithm, self.algorithm.problem, self.ops
        Y, a, Z = alg.Y, alg.params_["a"], self.Z
        s = float(output_scale(Z.shape[1], problem.scaling))
        c = loss_factor(Z.shape[0], 1 if Y.ndim == 1 else Y.shape[1], problem.loss)
        g = 2.0 * c * s
        if self._buffers is None:
            self._buffers = ops.buffers(Z)
        R, r = ops.zeros_like(Y), ops.zeros_like(Y)
        grad_a = ops.zeros_like(a) if need_grad and alg.train == "both" else None
        apart = False
        with ops.no_grad():
            for rows in self._blocks():
                buffers = {k: v[rows] for k, v in self._buffers.items()}
                if self._pending is not None:
                    self._apply_pending(rows)
                H = ops.relu(Z[rows], buffers)
                R[rows] = s * (H @ a) - Y[rows]
                if not need_grad:
                    continue
                r_rows = r[rows]
                r_rows[...] = g * R[rows]
                if grad_a is not None:
                    grad_a += H.T @ r_rows
                apart = ops.backward(buffers, r_rows, a)
            self._pending = None
            value = float(c * (R * R).sum())
        if not need_grad:
            return value, None
        grads = {"G": self._buffers["work"], "rows": r if apart else None}
        if grad_a is not None:
            grads["a"] = grad_a
        return value, grads

    def _blocks(self):
        """Row slices of about :data:`BLOCK_BYTES` of an ``(n, m)`` array, on one thread;
        one block (the whole array) when the kernels run on several threads."""
        n, m = self.Z.shape
        row_bytes = m * self.Z.dtype.itemsize
        if n * row_bytes <= BLOCK_BYTES or self.ops.threads() > 1:
            return [slice(0, n)]
        per_block = max(1, BLOCK_BYTES // row_bytes)
        return [slice(i, min(i + per_block, n)) for i in range(0, n, per_block)]

    def _apply_pending(self, rows):
        """The part of the last update left for the next evaluation, on ``rows``.

        With ``(lr, r)`` and ``G`` still in the work array: ``S += -lr diag(r) G``
        (SGD), or ``P <- mu P + diag(r) G``, ``Z -= lr B_Z``, ``S -= lr P`` (heavy
        ball). ``G``'s rows are free afterwards (the evaluation overwrites them), so
        they serve as scratch.
        """
        ops = self.ops
        lr, r = self._pending
        G = self._buffers["work"][rows]
        r = None if r is None else r[rows]
        if not self.momentum:
            ops.add_rows_(self.S[rows], r, G, -lr, scratch=G)
            return
        P = self.P[rows]
        ops.scale_(P, self.momentum)
        ops.add_rows_(P, r, G, 1.0)
        ops.add_(self.Z[rows], self.Bz[rows], -lr, scratch=G)
        ops.add_(self.S[rows], P, -lr, scratch=G)

    def _flush(self):
        """Apply the deferred update to every row (before ``S`` or ``P`` are read)."""
        if self._pending is not None:
            with self.ops.no_grad():
                self._apply_pending(slice(None))
            self._pending = None

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
            # the element-wise rest is deferred to the next evaluation (_apply_pending)
            if not mu and fused:  # plain GD: Z <- Z - lr K G in one product
                ops.addmm_(self.Z, self._K_rows(rows), G, alpha=-lr)
                self._pending = (lr, rows)
            elif mu and fused and self.Bz is not None:  # heavy ball: B_Z <- mu B_Z + K G
                ops.addmm_(self.Bz, self._K_rows(rows), G, beta=mu)
                self.b1, self.b2 = mu * self.b1, mu * self.b2
                self.w1, self.w2 = self.w1 - lr * self.b1, self.w2 - lr * self.b2
                self._pending = (lr, rows)
            else:
                self._general_update(G, rows, KG, lr)
        self._update_a(grads, lr)

    def _general_update(self, G, rows, KG, lr):
        """Weight decay, Nesterov, the first momentum step or a cached ``K G``."""
        ops, mu, decay = self.ops, self.momentum, self.decay
        self._flush()  # (the evaluation of G applied it already)
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

    def threads(self):
        """torch's intra-op threads (an element-wise kernel splits over them)."""
        return self.torch.get_num_threads()

    def buffers(self, Z):
        """``{"work": (n, m)}``: ``relu(Z)``, then ``G``."""
        return {"work": self.torch.empty_like(Z)}

    def relu(self, Z, buffers):
        """``relu(Z)`` into the work array (2 passes)."""
        return self.torch.clamp_min(Z, 0, out=buffers["work"])

    @staticmethod
    def backward(buffers, r, a):
        """``G`` in the work array holding ``relu(Z)``: ``M diag(a)`` (4 passes) with the
        rows ``r`` kept apart (returns True: the gradient is ``diag(r) G``), or
        ``M * (r a^T)`` for several outputs (False). ``sign(relu(Z))`` is the 0/1 mask
        as floats (a bool mask multiplies through a slow type promotion)."""
        mask = buffers["work"].sign_()
        if a.ndim == 1:
            mask.mul_(a)
            return True
        mask.mul_(r @ a.T)
        return False

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
    def add_rows_(C, rows, G, alpha, scratch=None):
        """``C <- C + alpha diag(rows) G`` in place (3 passes; no scratch needed)."""
        if rows is None:
            C.add_(G, alpha=alpha)
        else:
            C.addcmul_(rows[:, None], G, value=alpha)

    @staticmethod
    def add_(C, D, alpha, scratch=None):
        """``C <- C + alpha D`` in place (3 passes; no scratch needed)."""
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

    The product in place by scipy's BLAS ``gemm`` with ``beta``: numpy has no
    ``C += A @ B`` without an ``(n, m)`` temporary.
    """

    def __init__(self):
        self._blas = {}
        self._controllers = None  # threadpoolctl's BLAS libraries

    def no_grad(self):
        return contextlib.nullcontext()

    def threads(self):
        """The BLAS threads (the products of a block, ``relu(Z) a`` and ``relu(Z)^T r``,
        split over them), read live from the libraries (microseconds)."""
        if self._controllers is None:
            from scipy.linalg import blas  # noqa: F401  (loaded: the controller sees it)
            from threadpoolctl import ThreadpoolController

            libraries = ThreadpoolController().lib_controllers
            self._controllers = [c for c in libraries if c.user_api == "blas"]
        return max((c.num_threads for c in self._controllers), default=1)

    def _blas_function(self, name, array):
        key = (name, array.dtype)
        if key not in self._blas:
            from scipy.linalg import blas

            self._blas[key] = blas.get_blas_funcs(name, (array,))
        return self._blas[key]

    @staticmethod
    def buffers(Z):
        """``{"work": (n, m), "mask": (n, m) bools}``."""
        return {"work": np.empty_like(Z), "mask": np.empty(Z.shape, dtype=bool)}

    @staticmethod
    def relu(Z, buffers):
        """The mask ``Z > 0`` as bools, and ``relu(Z) = Z * mask`` into the work array
        (as :func:`core.model.loss_and_grad`; 3.5 passes)."""
        np.greater(Z, 0, out=buffers["mask"])
        return np.multiply(Z, buffers["mask"], out=buffers["work"])

    @staticmethod
    def backward(buffers, r, a):
        """``G = (r a^T) * mask`` in the work array (3.25 passes); returns False (``G``
        holds the rows ``r``)."""
        work = buffers["work"]
        if a.ndim == 1:
            np.multiply(r[:, None], a, out=work)
        else:
            np.matmul(r, a.T, out=work)
        np.multiply(work, buffers["mask"], out=work)
        return False

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

    def add_rows_(self, C, rows, G, alpha, scratch=None):
        """``C <- C + alpha diag(rows) G`` in place."""
        self.add_(C, self.scale_rows(G, rows), alpha, scratch if rows is None else None)

    @staticmethod
    def add_(C, D, alpha, scratch=None):
        """``C <- C + alpha D`` in place; ``scratch`` (``C``'s shape, may be ``D``, is
        overwritten) spares a temporary. numpy ufuncs, not BLAS ``axpy``: an ``axpy``
        of scipy's OpenBLAS under a threadpoolctl limit took milliseconds a call on
        the shared development machine."""
        if alpha == 1.0:
            np.add(C, D, out=C)
        elif scratch is None:
            C += alpha * D
        else:
            np.multiply(D, alpha, out=scratch)
            np.add(C, scratch, out=C)

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
