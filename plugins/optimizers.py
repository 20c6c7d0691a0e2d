"""Optimizer and learning-rate schedule plugins.

Optimizers (kind ``optimizer``, :class:`core.components.Optimizer`)
-------------------------------------------------------------------
``sgd``, ``momentum``, ``adamw``
    relulab's own torch updates (:mod:`plugins.gd._torch_optim`): the same tensor
    operations as ``torch.optim.SGD`` / ``torch.optim.AdamW`` without constructing a
    ``torch.optim`` optimizer, which imports torch's compiler stack (seconds of
    start-up). ``momentum`` is heavy ball (``nesterov`` optional); ``adamw`` has
    decoupled decay and, unlike ``torch.optim.AdamW``, ``weight_decay=0`` by default.
    Their checkpoints have ``torch.optim``'s layout.
every class of ``torch.optim`` by its class name
    ``SGD``, ``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``, ``LBFGS``... (:data:`TORCH_OPTIMIZERS`):
    the options are the keyword arguments of the class's signature, read from the
    installed torch (types from its annotations and defaults; an unknown keyword is a
    one-line error naming the valid ones), except ``params``, ``lr`` (the
    algorithm's) and ``differentiable``. ``LBFGS`` re-evaluates the objective within
    a step (a closure); ``SparseAdam`` gets its gradients as sparse tensors (a lazy
    Adam); ``Muon`` takes matrices only (train the first layer alone).
``Prodigy``, ``AdamWScheduleFree`` (extra ``relulab[optim]``)
    ``prodigyopt.Prodigy`` (learning-rate free: leave ``lr`` at 1) and
    ``schedulefree.AdamWScheduleFreeClosure`` (schedule-free AdamW; its parameters
    between steps are the averaged iterate, and each step evaluates the objective at
    the extrapolated point through a closure). Listed as unavailable, with the
    install command, when the package is missing.

Schedules (kind ``schedule``, :class:`core.components.Schedule`)
----------------------------------------------------------------
Every class of ``torch.optim.lr_scheduler`` whose arguments are data
(:data:`TORCH_SCHEDULES`: ``StepLR``, ``MultiStepLR``, ``ExponentialLR``,
``CosineAnnealingLR``, ``LinearLR``, ``OneCycleLR``, ``ReduceLROnPlateau``...), read as
a factor of the algorithm's learning rate (:class:`core.optim_torch.TorchScheduleAdapter`:
absolute options such as ``eta_min`` are in units of ``lr``). Arguments without a
default in torch (``StepLR``'s ``step_size``) must be set; the momentum cycling of
``CyclicLR`` / ``OneCycleLR`` is off (a schedule drives the learning rate only).
Classes whose arguments are functions or other schedulers (``LambdaLR``,
``MultiplicativeLR``, ``SequentialLR``, ``ChainedScheduler``) are left out.

Nothing here imports torch until a plugin's parameters or instances are needed, so
the registry and ``relulab plugins`` stay light; ``relulab plugins --json`` reads the
signatures (imports torch).

Examples
--------
>>> [p.name for p in MomentumOptimizer.params]
['momentum', 'nesterov', 'weight_decay']
>>> "Adam" in TORCH_OPTIMIZERS and "StepLR" in TORCH_SCHEDULES
True
"""

import ast
import importlib
import inspect
import re

from core.components import Optimizer, Schedule
from core.errors import ConfigError, PluginError
from core.hookspecs import hookimpl
from core.params import Param, UnitPair

__all__ = [
    "TORCH_OPTIMIZERS",
    "TORCH_SCHEDULES",
    "LEFT_OUT_SCHEDULES",
    "SGDOptimizer",
    "MomentumOptimizer",
    "AdamWOptimizer",
    "SignatureParams",
    "TorchOptimizer",
    "TorchSchedule",
    "signature_params",
]

TORCH_OPTIMIZERS = (
    "ASGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "LBFGS",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SGD",
    "SparseAdam",
)
"""The ``torch.optim`` classes offered by name (torch 2.13; a test compares with the
installed torch, so a new class is noticed)."""

TORCH_SCHEDULES = (
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "StepLR",
)
"""The ``torch.optim.lr_scheduler`` classes offered by name."""

