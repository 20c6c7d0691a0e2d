"""The two-layer ReLU network's math, written once in :mod:`core.model`.

Every public function and constant of :mod:`core.model` (see its docstring for the
model, the losses and the closed-form gradient), under a stable name.

Examples
--------
>>> import numpy as np
>>> from relulab import model
>>> X = np.array([[1.0, 1.0], [-1.0, 1.0]])         # two points, bias column last
>>> W = np.array([[1.0], [0.0]]); a = np.array([2.0])
>>> model.forward(X, W, a)
array([2., 0.])
"""

from core.model import *  # noqa: F403
from core.model import __all__  # noqa: F401
