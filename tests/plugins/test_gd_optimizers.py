"""``gd`` takes its optimizer from the ``optimizer`` plugin kind (:mod:`plugins.optimizers`).

The built-in names ``sgd``, ``momentum`` and ``adamw`` keep their trajectories (compared
bitwise with :class:`plugins.gd._torch_optim.TorchSGD` / ``TorchAdamW`` driven directly,
and with ``gd_numpy``'s closed-form updates to 1e-12) and take their options from the
flat keys or ``optimizer_options``; any ``torch.optim`` class trains a network through
the run loop, resumes bitwise, and ensembles of its seeds step one by one.
"""

import numpy as np
import pytest

from core.components import Data, DataSet, Init, Optimizer, Problem
from core.config import resolve
from core.errors import ConfigError
from core.hookspecs import hookimpl
from core.params import Param, validate_params
from core.registry import Registry
from plugins.gd import GD, GDNumpy

torch = pytest.importorskip("torch")


class _Line(DataSet):
    """A 1-D regression target with a bias column (tests only)."""

    name = "test_opt_line"
    params = (Param("n", int, 16, "points", low=2),)

    def load(self, rng):
        x = np.linspace(-1, 1, self.n)
        X = np.column_stack([x, np.ones_like(x)])
        return Data(X=X, Y=np.sin(3 * x))


class _Normal(Init):
    """Standard normal first and second layers (tests only)."""

    name = "test_opt_normal"

    def initialize(self, d, m, k, rng):
        return rng.normal(size=(d, m)), rng.normal(size=m) / m


class _SignMomentum(Optimizer):
    """A third-party optimizer written from scratch (tests only): signed heavy ball."""

    name = "test_sign_momentum"
    params = (Param("beta", float, 0.5, "momentum coefficient", low=0, high=1),)

    def create(self, params, lr):
        return _SignMomentumUpdate(tuple(params), lr, self.beta)


class _SignMomentumUpdate:
    def __init__(self, names, lr, beta):
        self.names, self.lr, self.beta = names, lr, beta
        self.buffers = {}

    def step(self, params, grads):
        for name, grad in grads.items():
            buffer = self.buffers.get(name)
            buffer = grad.clone() if buffer is None else buffer.mul_(self.beta).add_(grad)
            self.buffers[name] = buffer
            params[name].add_(torch.sign(buffer), alpha=-self.lr)

    def state_dict(self):
        return {name: b.numpy().copy() for name, b in self.buffers.items()}

    def load_state_dict(self, state, params):
        self.buffers = {name: torch.tensor(np.asarray(v)) for name, v in state.items()}


class _WrappedRAdam(Optimizer):
    """A third-party optimizer wrapping a torch.optim class (tests only)."""

    name = "test_radam"
    params = (Param("decay", float, 0.0, "RAdam's decoupled weight decay", low=0),)

    def torch_optimizer(self, params, lr):
        return torch.optim.RAdam(
            params, lr=lr, weight_decay=self.decay, decoupled_weight_decay=True
        )


class _TestPlugin:
    @hookimpl
    def relulab_datasets():
        return [_Line]

    @hookimpl
    def relulab_optimizers():
        return [_SignMomentum, _WrappedRAdam]

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
            "plugins.gd",
            "plugins.optimizers",
        ],
        entry_points=False,
        extra_plugins=[(_TestPlugin, "test")],
    )


def _config(registry, runs_dir, steps, seed=0, **algorithm):
    return resolve(
        {
            "experiment": "test_gd_optimizers",
            "seed": seed,
            "model": {"width": 12, "scaling": "standard"},
            "data": {"name": "test_opt_line"},
            "init": {"name": "test_opt_normal"},
            "algorithm": {"name": "gd", "lr": 0.05, **algorithm},
            "stoppers": {"max_steps": {"steps": steps}},
            "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 10}},
            "savers": {"periodic": {"every_seconds": 0.0}},
            "run": {"runs_dir": str(runs_dir), "display": "off"},
        },
        registry,
    )