LEFT_OUT_SCHEDULES = {
    "LambdaLR": "takes a function",
    "MultiplicativeLR": "takes a function",
    "SequentialLR": "takes other schedulers",
    "ChainedScheduler": "takes other schedulers",
    "LRScheduler": "a base class",
}
"""``torch.optim.lr_scheduler`` classes not offered, and why."""


# -- the fast built-ins ----------------------------------------------------------------
def _weight_decay(doc):
    return Param("weight_decay", float, 0.0, doc, low=0)


class SGDOptimizer(Optimizer):
    """Plain gradient descent (relulab's torch update, as torch.optim.SGD's; no torch.optim)."""

    name = "sgd"
    requires = ("torch",)
    extra = "torch"
    params = (_weight_decay("L2 coefficient added to the gradient"),)

    def create(self, params, lr):
        from plugins.gd._torch_optim import TorchSGD

        return TorchSGD(tuple(params), lr, weight_decay=self.weight_decay)


class MomentumOptimizer(Optimizer):
    """Heavy-ball or Nesterov momentum (relulab's torch update, as torch.optim.SGD's)."""

    name = "momentum"
    requires = ("torch",)
    extra = "torch"
    params = (
        Param(
            "momentum",
            float,
            0.9,
            "momentum coefficient",
            low=0,
            high=1,
            low_open=True,
            high_open=True,
        ),
        Param("nesterov", bool, False, "Nesterov variant"),
        _weight_decay("L2 coefficient added to the gradient"),
    )

    def create(self, params, lr):
        from plugins.gd._torch_optim import TorchSGD

        return TorchSGD(tuple(params), lr, self.momentum, self.nesterov, self.weight_decay)


class AdamWOptimizer(Optimizer):
    """AdamW, decoupled decay, no amsgrad (relulab's torch update, as torch.optim.AdamW's)."""

    name = "adamw"
    requires = ("torch",)
    extra = "torch"
    params = (
        UnitPair(
            "betas", list, [0.9, 0.999], "moment coefficients (beta1, beta2)", item_type=float
        ),
        Param("eps", float, 1e-8, "denominator epsilon", low=0),
        _weight_decay("decoupled decay: parameters times 1 - lr * weight_decay each update"),
    )

    def create(self, params, lr):
        from plugins.gd._torch_optim import TorchAdamW

        return TorchAdamW(tuple(params), lr, tuple(self.betas), self.eps, self.weight_decay)


# -- parameters read from a signature ------------------------------------------------
_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}
_COLLECTIONS = ("tuple", "list", "Tuple", "List", "Iterable", "Sequence")


def _split_top(text, sep):
    """Split ``text`` on ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _alternatives(text):
    """The alternatives of an annotation's text (``X | None``, ``Optional[X]``, ``Union[...]``)."""
    text = text.replace("typing.", "").replace("collections.abc.", "").strip()
    if text.startswith("Optional[") and text.endswith("]"):
        return [*_alternatives(text[len("Optional[") : -1]), "None"]
    if text.startswith("Union[") and text.endswith("]"):
        return [
            a for part in _split_top(text[len("Union[") : -1], ",") for a in _alternatives(part)
        ]
    parts = _split_top(text, "|")
    if len(parts) > 1:
        return [a for part in parts for a in _alternatives(part)]
    return [text] if text else []


def _scalar_types(alternatives):
    return {_SCALARS[a] for a in alternatives if a in _SCALARS}


def _pick(types):
    """One declared type for a set of scalar types (float absorbs int)."""
    for t in (float, int, str, bool):
        if t in types and (t is not bool or len(types) == 1):
            return t
    return None


def _from_default(default):
    """``(type, item_type)`` inferred from a default value, or None."""
    if isinstance(default, bool):
        return bool, None
    if isinstance(default, int):
        return (int, float), None  # unannotated ints are often rates (weight_decay=0)
    if isinstance(default, float):
        return float, None
    if isinstance(default, str):
        return str, None
    if isinstance(default, (tuple, list)):
        kinds = {type(v) for v in default}
        if kinds and kinds <= {int, float}:
            return list, float if float in kinds else int
        return list, None
    return None


