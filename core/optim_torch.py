"""``torch.optim`` optimizers and learning-rate schedulers behind relulab's contracts.

:class:`TorchOptimizerAdapter` gives any ``torch.optim.Optimizer`` the interface of
:class:`core.components.Optimizer`'s ``create``: named parameters, a settable ``lr``,
``step(params, grads)`` from gradients the algorithm computed (or from a closure, for
optimizers that re-evaluate the objective), and a ``state_dict`` of numpy arrays and
JSON values that :func:`core.store.save_state` writes without pickle.
:class:`TorchScheduleAdapter` runs a ``torch.optim.lr_scheduler`` scheduler on a
one-parameter optimizer of learning rate 1 and reads its rate as a factor.

Checkpoints: ``torch.optim``'s ``state_dict()`` holds tensors, tuples and Python
numbers; :func:`plain` turns tensors into numpy copies and tuples into lists,
:func:`tensors` turns the arrays back into tensors, and
``torch.optim.Optimizer.load_state_dict`` casts them to the parameters' dtype and
device (``step`` counts keep theirs). Only the state the optimizer accumulates is
restored: per-parameter buffers, and the entries of a parameter group that are not
constructor arguments (Prodigy's ``d``, schedule-free's ``k`` and ``weight_sum``...);
hyperparameters stay those of the config, the learning rate that of the algorithm.

Constructing the first ``torch.optim`` optimizer of a process imports torch's
compiler stack (seconds): this module is imported only when such an optimizer or a
schedule is used (``sgd``, ``momentum`` and ``adamw`` avoid it,
:mod:`plugins.gd._torch_optim`).
"""

import inspect

import numpy as np
import torch

from .errors import ConfigError, PluginError

__all__ = ["TorchOptimizerAdapter", "TorchScheduleAdapter", "plain", "tensors"]


def plain(value):
    """``value`` with tensors as numpy copies and tuples as lists (nested dicts, lists)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def tensors(value):
    """Inverse of :func:`plain` for state entries: numpy arrays become tensors."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, dict):
        return {k: tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tensors(v) for v in value]
    return value


def _one_line(exc):
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _init_keys(cls):
    try:
        return set(inspect.signature(cls.__init__).parameters) - {"self"}
    except (TypeError, ValueError):
        return set()


