r"""SGD, heavy-ball / Nesterov momentum and AdamW on torch tensors, without ``torch.optim``.

Why not ``torch.optim``: constructing the first ``torch.optim`` optimizer imports
torch's compiler stack (``torch._dynamo``, sympy...), about 2.5 s on the 2-core
development machine, as long as ``import torch`` itself, for a two-tensor update. The
classes below do the same update with the same tensor operations, in the same order,
as the single-tensor code path of ``torch.optim.SGD`` (dampening 0) and
``torch.optim.AdamW`` (no amsgrad), which is the one torch takes on CPU; on CUDA torch
defaults to its multi-tensor path, equal to float rounding. The formulas are written
out in :mod:`plugins.gd._numpy_optim`.

Each optimizer updates a dict of named tensors in place (call it under
``torch.no_grad()``) from a dict of gradients with the same names, the trained ones.
``state_dict()`` has the layout of ``torch.optim``'s ``state_dict()`` made plain, as
``gd`` checkpoints held it before: ``{"state": {"0": {...}, "1": {...}}, "param_groups":
[{...}]}`` with numpy arrays for tensors and lists for tuples, parameter indices in
training order (``W`` then ``a``), ``momentum_buffer`` for momentum, ``step``,
``exp_avg``, ``exp_avg_sq`` for AdamW. So a checkpoint written through ``torch.optim``
resumes here, and the reverse.
``load_state_dict`` restores the buffers and step counts only: the hyperparameters
are those of the config (a resume with ``algorithm.lr=...`` uses the new rate, as
``gd_numpy`` does).

This module imports torch at its top: the optimizer plugins ``sgd``, ``momentum`` and
``adamw`` (:mod:`plugins.optimizers`) import it when they create an optimizer.
"""

import numpy as np
import torch

__all__ = ["TorchSGD", "TorchAdamW"]


class _TorchOptimizer:
    """Shared state handling: per-parameter state dicts keyed by parameter name."""

    #: Names of the per-parameter state entries that are tensors.
    tensor_keys = ()

    def __init__(self, names):
        self.names = tuple(names)
        self.state = {}

    def param_group(self):
        """Hyperparameters in ``torch.optim``'s ``param_groups[0]`` layout."""
        raise NotImplementedError

    def state_dict(self):
        """Buffers as numpy copies, in ``torch.optim``'s layout (see the module docstring)."""
        state = {}
        for i, name in enumerate(self.names):
            if name in self.state:
                state[str(i)] = {key: _plain(value) for key, value in self.state[name].items()}
        group = {**self.param_group(), "params": list(range(len(self.names)))}
        return {"state": state, "param_groups": [group]}

    # -- ensembles (plugins.gd._ensemble) ----------------------------------------------
    def stack_state(self, optimizers):
        """Hold the buffers of ``optimizers`` (same class, same step counts) stacked
        along a new leading axis."""
        self.state = {}
        for name, entry in optimizers[0].state.items():
            self.state[name] = {
                k: torch.stack([o.state[name][k] for o in optimizers])
                if isinstance(v, torch.Tensor)
                else v
                for k, v in entry.items()
            }

    def view_state(self, ensemble, i):
        """Make this optimizer's buffers views of slice ``i`` of ``ensemble``'s."""
        self.state = {
            name: {k: v[i] if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
            for name, entry in ensemble.state.items()
        }

    def state_signature(self):
        """What changes when buffers appear or the step counts advance."""
        return tuple((name, tuple(entry), entry.get("step")) for name, entry in self.state.items())

    def load_state_dict(self, plain, params):
        """Restore the buffers of :meth:`state_dict` onto the dtype and device of ``params``.

        Parameters
        ----------
        plain : dict
            A :meth:`state_dict` (also one of ``torch.optim`` made plain).
        params : dict of str -> Tensor
            The parameters the buffers belong to.
        """
        self.state = {}
        for key, entry in plain.get("state", {}).items():
            name = self.names[int(key)]
            p = params[name]
            restored = {}
            for k, v in entry.items():
                if k in self.tensor_keys:
                    restored[k] = torch.tensor(np.asarray(v), dtype=p.dtype, device=p.device)
                elif k == "step":
                    restored[k] = int(round(float(np.asarray(v))))
            if restored:
                self.state[name] = restored


class TorchSGD(_TorchOptimizer):
    """``torch.optim.SGD`` (dampening 0): plain, heavy-ball or Nesterov momentum.

    Parameters
    ----------
    names : sequence of str
        Trained parameters, in order (their indices in :meth:`state_dict`).
    lr : float
    momentum : float
        0 for plain gradient descent.
    nesterov : bool
    weight_decay : float
        L2 coefficient added to the gradient.
    """

    tensor_keys = ("momentum_buffer",)

    def __init__(self, names, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(names)
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.weight_decay = weight_decay

    def param_group(self):
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "dampening": 0,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
            "maximize": False,
            "foreach": None,
            "differentiable": False,
            "fused": None,
        }

    def step(self, params, grads):
        """Update ``params[name]`` in place for every ``name`` in ``grads``."""
        for name, grad in grads.items():
            param = params[name]
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            if self.momentum != 0:
                state = self.state.get(name)
                if state is None:
                    buf = grad.detach().clone()
                    self.state[name] = {"momentum_buffer": buf}
                else:
                    buf = state["momentum_buffer"]
                    buf.mul_(self.momentum).add_(grad, alpha=1)
                grad = grad.add(buf, alpha=self.momentum) if self.nesterov else buf
            param.add_(grad, alpha=-self.lr)


class TorchAdamW(_TorchOptimizer):
    """``torch.optim.AdamW`` (no amsgrad): bias-corrected moments, decoupled decay.

    Parameters
    ----------
    names : sequence of str
        Trained parameters, in order (their indices in :meth:`state_dict`).
    lr : float
    betas : (float, float)
    eps : float
    weight_decay : float
        Decoupled: parameters are multiplied by ``1 - lr * weight_decay`` each step.
    """

    tensor_keys = ("exp_avg", "exp_avg_sq")

    def __init__(self, names, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(names)
        self.lr, self.eps, self.weight_decay = lr, eps, weight_decay
        self.beta1, self.beta2 = (float(b) for b in betas)

    def param_group(self):
        return {
            "lr": self.lr,
            "betas": [self.beta1, self.beta2],
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": False,
            "maximize": False,
            "foreach": None,
            "capturable": False,
            "differentiable": False,
            "fused": None,
            "decoupled_weight_decay": True,
        }

    def step(self, params, grads):
        """Update ``params[name]`` in place for every ``name`` in ``grads``."""
        beta1, beta2, lr = self.beta1, self.beta2, self.lr
        for name, grad in grads.items():
            param = params[name]
            state = self.state.get(name)
            if state is None:
                state = self.state[name] = {
                    "step": 0,
                    "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                }
            state["step"] += 1
            step = float(state["step"])
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            if self.weight_decay != 0:
                param.mul_(1 - lr * self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = lr / (1 - beta1**step)
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, int):  # AdamW's step: a 0-d float array as torch.optim's (exact)
        return np.array(value, dtype=np.float64)
    return value