def _arg_docs(doc):
    """``{argument: first line of its description}`` from a Google/torch-style docstring."""
    lines = (doc or "").splitlines()
    out = {}
    pattern = re.compile(r"^\s*([A-Za-z_]\w*)\s*\(([^()]*)\)\s*:\s*(.*)$")
    for i, line in enumerate(lines):
        match = pattern.match(line)
        if not match or match.group(1) in out:
            continue
        text = match.group(3).strip()
        if not text and i + 1 < len(lines):
            text = lines[i + 1].strip()
        if text:
            out[match.group(1)] = text
    return out


def signature_params(target, where, exclude=(), overrides=None):
    """Declared parameters for the keyword arguments of ``target``'s constructor.

    Types come from the annotations (``float | Tensor`` -> float, ``bool | None`` ->
    nullable bool, ``Literal['min', 'max']`` -> choices, ``tuple[float, float]`` ->
    list of float) or, without one, from the default; an argument without a default
    becomes a nullable parameter documented as required (checked when the plugin is
    built). Arguments of no expressible type (functions) are left out.

    Parameters
    ----------
    target : type
    where : str
        How docs name the target (``"torch.optim.Adam"``).
    exclude : iterable of str
        Arguments not offered (``params``, ``lr``...).
    overrides : dict of str -> Param, optional
        Declarations that replace the inferred ones.

    Returns
    -------
    params : tuple of core.params.Param
    """
    overrides = overrides or {}
    docs = _arg_docs(target.__doc__)
    out = []
    for name, arg in inspect.signature(target.__init__).parameters.items():
        if name == "self" or name in exclude:
            continue
        if arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            continue
        if name in overrides:
            out.append(overrides[name])
            continue
        param = _param(name, arg, docs.get(name) or f"keyword argument of {where}")
        if param is not None:
            out.append(param)
    return tuple(out)


def _param(name, arg, doc):
    required = arg.default is inspect.Parameter.empty
    default = None if required else arg.default
    annotation = arg.annotation
    text = ""
    if annotation is not inspect.Parameter.empty:
        text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    alternatives = _alternatives(text)
    nullable = required or default is None or "None" in alternatives
    choices, typ, item_type = None, None, None
    literals = [a for a in alternatives if a.startswith("Literal[")]
    if any("Callable" in a for a in alternatives):
        return None
    if literals:
        choices = tuple(ast.literal_eval("[" + literals[0][len("Literal[") : -1] + "]"))
        typ = str
    elif _pick(_scalar_types(alternatives)) is not None:
        typ = _pick(_scalar_types(alternatives))
    else:
        collections = [a for a in alternatives if a.split("[", 1)[0] in _COLLECTIONS]
        if collections:
            typ = list
            inner = collections[0].partition("[")[2].rstrip("]")
            items = [a for part in _split_top(inner, ",") for a in _alternatives(part)]
            if "None" not in items:
                item_type = _pick(_scalar_types(items))
        else:
            inferred = _from_default(default)
            if inferred is None:
                if not required:
                    return None
                typ = (int, float, str, bool, list)
            else:
                typ, item_type = inferred
    if isinstance(default, tuple):
        default = list(default)
    if typ is float and isinstance(default, int) and not isinstance(default, bool):
        default = float(default)
    kind = Param
    if required:
        kind, doc = _Required, f"required (no default in the signature): {doc}"
    return kind(name, typ, default, doc, choices=choices, item_type=item_type, nullable=nullable)


class _Required(Param):
    """An argument the signature has no default for: None until the config sets it."""


class SignatureParams(type):
    """Metaclass: the class's ``params`` are read from its target's signature on first use.

    The target (``cls.target()``) is imported then, not when the registry collects
    the class; without its package, ``params`` is empty (the plugin is unavailable).
    """

    @property
    def params(cls):
        cached = cls.__dict__.get("_params")
        if cached is None:
            try:
                target = cls.target()
            except (ImportError, PluginError):
                return ()
            cached = signature_params(
                target, cls.where(), cls.exclude, {p.name: p for p in cls.overrides}
            )
            cls._params = cached
        return cached


