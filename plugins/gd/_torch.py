"""``gd``: gradient descent in torch, with its optimizer from the ``optimizer`` plugin kind.

Imported lazily (torch, and ``torch.optim`` only for optimizers that wrap it).
"""

import math

from ._base import CachedGradientDescent
from ._params import (
    SCHEDULE_PARAMS,
    TORCH_PARAMS,
    builtin_options,
    check_dynamics,
    check_schedule,
    optimizer_options,
    torch_params,
)

__all__ = ["GD"]


class GD(CachedGradientDescent):
    """Gradient descent in torch with any optimizer plugin (SGD, momentum, AdamW, torch.optim...).

    One forward and one backward pass per step, by autograd or by the closed-form
    gradient of :func:`core.model_torch.loss_and_grad`, or the NTK fast path
    ``gradient="gram"`` (:mod:`plugins.gd._gram`: full batch, ``sgd`` or ``momentum``).

    The optimizer is a plugin of kind ``optimizer`` (:mod:`plugins.optimizers`), built
    with ``problem.build("optimizer", optimizer, options).create(params, lr)``:

    - ``sgd``, ``momentum`` (heavy ball / Nesterov) and ``adamw``: the updates of
      ``torch.optim.SGD`` / ``torch.optim.AdamW`` done by
      :mod:`plugins.gd._torch_optim` with the same tensor operations, without
      constructing a ``torch.optim`` optimizer (whose first construction in a
      process imports torch's compiler stack, seconds of start-up). Their options
      are the flat keys ``momentum``, ``nesterov``, ``betas``, ``eps`` and
      ``weight_decay`` (or, equivalently, ``optimizer_options``). Weight decay is
      an L2 term for SGD and momentum, decoupled for AdamW.
    - any ``torch.optim`` class by name (``Adam``, ``RMSprop``, ``Adagrad``,
      ``SGD``, ``LBFGS``...), ``Prodigy``, ``AdamWScheduleFree`` or a third-party
      plugin: options (weight decay included) in ``optimizer_options``, e.g.
      ``algorithm.optimizer=Adam algorithm.optimizer_options.amsgrad=True``. An
      optimizer that evaluates the objective within its step (``LBFGS``,
      ``AdamWScheduleFree``) gets a closure of the step's loss (the same minibatch
      for every evaluation of a step).

    The learning rate of an update is ``lr`` times the ``lr_schedule`` (``constant`` or
    ``step``), or ``lr`` times the factor of a ``schedule`` plugin (kind ``schedule``:
    every ``torch.optim.lr_scheduler`` class with data arguments, options in
    ``schedule_options``), stepped once per update and fed the full training loss at
    the point the update started from (what ``ReduceLROnPlateau`` watches); the two
    are alternatives (setting both is a config error). ``scalars()`` then report
    ``lr``. With ``train="first"`` the second layer ``a`` stays at its initial value.
    Seeds trained together share one batched program (:mod:`plugins.gd._ensemble`)
    when the optimizer can stack its state (``sgd``, ``momentum``, ``adamw``) and no
    schedule plugin is set; otherwise they step one by one.
    """

    name = "gd"
    params = torch_params(CachedGradientDescent.params) + SCHEDULE_PARAMS + TORCH_PARAMS
    requires = ("torch",)
    extra = "torch"

    @classmethod
    def check(cls, params):
        """:func:`plugins.gd._params.check_dynamics`; then, for a built-in optimizer,
        the flat keys and ``optimizer_options`` are made to say the same
        (:func:`plugins.gd._params.optimizer_options`)."""
        check_dynamics(params)
        check_schedule(params)
        options = optimizer_options(params)
        declared = builtin_options().get(params["optimizer"])
        if declared is not None:
            params["optimizer_options"] = options
            params.update({k: options[k] for k in declared})

    @classmethod
    def _ops(cls):
        from ._batched_torch import OPS

        return OPS

    @property
    def W(self):
        """The first layer, a tensor of shape ``(d, m)`` (materialised on the gram path)."""
        return self._gram.W() if self._gram is not None else self.params_["W"]

    @property
    def a(self):
        """The second layer, a tensor of shape ``(m,)`` or ``(m, k)``."""
        return self.params_["a"]

    def _build(self, problem):
        import torch

        from core.model_torch import check_device

        check_device(self.device)
        self._torch = torch
        options = {"dtype": getattr(torch, self.dtype), "device": self.device}
        self.X = torch.as_tensor(problem.X, **options)
        self.Y = torch.as_tensor(problem.Y, **options)
        self.params_ = {
            "W": torch.tensor(problem.W0, **options),
            "a": torch.tensor(problem.a0, **options),
        }
        self.optimizer_kwargs_ = optimizer_options(self.config)
        self.optimizer_ = self._new_optimizer()
        self.schedule_ = None
        schedule = self.config.get("schedule")  # absent from configs saved before it
        if schedule is not None:
            check_schedule(self.config)
            self.schedule_ = problem.build(
                "schedule",
                schedule,
                self.config.get("schedule_options"),
                owner=f"algorithm (gd).schedule_options ({schedule})",
            ).create()
        self._gram = None
        if self.gradient == "gram":
            from ._gram import GramPath

            self._gram = GramPath(self)

    def _new_optimizer(self, params=None):
        """The optimizer plugin bound to the trained tensors of ``params`` (default
        ``params_``; an ensemble passes its stacked ones)."""
        params = self.params_ if params is None else params
        plugin = self.problem.build(
            "optimizer",
            self.optimizer,
            self.optimizer_kwargs_,
            owner=f"algorithm (gd).optimizer_options ({self.optimizer})",
        )
        return plugin.create({name: params[name] for name in self._trained()}, self.lr)

    def _lr_factor(self):
        return None if self.schedule_ is None else self.schedule_.factor

    def step(self):
        if self.schedule_ is None:
            super().step()
            return
        loss = self._current(need_grad=self.shuffle_ is None)[0]  # where the update starts
        super().step()
        if math.isfinite(loss):
            self.schedule_.step(loss)

    def _evaluate(self, indices, need_grad):
        if self._gram is not None:
            return self._gram.evaluate(need_grad)
        from core import model_torch

        torch = self._torch
        problem = self.problem
        names = self._trained()
        X, Y = (self.X, self.Y) if indices is None else (self.X[indices], self.Y[indices])
        W, a = self.params_["W"], self.params_["a"]
        if not need_grad:
            with torch.no_grad():
                value = model_torch.loss(X, Y, W, a, problem.scaling, problem.loss)
            return float(value), None
        if self.gradient == "closed_form":
            value, grad_W, grad_a = model_torch.loss_and_grad(
                X, Y, W, a, problem.scaling, problem.loss
            )
            grads = dict(zip(("W", "a"), (grad_W, grad_a)))
            grads = [grads[name] for name in names]
        else:
            leaves = {k: v.detach().requires_grad_(k in names) for k, v in self.params_.items()}
            value = model_torch.loss(X, Y, leaves["W"], leaves["a"], problem.scaling, problem.loss)
            grads = torch.autograd.grad(value, [leaves[name] for name in names])
            value = value.detach()
        return float(value), dict(zip(names, grads))

    def _update(self, grads, lr):
        if self._gram is not None:
            self._gram.update(grads, lr)
            return
        self.optimizer_.lr = lr
        with self._torch.no_grad():
            self.optimizer_.step(self.params_, grads)

    def _update_with_closure(self, indices, lr):
        """One update of an optimizer that evaluates the loss itself (on ``indices``)."""

        def closure():
            value, grads = self._evaluate(indices, True)
            self.n_evaluations += 1
            return value, grads

        self.optimizer_.lr = lr
        with self._torch.no_grad():
            self.optimizer_.step(self.params_, {}, closure)

    def _grad_norm(self, grads):
        if self._gram is not None:
            return self._gram.grad_norm(grads)
        return float(sum(self._torch.sum(g * g) for g in grads.values()) ** 0.5)

    def state(self):
        """``{"W": (d, m), "a": (m,) or (m, k)}`` as numpy copies."""
        if self._gram is not None:
            self._gram.refresh()
        return {"W": _numpy(self.params_["W"]), "a": _numpy(self.params_["a"])}

    def state_dict(self):
        """That of :class:`CachedGradientDescent`, with the schedule plugin's state."""
        state = super().state_dict()
        if self.schedule_ is not None:
            state["schedule"] = self.schedule_.state_dict()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if self.schedule_ is not None and "schedule" in state:
            self.schedule_.load_state_dict(state["schedule"])

    def _optimizer_state(self):
        """Buffers in ``torch.optim``'s layout (the gram path materialises W's)."""
        if self._gram is not None:
            return self._gram.optimizer_state()
        return self.optimizer_.state_dict()

    def _load(self, state):
        torch = self._torch
        options = {"dtype": getattr(torch, self.dtype), "device": self.device}
        params = {k: torch.tensor(state["params"][k], **options) for k in ("W", "a")}
        if hasattr(self.optimizer_, "stack_state"):
            self.params_ = params  # they may have been views of an ensemble's stacked ones
        else:  # a torch.optim optimizer holds the tensors (L-BFGS in a list of its own)
            with torch.no_grad():
                for name, value in params.items():
                    self.params_[name].copy_(value)
        self.optimizer_.load_state_dict(state["optimizer"], self.params_)
        if self._gram is not None:
            self._gram.reset()


def _numpy(tensor):
    return tensor.detach().cpu().numpy().copy()
