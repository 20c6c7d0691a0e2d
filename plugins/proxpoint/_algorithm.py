r"""The proximal-point algorithm on the first layer (Chizat & Bach 2018 discretisation).

Each outer step ``k`` approximately solves the proximal problem

.. math::

    W_{k+1} = \operatorname*{argmin}_W \; J_k(W), \qquad
    J_k(W) = L(W, a) + \frac{1}{\gamma} D(W, W_k),

where :math:`L` is the network's loss (:func:`core.model_torch.loss`) plus, when
``weight_decay`` is set, :math:`\tfrac{\lambda}{2}` times the squared norm of the
trained parameters, and :math:`D` is a distance plugin (``frobenius``,
``wasserstein``, ``sliced``...). The inner problem is solved by ``inner_steps``
updates of an optimizer plugin (:mod:`plugins.optimizers`: ``sgd``, ``momentum`` and
``adamw``, relulab's fast torch updates; every ``torch.optim`` class by name; Prodigy,
schedule-free AdamW; a third-party one), with its options in ``optimizer_options``;
its buffers persist across outer steps. An optimizer that evaluates the objective
within its step (``LBFGS``, ``AdamWScheduleFree``) gets a closure of :math:`J_k`. With
``train="both"`` the inner loop also moves the second layer ``a``, on which
:math:`D` does not depend (the distances compare neuron positions ``W``).

Inner loop of step ``k``, from :math:`W_0 = W_k` and :math:`J_0 = J_k(W_k) = L(W_k)` (a distance
vanishes at :math:`W = W_k`, its minimum, where its gradient is zero, so the first
update is an explicit gradient step of :math:`L`):

.. math::

    W_i = \mathrm{update}(W_{i-1}, \nabla J_k(W_{i-1}), \eta), \qquad
    J_i = J_k(W_i), \qquad i = 1, \dots, \texttt{inner\_steps},

- ``lr_decay`` (Gradient-Work's rule): whenever :math:`J_i \ge J_{i-1}` the learning
  rate :math:`\eta` is multiplied by ``lr_decay`` for the next updates; the factor
  is never reset (it carries over to later outer steps). Equality counts, so an inner
  loop that has stalled to rounding keeps shrinking the rate;
- ``schedule`` (a schedule plugin, :mod:`plugins.optimizers`; none by default):
  the rate of the updates of outer step ``k`` is also multiplied by the schedule's
  factor after ``k`` schedule steps (one per outer step, fed the step's loss);
- ``inner_tol``: the loop stops early when
  :math:`|J_{i-1} - J_i| < \texttt{inner\_tol}\,|J_{i-1}|` (0: never);
- a non-finite :math:`J_i` ends the loop and makes :meth:`ProximalPoint.loss`
  non-finite, so the run ends ``diverged`` with its trace.

Each inner update costs one forward and one backward pass (one more forward pass for
:math:`J_0`). The last evaluation gives the loss of :math:`W_{k+1}`.

Small :math:`\gamma`: with the Frobenius distance
:math:`D(W, W_k) = \|W - W_k\|_F^2 / (d m)`, the optimality condition
:math:`\nabla L(W) + 2 (W - W_k) / (\gamma d m) = 0` gives
:math:`W_{k+1} = W_k - \tfrac{\gamma d m}{2} \nabla L(W_k) + O(\gamma^2)`: one
proximal step is a gradient step of size :math:`\gamma d m / 2` up to
:math:`O(\gamma^2)`, and the proximal-point iterates follow the gradient flow.

Gradient-Work (``vmerckle/Gradient-Work``, ``algos/algo_prox.py``): its ``inneriter``
is ``inner_steps``, its ``LRdecay`` is ``lr_decay``, its distance term is
``(1/gamma) D`` as here. Its ``onlyTrainFirstLayer`` is inverted in the code (True
trains both layers): ``train="first"`` is what the name says. Its scheduler also
compares the first inner objective of a step with the last one of the previous step,
a different problem's objective; here the comparison stays within a step.

References
----------
L. Chizat, F. Bach, "On the global convergence of gradient descent for
over-parameterized models using optimal transport", NeurIPS 2018.
R. Jordan, D. Kinderlehrer, F. Otto, "The variational formulation of the
Fokker-Planck equation", SIAM J. Math. Anal. 29(1), 1998.
"""

