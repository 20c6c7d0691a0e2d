"""The gradient-descent plugins ``gd`` (torch) and ``gd_numpy``."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from core import model
from core.components import Data, DataSet, Init, Problem
from core.config import resolve
from core.errors import ConfigError
from core.hookspecs import hookimpl
from core.params import validate_params
from core.registry import Registry
from core.store import load_state, save_state
from plugins.gd import GD, GDNumpy

torch = pytest.importorskip("torch")

OPTIMIZERS = {
    "sgd": {"optimizer": "sgd", "weight_decay": 0.05},
    "momentum": {"optimizer": "momentum", "momentum": 0.8, "weight_decay": 0.05},
    "nesterov": {"optimizer": "momentum", "nesterov": True},
    "adamw": {"optimizer": "adamw", "weight_decay": 0.1, "betas": [0.8, 0.99]},
}


def _problem(n=20, d=3, m=10, k=None, scaling="ntk", loss="mse", seed=0):
    rng = np.random.default_rng(seed)
    tail = () if k is None else (k,)
    return Problem(
        X=rng.normal(size=(n, d)),
        Y=rng.normal(size=(n,) + tail),
        W0=rng.normal(size=(d, m)),
        a0=rng.normal(size=(m,) + tail),
        scaling=scaling,
        loss=loss,
    )


def _algorithm(cls, problem, **params):
    algorithm = cls(**validate_params("algorithm", {"lr": 0.05, **params}, cls.params))
    algorithm.setup(problem)
    return algorithm


def _run(algorithm, steps):
    """Drive an algorithm as the run loop does: step() then loss()."""
    for _ in range(steps):
        algorithm.step()
        algorithm.loss()
    return algorithm


def _max_relative_error(state, reference):
    return max(
        np.max(np.abs(state[k] - reference[k])) / np.max(np.abs(reference[k])) for k in ("W", "a")
    )


@pytest.mark.parametrize("train", ["both", "first"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_torch_and_numpy_trajectories_agree(optimizer, train):
    problem = _problem()
    params = {**OPTIMIZERS[optimizer], "train": train}
    torch_run = _run(_algorithm(GD, problem, **params), 50)
    numpy_run = _run(_algorithm(GDNumpy, problem, **params), 50)
    assert _max_relative_error(torch_run.state(), numpy_run.state()) < 1e-12
    assert torch_run.loss() == pytest.approx(numpy_run.loss(), rel=1e-12)
    assert torch_run.scalars()["grad_norm"] == pytest.approx(
        numpy_run.scalars()["grad_norm"], rel=1e-10
    )
    if train == "first":
        np.testing.assert_array_equal(torch_run.state()["a"], problem.a0)
        np.testing.assert_array_equal(numpy_run.state()["a"], problem.a0)


@pytest.mark.parametrize("scaling", model.SCALINGS)
@pytest.mark.parametrize("loss", model.LOSSES)
def test_trajectories_agree_for_every_convention_with_several_outputs(scaling, loss):
    problem = _problem(m=6, k=2, scaling=scaling, loss=loss)
    torch_run = _run(_algorithm(GD, problem, lr=0.01, optimizer="momentum"), 20)
    numpy_run = _run(_algorithm(GDNumpy, problem, lr=0.01, optimizer="momentum"), 20)
    assert _max_relative_error(torch_run.state(), numpy_run.state()) < 1e-12


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_closed_form_gradient_equals_autograd(optimizer):
    problem = _problem(k=2)
    auto = _run(_algorithm(GD, problem, **OPTIMIZERS[optimizer]), 50)
    closed = _run(_algorithm(GD, problem, gradient="closed_form", **OPTIMIZERS[optimizer]), 50)
    assert _max_relative_error(closed.state(), auto.state()) < 1e-12
    assert closed.scalars()["grad_norm"] == pytest.approx(auto.scalars()["grad_norm"], rel=1e-10)


@pytest.mark.parametrize("cls", [GD, GDNumpy], ids=["gd", "gd_numpy"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_state_dict_continues_exactly(cls, optimizer, tmp_path):
    problem = _problem()
    params = OPTIMIZERS[optimizer]
    uninterrupted = _run(_algorithm(cls, problem, **params), 50)
    first = _run(_algorithm(cls, problem, **params), 30)
    save_state(tmp_path / "checkpoint.npz", first.state_dict())  # through the store
    second = _algorithm(cls, problem, **params)
    second.load_state_dict(load_state(tmp_path / "checkpoint.npz"))
    assert second.n_steps == 30
    second.loss()  # the loop asks for the loss right after loading
    _run(second, 20)
    for name in ("W", "a"):
        assert np.array_equal(second.state()[name], uninterrupted.state()[name])
    assert second.loss() == uninterrupted.loss()


# -- the own update against torch.optim ---------------------------------------------
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def _torch_optim(tensors, params):
    """The ``torch.optim`` optimizer ``gd`` reproduces, from validated ``params``."""
    lr, wd = params["lr"], params["weight_decay"]
    if params["optimizer"] == "adamw":
        return torch.optim.AdamW(
            tensors, lr=lr, betas=tuple(params["betas"]), eps=params["eps"], weight_decay=wd
        )
    momentum = params["momentum"] if params["optimizer"] == "momentum" else 0.0
    nesterov = params["nesterov"] if params["optimizer"] == "momentum" else False
    return torch.optim.SGD(tensors, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)


class _Reference:
    """The same training as ``gd`` with autograd, ``.grad`` and ``torch.optim``."""

    def __init__(self, problem, **params):
        from core import model_torch

        self.params = validate_params("algorithm", {"lr": 0.05, **params}, GD.params)
        self.problem, self.model = problem, model_torch
        dtype = getattr(torch, self.params["dtype"])
        self.X, self.Y = (torch.as_tensor(v, dtype=dtype) for v in (problem.X, problem.Y))
        self.W, self.a = (torch.tensor(v, dtype=dtype) for v in (problem.W0, problem.a0))
        names = ("W", "a") if self.params["train"] == "both" else ("W",)
        self.trained = [getattr(self, name).requires_grad_(True) for name in names]
        self.optimizer = _torch_optim(self.trained, self.params)

    def step(self):
        self.optimizer.zero_grad(set_to_none=True)
        value = self.model.loss(
            self.X, self.Y, self.W, self.a, self.problem.scaling, self.problem.loss
        )
        value.backward()
        self.optimizer.step()

    def state(self):
        return {"W": self.W.detach().numpy().copy(), "a": self.a.detach().numpy().copy()}


def _plain(state_dict):
    """``torch.optim``'s state_dict as the store keeps it: arrays, string keys, lists."""

    def convert(v):
        if isinstance(v, torch.Tensor):
            return v.detach().numpy().copy()
        return list(v) if isinstance(v, tuple) else v

    return {
        "state": {
            str(i): {k: convert(v) for k, v in e.items()} for i, e in state_dict["state"].items()
        },
        "param_groups": [{k: convert(v) for k, v in g.items()} for g in state_dict["param_groups"]],
    }


