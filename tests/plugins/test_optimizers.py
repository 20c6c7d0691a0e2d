"""Optimizer and schedule plugins: every torch.optim class by name, the fast built-ins,
the optional extras, bad options, exact resume through the store, and proxpoint's use."""

import importlib
import json
import math
import sys

import numpy as np
import pytest

from core.components import Optimizer, Problem
from core.config import resolve
from core.errors import ConfigError, PluginError
from core.hookspecs import hookimpl
from core.params import Param, validate_params
from core.registry import Registry
from core.store import load_state, pack_state, save_state, unpack_state

torch = pytest.importorskip("torch")

import core.registry  # noqa: E402
from plugins.gd._torch_optim import TorchAdamW, TorchSGD  # noqa: E402
from plugins.optimizers import (  # noqa: E402
    LEFT_OUT_SCHEDULES,
    TORCH_OPTIMIZERS,
    TORCH_SCHEDULES,
)
from plugins.proxpoint import ProximalPoint  # noqa: E402

OPTIONAL = {"Prodigy": "prodigyopt", "AdamWScheduleFree": "schedulefree"}

LR = {
    "Adadelta": 50.0,
    "Adafactor": 1.0,
    "Adagrad": 0.5,
    "LBFGS": 1.0,
    "Muon": 0.2,
    "Prodigy": 1.0,
    "RAdam": 0.3,
    "Rprop": 0.01,
}
"""Learning rates at which each optimizer makes the quadratic's value 20 times smaller
in 50 updates (0.1 for the others)."""


class SignDescent(Optimizer):
    """A third-party optimizer written from scratch: W <- W - lr * sign(grad)."""

    name = "test_sign_descent"
    params = (Param("scale", float, 1.0, "multiplies the step", low=0),)

    def create(self, params, lr):
        plugin = self

        class Bound:
            def __init__(self):
                self.lr = lr

            def step(self, params, grads):
                for name, grad in grads.items():
                    params[name].sub_(plugin.scale * self.lr * torch.sign(grad))

            def state_dict(self):
                return {}

            def load_state_dict(self, state, params):
                pass

        return Bound()


class WrappedSGD(Optimizer):
    """A third-party optimizer that wraps a torch.optim class through torch_optimizer()."""

    name = "test_wrapped_sgd"
    params = (Param("momentum", float, 0.0, "momentum", low=0),)

    def torch_optimizer(self, params, lr):
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum)


class _ThirdParty:
    @hookimpl
    def relulab_optimizers(self):
        return [SignDescent, WrappedSGD]


MODULES = [
    "plugins.stoppers",
    "plugins.loggers",
    "plugins.savers",
    "plugins.metrics",
    "plugins.data",
    "plugins.inits",
    "plugins.proxpoint",
    "plugins.optimizers",
]


@pytest.fixture(scope="module")
def registry():
    return Registry(builtins=MODULES, entry_points=False, extra_plugins=[(_ThirdParty(), "tp")])


def _available(name):
    module = OPTIONAL.get(name)
    return module is None or importlib.util.find_spec(module) is not None


# -- a quadratic with a known minimiser ---------------------------------------------------
def _quadratic(names=("W", "a"), seed=0):
    """Parameters at zero and 0.5 * |p - p*|^2 summed over ``names``; p* is the minimiser."""
    rng = np.random.default_rng(seed)
    target = {"W": torch.tensor(rng.normal(size=(3, 4))), "a": torch.tensor(rng.normal(size=4))}
    params = {name: torch.zeros_like(target[name]).requires_grad_(True) for name in names}

    def closure():
        value = sum(0.5 * ((params[k] - target[k]) ** 2).sum() for k in names)
        grads = torch.autograd.grad(value, [params[k] for k in names])
        return value.detach(), dict(zip(names, grads))

    return params, target, closure


def _train(optimizer, params, closure, steps):
    """``steps`` updates; the values of the objective before each and after the last."""
    values = []
    for _ in range(steps):
        value, grads = closure()
        values.append(float(value))
        with torch.no_grad():
            if getattr(optimizer, "needs_closure", False):
                optimizer.step(params, {}, closure)
            else:
                optimizer.step(params, grads)
    values.append(float(closure()[0]))
    return values


