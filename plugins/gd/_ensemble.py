r"""Seeds of one sweep cell trained as one batched program.

:func:`step_together` advances members of ``gd`` (or ``gd_numpy``) that share their
config but the seed (so: equal shapes, optimizer and schedule) by one step each. Their
data, parameters and optimizer buffers are stacked along a leading *run axis* of
length ``B`` (``X`` ``(B, n, d)``, ``W`` ``(B, d, m)``, ``a`` ``(B, m)`` or
``(B, m, k)``, momentum / Adam moments of the same shapes), and one step is one call
of the backend's batched closed-form loss and gradient (``torch.bmm`` /
``np.matmul`` over the run axis) plus one optimizer update of the stacked tensors:
the Python cost of a step is paid once for all members.

How state lives
---------------
An :class:`Ensemble` owns the stacked tensors; each member's ``params_`` and optimizer
buffers are *views* of its slice, so ``state()``, ``state_dict()``, ``loss()`` and
``scalars()`` of a member read the current values between steps with no copying, and
a member stepped on its own (the loop steps the last member alone) updates its slice
in place. After a batched step every member's cache holds its loss and a view of its
slice of the batched gradient, as after its own ``loss()``.

A member that stops (a stopper, a non-finite loss, a failing logger) is simply absent
from the next call: the ensemble no longer *serves* that list of members and a new one
is stacked from the members' current views (one copy per change of membership), so
the finished members cost nothing afterwards. Members at different step counts (a
sweep resumed after they were checkpointed at different steps) or on ``gradient =
"gram"`` are stepped one by one, and so are members whose configs or shapes differ
(only a sweep cell's seeds are stacked) and members whose optimizer cannot hold its
state stacked (one without ``stack_state``, ``view_state`` and ``state_signature``,
as :class:`plugins.gd._torch_optim.TorchSGD` has: a ``torch.optim`` optimizer, say)
or that have a schedule plugin (each member's schedule follows its own losses).

Equality with training one by one
---------------------------------
The optimizer update is the members' own optimizer class applied to the stacked
tensors: the same element-wise operations in the same order, so bit-equal. The
gradient is the closed form of :mod:`core.model` / :mod:`core.model_torch` with
the same operations batched. In numpy ``np.matmul`` runs one BLAS call per slice, so an
ensemble of ``gd_numpy`` members is bit-equal to training them one by one. In torch,
``bmm`` gives each slice the bits of ``mm`` for matrix products, but not of ``mv`` for
the matrix-vector products of a one-output network (``relu(Z) a`` and
``relu(Z)^T R``), and members configured with ``gradient="autograd"`` get the closed form
gradient in the ensemble: equal to float rounding (about 1e-15 relative per step).
"""

from collections.abc import Mapping

__all__ = ["Ensemble", "step_together"]


def step_together(members):
    """Advance each of ``members`` (set-up instances of one class) by one step.

    Parameters
    ----------
    members : list of CachedGradientDescent
        Set-up members with equal configs but for their seed (equal shapes).
    """
    members = list(members)
    first = members[0]
    ensemble = first._ensemble
    if ensemble is not None and ensemble.serves(members):  # checked when it was stacked
        ensemble.step()
        return
    if (
        getattr(first, "gradient", None) == "gram"
        or not hasattr(first.optimizer_, "stack_state")
        or getattr(first, "schedule_", None) is not None
        or len({m.n_steps for m in members}) > 1
        or len(members) == 1
    ):
        for member in members:
            member.step()
        return
    if any(
        m.config != first.config
        or m.params_["W"].shape != first.params_["W"].shape
        or m.X.shape != first.X.shape
        for m in members
    ):
        for member in members:  # not one sweep cell: nothing to stack
            member.step()
        return
    Ensemble(members).step()