def _from_plain(plain):
    groups = [
        dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in plain["param_groups"]
    ]
    state = {int(i): {k: torch.tensor(v) for k, v in e.items()} for i, e in plain["state"].items()}
    return {"state": state, "param_groups": groups}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("train", ["both", "first"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("gradient", ["autograd", "closed_form"])
def test_own_update_equals_torch_optim(optimizer, train, dtype, gradient):
    problem = _problem(k=2)
    params = {**OPTIMIZERS[optimizer], "weight_decay": 0.05, "train": train, "dtype": dtype}
    ours = _run(_algorithm(GD, problem, gradient=gradient, **params), 25)
    reference = _Reference(problem, **params)
    for _ in range(25):
        reference.step()
    assert _max_relative_error(ours.state(), reference.state()) < TOLERANCE[dtype]
    if train == "first":
        np.testing.assert_array_equal(ours.state()["a"], problem.a0.astype(dtype))


@pytest.mark.parametrize("train", ["both", "first"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_optimizer_state_is_interchangeable_with_torch_optim(optimizer, train, tmp_path):
    """A checkpoint of torch.optim state (gd before) resumes in gd, and the reverse."""
    problem = _problem()
    params = {**OPTIMIZERS[optimizer], "weight_decay": 0.05, "train": train}
    uninterrupted = _Reference(problem, **params)
    for _ in range(30):
        uninterrupted.step()

    # torch.optim for 12 steps, then gd from its state for 18
    reference = _Reference(problem, **params)
    for _ in range(12):
        reference.step()
    old = {
        "n_steps": 12,
        "params": reference.state(),
        "optimizer": _plain(reference.optimizer.state_dict()),
    }
    save_state(tmp_path / "old.npz", old)
    ours = _algorithm(GD, problem, **params)
    ours.load_state_dict(load_state(tmp_path / "old.npz"))
    _run(ours, 18)
    assert _max_relative_error(ours.state(), uninterrupted.state()) < 1e-12

    # gd for 12 steps, then torch.optim from its state for 18
    ours = _run(_algorithm(GD, problem, **params), 12)
    save_state(tmp_path / "new.npz", ours.state_dict())
    saved = load_state(tmp_path / "new.npz")
    reference = _Reference(problem, **params)
    with torch.no_grad():
        reference.W.copy_(torch.as_tensor(saved["params"]["W"]))
        reference.a.copy_(torch.as_tensor(saved["params"]["a"]))
    reference.optimizer.load_state_dict(_from_plain(saved["optimizer"]))
    for _ in range(18):
        reference.step()
    assert _max_relative_error(reference.state(), uninterrupted.state()) < 1e-12


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_resume_takes_hyperparameters_from_the_config(optimizer):
    """Like gd_numpy: the checkpoint gives buffers, the (overridden) config the rates."""
    problem = _problem()
    params = OPTIMIZERS[optimizer]
    runs = {}
    for cls in (GD, GDNumpy):
        first = _run(_algorithm(cls, problem, **params), 10)
        second = _algorithm(cls, problem, **{**params, "lr": 0.02, "weight_decay": 0.2})
        second.load_state_dict(first.state_dict())
        runs[cls] = _run(second, 10).state()
    assert _max_relative_error(runs[GD], runs[GDNumpy]) < 1e-12


def test_gd_does_not_import_torch_optim_machinery():
    """torch.optim's first optimizer imports torch._dynamo (seconds of start-up)."""
    code = (
        "import sys, numpy as np\n"
        "from core.components import Problem\n"
        "from core.params import validate_params\n"
        "from plugins.gd import GD\n"
        "rng = np.random.default_rng(0)\n"
        "problem = Problem(X=rng.normal(size=(5, 2)), Y=rng.normal(size=5),\n"
        "                  W0=rng.normal(size=(2, 4)), a0=rng.normal(size=4))\n"
        "for optimizer in ('sgd', 'momentum', 'adamw'):\n"
        "    gd = GD(**validate_params('algorithm', {'optimizer': optimizer}, GD.params))\n"
        "    gd.setup(problem); gd.step(); gd.loss(); gd.load_state_dict(gd.state_dict())\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("cls", [GD, GDNumpy], ids=["gd", "gd_numpy"])
def test_one_gradient_evaluation_per_step(cls):
    algorithm = _algorithm(cls, _problem())
    algorithm.loss()
    algorithm.scalars()
    _run(algorithm, 10)
    algorithm.scalars()
    assert algorithm.n_evaluations == 11
    assert algorithm.n_steps == 10


@pytest.mark.parametrize("cls", [GD, GDNumpy], ids=["gd", "gd_numpy"])
@pytest.mark.parametrize("train", ["both", "first"])
def test_loss_and_grad_norm_are_those_of_the_current_parameters(cls, train):
    problem = _problem()
    algorithm = _run(_algorithm(cls, problem, train=train), 5)
    state = algorithm.state()
    value, grad_W, grad_a = model.loss_and_grad(
        problem.X, problem.Y, state["W"], state["a"], problem.scaling, problem.loss
    )
    norm2 = np.sum(grad_W**2) + (np.sum(grad_a**2) if train == "both" else 0.0)
    assert algorithm.loss() == pytest.approx(value, rel=1e-13)
    assert algorithm.scalars()["grad_norm"] == pytest.approx(np.sqrt(norm2), rel=1e-12)


@pytest.mark.parametrize("cls", [GD, GDNumpy], ids=["gd", "gd_numpy"])
def test_state_is_a_numpy_copy(cls):
    algorithm = _algorithm(cls, _problem(k=2))
    state = algorithm.state()
    assert set(state) == {"W", "a"}
    assert state["W"].shape == (3, 10) and state["a"].shape == (10, 2)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["W"][:] = 0.0
    assert np.any(algorithm.state()["W"] != 0.0)


@pytest.mark.parametrize("cls", [GD, GDNumpy], ids=["gd", "gd_numpy"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_loss_decreases_with_a_small_step(cls, optimizer):
    problem = _problem(n=30, d=3, m=40)
    lr = 1e-3 if optimizer == "adamw" else 0.05
    algorithm = _algorithm(cls, problem, **{**OPTIMIZERS[optimizer], "lr": lr, "weight_decay": 0.0})
    losses = [algorithm.loss()]
    for _ in range(30):
        algorithm.step()
        losses.append(algorithm.loss())
    assert losses[-1] < 0.9 * losses[0]
    if optimizer == "sgd":
        assert np.all(np.diff(losses) < 0)


@pytest.mark.parametrize("cls", [GD, GDNumpy], ids=["gd", "gd_numpy"])
def test_float32(cls):
    algorithm = _run(_algorithm(cls, _problem(), dtype="float32"), 3)
    assert all(v.dtype == np.float32 for v in algorithm.state().values())
    assert np.isfinite(algorithm.loss())


def test_cuda_without_cuda_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"algorithm\.device"):
        _algorithm(GD, _problem(), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    problem = _problem()
    cpu = _run(_algorithm(GD, problem, optimizer="adamw"), 20)
    gpu = _run(_algorithm(GD, problem, optimizer="adamw", device="cuda"), 20)
    assert _max_relative_error(gpu.state(), cpu.state()) < 1e-10


@pytest.mark.parametrize(
    "values, key",
    [
        ({"betas": [0.9]}, "algorithm.betas"),
        ({"betas": [0.9, 1.0]}, "algorithm.betas"),
        ({"momentum": 1.0}, "algorithm.momentum"),
        ({"lr": 0.0}, "algorithm.lr"),
    ],
)
def test_bad_params_name_their_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_params("algorithm", values, GD.params)


def test_unknown_optimizer_names_its_key():
    # gd_numpy: a choice of its three; gd: a plugin name, checked by the resolver
    with pytest.raises(ConfigError, match=r"algorithm\.optimizer"):
        validate_params("algorithm", {"optimizer": "adam"}, GDNumpy.params)
    assert validate_params("algorithm", {"optimizer": "Adam"}, GD.params)["optimizer"] == "Adam"


def test_numpy_plugin_has_no_torch_params():
    names = {p.name for p in GDNumpy.params}
    assert "device" not in names
    assert names < {p.name for p in GD.params}


def test_package_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; import plugins.gd as g; "
        "assert g.GD.requires == ('torch',) and g.GD.extra == 'torch'; "
        "print([c.name for c in g.relulab_algorithms()])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['gd', 'gd_numpy']"


# -- through the run loop ------------------------------------------------------------
class _Line(DataSet):
    """1-D inputs with a bias column, sinus targets."""

    name = "test_line"

    def load(self, rng):
        x = np.linspace(-1.0, 1.0, 12)
        return Data(np.c_[x, np.ones_like(x)], np.sin(3.0 * x), bias=True)


class _Normal(Init):
    """Standard normal W and a."""

    name = "test_normal"

    def initialize(self, d, m, k, rng):
        return rng.normal(size=(d, m)), rng.normal(size=m)


class _TestPlugin:
    @hookimpl
    def relulab_datasets():
        return [_Line]

    @hookimpl
    def relulab_inits():
        return [_Normal]


@pytest.fixture(scope="module")
def registry():
    return Registry(
        builtins=[
            "plugins.stoppers",
            "plugins.loggers",
            "plugins.savers",
            "plugins.metrics",
            "plugins.gd",
            "plugins.optimizers",
        ],
        entry_points=False,
        extra_plugins=[(_TestPlugin, "test")],
    )


def _config(registry, runs_dir, steps, **algorithm):
    return resolve(
        {
            "experiment": "test_gd",
            "model": {"width": 20, "scaling": "ntk"},
            "data": {"name": "test_line"},
            "init": {"name": "test_normal"},
            "algorithm": {"name": "gd", "lr": 0.2, **algorithm},
            "stoppers": {"max_steps": {"steps": steps}},
            "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 10}},
            "savers": {"periodic": {"every_seconds": 0.0}},
            "run": {"runs_dir": str(runs_dir), "display": "off"},
        },
        registry,
    )


def test_full_run_finishes(registry, tmp_path):
    from core.loop import start_run

    run = start_run(_config(registry, tmp_path, 40, optimizer="momentum"), "", registry)
    assert run.status == "finished" and run.meta["reason"] == "max_steps"
    losses = run.scalars["loss"]
    assert len(losses) == 41 and losses[-1] < losses[0]
    assert np.all(np.isfinite(run.scalars["grad_norm"]))
    assert list(run.snapshots.steps) == [0, 10, 20, 30, 40]


@pytest.mark.parametrize("optimizer", ["adamw", "momentum"])
def test_resumed_run_ends_where_an_uninterrupted_one_does(registry, tmp_path, optimizer):
    from core.loop import resume_run, start_run

    params = {"optimizer": optimizer, "lr": 0.01, "weight_decay": 0.01}
    whole = start_run(_config(registry, tmp_path / "a", 30, **params), "", registry)
    part = start_run(_config(registry, tmp_path / "b", 18, **params), "", registry)
    resumed = resume_run(part.path, registry, ["stoppers.max_steps.steps=30"])
    assert resumed.status == "finished"
    for name in ("W", "a"):
        assert np.array_equal(resumed.final_state()[name], whole.final_state()[name])