def test_every_torch_optim_class_and_schedule_is_offered(registry):
    optimizers = {
        name
        for name, cls in vars(torch.optim).items()
        if isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
    }
    assert optimizers == set(TORCH_OPTIMIZERS)
    scheduler_bases = (
        torch.optim.lr_scheduler.LRScheduler,
        torch.optim.lr_scheduler.ReduceLROnPlateau,
    )
    schedules = {
        name
        for name, cls in vars(torch.optim.lr_scheduler).items()
        if isinstance(cls, type) and issubclass(cls, scheduler_bases) and not name.startswith("_")
    }
    assert schedules == set(TORCH_SCHEDULES) | set(LEFT_OUT_SCHEDULES)
    assert set(registry.names("optimizer")) >= {*TORCH_OPTIMIZERS, "sgd", "momentum", "adamw"}
    assert set(registry.names("schedule")) == set(TORCH_SCHEDULES)


def test_options_are_the_signature_keywords_with_their_types_and_defaults(registry):
    adam = registry.get("optimizer", "Adam")
    by_name = {p.name: p for p in adam.params}
    assert "params" not in by_name and "lr" not in by_name and "differentiable" not in by_name
    assert by_name["betas"].default == [0.9, 0.999] and by_name["betas"].item_type is float
    assert by_name["amsgrad"].type is bool and by_name["amsgrad"].default is False
    assert by_name["weight_decay"].type is float and by_name["weight_decay"].default == 0.0
    assert by_name["foreach"].nullable and by_name["foreach"].default is None
    assert "running averages" in by_name["betas"].doc  # read from torch's docstring
    plateau = {p.name: p for p in registry.get("schedule", "ReduceLROnPlateau").params}
    assert plateau["mode"].choices == ("min", "max")
    step = {p.name: p for p in registry.get("schedule", "StepLR").params}
    assert step["step_size"].type is int and step["step_size"].doc.startswith("required")
    resolved = validate_params("x", {"betas": (0.5, 0.6), "weight_decay": 1}, adam.params)
    assert resolved["betas"] == [0.5, 0.6] and resolved["weight_decay"] == 1.0


@pytest.mark.parametrize("name", [*TORCH_OPTIMIZERS, "sgd", "momentum", "adamw", *OPTIONAL])
def test_each_optimizer_minimises_a_quadratic(registry, name):
    if not _available(name):
        pytest.skip(f"{OPTIONAL[name]} is not installed")
    names = ("W",) if name == "Muon" else ("W", "a")  # Muon: matrices only
    params, target, closure = _quadratic(names)
    optimizer = registry.build("optimizer", name).create(params, LR.get(name, 0.1))
    values = _train(optimizer, params, closure, 50)
    assert values[-1] < values[0] / 20, values[::10]
    start = sum(float((target[k] ** 2).sum()) for k in names)
    distance = sum(float(((params[k].detach() - target[k]) ** 2).sum()) for k in names)
    assert distance < start / 20


def test_momentum_plugin_is_torch_sgd_directly(registry):
    params, _, closure = _quadratic()
    plugin = registry.build("optimizer", "momentum", {"momentum": 0.8, "nesterov": True})
    optimizer = plugin.create(params, 0.05)
    reference_params, _, reference_closure = _quadratic()
    reference = TorchSGD(("W", "a"), 0.05, momentum=0.8, nesterov=True)
    assert type(optimizer) is TorchSGD
    for _ in range(20):
        for opt, p, c in (
            (optimizer, params, closure),
            (reference, reference_params, reference_closure),
        ):
            grads = c()[1]
            with torch.no_grad():
                opt.step(p, grads)
    for key in ("W", "a"):
        np.testing.assert_array_equal(params[key].detach(), reference_params[key].detach())
    assert optimizer.state_dict().keys() == reference.state_dict().keys()


