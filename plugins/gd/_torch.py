"""``gd``: full-batch gradient descent with torch.optim (torch imported lazily)."""

from core.errors import ConfigError

from ._base import CachedGradientDescent
from ._params import COMMON_PARAMS, TORCH_PARAMS

__all__ = ["GD"]


class GD(CachedGradientDescent):
    """Full-batch gradient descent with torch.optim: SGD, momentum (heavy ball / Nesterov) or AdamW.

    One forward and one backward pass per step, by autograd or by the closed-form
    gradient of :func:`core.model_torch.loss_and_grad` (assigned to ``.grad``). Weight
    decay is the optimizer's: an L2 term for SGD and momentum, decoupled for AdamW.
    With ``train="first"`` the second layer ``a`` stays at its initial value.
    """

    name = "gd"
    params = COMMON_PARAMS + TORCH_PARAMS
    requires = ("torch",)
    extra = "torch"

    def _build(self, problem):
        import torch

        from ._torch_optim import make_torch_optimizer

        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "algorithm.device is 'cuda' but torch finds no CUDA device "
                f"(torch {torch.__version__}); set algorithm.device='cpu'"
            )
        self._torch = torch
        options = {"dtype": getattr(torch, self.dtype), "device": self.device}
        self.X = torch.as_tensor(problem.X, **options)
        self.Y = torch.as_tensor(problem.Y, **options)
        self.W = torch.tensor(problem.W0, **options)
        self.a = torch.tensor(problem.a0, **options)
        trained = [getattr(self, name) for name in self._trained()]
        for tensor in trained:
            tensor.requires_grad_(True)
        self.optimizer_ = make_torch_optimizer(trained, self.config)

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
        for name, grad in grads.items():
            getattr(self, name).grad = grad
        self.optimizer_.step()
        self.optimizer_.zero_grad(set_to_none=True)

    def _grad_norm(self, grads):
        return float(sum(self._torch.sum(g * g) for g in grads.values()) ** 0.5)

    def state(self):
        """``{"W": (d, m), "a": (m,) or (m, k)}`` as numpy copies."""
        return {"W": _numpy(self.W), "a": _numpy(self.a)}

    def state_dict(self):
        from ._torch_optim import optimizer_state_to_plain

        return {
            "n_steps": self.n_steps,
            "params": self.state(),
            "optimizer": optimizer_state_to_plain(self.optimizer_.state_dict()),
        }

    def load_state_dict(self, state):
        from ._torch_optim import optimizer_state_from_plain

        torch = self._torch
        with torch.no_grad():
            for name in ("W", "a"):
                getattr(self, name).copy_(torch.as_tensor(state["params"][name]))
        self.optimizer_.load_state_dict(optimizer_state_from_plain(state["optimizer"]))
        self.n_steps = int(state["n_steps"])
        self._cache = None


def _numpy(tensor):
    return tensor.detach().cpu().numpy().copy()