class _Wrapped:
    """What torch-class plugins share: the target class by module and class name."""

    module = None
    class_name = None
    exclude = ()
    overrides = ()

    @classmethod
    def where(cls):
        return f"{cls.module}.{cls.class_name}"

    @classmethod
    def target(cls):
        """The wrapped class (imports its module)."""
        module = importlib.import_module(cls.module)
        target = getattr(module, cls.class_name, None)
        if target is None:
            package = cls.module.split(".")[0]
            version = getattr(importlib.import_module(package), "__version__", "?")
            raise PluginError(
                f"{cls.kind} {cls.name!r}: {cls.module} ({package} {version}) has no "
                f"{cls.class_name}"
            )
        return target

    @classmethod
    def check(cls, params):
        """Arguments without a default in the signature must be set."""
        missing = [
            p.name for p in cls.params if isinstance(p, _Required) and params.get(p.name) is None
        ]
        if missing:
            raise ConfigError(
                f"{cls.kind} {cls.name!r} needs {', '.join(missing)} ({cls.where()} has "
                "no default for it); set it in the options"
            )

    def keywords(self):
        """The configured keyword arguments (required ones checked)."""
        values = {p.name: getattr(self, p.name) for p in type(self).params}
        type(self).check(values)
        return values


class TorchOptimizer(_Wrapped, Optimizer, metaclass=SignatureParams):
    """Base of the plugins wrapping a ``torch.optim.Optimizer`` subclass by name."""

    requires = ("torch",)
    extra = "torch"
    module = "torch.optim"
    exclude = ("params", "lr", "differentiable")
    sparse_grads = False

    def torch_optimizer(self, params, lr):
        return type(self).target()(params, lr=lr, **self.keywords())


class TorchSchedule(_Wrapped, Schedule, metaclass=SignatureParams):
    """Base of the plugins wrapping a ``torch.optim.lr_scheduler`` class by name."""

    requires = ("torch",)
    extra = "torch"
    module = "torch.optim.lr_scheduler"
    exclude = (
        "optimizer",
        "last_epoch",
        "verbose",
        "scale_fn",
        "cycle_momentum",
        "base_momentum",
        "max_momentum",
    )

    def torch_scheduler(self, optimizer):
        target = type(self).target()
        keywords = self.keywords()
        if "cycle_momentum" in inspect.signature(target.__init__).parameters:
            keywords["cycle_momentum"] = False
        return target(optimizer, **keywords)


def _torch_optimizer_class(name):
    attributes = {
        "__doc__": f"torch.optim.{name}: options are its keyword arguments (lr is the algorithm's)",
        "__module__": __name__,
        "name": name,
        "class_name": name,
        "needs_closure": name == "LBFGS",
        "sparse_grads": name == "SparseAdam",
    }
    return SignatureParams(name, (TorchOptimizer,), attributes)


def _torch_schedule_class(name):
    attributes = {
        "__doc__": f"torch.optim.lr_scheduler.{name} as a factor of the algorithm's lr",
        "__module__": __name__,
        "name": name,
        "class_name": name,
    }
    return SignatureParams(name, (TorchSchedule,), attributes)


class Prodigy(TorchOptimizer):
    """prodigyopt.Prodigy: Adam with learning-rate-free step sizes (leave lr at 1)."""

    name = "Prodigy"
    requires = ("torch", "prodigyopt")
    extra = "optim"
    module = "prodigyopt"
    class_name = "Prodigy"
    overrides = (
        Param(
            "beta3",
            float,
            None,
            "coefficient of the step-size estimate's running averages (None: sqrt(beta2))",
            nullable=True,
        ),
    )


class AdamWScheduleFree(TorchOptimizer):
    """Schedule-free AdamW (schedulefree.AdamWScheduleFreeClosure): no schedule needed."""

    name = "AdamWScheduleFree"
    requires = ("torch", "schedulefree")
    extra = "optim"
    module = "schedulefree"
    class_name = "AdamWScheduleFreeClosure"
    needs_closure = True


_TORCH_OPTIMIZER_CLASSES = tuple(_torch_optimizer_class(n) for n in TORCH_OPTIMIZERS)
_TORCH_SCHEDULE_CLASSES = tuple(_torch_schedule_class(n) for n in TORCH_SCHEDULES)


@hookimpl
def relulab_optimizers():
    return [
        SGDOptimizer,
        MomentumOptimizer,
        AdamWOptimizer,
        *_TORCH_OPTIMIZER_CLASSES,
        Prodigy,
        AdamWScheduleFree,
    ]


@hookimpl
def relulab_schedules():
    return list(_TORCH_SCHEDULE_CLASSES)