@pytest.mark.parametrize(
    "fast, torch_name, options",
    [
        ("sgd", "SGD", {}),
        ("momentum", "SGD", {"momentum": 0.9}),
        ("adamw", "AdamW", {"weight_decay": 0.0}),
    ],
)
def test_fast_builtins_follow_their_torch_optim_classes(registry, fast, torch_name, options):
    """relulab's updates do torch.optim's single-tensor (CPU) operations in its order:
    the same numbers, bit for bit."""
    runs = []
    for name, opts in ((fast, {}), (torch_name, options)):
        params, _, closure = _quadratic()
        optimizer = registry.build("optimizer", name, opts).create(params, 0.05)
        runs.append((_train(optimizer, params, closure, 30), params))
    assert runs[0][0] == runs[1][0]
    for key in ("W", "a"):
        np.testing.assert_array_equal(runs[0][1][key].detach(), runs[1][1][key].detach())


def test_a_plugin_wrapping_torch_optim_through_torch_optimizer(registry):
    params, _, closure = _quadratic()
    optimizer = registry.build("optimizer", "test_wrapped_sgd", {"momentum": 0.9}).create(
        params, 0.05
    )
    reference_params, _, reference_closure = _quadratic()
    reference = registry.build("optimizer", "SGD", {"momentum": 0.9}).create(reference_params, 0.05)
    assert _train(optimizer, params, closure, 10) == _train(
        reference, reference_params, reference_closure, 10
    )
    optimizer.lr = 0.5
    assert optimizer.lr == 0.5 and optimizer.optimizer.param_groups[0]["lr"] == 0.5


# -- checkpoints ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, options",
    [
        ("Adam", {"amsgrad": True}),
        ("LBFGS", {"history_size": 5, "line_search_fn": "strong_wolfe"}),
        ("Rprop", {}),
        ("NAdam", {}),
        ("ASGD", {"t0": 3.0}),
        ("Adafactor", {}),
        ("SparseAdam", {}),
        ("adamw", {}),
        ("momentum", {}),
        ("Prodigy", {}),
        ("AdamWScheduleFree", {"warmup_steps": 3}),
    ],
)
def test_resume_through_the_store_continues_bit_identically(registry, tmp_path, name, options):
    if not _available(name):
        pytest.skip(f"{OPTIONAL[name]} is not installed")
    lr = LR.get(name, 0.05)
    plugin = registry.build("optimizer", name, options)
    straight_params, _, closure = _quadratic()
    _train(plugin.create(straight_params, lr), straight_params, closure, 12)

    params, _, closure = _quadratic()
    first = plugin.create(params, lr)
    _train(first, params, closure, 5)
    state = first.state_dict()
    arrays, tree = pack_state(state)  # what the store keeps: arrays + JSON, no pickle
    assert unpack_state(arrays, json.loads(json.dumps(tree))).keys() == state.keys()
    save_state(tmp_path / "optimizer.npz", state)

    resumed_params, _, resumed_closure = _quadratic()
    with torch.no_grad():
        for key, value in params.items():
            resumed_params[key].copy_(value)
    resumed = plugin.create(resumed_params, lr)
    resumed.load_state_dict(load_state(tmp_path / "optimizer.npz"), resumed_params)
    # the straight run made 12 updates, the first 5 then the resumed 7 (its first
    # objective value is the one the first run ended on)
    _train(resumed, resumed_params, resumed_closure, 7)
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed_params[key].detach(), straight_params[key].detach())


def test_lbfgs_follows_tensors_the_algorithm_replaced(registry):
    """An algorithm may hand new tensors (a restacked ensemble); L-BFGS keeps its own
    list of them, which must follow, or its state_dict loses its buffers."""
    params, _, closure = _quadratic()
    optimizer = registry.build("optimizer", "LBFGS", {"history_size": 3}).create(params, 0.5)
    _train(optimizer, params, closure, 2)
    moved = {k: v.detach().clone() for k, v in params.items()}
    optimizer._bind(moved)
    assert optimizer.optimizer._params == [moved[name] for name in optimizer.names]
    assert optimizer.state_dict()["state"]


def test_an_optimizer_that_needs_a_closure_says_so_without_one(registry):
    params, _, closure = _quadratic()
    optimizer = registry.build("optimizer", "LBFGS").create(params, 1.0)
    assert optimizer.needs_closure
    grads = closure()[1]
    with torch.no_grad(), pytest.raises(PluginError, match="'LBFGS' .* needs a closure"):
        optimizer.step(params, grads)


