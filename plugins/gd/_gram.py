r"""The NTK fast path of ``gd`` (``gradient="gram"``): full-batch SGD / momentum in the
space of pre-activations.

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
:math:`Z` or :math:`B_Z` by ``addmm`` when nothing else needs :math:`K G`: the gradient
norm of ``scalars()`` and weight decay do) (:math:`2 n^2 m` flops) instead of
the two ``(n, d) x (d, m)`` products of a forward and backward pass (:math:`4 n d m`):
half the flops at :math:`n = d`, :math:`2d/n` times fewer for :math:`n < d`. The
second layer's gradient :math:`2 c s_m\, \mathrm{relu}(Z)^\top R` and the loss read
:math:`Z` directly, so training both layers keeps the saving; ``a`` is updated by the
plain optimizer. The reported gradient norm is
:math:`\|X^\top G\|_F^2 = \sum (G \odot K G)` (plus :math:`\|\nabla_a L\|^2`).

The weights themselves are kept implicitly. Since :math:`g` and :math:`b` are linear
in :math:`G`, :math:`W` and :math:`b`, from a *base* :math:`(W_b, B_b)` (the weights
and buffer at the last refresh) they stay of the form

.. math::

    W = w_1 W_b + w_2 B_b + X^\top S, \qquad b = b_1 W_b + b_2 B_b + X^\top P,

with four scalars and two ``(n, m)`` matrices updated by the same recurrences:
:math:`g \leftrightarrow (\lambda w_1, \lambda w_2, G + \lambda S)`,
:math:`b \leftarrow \mu b + g` and :math:`W \leftarrow W - \eta\delta` coefficient by
coefficient (element-wise work only; without weight decay :math:`w_1 = 1`,
:math:`w_2 = b_1 = 0`). :meth:`GramPath.refresh` materialises :math:`W` and
:math:`b` (two ``(d, n) x (n, m)`` products), makes them the new base and recomputes
:math:`Z = X W`, :math:`B_Z = X b` exactly, so rounding does not accumulate in
:math:`Z`: every ``gram_refresh`` steps, and whenever the weights are read
(``state()``, ``state_dict()``, the ``W`` property). The refresh also drops the cached
gradient, so a run resumed from a checkpoint continues bit for bit as the uninterrupted
one. Checkpoints hold ``W`` and its buffer in the plain layout: a gram run resumes on
the plain path and the reverse.

Not for AdamW (its update is not linear in the gradient) nor minibatches (the
gradient of a batch is not :math:`X^\top G`): refused by the config check.

References
----------
Du, Zhai, Poczos & Singh, "Gradient descent provably optimizes over-parameterized
neural networks", ICLR 2019 (the Gram matrix :math:`H_{ij} = x_i \cdot x_j
\sum_r 1\{\ldots\}/m` is :math:`K` masked by the activation patterns).
"""

from core.model import loss_factor, output_scale

__all__ = ["GramPath"]


