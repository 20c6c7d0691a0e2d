"""The parameters of the gradient-descent family, declared once.

``gd`` (torch) and ``gd_numpy`` share :data:`COMMON_PARAMS`; ``gd`` adds
:data:`TORCH_PARAMS` (device and how the gradient is computed).
"""

from dataclasses import dataclass

from core.errors import ConfigError
from core.params import Param

__all__ = ["OPTIMIZERS", "TRAINED", "DTYPES", "COMMON_PARAMS", "TORCH_PARAMS"]

OPTIMIZERS = ("sgd", "momentum", "adamw")
TRAINED = ("both", "first")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class _UnitPair(Param):
    """A list of exactly two floats in [0, 1) (AdamW's betas)."""

    def allowed(self):
        return "a list of two floats in [0, 1)"

    def check(self, owner, value):
        value = super().check(owner, value)
        if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
            raise ConfigError(f"{owner}.{self.name} must be {self.allowed()}; got {value!r}")
        return value


COMMON_PARAMS = (
    Param(
        "optimizer",
        str,
        "sgd",
        "sgd: plain GD; momentum: heavy ball (torch's SGD momentum); adamw: torch's AdamW",
        choices=OPTIMIZERS,
    ),
    Param("lr", float, 0.01, "learning rate (step size)", low=0, low_open=True, resume_safe=True),
    Param(
        "momentum",
        float,
        0.9,
        "momentum coefficient (optimizer='momentum')",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    ),
    Param("nesterov", bool, False, "Nesterov variant of momentum (optimizer='momentum')"),
    Param(
        "weight_decay",
        float,
        0.0,
        "L2 term added to the gradient (sgd, momentum) or decoupled decay (adamw)",
        low=0,
    ),
    _UnitPair(
        "betas", list, [0.9, 0.999], "AdamW moment coefficients (beta1, beta2)", item_type=float
    ),
    Param("eps", float, 1e-8, "AdamW denominator epsilon", low=0),
    Param(
        "train", str, "both", "both: train W and a; first: train W, keep a fixed", choices=TRAINED
    ),
    Param(
        "dtype",
        str,
        "float64",
        "floating-point precision of the parameters and data",
        choices=DTYPES,
    ),
)

TORCH_PARAMS = (
    Param("device", str, "cpu", "torch device", choices=("cpu", "cuda")),
    Param(
        "gradient",
        str,
        "autograd",
        "autograd: torch autograd; closed_form: the closed-form gradient of core.model_torch",
        choices=("autograd", "closed_form"),
    ),
)