def test_a_class_the_installed_torch_lacks_is_named():
    from plugins.optimizers import _torch_optimizer_class

    lion = _torch_optimizer_class("Lion")  # as a torch older than the list would lack one
    assert lion.params == ()
    with pytest.raises(
        PluginError, match=r"optimizer 'Lion': torch.optim \(torch .*\) has no Lion"
    ):
        lion().create({"W": torch.zeros(2, 2)}, 0.1)


# -- bad options ------------------------------------------------------------------------------
def _config(runs_dir, **algorithm):
    return {
        "experiment": "optimizer_test",
        "seed": 3,
        "model": {"width": 6},
        "data": {"name": "sinus", "n": 10},
        "init": {"name": "normal"},
        "algorithm": {"name": "proxpoint", "gamma": 0.5, "inner_steps": 4, **algorithm},
        "stoppers": {"max_steps": {"steps": 3}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 3}},
        "savers": {"periodic": {"every_seconds": 0.0, "every_steps": 1}},
        "run": {"runs_dir": str(runs_dir), "display": "off"},
    }


def test_an_unknown_keyword_is_one_line_naming_the_valid_ones(registry, tmp_path):
    config = _config(tmp_path, optimizer="Adam", optimizer_options={"beta": [0.9, 0.99]})
    with pytest.raises(ConfigError) as info:
        resolve(config, registry)
    message = str(info.value)
    assert "\n" not in message
    assert "unknown key 'beta' in algorithm.optimizer_options (Adam); valid keys:" in message
    assert "valid keys: amsgrad, betas, capturable, decoupled_weight_decay, eps," in message
    assert "did you mean 'betas'" in message
    with pytest.raises(ConfigError, match=r"optimizer_options \(SGD\)\.nesterov must be a bool"):
        resolve(_config(tmp_path, optimizer="SGD", optimizer_options={"nesterov": "yes"}), registry)
    with pytest.raises(PluginError, match="unknown optimizer 'Adamm'.*did you mean 'Adam'"):
        resolve(_config(tmp_path, optimizer="Adamm"), registry)
    with pytest.raises(ConfigError, match=r"unknown key 'step' in .*schedule_options \(StepLR\)"):
        resolve(_config(tmp_path, schedule="StepLR", schedule_options={"step": 2}), registry)


def test_options_torch_rejects_and_missing_required_arguments_are_config_errors(registry):
    problem = _problem(registry)
    with pytest.raises(ConfigError, match=r"optimizer 'Adam' cannot be built .*beta") as info:
        _proxpoint(problem, optimizer="Adam", optimizer_options={"betas": [1.5, 0.9]})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"'Muon' cannot be built .*a \(6,\)"):
        _proxpoint(problem, optimizer="Muon")  # train="both": a is a vector
    with pytest.raises(ConfigError, match=r"schedule 'StepLR' needs step_size"):
        _proxpoint(problem, schedule="StepLR")


# -- the optional extra -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OPTIONAL))
def test_optional_optimizers_are_unavailable_with_the_install_hint_when_missing(monkeypatch, name):
    module = OPTIONAL[name]
    importable = core.registry._importable
    monkeypatch.setattr(core.registry, "_importable", lambda m: m != module and importable(m))
    monkeypatch.setitem(sys.modules, module, None)  # an import fails
    registry = Registry(builtins=["plugins.optimizers"], entry_points=False)
    assert registry.failures == []
    entry = registry._entries["optimizer"][name]
    assert not entry.available and entry.missing == [module]
    assert entry.install_hint == 'pip install "relulab[optim]"'
    with pytest.raises(PluginError, match=rf"needs {module}.*relulab\[optim\]"):
        registry.entry("optimizer", name)
    import runner

    listed = [p for p in runner.plugins_json(registry)["plugins"] if p["name"] == name]
    assert listed[0]["available"] is False
    assert listed[0]["install_hint"] == 'pip install "relulab[optim]"'
    assert registry.entry("optimizer", "Adam").available  # the rest is untouched