class Ensemble:
    """Stacked data, parameters and optimizer state of members trained together.

    Parameters
    ----------
    members : list of CachedGradientDescent
        Set up, equal shapes and configs, equal ``n_steps``. Their ``params_`` and
        optimizer buffers become views of the stacked arrays.

    Attributes
    ----------
    X : array, shape (B, n, d)
    Y : array, shape (B, n) or (B, n, k)
    params : dict
        ``W`` ``(B, d, m)``, ``a`` ``(B, m)`` or ``(B, m, k)``.
    optimizer
        An optimizer of the members' class holding the stacked buffers.
    """

    def __init__(self, members):
        first = members[0]
        self.ops = ops = type(first)._ops()
        self.members = list(members)
        self.names = first._trained()
        self.X = ops.stack([m.X for m in members])
        self.Y = ops.stack([m.Y for m in members])
        self.params = ops.stack_params([m.params_ for m in members])
        self.optimizer = first._new_optimizer(self.params)
        self.optimizer.stack_state([m.optimizer_ for m in members])
        self.evaluate = ops.Evaluator(self.names, first.problem.scaling, first.problem.loss)
        for i, member in enumerate(members):
            member.params_ = {k: v[i] for k, v in self.params.items()}
            member._ensemble, member._ensemble_index = self, i
        self._signature = None
        self._link()
        self.steps = [m.n_steps for m in members]
        self.grads = self.caches = self._sliced = None
        self._trained_params = {k: self.params[k] for k in self.names}

    def serves(self, members):
        """Whether ``members`` are exactly this ensemble's, untouched since its last step."""
        return len(members) == len(self.members) and all(
            a is b and a._ensemble is self and a.n_steps == s
            for a, b, s in zip(members, self.members, self.steps)
        )

    def _link(self):
        """Point the members' optimizer buffers at their slices (after buffers appear)."""
        signature = self.optimizer.state_signature()
        if signature != self._signature:
            for i, member in enumerate(self.members):
                member.optimizer_.view_state(self.optimizer, i)
            self._signature = signature

    def _evaluate(self, need_grad, X=None, Y=None):
        values, grads = self.evaluate(
            self.X if X is None else X,
            self.Y if Y is None else Y,
            self.params["W"],
            self.params["a"],
            need_grad,
        )
        for member in self.members:
            member.n_evaluations += 1
        return values, grads

    def _set_caches(self, values, grads):
        if grads is None:
            slices = [None] * len(values)
        else:
            if grads is not self._sliced:  # an evaluator may return the same dict each step
                self._sliced, self._slices = grads, [_Slice(grads, i) for i in range(len(values))]
            slices = self._slices
        self.caches = caches = list(zip(values, slices))
        for member, cache in zip(self.members, caches):
            member._cache = cache
        self.grads = grads
        self._norms = None

    def grad_norm(self, member):
        """The gradient norm of ``member``'s cached point, computed for all members at
        once; None when ``member``'s cache is not this ensemble's."""
        i = member._ensemble_index
        if self.grads is None or member._cache is not self.caches[i]:
            return None
        if self._norms is None:
            self._norms = self.evaluate.norms(self.grads)
        return self._norms[i]

    def _current_grads(self):
        members = self.members
        if self.caches is not None and all(m._cache is c for m, c in zip(members, self.caches)):
            if self.grads is not None:
                return self.grads
        if all(m._cache is not None and m._cache[1] is not None for m in members):
            return {k: self.ops.stack([m._cache[1][k] for m in members]) for k in self.names}
        values, grads = self._evaluate(True)
        self._set_caches(values, grads)
        return grads

    def _minibatch_grads(self):
        batches = [m.shuffle_.next_batch() for m in self.members]
        if len({len(b) for b in batches}) > 1:  # members at different places of an epoch
            own = [m._evaluate(b, True)[1] for m, b in zip(self.members, batches)]
            for member in self.members:
                member.n_evaluations += 1
            return {k: self.ops.stack([g[k] for g in own]) for k in self.names}
        X, Y = (self.ops.take(A, batches) for A in (self.X, self.Y))
        return self._evaluate(True, X, Y)[1]

    def step(self):
        """One step of every member: gradient, update, then loss (and gradient) cached."""
        first = self.members[0]
        full = first.shuffle_ is None
        grads = self._current_grads() if full else self._minibatch_grads()
        self.optimizer.lr = first.current_lr()
        if self.ops.update(self.optimizer, self._trained_params, grads):
            self._signature = None  # buffers moved: the members' views are made again
        self._link()
        for member in self.members:
            member.n_steps += 1
        self.steps = [m.n_steps for m in self.members]
        self._set_caches(*self._evaluate(full))


class _Slice(Mapping):
    """Member ``i``'s gradients, views of the stacked ones made when read."""

    def __init__(self, grads, i):
        self.grads, self.i = grads, i

    def __getitem__(self, key):
        return self.grads[key][self.i]

    def __iter__(self):
        return iter(self.grads)

    def __len__(self):
        return len(self.grads)
