"""Gradient descent on the two-layer ReLU network (full batch or minibatches).

Two algorithms with one parameter declaration (:mod:`plugins.gd._params`):

``gd``
    torch, with its optimizer from the ``optimizer`` plugin kind (:mod:`plugins.optimizers`):
    ``sgd`` / ``momentum`` / ``adamw`` (the updates of ``torch.optim``'s SGD and AdamW,
    done by the plugin, no ``torch.optim`` optimizer is built), any ``torch.optim``
    class by name, Prodigy, schedule-free AdamW or a third-party optimizer; gradient by
    autograd or by the closed form, on CPU or CUDA, float32 or float64 (needs
    ``relulab[torch]``).
``gd_numpy``
    pure numpy, closed-form gradient, its own ``sgd`` / ``momentum`` / ``adamw`` only;
    reproduces ``gd`` with those in float64.

Both evaluate the loss and gradient once per step (cached between ``loss()`` and the
next ``step()``), report ``grad_norm`` and continue exactly from ``state_dict()``.
Both also take ``batch_size`` (a seeded shuffle per epoch, :mod:`._minibatch`) and a
step-size schedule (:mod:`._schedule`), and are ``batchable``: a sweep's seeds of one
cell advance as one batched program (:mod:`._ensemble`). Both have the NTK fast path
``gradient="gram"`` (:mod:`._gram`). This package imports without torch.
"""

from core.hookspecs import hookimpl

from ._numpy import GDNumpy
from ._params import COMMON_PARAMS, TORCH_PARAMS
from ._torch import GD

__all__ = ["GD", "GDNumpy", "COMMON_PARAMS", "TORCH_PARAMS"]


@hookimpl
def relulab_algorithms():
    return [GD, GDNumpy]