# -- proxpoint's optimizer and schedule -------------------------------------------------------
def _problem(registry, m=6, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-0.5, 0.5, 12)
    X, Y = np.column_stack([x, np.ones_like(x)]), np.sin(6 * x)
    return Problem(
        X=X,
        Y=Y,
        W0=rng.normal(size=(2, m)),
        a0=rng.choice([-1.0, 1.0], size=m),
        bias=True,
        rng=np.random.default_rng(1),
        registry=registry,
    )


def _proxpoint(problem, **params):
    params = {"gamma": 0.5, "inner_steps": 4, "distance": "frobenius", **params}
    algorithm = ProximalPoint(**validate_params("algorithm", params, ProximalPoint.params))
    algorithm.setup(problem)
    return algorithm


PROX_LR = {**LR, "Adadelta": 5.0, "Adafactor": 0.1, "Muon": 0.05, "Rprop": 0.001}


@pytest.mark.parametrize(
    "name", [*TORCH_OPTIMIZERS, "sgd", "momentum", "adamw", *OPTIONAL, "test_sign_descent"]
)
def test_each_optimizer_named_in_a_config_trains_a_network_by_proxpoint(registry, tmp_path, name):
    if not _available(name):
        pytest.skip(f"{OPTIONAL[name]} is not installed")
    train = "first" if name == "Muon" else "both"
    lr = PROX_LR.get(name, 0.02)
    config = resolve(_config(tmp_path, optimizer=name, lr=lr, train=train), registry)
    section = dict(config["algorithm"])
    section.pop("name")
    assert section["optimizer_options"].keys() == {
        p.name for p in registry.get("optimizer", name).params
    }
    algorithm = ProximalPoint(**section)
    algorithm.setup(_problem(registry))
    losses = [algorithm.loss()]
    for _ in range(3):
        algorithm.step()
        losses.append(algorithm.loss())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0], losses


def _old_proxpoint(problem, optimizer, steps, gamma, lr, lr_decay, inner_steps):
    """The proximal-point loop as it was before the optimizer kind: TorchSGD / TorchAdamW
    built directly, Frobenius distance, weight decay 0, both layers trained."""
    from core import model_torch

    options = {"dtype": torch.float64}
    X, Y = torch.as_tensor(problem.X, **options), torch.as_tensor(problem.Y, **options)
    W = torch.tensor(problem.W0, **options).requires_grad_(True)
    a = torch.tensor(problem.a0, **options).requires_grad_(True)
    params, names = {"W": W, "a": a}, ("W", "a")
    if optimizer == "adamw":
        opt = TorchAdamW(names, lr, (0.9, 0.999), 1e-8, 0.0)
    else:
        opt = TorchSGD(names, lr, 0.9 if optimizer == "momentum" else 0.0, False, 0.0)
    factor = 1.0
    d, m = problem.W0.shape

    def objective(W_prev):
        loss = model_torch.loss(X, Y, W, a, problem.scaling, problem.loss)
        if W_prev is None:
            return loss
        return loss + torch.sum((W - W_prev) ** 2) / (d * m) / gamma

    for _ in range(steps):
        W_prev = W.detach().clone()
        J = objective(None)
        previous = float(J.detach())
        for _ in range(inner_steps):
            opt.lr = lr * factor
            grads = torch.autograd.grad(J, [W, a])
            with torch.no_grad():
                opt.step(params, dict(zip(names, grads)))
            J = objective(W_prev)
            current = float(J.detach())
            if current >= previous:
                factor *= lr_decay
            previous = current
    return W.detach().numpy(), a.detach().numpy()


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adamw"])
def test_proxpoint_default_optimizers_keep_their_trajectories(registry, optimizer):
    settings = dict(gamma=0.3, lr=0.2, lr_decay=0.7, inner_steps=6)
    W, a = _old_proxpoint(_problem(registry), optimizer, 4, **settings)
    algorithm = _proxpoint(_problem(registry), optimizer=optimizer, **settings)
    for _ in range(4):
        algorithm.step()
    assert algorithm.lr_factor < 1  # the decay rule was exercised
    np.testing.assert_array_equal(algorithm.state()["W"], W)
    np.testing.assert_array_equal(algorithm.state()["a"], a)