class GramPath:
    """The implicit weights and pre-activations of one ``gd`` run on the gram path.

    Parameters
    ----------
    algorithm : plugins.gd.GD
        Set up with ``gradient="gram"``: its ``X`` ``(n, d)``, ``Y``, ``params_`` and
        ``optimizer_`` (which keeps updating ``a``; ``W``'s buffer lives here between
        refreshes).

    Attributes
    ----------
    K : Tensor, shape (n, n)
        ``X X^T``.
    Z : Tensor, shape (n, m)
        The pre-activations ``X W``, updated every step.
    n_refreshes : int
        Exact recomputations done (for tests).
    """

    def __init__(self, algorithm):
        self.algorithm = algorithm
        X = algorithm.X
        self.K = X @ X.T
        options = algorithm.optimizer_kwargs_  # sgd or momentum (the config check)
        self.momentum = options["momentum"] if algorithm.optimizer == "momentum" else 0.0
        self.nesterov = bool(options.get("nesterov", False)) and self.momentum > 0
        self.decay = options["weight_decay"]
        self.n_refreshes = 0
        self.reset()

    # -- the base -----------------------------------------------------------------------
    def reset(self):
        """Take the algorithm's ``W`` and ``W``'s momentum buffer as the new base."""
        alg = self.algorithm
        torch = alg._torch
        entry = alg.optimizer_.state.pop("W", None)
        self.Wb = alg.params_["W"]
        self.Bb = None if entry is None else entry["momentum_buffer"]
        self.w1, self.w2, self.b1, self.b2 = 1.0, 0.0, 0.0, 1.0
        self.S = self.Wb.new_zeros(alg.X.shape[0], self.Wb.shape[1])
        self.Z = alg.X @ self.Wb
        if self.momentum:
            self.P = torch.zeros_like(self.S)
            self.Bz = None if self.Bb is None else alg.X @ self.Bb

    def _materialise(self, c1, c2, coefficients):
        torch = self.algorithm._torch
        base = self.Wb * c1 if c1 != 1.0 else self.Wb
        if c2 != 0.0 and self.Bb is not None:
            base = base + self.Bb * c2
        return torch.addmm(base, self.algorithm.X.T, coefficients)

    def refresh(self):
        """Materialise ``W`` (and its buffer) into the algorithm, rebase, recompute ``Z``."""
        alg = self.algorithm
        W = self._materialise(self.w1, self.w2, self.S)
        if self.momentum and self.Bz is not None:
            buffer = self._materialise(self.b1, self.b2, self.P)
            alg.optimizer_.state["W"] = {"momentum_buffer": buffer}
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
            optimizer.state["W"] = {"momentum_buffer": self.Bb}
        try:
            return optimizer.state_dict()
        finally:
            optimizer.state.pop("W", None)

    # -- one step -----------------------------------------------------------------------
    def evaluate(self, need_grad):
        """Loss and ``{"G": (n, m), "a": ...}`` from ``Z`` (``"KG"`` is added when needed)."""
        alg, problem = self.algorithm, self.algorithm.problem
        torch = alg._torch
        Y, a, Z = alg.Y, alg.params_["a"], self.Z
        vector = Y.ndim == 1
        s = float(output_scale(Z.shape[1], problem.scaling))
        c = loss_factor(Z.shape[0], 1 if vector else Y.shape[1], problem.loss)
        with torch.no_grad():
            # one (n, m) work array, reused every step: relu(Z), then G in place
            # (a fresh 32 MB array a step costs its page faults at n = 1000, m = 8000)
            if getattr(self, "_work", None) is None or self._work.shape != Z.shape:
                self._work = torch.empty_like(Z)
            H = torch.clamp_min(Z, 0, out=self._work)
            R = s * (H @ a) - Y
            value = float(c * torch.sum(R * R))
            if not need_grad:
                return value, None
            g = 2.0 * c * s
            grads = {}
            if alg.train == "both":
                grads["a"] = g * (H.T @ R)
            R = g * R
            # R_i a_j 1[Z_ij > 0]: sign(relu(Z)) is the 0/1 mask as floats (a bool mask
            # multiplies through a slow type promotion); 1 * R_i * a_j has R_i a_j's bits.
            mask = H.sign_()
            G = mask.mul_(R[:, None]).mul_(a) if vector else mask.mul_(R @ a.T)
            grads["G"] = G
        return value, grads

    def grad_norm(self, grads):
        """``sqrt(||X^T G||^2 + ||grad_a||^2)``, the norm of the loss gradient."""
        torch = self.algorithm._torch
        if "KG" not in grads:
            grads["KG"] = self.K @ grads["G"]  # kept for the update
        total = torch.sum(grads["G"] * grads["KG"])
        if "a" in grads:
            total = total + torch.sum(grads["a"] ** 2)
        return float(total) ** 0.5

    def update(self, grads, lr):
        """One SGD / momentum step in ``Z`` and in the coefficients (module docstring)."""
        alg = self.algorithm
        G, KG = grads["G"], grads.get("KG")
        mu, decay = self.momentum, self.decay
        fused = not decay and not self.nesterov and KG is None
        if not mu and fused:  # plain GD: Z <- Z - lr K G in one product
            self.Z.addmm_(self.K, G, alpha=-lr)
            self.S.add_(G, alpha=-lr)
            self._update_a(grads, lr)
            return
        if mu and fused and self.Bz is not None:  # heavy ball: B_Z <- mu B_Z + K G
            self.Bz.addmm_(self.K, G, beta=mu)
            self.P.mul_(mu).add_(G)
            self.b1, self.b2 = mu * self.b1, mu * self.b2
            self.Z.add_(self.Bz, alpha=-lr)
            self.S.add_(self.P, alpha=-lr)
            self.w1, self.w2 = self.w1 - lr * self.b1, self.w2 - lr * self.b2
            self._update_a(grads, lr)
            return
        if KG is None:
            KG = self.K @ G
        if decay:
            gz, gs = KG.add(self.Z, alpha=decay), G.add(self.S, alpha=decay)
            g1, g2 = decay * self.w1, decay * self.w2
        else:
            gz, gs, g1, g2 = KG, G, 0.0, 0.0
        if mu:
            if self.Bz is None:
                self.Bz, self.P = gz.clone(), gs.clone()
                self.Bb = alg.params_["W"].new_zeros(alg.params_["W"].shape)
                self.b1, self.b2 = g1, g2
            else:
                self.Bz.mul_(mu).add_(gz)
                self.P.mul_(mu).add_(gs)
                self.b1, self.b2 = mu * self.b1 + g1, mu * self.b2 + g2
            if self.nesterov:
                dz, ds = gz.add(self.Bz, alpha=mu), gs.add(self.P, alpha=mu)
                d1, d2 = g1 + mu * self.b1, g2 + mu * self.b2
            else:
                dz, ds, d1, d2 = self.Bz, self.P, self.b1, self.b2
        else:
            dz, ds, d1, d2 = gz, gs, g1, g2
        self.Z.add_(dz, alpha=-lr)
        self.S.add_(ds, alpha=-lr)
        self.w1, self.w2 = self.w1 - lr * d1, self.w2 - lr * d2
        self._update_a(grads, lr)

    def _update_a(self, grads, lr):
        """The plain optimizer's step on ``a``, then the periodic refresh."""
        alg = self.algorithm
        if "a" in grads:
            alg.optimizer_.lr = lr
            with alg._torch.no_grad():
                alg.optimizer_.step(alg.params_, {"a": grads["a"]})
        if (alg.n_steps + 1) % alg.gram_refresh == 0:
            self.refresh()
