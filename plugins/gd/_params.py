"""The parameters of the gradient-descent family, declared once.

``gd`` (torch) and ``gd_numpy`` share :data:`COMMON_PARAMS` (the optimizers, also used by
``proxpoint``) and :data:`DYNAMICS_PARAMS` (minibatches and the step-size schedule); ``gd``
adds :data:`TORCH_PARAMS` (device and how the gradient is computed).

Optimizers
----------
``gd_numpy`` has its own closed-form ``sgd``, ``momentum`` and ``adamw``
(``optimizer`` is one of :data:`OPTIMIZERS`). ``gd`` takes its optimizer from the
``optimizer`` plugin kind (:mod:`plugins.optimizers`): :func:`torch_params` makes its
``optimizer`` a plugin name and adds ``optimizer_options``. The flat keys
``momentum``, ``nesterov``, ``betas``, ``eps`` and ``weight_decay`` stay the options
of the three built-in names (the configs and checkpoints of before are unchanged);
:func:`optimizer_options` merges them with ``optimizer_options`` and refuses them,
set away from their defaults, with any other optimizer (whose weight decay, betas...
are its own options).
"""

from dataclasses import replace

from core.errors import ConfigError
from core.params import Param, UnitPair

__all__ = [
    "OPTIMIZERS",
    "TRAINED",
    "DTYPES",
    "SCHEDULES",
    "GRADIENTS",
    "COMMON_PARAMS",
    "DYNAMICS_PARAMS",
    "TORCH_PARAMS",
    "FLAT_OPTIONS",
    "SCHEDULE_PARAMS",
    "check_dynamics",
    "check_schedule",
    "torch_params",
    "builtin_options",
    "optimizer_options",
]

OPTIMIZERS = ("sgd", "momentum", "adamw")
TRAINED = ("both", "first")
DTYPES = ("float32", "float64")
SCHEDULES = ("constant", "step")
GRADIENTS = ("autograd", "closed_form", "gram")
FLAT_OPTIONS = ("momentum", "nesterov", "betas", "eps", "weight_decay")
"""The flat keys that are the options of the built-in optimizers (:data:`OPTIMIZERS`)."""


COMMON_PARAMS = (
    Param(
        "optimizer",
        str,
        "sgd",
        "sgd: plain GD; momentum: heavy ball (torch's SGD momentum); adamw: torch's AdamW "
        "(gd_numpy: these three only; gd: any optimizer plugin)",
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
        "L2 term added to the gradient (sgd, momentum) or decoupled decay (adamw); "
        "other optimizers of gd take theirs from optimizer_options",
        low=0,
    ),
    UnitPair(
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
        "autograd: torch autograd; closed_form: the closed-form gradient of core.model_torch; "
        "gram: the NTK fast path (full batch, sgd or momentum; see plugins.gd._gram)",
        choices=GRADIENTS,
    ),
    Param(
        "gram_refresh",
        int,
        200,
        "gradient='gram': recompute Z = X W exactly from W every this many steps",
        low=1,
    ),
)

DYNAMICS_PARAMS = (
    Param(
        "batch_size",
        int,
        None,
        "points per step, reshuffled (from the seed) every epoch; None: full batch",
        low=1,
        nullable=True,
    ),
    Param(
        "lr_schedule",
        str,
        "constant",
        "constant: lr throughout; step: lr * lr_gamma^(number of lr_milestones <= step)",
        choices=SCHEDULES,
    ),
    Param(
        "lr_milestones",
        list,
        [],
        "lr_schedule='step': increasing step counts at which lr is multiplied by lr_gamma",
        item_type=int,
    ),
    Param(
        "lr_gamma",
        float,
        0.1,
        "lr_schedule='step': the decay factor",
        low=0,
        low_open=True,
    ),
)


def check_dynamics(params, owner="algorithm"):
    """Cross-parameter checks of :data:`DYNAMICS_PARAMS` and ``gradient='gram'``.

    Raises a one-line :class:`ConfigError` naming the key.
    """
    milestones = params.get("lr_milestones", [])
    if any(s < 1 for s in milestones) or any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise ConfigError(
            f"{owner}.lr_milestones must be strictly increasing positive step counts; "
            f"got {milestones!r}"
        )
    if params.get("lr_schedule") == "step" and not milestones:
        raise ConfigError(
            f"{owner}.lr_milestones must not be empty when {owner}.lr_schedule='step'"
        )
    if params.get("gradient") == "gram":
        if params["optimizer"] not in ("sgd", "momentum"):
            raise ConfigError(
                f"{owner}.gradient='gram' needs {owner}.optimizer in {{'sgd', 'momentum'}}; "
                f"got {params['optimizer']!r}"
            )
        if params.get("batch_size") is not None:
            raise ConfigError(
                f"{owner}.gradient='gram' needs full batches ({owner}.batch_size=None); "
                f"got {params['batch_size']!r}"
            )