def _problem(seed=0, n=20, d=3, m=10, registry=None):
    rng = np.random.default_rng(seed)
    return Problem(
        X=rng.normal(size=(n, d)),
        Y=rng.normal(size=(n,)),
        W0=rng.normal(size=(d, m)),
        a0=rng.normal(size=(m,)),
        scaling="ntk",
        seed=seed,
        rng=np.random.default_rng(1000 + seed),
        registry=registry,
    )


def _algorithm(cls, problem, **params):
    algorithm = cls(**validate_params("algorithm", {"lr": 0.05, **params}, cls.params))
    algorithm.check(algorithm.config)
    algorithm.setup(problem)
    algorithm.loss()  # as the loop does right after set-up
    return algorithm


def _run(algorithm, steps):
    losses = [algorithm.loss()]
    for _ in range(steps):
        algorithm.step()
        losses.append(algorithm.loss())
    return losses


# -- the built-in names keep their trajectories ----------------------------------------
def _reference(problem, make, steps):
    """Closed-form gradient of core.model_torch and the optimizer ``make(names)`` driven
    directly: the trajectory of gd before the optimizer kind."""
    from core import model_torch

    params = {
        "W": torch.tensor(problem.W0, dtype=torch.float64),
        "a": torch.tensor(problem.a0, dtype=torch.float64),
    }
    X = torch.as_tensor(problem.X, dtype=torch.float64)
    Y = torch.as_tensor(problem.Y, dtype=torch.float64)
    optimizer = make(("W", "a"))
    losses = []
    for _ in range(steps + 1):
        value, grad_W, grad_a = model_torch.loss_and_grad(
            X, Y, params["W"], params["a"], problem.scaling, problem.loss
        )
        losses.append(float(value))
        if len(losses) <= steps:
            with torch.no_grad():
                optimizer.step(params, {"W": grad_W, "a": grad_a})
    return losses, {k: v.numpy() for k, v in params.items()}, optimizer.state_dict()


BUILTIN_CASES = {
    "momentum": (
        {"optimizer": "momentum", "momentum": 0.8, "weight_decay": 0.01},
        "TorchSGD",
        (0.05, 0.8, False, 0.01),
    ),
    "nesterov": ({"optimizer": "momentum", "nesterov": True}, "TorchSGD", (0.05, 0.9, True, 0.0)),
    "sgd": ({"optimizer": "sgd", "weight_decay": 0.1}, "TorchSGD", (0.05, 0.0, False, 0.1)),
    "adamw": (
        {"optimizer": "adamw", "betas": [0.8, 0.99], "eps": 1e-7, "weight_decay": 0.1},
        "TorchAdamW",
        (0.05, (0.8, 0.99), 1e-7, 0.1),
    ),
}


