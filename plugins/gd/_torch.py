"""``gd``: full-batch gradient descent in torch (imported lazily; no torch.optim optimizer)."""

from ._base import CachedGradientDescent
from ._params import COMMON_PARAMS, TORCH_PARAMS

__all__ = ["GD"]


class GD(CachedGradientDescent):
    """Full-batch gradient descent in torch: SGD, momentum (heavy ball / Nesterov) or AdamW.

    One forward and one backward pass per step, by autograd or by the closed-form
    gradient of :func:`core.model_torch.loss_and_grad`. The update is that of
    ``torch.optim.SGD`` / ``torch.optim.AdamW``, done by :mod:`plugins.gd._torch_optim`
    with the same tensor operations: the first ``torch.optim`` optimizer of a process
    imports torch's compiler stack, seconds of start-up. Weight decay is the optimizer's: an L2 term
    for SGD and momentum, decoupled for AdamW. With ``train="first"`` the second layer
    ``a`` stays at its initial value.
    """

    name = "gd"
    params = COMMON_PARAMS + TORCH_PARAMS
    requires = ("torch",)
    extra = "torch"

    def _build(self, problem):
        import torch

        from core.model_torch import check_device

        from ._torch_optim import make_torch_optimizer

        check_device(self.device)
        self._torch = torch
        options = {"dtype": getattr(torch, self.dtype), "device": self.device}
        self.X = torch.as_tensor(problem.X, **options)
        self.Y = torch.as_tensor(problem.Y, **options)
        self.W = torch.tensor(problem.W0, **options)
        self.a = torch.tensor(problem.a0, **options)
        if self.gradient == "autograd":
            for name in self._trained():
                getattr(self, name).requires_grad_(True)
        self.optimizer_ = make_torch_optimizer(self._trained(), self.config)

    def _evaluate(self):
        from core import model_torch

        torch = self._torch
        problem = self.problem
        names = self._trained()
        if self.gradient == "closed_form":
            value, grad_W, grad_a = model_torch.loss_and_grad(
                self.X, self.Y, self.W, self.a, problem.scaling, problem.loss
            )
            grads = dict(zip(("W", "a"), (grad_W, grad_a)))
            grads = [grads[name] for name in names]
        else:
            value = model_torch.loss(self.X, self.Y, self.W, self.a, problem.scaling, problem.loss)
            grads = torch.autograd.grad(value, [getattr(self, name) for name in names])
            value = value.detach()
        return float(value), dict(zip(names, grads))

    def _update(self, grads):
        with self._torch.no_grad():
            self.optimizer_.step({"W": self.W, "a": self.a}, grads)

    def _grad_norm(self, grads):
        return float(sum(self._torch.sum(g * g) for g in grads.values()) ** 0.5)

    def state(self):
        """``{"W": (d, m), "a": (m,) or (m, k)}`` as numpy copies."""
        return {"W": _numpy(self.W), "a": _numpy(self.a)}

    def state_dict(self):
        """Step count, parameters and optimizer buffers (``torch.optim``'s layout)."""
        return {
            "n_steps": self.n_steps,
            "params": self.state(),
            "optimizer": self.optimizer_.state_dict(),
        }

    def load_state_dict(self, state):
        torch = self._torch
        with torch.no_grad():
            for name in ("W", "a"):
                getattr(self, name).copy_(torch.as_tensor(state["params"][name]))
        self.optimizer_.load_state_dict(state["optimizer"], {"W": self.W, "a": self.a})
        self.n_steps = int(state["n_steps"])
        self._cache = None


def _numpy(tensor):
    return tensor.detach().cpu().numpy().copy()
