"""``gd``: gradient descent in torch (imported lazily; no torch.optim optimizer)."""

from ._base import CachedGradientDescent
from ._params import TORCH_PARAMS

__all__ = ["GD"]


class GD(CachedGradientDescent):
    """Gradient descent in torch: SGD, momentum (heavy ball / Nesterov) or AdamW.

    One forward and one backward pass per step, by autograd or by the closed-form
    gradient of :func:`core.model_torch.loss_and_grad`, or the NTK fast path
    ``gradient="gram"`` (:mod:`plugins.gd._gram`: full batch, SGD or momentum). The
    update is that of ``torch.optim.SGD`` / ``torch.optim.AdamW``, done by
    :mod:`plugins.gd._torch_optim` with the same tensor operations: the first
    ``torch.optim`` optimizer of a process imports torch's compiler stack, seconds of
    start-up. Weight decay is the optimizer's: an L2 term for SGD and momentum,
    decoupled for AdamW. With ``train="first"`` the second layer ``a`` stays at its
    initial value. Seeds trained together share one batched program
    (:mod:`plugins.gd._ensemble`).
    """

    name = "gd"
    params = CachedGradientDescent.params + TORCH_PARAMS
    requires = ("torch",)
    extra = "torch"

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
        self.optimizer_ = self._new_optimizer()
        self._gram = None
        if self.gradient == "gram":
            from ._gram import GramPath

            self._gram = GramPath(self)

    def _new_optimizer(self):
        from ._torch_optim import make_torch_optimizer

        return make_torch_optimizer(self._trained(), self.config)

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

    def _grad_norm(self, grads):
        if self._gram is not None:
            return self._gram.grad_norm(grads)
        return float(sum(self._torch.sum(g * g) for g in grads.values()) ** 0.5)

    def state(self):
        """``{"W": (d, m), "a": (m,) or (m, k)}`` as numpy copies."""
        if self._gram is not None:
            self._gram.refresh()
        return {"W": _numpy(self.params_["W"]), "a": _numpy(self.params_["a"])}

    def _optimizer_state(self):
        """Buffers in ``torch.optim``'s layout (the gram path materialises W's)."""
        if self._gram is not None:
            return self._gram.optimizer_state()
        return self.optimizer_.state_dict()

    def _load(self, state):
        torch = self._torch
        options = {"dtype": getattr(torch, self.dtype), "device": self.device}
        self.params_ = {k: torch.tensor(state["params"][k], **options) for k in ("W", "a")}
        self.optimizer_.load_state_dict(state["optimizer"], self.params_)
        if self._gram is not None:
            self._gram.reset()


def _numpy(tensor):
    return tensor.detach().cpu().numpy().copy()