import math
from dataclasses import replace

import numpy as np

from core.components import Algorithm
from core.errors import PluginError
from core.params import Param
from plugins.gd._params import COMMON_PARAMS

__all__ = ["ProximalPoint"]

_GD = {p.name: p for p in COMMON_PARAMS}

LEGACY_OPTIMIZER_KEYS = ("momentum", "nesterov", "betas", "eps")
"""Flat keys of configs saved before the optimizer kind (``optimizer_options`` since)."""


def _optimizer_params():
    """The inner optimizer, its learning rate and schedule, the trained parameters."""
    return (
        Param(
            "optimizer",
            str,
            "sgd",
            "inner optimizer (an optimizer plugin: sgd, momentum, adamw, a torch.optim "
            "class name such as Adam or LBFGS, ...)",
            plugin_kind="optimizer",
        ),
        Param(
            "optimizer_options",
            dict,
            {},
            "parameters of the optimizer plugin (see --help-plugin), lr excepted",
            options_of="optimizer",
        ),
        replace(_GD["lr"], default=0.01, doc="learning rate of the inner optimizer"),
        Param(
            "lr_decay",
            float,
            1.0,
            "multiply the inner learning rate by this each time the inner objective "
            "does not decrease (never reset; 1: constant rate)",
            low=0,
            high=1,
            low_open=True,
        ),
        Param(
            "schedule",
            str,
            None,
            "learning-rate schedule over outer steps (a schedule plugin such as StepLR; "
            "None: none)",
            nullable=True,
            plugin_kind="schedule",
        ),
        Param(
            "schedule_options",
            dict,
            {},
            "parameters of the schedule plugin (see --help-plugin)",
            options_of="schedule",
        ),
        replace(
            _GD["weight_decay"],
            doc="lambda: L includes lambda/2 * squared norm of the trained parameters",
        ),
        _GD["train"],
        _GD["dtype"],
    )