def test_a_config_saved_before_optimizer_options_uses_its_flat_keys(registry):
    new = _proxpoint(
        _problem(registry), optimizer="momentum", optimizer_options={"momentum": 0.5}, lr=0.1
    )
    resolved = validate_params(
        "algorithm",
        {
            "optimizer": "momentum",
            "lr": 0.1,
            "gamma": 0.5,
            "inner_steps": 4,
            "distance": "frobenius",
        },
        ProximalPoint.params,
    )
    for key in ("optimizer_options", "schedule", "schedule_options"):
        del resolved[key]
    old = ProximalPoint(**resolved, momentum=0.5, nesterov=False, betas=[0.9, 0.999], eps=1e-8)
    old.setup(_problem(registry))
    for _ in range(3):
        new.step()
        old.step()
    np.testing.assert_array_equal(new.state()["W"], old.state()["W"])


def test_lbfgs_in_proxpoint_evaluates_through_the_closure(registry):
    algorithm = _proxpoint(
        _problem(registry),
        optimizer="LBFGS",
        optimizer_options={"max_iter": 5, "line_search_fn": "strong_wolfe"},
        lr=1.0,
        inner_steps=2,
    )
    start = algorithm.loss()
    algorithm.step()
    records = algorithm.records()
    assert records["objective"].size == 2 and algorithm.loss() < 0.5 * start
    assert algorithm.optimizer_.state_dict()["state"]["0"]["func_evals"] > 2


def test_a_schedule_multiplies_the_inner_rate_per_outer_step(registry):
    algorithm = _proxpoint(
        _problem(registry),
        lr=0.05,
        schedule="StepLR",
        schedule_options={"step_size": 2, "gamma": 0.5},
    )
    rates = []
    for _ in range(5):
        algorithm.step()
        rates.append(algorithm.records()["lr"][0])
    np.testing.assert_array_equal(rates, [0.05, 0.05, 0.025, 0.025, 0.0125])
    assert algorithm.scalars()["inner_lr"] == 0.0125
    plateau = _proxpoint(
        _problem(registry),
        lr=1e-12,  # the loss stalls: each step counts as bad
        schedule="ReduceLROnPlateau",
        schedule_options={"patience": 1, "factor": 0.5, "threshold": 0.01},
    )
    rates = []
    for _ in range(5):
        plateau.step()
        rates.append(plateau.records()["lr"][0] / 1e-12)
    np.testing.assert_allclose(rates, [1, 1, 1, 0.5, 0.5], rtol=1e-12)


def test_a_run_with_a_torch_optimizer_and_a_schedule_resumes_exactly(registry, tmp_path):
    from core.loop import resume_run, start_run

    algorithm = {
        "optimizer": "Adam",
        "optimizer_options": {"betas": [0.8, 0.99]},
        "lr": 0.03,
        "lr_decay": 0.9,
        "schedule": "CosineAnnealingLR",
        "schedule_options": {"T_max": 5, "eta_min": 0.1},
    }
    straight_config = _config(tmp_path / "a", **algorithm)
    straight_config["stoppers"]["max_steps"]["steps"] = 6
    straight = start_run(resolve(straight_config, registry), "", registry)
    cut = start_run(resolve(_config(tmp_path / "b", **algorithm), registry), "", registry)
    resumed = resume_run(cut.path, registry, overrides=["stoppers.max_steps.steps=6"])
    assert straight.status == resumed.status == "finished" and resumed.meta["steps"] == 6
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.snapshots[key][-1], straight.snapshots[key][-1])
    for key in ("loss", "inner_lr", "objective"):
        np.testing.assert_array_equal(resumed.scalars[key], straight.scalars[key])
    assert len(set(straight.scalars["inner_lr"])) > 3  # the schedule moved the rate


def test_a_missing_required_schedule_argument_fails_at_resolve_time():
    """The linked plugin's own check runs when the config is resolved (``--dry-run``)."""
    from conftest import ROOT

    from core.config import load

    with pytest.raises(ConfigError, match="schedule 'StepLR' needs step_size"):
        load(ROOT / "configs" / "prox_frobenius.py", ["algorithm.schedule=StepLR"])
