r"""SGD, heavy-ball momentum and AdamW in numpy, with torch.optim's exact formulas.

Each optimizer updates a dict of named arrays in place from a dict of gradients of the
same names, and keeps its state as plain arrays (``state_dict`` / ``load_state_dict``).

SGD with momentum :math:`\mu`, weight decay :math:`\lambda` (``torch.optim.SGD``,
dampening 0):

.. math::

    g \leftarrow g + \lambda p, \qquad
    b \leftarrow \mu b + g \ (b = g \text{ at the first step}), \qquad
    p \leftarrow p - \eta \, (g + \mu b \text{ if Nesterov else } b).

AdamW (``torch.optim.AdamW``, step count :math:`t`):

.. math::

    p \leftarrow (1 - \eta\lambda) p, \quad
    m \leftarrow m + (1 - \beta_1)(g - m), \quad
    v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
    p \leftarrow p - \frac{\eta}{1 - \beta_1^t}
        \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}.

References
----------
Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019.
"""

import numpy as np

__all__ = ["NumpySGD", "NumpyAdamW", "make_numpy_optimizer"]


class NumpySGD:
    """``torch.optim.SGD`` (dampening 0): plain, heavy-ball or Nesterov momentum.

    Parameters
    ----------
    lr : float
    momentum : float
        0 for plain gradient descent.
    nesterov : bool
    weight_decay : float
        L2 coefficient added to the gradient.
    """

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.weight_decay = weight_decay
        self.buffers = {}

    def step(self, params, grads):
        """Update ``params[name]`` in place for every ``name`` in ``grads``."""
        for name, g in grads.items():
            p = params[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                buf = self.buffers.get(name)
                if buf is None:
                    buf = self.buffers[name] = g.copy()
                else:
                    buf *= self.momentum
                    buf += g
                g = g + self.momentum * buf if self.nesterov else buf
            p -= self.lr * g

    def state_dict(self):
        return {"buffers": {k: v.copy() for k, v in self.buffers.items()}}

    def stack_state(self, optimizers):
        """Hold the buffers of ``optimizers`` stacked along a new leading axis."""
        first = optimizers[0].buffers
        self.buffers = {k: np.stack([o.buffers[k] for o in optimizers]) for k in first}

    def view_state(self, ensemble, i):
        """Make this optimizer's buffers views of slice ``i`` of ``ensemble``'s."""
        self.buffers = {k: v[i] for k, v in ensemble.buffers.items()}

    def state_signature(self):
        return tuple(self.buffers)

    def load_state_dict(self, state):
        self.buffers = {k: np.array(v) for k, v in state["buffers"].items()}


class NumpyAdamW:
    """``torch.optim.AdamW`` (no amsgrad): bias-corrected moments, decoupled decay.

    Parameters
    ----------
    lr : float
    betas : (float, float)
    eps : float
    weight_decay : float
        Decoupled: parameters are multiplied by ``1 - lr * weight_decay`` each step.
    """

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.lr, self.eps, self.weight_decay = lr, eps, weight_decay
        self.beta1, self.beta2 = betas
        self.t = 0
        self.exp_avg, self.exp_avg_sq = {}, {}

    def step(self, params, grads):
        """Update ``params[name]`` in place for every ``name`` in ``grads``."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1 - b1**self.t)
        bias_correction2_sqrt = (1 - b2**self.t) ** 0.5
        for name, g in grads.items():
            p = params[name]
            if name not in self.exp_avg:
                self.exp_avg[name] = np.zeros_like(p)
                self.exp_avg_sq[name] = np.zeros_like(p)
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            if self.weight_decay:
                p *= 1 - self.lr * self.weight_decay
            m += (1 - b1) * (g - m)
            v *= b2
            v += (1 - b2) * (g * g)
            denom = np.sqrt(v) / bias_correction2_sqrt + self.eps
            p -= step_size * (m / denom)

    def stack_state(self, optimizers):
        """Hold the moments of ``optimizers`` (equal step counts) stacked along a new axis."""
        self.t = optimizers[0].t
        for moments in ("exp_avg", "exp_avg_sq"):
            first = getattr(optimizers[0], moments)
            stacked = {k: np.stack([getattr(o, moments)[k] for o in optimizers]) for k in first}
            setattr(self, moments, stacked)

    def view_state(self, ensemble, i):
        """Make this optimizer's moments views of slice ``i`` of ``ensemble``'s."""
        self.t = ensemble.t
        self.exp_avg = {k: v[i] for k, v in ensemble.exp_avg.items()}
        self.exp_avg_sq = {k: v[i] for k, v in ensemble.exp_avg_sq.items()}

    def state_signature(self):
        return (self.t, tuple(self.exp_avg))

    def state_dict(self):
        return {
            "t": self.t,
            "exp_avg": {k: v.copy() for k, v in self.exp_avg.items()},
            "exp_avg_sq": {k: v.copy() for k, v in self.exp_avg_sq.items()},
        }

    def load_state_dict(self, state):
        self.t = int(state["t"])
        self.exp_avg = {k: np.array(v) for k, v in state["exp_avg"].items()}
        self.exp_avg_sq = {k: np.array(v) for k, v in state["exp_avg_sq"].items()}


def make_numpy_optimizer(config):
    """The optimizer a ``gd`` config section selects.

    Parameters
    ----------
    config : dict
        Resolved parameters of :data:`plugins.gd._params.COMMON_PARAMS`.
    """
    name = config["optimizer"]
    if name == "adamw":
        return NumpyAdamW(
            config["lr"], tuple(config["betas"]), config["eps"], config["weight_decay"]
        )
    momentum = config["momentum"] if name == "momentum" else 0.0
    nesterov = config["nesterov"] if name == "momentum" else False
    return NumpySGD(config["lr"], momentum, nesterov, config["weight_decay"])
