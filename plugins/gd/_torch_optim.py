"""torch.optim optimizers for ``gd``, and their state as arrays + JSON.

Imports torch at its top: :mod:`plugins.gd._torch` imports it lazily.
"""

import copy

import numpy as np
import torch

__all__ = ["make_torch_optimizer", "optimizer_state_to_plain", "optimizer_state_from_plain"]


def make_torch_optimizer(tensors, config):
    """The ``torch.optim`` optimizer a ``gd`` config section selects.

    Parameters
    ----------
    tensors : list of Tensor
        The trained parameters (leaf tensors with ``requires_grad``).
    config : dict
        Resolved parameters of :data:`plugins.gd._params.COMMON_PARAMS`.
    """
    name, lr, wd = config["optimizer"], config["lr"], config["weight_decay"]
    if name == "adamw":
        return torch.optim.AdamW(
            tensors, lr=lr, betas=tuple(config["betas"]), eps=config["eps"], weight_decay=wd
        )
    if name == "momentum":
        return torch.optim.SGD(
            tensors,
            lr=lr,
            momentum=config["momentum"],
            nesterov=config["nesterov"],
            weight_decay=wd,
        )
    return torch.optim.SGD(tensors, lr=lr, weight_decay=wd)


def optimizer_state_to_plain(state_dict):
    """Flatten ``optimizer.state_dict()`` into nested dicts of arrays and JSON values.

    Tensors become numpy copies, integer parameter ids become string keys and tuples
    become lists, so :func:`core.store.pack_state` can store the result.
    """
    state = {
        str(i): {k: _to_plain(v) for k, v in entry.items()}
        for i, entry in state_dict["state"].items()
    }
    groups = [{k: _to_plain(v) for k, v in group.items()} for group in state_dict["param_groups"]]
    return {"state": state, "param_groups": groups}


def optimizer_state_from_plain(plain):
    """Inverse of :func:`optimizer_state_to_plain`: a dict ``load_state_dict`` accepts."""
    state = {
        int(i): {
            k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v
            for k, v in entry.items()
        }
        for i, entry in plain["state"].items()
    }
    groups = copy.deepcopy(plain["param_groups"])
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def _to_plain(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value