class TorchOptimizerAdapter:
    """A ``torch.optim.Optimizer`` over named tensors (see :class:`core.components.Optimizer`).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Built over the tensors of ``names``, in that order.
    names : sequence of str
    label : str
        How messages name it (``"optimizer 'Adam'"``).
    needs_closure : bool
        Whether its ``step`` takes a closure (L-BFGS, schedule-free closure variants).
    sparse_grads : bool
        Hand it gradients as sparse tensors (``torch.optim.SparseAdam``).
    """

    def __init__(self, optimizer, names, label, needs_closure=False, sparse_grads=False):
        self.optimizer = optimizer
        self.names = tuple(names)
        self.label = label
        self.needs_closure = bool(needs_closure)
        self.sparse_grads = bool(sparse_grads)
        self._params = [p for group in optimizer.param_groups for p in group["params"]]
        if len(self._params) != len(self.names):
            raise PluginError(
                f"{label} holds {len(self._params)} tensors for the {len(self.names)} "
                f"parameters {', '.join(self.names)}"
            )
        self._init_keys = _init_keys(type(optimizer))

    @classmethod
    def wrap(cls, plugin, params, lr):
        """Adapt ``plugin.torch_optimizer(list of tensors, lr)`` (an Optimizer plugin).

        A constructor that rejects its arguments (a bad beta, a tensor shape the
        optimizer does not support) raises a one-line :class:`ConfigError`.
        """
        label = f"optimizer {plugin.name!r}"
        try:
            optimizer = plugin.torch_optimizer(list(params.values()), lr)
        except (ValueError, TypeError, RuntimeError) as exc:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in params.items())
            raise ConfigError(
                f"{label} cannot be built with its options for {shapes}: {_one_line(exc)}"
            ) from None
        return cls(
            optimizer,
            params,
            label,
            needs_closure=getattr(plugin, "needs_closure", False),
            sparse_grads=getattr(plugin, "sparse_grads", False),
        )

    # -- learning rate ----------------------------------------------------------------
    @property
    def lr(self):
        """The learning rate of the next update (of the first parameter group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value):
        for group in self.optimizer.param_groups:
            group["lr"] = value

    # -- updates ----------------------------------------------------------------------
    def _bind(self, params):
        """Follow the algorithm's tensors if it replaced them (moving the buffers)."""
        current = [params[name] for name in self.names]
        if all(a is b for a, b in zip(current, self._params)):
            return
        state = self.optimizer.state
        for old, new in zip(self._params, current):
            if old in state:
                state[new] = state.pop(old)
        position = 0
        for group in self.optimizer.param_groups:
            size = len(group["params"])
            group["params"] = current[position : position + size]
            position += size
        if isinstance(getattr(self.optimizer, "_params", None), list):
            self.optimizer._params = list(current)  # L-BFGS keeps its own list of them
        self._params = current

    def _set_grads(self, grads):
        for name, param in zip(self.names, self._params):
            grad = grads.get(name)
            if grad is not None and self.sparse_grads:
                grad = grad.to_sparse()
            param.grad = grad

    def step(self, params, grads, closure=None):
        """Update ``params`` in place from ``grads`` (or from ``closure`` when it needs one).

        Parameters
        ----------
        params : dict of str -> Tensor
        grads : dict of str -> Tensor
            Gradients of the trained names (unused by optimizers that need a closure).
        closure : callable, optional
            ``closure() -> (value, grads)``: the objective and its gradients at the
            current ``params``.
        """
        self._bind(params)
        try:
            if self.needs_closure:
                if closure is None:
                    raise PluginError(
                        f"{self.label} evaluates the objective within its step and needs "
                        "a closure, which this algorithm does not give"
                    )

                def torch_closure():
                    with torch.enable_grad():
                        value, new_grads = closure()
                    self._set_grads(new_grads)
                    return value

                self.optimizer.step(torch_closure)
            else:
                self._set_grads(grads)
                self.optimizer.step()
        finally:
            for param in self._params:
                param.grad = None

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self):
        """``torch.optim``'s ``state_dict()`` made plain (numpy arrays, lists, numbers)."""
        return plain(self.optimizer.state_dict())

    def load_state_dict(self, state, params):
        """Restore the buffers and accumulated group entries of :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            A :meth:`state_dict` (after :func:`core.store.save_state` and back).
        params : dict of str -> Tensor
            The parameters the buffers belong to.
        """
        self._bind(params)
        current = self.optimizer.state_dict()
        saved_groups = state.get("param_groups", [])
        if len(saved_groups) != len(current["param_groups"]):
            raise PluginError(
                f"{self.label}: the checkpoint has {len(saved_groups)} parameter groups, "
                f"the optimizer {len(current['param_groups'])}"
            )
        groups = []
        for group, saved in zip(current["param_groups"], saved_groups):
            merged = dict(group)
            for key, value in saved.items():
                if key not in self._init_keys and key != "params":
                    merged[key] = value  # accumulated, not configured
            groups.append(merged)
        restored = {int(k): tensors(v) for k, v in state.get("state", {}).items()}
        self.optimizer.load_state_dict({"state": restored, "param_groups": groups})
        # torch casts floating buffers to their parameter's dtype; keep the saved dtypes,
        # which an uninterrupted run has (NAdam's float32 mu_product on float64 weights)
        for index, saved in restored.items():
            live = self.optimizer.state[self._params[index]]
            for key, value in saved.items():
                if torch.is_tensor(value) and torch.is_tensor(live.get(key)):
                    if live[key].dtype != value.dtype:
                        live[key] = live[key].to(value.dtype)


class TorchScheduleAdapter:
    """A ``torch.optim.lr_scheduler`` scheduler read as a factor (see
    :class:`core.components.Schedule`).

    The scheduler drives a one-parameter SGD of learning rate 1, so its rate is the
    factor, and its absolute options (``eta_min``, ``min_lr``, ``base_lr``,
    ``max_lr``) are in units of the algorithm's learning rate.

    Parameters
    ----------
    make : callable
        ``make(optimizer) -> scheduler``.
    label : str
        How messages name it.
    """

    def __init__(self, make, label):
        self.label = label
        self._param = torch.zeros(1)
        self._optimizer = torch.optim.SGD([self._param], lr=1.0)
        try:
            self.scheduler = make(self._optimizer)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{label} cannot be built with its options: {_one_line(exc)}"
            ) from None
        self._optimizer.step()  # no gradient: no update; tells the scheduler the order is right
        self._plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    @classmethod
    def wrap(cls, plugin):
        """Adapt ``plugin.torch_scheduler(optimizer)`` (a Schedule plugin)."""
        return cls(plugin.torch_scheduler, f"schedule {plugin.name!r}")

    @property
    def factor(self):
        """The multiplier of the algorithm's learning rate at the current step."""
        return float(self._optimizer.param_groups[0]["lr"])

    def step(self, loss=None):
        """Advance one step; ``loss`` feeds ``ReduceLROnPlateau``."""
        try:
            if self._plateau:
                if loss is None:
                    raise PluginError(f"{self.label} needs the loss of each step")
                self.scheduler.step(float(loss))
            else:
                self.scheduler.step()
        except ValueError as exc:  # OneCycleLR stepped past total_steps, say
            raise PluginError(f"{self.label}: {_one_line(exc)}") from None

    def state_dict(self):
        """The scheduler's state (plain) and the current factor."""
        return {"scheduler": plain(self.scheduler.state_dict()), "factor": self.factor}

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(dict(state["scheduler"]))
        for group in self._optimizer.param_groups:
            group["lr"] = float(state["factor"])