@pytest.mark.parametrize("case", sorted(BUILTIN_CASES))
def test_builtin_names_keep_their_trajectory_bitwise(case):
    from plugins.gd import _torch_optim

    params, name, args = BUILTIN_CASES[case]

    def make(names):
        return getattr(_torch_optim, name)(names, *args)

    problem = _problem()
    steps = 25
    algorithm = _algorithm(GD, problem, gradient="closed_form", **params)
    losses = _run(algorithm, steps)
    ref_losses, ref_state, ref_optimizer = _reference(problem, make, steps)
    assert losses == ref_losses and losses[-1] < losses[0]
    state = algorithm.state_dict()
    for key in ("W", "a"):
        np.testing.assert_array_equal(state["params"][key], ref_state[key])
    assert state["optimizer"]["param_groups"] == ref_optimizer["param_groups"]
    assert state["optimizer"]["state"].keys() == ref_optimizer["state"].keys()
    for index, entry in ref_optimizer["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(state["optimizer"]["state"][index][key], value)


def test_momentum_matches_the_numpy_closed_form():
    problem = _problem(seed=3)
    params = {"optimizer": "momentum", "momentum": 0.7, "nesterov": True, "weight_decay": 0.01}
    torch_losses = _run(_algorithm(GD, problem, **params), 40)
    numpy_losses = _run(_algorithm(GDNumpy, problem, **params), 40)
    np.testing.assert_allclose(torch_losses, numpy_losses, rtol=1e-12)
    assert torch_losses[-1] < torch_losses[0]


# -- options of the built-in names: flat keys or optimizer_options ---------------------
def test_flat_keys_and_optimizer_options_say_the_same(registry, tmp_path):
    flat = _config(registry, tmp_path, 5, optimizer="momentum", momentum=0.5, nesterov=True)
    nested = _config(
        registry,
        tmp_path,
        5,
        optimizer="momentum",
        optimizer_options={"momentum": 0.5, "nesterov": True},
    )
    assert flat["algorithm"] == nested["algorithm"]
    algorithm = flat["algorithm"]
    assert algorithm["momentum"] == 0.5 and algorithm["nesterov"] is True
    assert algorithm["optimizer_options"] == {
        "momentum": 0.5,
        "nesterov": True,
        "weight_decay": 0.0,
    }
    # resolving the resolved config again changes nothing
    assert resolve(flat, registry)["algorithm"] == algorithm


def test_nested_options_of_a_builtin_set_its_trajectory():
    problem = _problem(seed=2)
    flat = _run(_algorithm(GD, problem, optimizer="momentum", momentum=0.5), 15)
    nested = _run(
        _algorithm(GD, problem, optimizer="momentum", optimizer_options={"momentum": 0.5}), 15
    )
    default = _run(_algorithm(GD, problem, optimizer="momentum"), 15)
    assert flat == nested and flat != default


def test_flat_key_and_option_that_disagree_fail_in_one_line(registry, tmp_path):
    with pytest.raises(ConfigError) as info:
        _config(
            registry,
            tmp_path,
            5,
            optimizer="momentum",
            momentum=0.5,
            optimizer_options={"momentum": 0.6},
        )
    message = str(info.value)
    assert "\n" not in message
    assert "algorithm.momentum=0.5" in message and "optimizer_options.momentum=0.6" in message


def test_flat_key_with_a_torch_optimizer_fails_in_one_line(registry, tmp_path):
    with pytest.raises(ConfigError) as info:
        _config(registry, tmp_path, 5, optimizer="Adam", weight_decay=0.1)
    message = str(info.value)
    assert "\n" not in message
    assert "algorithm.weight_decay" in message and "optimizer_options.weight_decay" in message


def test_bad_optimizer_option_names_the_valid_keys(registry, tmp_path):
    with pytest.raises(ConfigError) as info:
        _config(registry, tmp_path, 5, optimizer="Adam", optimizer_options={"amsgard": True})
    message = str(info.value)
    assert "\n" not in message
    assert "amsgard" in message and "amsgrad" in message and "betas" in message


def test_unknown_optimizer_is_refused_by_the_resolver(registry, tmp_path):
    with pytest.raises(Exception, match=r"algorithm\.optimizer") as info:
        _config(registry, tmp_path, 5, optimizer="Adamm")
    assert "\n" not in str(info.value)


def test_gram_path_refuses_a_torch_optimizer(registry, tmp_path):
    with pytest.raises(ConfigError, match=r"gradient='gram' needs"):
        _config(registry, tmp_path, 5, optimizer="Adam", gradient="gram")


def test_gram_path_reads_momentum_from_optimizer_options():
    problem = _problem(seed=4)
    nested = _algorithm(
        GD,
        problem,
        optimizer="momentum",
        gradient="gram",
        optimizer_options={"momentum": 0.5},
    )
    flat = _algorithm(GD, problem, optimizer="momentum", momentum=0.5)
    np.testing.assert_allclose(_run(nested, 20), _run(flat, 20), rtol=1e-12)


# -- torch.optim classes through the run loop ------------------------------------------
TORCH_CASES = {
    "Adam": {"optimizer": "Adam", "optimizer_options": {"amsgrad": True}},
    "RMSprop": {"optimizer": "RMSprop", "lr": 0.01},
    "Adagrad": {"optimizer": "Adagrad", "lr": 0.1},
    "SGD_nesterov": {
        "optimizer": "SGD",
        "optimizer_options": {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    },
    "LBFGS": {"optimizer": "LBFGS", "lr": 0.5, "optimizer_options": {"max_iter": 5}},
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_torch_optimizer_trains_through_the_run_loop(registry, tmp_path, case):
    from core.loop import start_run

    run = start_run(_config(registry, tmp_path, 30, **TORCH_CASES[case]), "", registry)
    assert run.status == "finished" and run.meta["reason"] == "max_steps"
    losses = np.asarray(run.scalars["loss"])
    assert len(losses) == 31 and np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]


THIRD_PARTY_CASES = {
    "sign_momentum": {
        "optimizer": "test_sign_momentum",
        "lr": 0.01,
        "optimizer_options": {"beta": 0.8},
    },
    "radam": {"optimizer": "test_radam", "lr": 0.1, "optimizer_options": {"decay": 0.01}},
    "Prodigy": {"optimizer": "Prodigy", "lr": 1.0},
    "AdamWScheduleFree": {"optimizer": "AdamWScheduleFree", "lr": 0.05},
}


@pytest.mark.parametrize("case", sorted(THIRD_PARTY_CASES))
def test_other_optimizers_train_and_resume(registry, tmp_path, case):
    """Plugins of a package (from scratch, wrapping torch.optim) and the optional ones
    train through the run loop and resume bitwise."""
    from core.loop import resume_run, start_run

    params = THIRD_PARTY_CASES[case]
    if case in ("Prodigy", "AdamWScheduleFree"):
        pytest.importorskip({"Prodigy": "prodigyopt"}.get(case, "schedulefree"))
    whole = start_run(_config(registry, tmp_path / "whole", 30, **params), "", registry)
    losses = np.asarray(whole.scalars["loss"])
    assert whole.status == "finished" and np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    part = start_run(_config(registry, tmp_path / "part", 11, **params), "", registry)
    resumed = resume_run(part.path, registry, ["stoppers.max_steps.steps=30"])
    for name in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[name], whole.final_state()[name])
    np.testing.assert_array_equal(resumed.scalars["loss"], losses)


def test_lbfgs_gets_a_closure_of_the_minibatch():
    """With minibatches, every evaluation of an LBFGS step is on that step's batch:
    the same update as torch.optim.LBFGS driven by hand on the same rows."""
    from core import model_torch

    problem = _problem(seed=5, n=24)
    options = {"max_iter": 4, "history_size": 3}
    algorithm = _algorithm(
        GD, problem, optimizer="LBFGS", lr=0.5, batch_size=8, optimizer_options=options
    )
    shuffle = type(algorithm.shuffle_)(24, 8, 0)
    shuffle.load_state_dict(algorithm.shuffle_.state_dict())
    W = torch.tensor(problem.W0, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(problem.a0, dtype=torch.float64, requires_grad=True)
    X = torch.as_tensor(problem.X)
    Y = torch.as_tensor(problem.Y)
    reference = torch.optim.LBFGS([W, a], lr=0.5, **options)
    for _ in range(6):
        rows = torch.as_tensor(shuffle.next_batch())

        def closure(rows=rows):
            reference.zero_grad()
            value = model_torch.loss(X[rows], Y[rows], W, a, problem.scaling, problem.loss)
            value.backward()
            return value

        reference.step(closure)
        algorithm.step()
        algorithm.loss()
    np.testing.assert_allclose(algorithm.state()["W"], W.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(algorithm.state()["a"], a.detach().numpy(), rtol=1e-12)
    assert algorithm.n_evaluations > 6 * 2  # LBFGS re-evaluated within its steps


def test_train_first_keeps_a_with_a_torch_optimizer():
    problem = _problem(seed=6)
    algorithm = _algorithm(GD, problem, optimizer="Adam", train="first")
    losses = _run(algorithm, 20)
    np.testing.assert_array_equal(algorithm.state()["a"], problem.a0)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("case", ["Adam", "LBFGS"])
def test_torch_optimizer_resume_equals_the_uninterrupted_run(registry, tmp_path, case):
    from core.loop import resume_run, start_run

    params = TORCH_CASES[case]
    whole = start_run(_config(registry, tmp_path / "whole", 30, **params), "", registry)
    part = start_run(_config(registry, tmp_path / "part", 17, **params), "", registry)
    assert part.meta["steps"] == 17
    resumed = resume_run(part.path, registry, ["stoppers.max_steps.steps=30"])
    assert resumed.status == "finished" and resumed.meta["steps"] == 30
    for name in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[name], whole.final_state()[name])
    np.testing.assert_array_equal(resumed.scalars["loss"], whole.scalars["loss"])


def test_adam_checkpoint_holds_its_moments(registry, tmp_path):
    problem = _problem(seed=7, registry=registry)
    algorithm = _algorithm(GD, problem, optimizer="Adam")
    _run(algorithm, 3)
    state = algorithm.state_dict()["optimizer"]
    assert sorted(state["state"]) == ["0", "1"]
    entry = state["state"]["0"]
    assert float(np.asarray(entry["step"])) == 3.0
    assert entry["exp_avg"].shape == problem.W0.shape


# -- ensembles -------------------------------------------------------------------------
def _members(params, seeds=(0, 1, 2)):
    return [_algorithm(GD, _problem(seed=s), gradient="closed_form", **params) for s in seeds]


@pytest.mark.parametrize("case", ["Adam", "LBFGS"])
def test_ensemble_of_torch_optimizer_seeds_equals_one_by_one(case):
    params = TORCH_CASES[case]
    together = _members(params)
    for _ in range(12):
        GD.step_together(together)
        for member in together:
            member.loss()
    assert all(member._ensemble is None for member in together)  # stepped one by one
    alone = _members(params)
    for member in alone:
        _run(member, 12)
    for a, b in zip(together, alone):
        for key in ("W", "a"):
            np.testing.assert_array_equal(a.state()[key], b.state()[key])
        assert a.loss() == b.loss()


def test_ensemble_of_builtin_seeds_is_still_batched():
    together = _members({"optimizer": "adamw", "weight_decay": 0.1})
    for _ in range(5):
        GD.step_together(together)
        for member in together:
            member.loss()
    assert together[0]._ensemble is not None
    alone = _members({"optimizer": "adamw", "weight_decay": 0.1})
    for member in alone:
        _run(member, 5)
    for a, b in zip(together, alone):
        for key in ("W", "a"):
            np.testing.assert_allclose(a.state()[key], b.state()[key], rtol=1e-12)


def test_sweep_cell_of_adam_seeds_ends_where_each_seed_alone_does(registry, tmp_path):
    from core.loop import execute, prepare_run
    from core.store import load_run
    from core.sweep._worker import run_points

    params = TORCH_CASES["Adam"]
    configs = [_config(registry, tmp_path / "alone", 15, seed=seed, **params) for seed in range(3)]
    results = run_points(
        [(tmp_path / "sweep" / f"seed{c['seed']}", c) for c in configs], "", registry
    )
    assert [r["status"] for r in results] == ["finished"] * 3
    for config in configs:
        assert execute([prepare_run(config, "", registry)]) == ["finished"]
    alone = {}
    for meta in (tmp_path / "alone").glob("*/*/meta.json"):
        run = load_run(meta.parent)
        alone[run.meta["seed"]] = run.final_state()
    assert sorted(alone) == [0, 1, 2]
    for seed in range(3):
        together = load_run(tmp_path / "sweep" / f"seed{seed}").final_state()
        for key in ("W", "a"):
            np.testing.assert_array_equal(together[key], alone[seed][key])


# -- schedule plugins ------------------------------------------------------------------
def test_multistep_schedule_equals_the_step_lr_schedule_bitwise(registry):
    problem = _problem(seed=8, registry=registry)
    plugin = _algorithm(
        GD,
        problem,
        optimizer="momentum",
        schedule="MultiStepLR",
        schedule_options={"milestones": [5, 12], "gamma": 0.5},
    )
    builtin = _algorithm(
        GD, problem, optimizer="momentum", lr_schedule="step", lr_milestones=[5, 12], lr_gamma=0.5
    )
    rates = []
    for _ in range(20):
        rates.append(plugin.scalars()["lr"])
        assert rates[-1] == builtin.scalars()["lr"]
        plugin.step()
        builtin.step()
        assert plugin.loss() == builtin.loss()
    assert rates[0] == 0.05 and rates[5] == 0.025 and rates[12] == 0.0125
    for key in ("W", "a"):
        np.testing.assert_array_equal(plugin.state()[key], builtin.state()[key])


def test_schedule_and_lr_schedule_together_fail_in_one_line(registry, tmp_path):
    with pytest.raises(ConfigError) as info:
        _config(
            registry,
            tmp_path,
            5,
            schedule="ExponentialLR",
            schedule_options={"gamma": 0.9},
            lr_schedule="step",
            lr_milestones=[3],
        )
    message = str(info.value)
    assert "\n" not in message and "algorithm.lr_schedule" in message
    assert "algorithm.schedule" in message


def test_plateau_schedule_is_fed_the_loss(registry):
    """ReduceLROnPlateau with patience 0 and a threshold no decrease meets halves the
    rate after every update."""
    problem = _problem(seed=9, registry=registry)
    options = {"factor": 0.5, "patience": 0, "threshold": 10.0, "threshold_mode": "abs"}
    algorithm = _algorithm(GD, problem, schedule="ReduceLROnPlateau", schedule_options=options)
    rates = []
    for _ in range(4):
        rates.append(algorithm.current_lr())
        algorithm.step()
        algorithm.loss()
    # the first loss sets the best value; each later one fails the threshold
    assert rates == [0.05, 0.05, 0.025, 0.0125]


SCHEDULE_CASES = {
    "cosine": {
        "optimizer": "Adam",
        "schedule": "CosineAnnealingLR",
        "schedule_options": {"T_max": 20, "eta_min": 0.1},
    },
    "plateau": {
        "optimizer": "momentum",
        "schedule": "ReduceLROnPlateau",
        "schedule_options": {"factor": 0.5, "patience": 1, "threshold": 0.05},
    },
}


@pytest.mark.parametrize("case", sorted(SCHEDULE_CASES))
def test_scheduled_resume_equals_the_uninterrupted_run(registry, tmp_path, case):
    from core.loop import resume_run, start_run

    params = SCHEDULE_CASES[case]
    whole = start_run(_config(registry, tmp_path / "whole", 30, **params), "", registry)
    part = start_run(_config(registry, tmp_path / "part", 13, **params), "", registry)
    resumed = resume_run(part.path, registry, ["stoppers.max_steps.steps=30"])
    assert resumed.status == "finished" and resumed.meta["steps"] == 30
    for name in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[name], whole.final_state()[name])
    np.testing.assert_array_equal(resumed.scalars["lr"], whole.scalars["lr"])
    np.testing.assert_array_equal(resumed.scalars["loss"], whole.scalars["loss"])
    assert len(set(whole.scalars["lr"])) > 1  # the schedule moved the rate
    assert whole.scalars["loss"][-1] < whole.scalars["loss"][0]


def test_ensemble_with_a_schedule_steps_one_by_one(registry):
    params = {
        "optimizer": "adamw",
        "schedule": "ReduceLROnPlateau",
        "schedule_options": {"factor": 0.5, "patience": 0, "threshold": 0.01},
    }

    def members():
        return [
            _algorithm(GD, _problem(seed=s, registry=registry), gradient="closed_form", **params)
            for s in (0, 1)
        ]

    together = members()
    for _ in range(10):
        GD.step_together(together)
        for member in together:
            member.loss()
    assert all(member._ensemble is None for member in together)
    alone = members()
    for member in alone:
        _run(member, 10)
    for a, b in zip(together, alone):
        assert a.current_lr() == b.current_lr()
        for key in ("W", "a"):
            np.testing.assert_array_equal(a.state()[key], b.state()[key])