class ProximalPoint(Algorithm):
    r"""Proximal-point steps W <- argmin L(W) + D(W, W_k) / gamma, solved by an inner optimizer.

    See :mod:`plugins.proxpoint._algorithm` for the inner loop and its stopping and
    learning-rate rules. ``state()`` gives ``W`` and ``a``; ``scalars()`` the distance
    :math:`D(W_{k+1}, W_k)` and the objective :math:`J_k(W_{k+1})` at the end of the
    step, the inner updates done, the current inner learning rate and the distance's
    own scalars; ``records()`` one row per inner update: ``objective`` :math:`J_i`,
    ``distance`` :math:`D(W_i, W_k)` and the ``lr`` of that update.

    Parameters
    ----------
    gamma : float
        Proximal step size (the weight of the distance is ``1 / gamma``).
    inner_steps : int
        Most inner updates per outer step.
    inner_tol : float
        Relative change of the inner objective below which the inner loop stops.
    distance, distance_options : str, dict
        The distance plugin and its parameters.
    optimizer, optimizer_options : str, dict
        The inner optimizer plugin and its parameters.
    lr, lr_decay : float
        The inner learning rate and its decay rule (above).
    schedule, schedule_options : str or None, dict
        A schedule plugin over outer steps and its parameters.
    weight_decay, train, dtype
        As described above, and as for ``gd`` (:mod:`plugins.gd._params`).
    device : {"cpu", "cuda"}
    """

    name = "proxpoint"
    requires = ("torch",)
    extra = "torch"
    params = (
        Param(
            "gamma",
            float,
            1.0,
            "proximal step: J(W) = L(W) + D(W, W_k) / gamma",
            low=0,
            low_open=True,
            resume_safe=True,
        ),
        Param(
            "inner_steps",
            int,
            100,
            "most optimizer updates per proximal step (Gradient-Work's inneriter)",
            low=1,
            resume_safe=True,
        ),
        Param(
            "inner_tol",
            float,
            0.0,
            "stop the inner loop when the objective's relative change is below this (0: never)",
            low=0,
            resume_safe=True,
        ),
        Param(
            "distance",
            str,
            "frobenius",
            "distance D of the proximal step (a distance plugin)",
            plugin_kind="distance",
        ),
        Param(
            "distance_options",
            dict,
            {},
            "parameters of the distance plugin (see --help-plugin)",
            options_of="distance",
        ),
        *_optimizer_params(),
        Param("device", str, "cpu", "torch device", choices=("cpu", "cuda")),
    )

    # -- set-up --------------------------------------------------------------------
    def setup(self, problem):
        import torch

        from core.model_torch import check_device

        check_device(self.device)
        self._torch = torch
        self.problem = problem
        self.distance_ = problem.build(
            "distance",
            self.distance,
            self.distance_options,
            owner=f"algorithm (proxpoint).distance_options ({self.distance})",
        )
        self.distance_.setup(problem, problem.rng.spawn(1)[0])
        options = {"dtype": getattr(torch, self.dtype), "device": self.device}
        self.X = torch.as_tensor(problem.X, **options)
        self.Y = torch.as_tensor(problem.Y, **options)
        self.W = torch.tensor(problem.W0, **options)
        self.a = torch.tensor(problem.a0, **options)
        self.names_ = ("W", "a") if self.train == "both" else ("W",)
        for name in self.names_:
            getattr(self, name).requires_grad_(True)
        self.lr_factor = 1.0
        self.schedule_ = None
        if self.config.get("schedule") is not None:
            self.schedule_ = problem.build(
                "schedule",
                self.schedule,
                self.schedule_options,
                owner=f"algorithm (proxpoint).schedule_options ({self.schedule})",
            ).create()
        # weight decay is part of L; the optimizer's own (its options) comes on top
        self.optimizer_ = problem.build(
            "optimizer",
            self.optimizer,
            self._optimizer_options(problem),
            owner=f"algorithm (proxpoint).optimizer_options ({self.optimizer})",
        ).create({name: getattr(self, name) for name in self.names_}, self.inner_lr)
        self.n_steps = 0
        with torch.no_grad():
            loss, penalty = self._loss_terms()
        value = float(loss)
        self._last = {
            "loss": value,
            "objective": value + float(penalty),
            "distance": 0.0,
            "inner_iters": 0,
        }
        self._records = None

    def _optimizer_options(self, problem):
        """``optimizer_options``; for a config saved before them, its flat keys that
        the optimizer declares."""
        if "optimizer_options" in self.config:
            return self.optimizer_options
        registry = problem.registry
        if registry is None:
            from core.registry import get_registry

            registry = get_registry()
        declared = {p.name for p in registry.get("optimizer", self.optimizer).params}
        return {
            k: self.config[k] for k in LEGACY_OPTIMIZER_KEYS if k in declared & self.config.keys()
        }

    # -- the inner problem ---------------------------------------------------------
    @property
    def inner_lr(self):
        """The current inner learning rate: ``lr`` times the accumulated decay (times
        the schedule's factor when there is a schedule)."""
        lr = self.lr * self.lr_factor
        return lr if self.schedule_ is None else lr * self.schedule_.factor

    def _loss_terms(self):
        """``(loss, penalty)``: the network's loss and the weight-decay term, tensors."""
        from core import model_torch

        problem = self.problem
        loss = model_torch.loss(self.X, self.Y, self.W, self.a, problem.scaling, problem.loss)
        penalty = loss.new_zeros(())
        if self.weight_decay:
            squares = sum(getattr(self, name).square().sum() for name in self.names_)
            penalty = 0.5 * self.weight_decay * squares
        return loss, penalty

    def _objective(self, W_prev):
        """``(J, loss, D)`` at the current parameters: J a tensor, the others floats."""
        loss, penalty = self._loss_terms()
        if W_prev is None:  # W == W_k: the distance and its gradient vanish
            return loss + penalty, float(loss.detach()), 0.0
        D = self.distance_.value(self.W, W_prev, self.a)
        return loss + penalty + D / self.gamma, float(loss.detach()), float(D.detach())

    def step(self):
        """One proximal step: up to ``inner_steps`` optimizer updates of ``J_k``."""
        torch = self._torch
        params = {"W": self.W, "a": self.a}
        trained = [params[name] for name in self.names_]
        W_prev = self.W.detach().clone()
        J, loss, D = self._objective(None)
        previous = float(J.detach())
        rows = {"objective": [], "distance": [], "lr": []}
        optimizer = self.optimizer_
        needs_closure = getattr(optimizer, "needs_closure", False)

        def closure():  # J_k and its gradient at the current parameters
            value = self._objective(W_prev)[0]
            return value.detach(), dict(zip(self.names_, torch.autograd.grad(value, trained)))

        for _ in range(self.inner_steps):
            lr = optimizer.lr = self.inner_lr
            if needs_closure:
                with torch.no_grad():
                    optimizer.step(params, {}, closure)
            else:
                grads = torch.autograd.grad(J, trained)
                with torch.no_grad():
                    optimizer.step(params, dict(zip(self.names_, grads)))
            J, loss, D = self._objective(W_prev)
            current = float(J.detach())
            rows["objective"].append(current)
            rows["distance"].append(D)
            rows["lr"].append(lr)
            if not math.isfinite(current):
                break
            if current >= previous:
                self.lr_factor *= self.lr_decay
            converged = abs(previous - current) < self.inner_tol * abs(previous)
            previous = current
            if converged:
                break
        self.n_steps += 1
        self._records = {key: np.asarray(values, dtype=np.float64) for key, values in rows.items()}
        self._last = {
            "loss": loss if math.isfinite(current) else current,
            "objective": current,
            "distance": D,
            "inner_iters": len(rows["objective"]),
        }
        if self.schedule_ is not None and math.isfinite(current):
            self.schedule_.step(self._last["loss"])

    # -- the Algorithm contract ----------------------------------------------------
    def loss(self):
        """The network's loss at ``W, a`` (non-finite when the inner objective was)."""
        return self._last["loss"]

    def state(self):
        """``{"W": (d, m), "a": (m,) or (m, k)}`` as numpy copies."""
        return {"W": _numpy(self.W), "a": _numpy(self.a)}

    def scalars(self):
        out = {
            "distance": float(self._last["distance"]),
            "objective": float(self._last["objective"]),
            "inner_iters": int(self._last["inner_iters"]),
            "inner_lr": float(self.inner_lr),
        }
        if self.n_steps:
            extra = self.distance_.scalars()
            taken = out.keys() & extra.keys()
            if taken:
                raise PluginError(
                    f"distance {self.distance!r} reports {sorted(taken)[0]!r}, which "
                    "the algorithm (proxpoint) already reports"
                )
            out.update({key: float(value) for key, value in extra.items()})
        return out

    def records(self):
        return None if self._records is None else dict(self._records)

    def state_dict(self):
        """Parameters, optimizer buffers, learning-rate factor, the distance's and the
        schedule's state."""
        state = {
            "n_steps": self.n_steps,
            "params": self.state(),
            "optimizer": self.optimizer_.state_dict(),
            "lr_factor": float(self.lr_factor),
            "inner_lr": float(self.inner_lr),
            "last": dict(self._last),
            "distance": self.distance_.state_dict(),
        }
        if self.schedule_ is not None:
            state["schedule"] = self.schedule_.state_dict()
        return state

    def load_state_dict(self, state):
        torch = self._torch
        with torch.no_grad():
            for name in ("W", "a"):
                getattr(self, name).copy_(torch.as_tensor(state["params"][name]))
        self.optimizer_.load_state_dict(state["optimizer"], {"W": self.W, "a": self.a})
        self.lr_factor = float(state["lr_factor"])
        self.n_steps = int(state["n_steps"])
        last = state["last"]
        self._last = {
            "loss": float(last["loss"]),
            "objective": float(last["objective"]),
            "distance": float(last["distance"]),
            "inner_iters": int(last["inner_iters"]),
        }
        self.distance_.load_state_dict(state["distance"])
        if self.schedule_ is not None and "schedule" in state:
            self.schedule_.load_state_dict(state["schedule"])
        self._records = None


def _numpy(tensor):
    return tensor.detach().cpu().numpy().copy()