def torch_params(params):
    """``gd``'s declaration from the shared one: ``optimizer`` names an optimizer plugin
    and ``optimizer_options`` (right after it) holds that plugin's parameters.

    Parameters
    ----------
    params : tuple of Param
        Containing :data:`COMMON_PARAMS`' ``optimizer``.
    """
    out = []
    for p in params:
        if p.name != "optimizer":
            out.append(p)
            continue
        out.append(
            replace(
                p,
                choices=None,
                plugin_kind="optimizer",
                doc="an optimizer plugin: sgd, momentum, adamw (relulab's fast updates, options "
                "in the flat keys below) or any other: a torch.optim class name (Adam, "
                "LBFGS...), Prodigy, AdamWScheduleFree... (options in optimizer_options)",
            )
        )
        out.append(
            Param(
                "optimizer_options",
                dict,
                {},
                "parameters of the optimizer plugin, lr excepted (see --help-plugin); "
                "for sgd, momentum and adamw the flat keys say the same",
                options_of="optimizer",
            )
        )
    return tuple(out)


SCHEDULE_PARAMS = (
    Param(
        "schedule",
        str,
        None,
        "a learning-rate schedule plugin (StepLR, CosineAnnealingLR, ReduceLROnPlateau...), "
        "stepped once per update: lr times its factor; None: none (lr_schedule applies)",
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
)
"""``gd``'s schedule plugin (kind ``schedule``), the alternative to ``lr_schedule``."""


def check_schedule(params, owner="algorithm"):
    """``lr_schedule`` and ``schedule`` are alternatives: a one-line :class:`ConfigError`
    when both are set."""
    if params.get("schedule") is not None and params.get("lr_schedule", "constant") != "constant":
        raise ConfigError(
            f"{owner}.lr_schedule={params['lr_schedule']!r} and {owner}.schedule="
            f"{params['schedule']!r} both set the learning rate; keep one "
            f"({owner}.lr_schedule='constant' or {owner}.schedule=None)"
        )


def builtin_options():
    """``{name: option names}`` of the built-in optimizers (from their plugins)."""
    from plugins.optimizers import AdamWOptimizer, MomentumOptimizer, SGDOptimizer

    return {
        cls.name: {p.name: p.default for p in cls.params}
        for cls in (SGDOptimizer, MomentumOptimizer, AdamWOptimizer)
    }


_FLAT_DEFAULTS = {p.name: p.default for p in COMMON_PARAMS if p.name in FLAT_OPTIONS}


def optimizer_options(params, owner="algorithm"):
    """The options ``gd`` builds its optimizer plugin with.

    For ``sgd``, ``momentum`` and ``adamw``, each option is the flat key (``momentum``,
    ``weight_decay``...) where it is set away from its default, else the entry of
    ``optimizer_options``: a value set differently in both places is a
    :class:`ConfigError`. For any other optimizer, ``optimizer_options`` as given;
    a flat key set away from its default is then a :class:`ConfigError` (it would
    be ignored).

    Parameters
    ----------
    params : dict
        ``gd``'s parameters (a saved config may lack ``optimizer_options``).
    owner : str
        How messages name the section.

    Returns
    -------
    options : dict
    """
    name = params["optimizer"]
    given = dict(params.get("optimizer_options") or {})
    declared = builtin_options().get(name)
    if declared is None:
        moved = [k for k in FLAT_OPTIONS if k in params and params[k] != _FLAT_DEFAULTS[k]]
        if moved:
            key = moved[0]
            raise ConfigError(
                f"{owner}.{key} is an option of the optimizers sgd, momentum and adamw "
                f"only; for {owner}.optimizer={name!r} set {owner}.optimizer_options."
                f"{key} (when {name} has it) and leave {owner}.{key} at its default "
                f"{_FLAT_DEFAULTS[key]!r}"
            )
        return given
    options = {}
    for key, default in declared.items():
        flat = params.get(key, default)
        nested = given.pop(key, default)
        if flat != default and nested != default and flat != nested:
            raise ConfigError(
                f"{owner}.{key}={flat!r} and {owner}.optimizer_options.{key}={nested!r} "
                "disagree; set one of them"
            )
        options[key] = flat if flat != default else nested
    options.update(given)  # keys the plugin does not declare: refused when it is built
    return options
