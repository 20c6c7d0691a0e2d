"""Seeds trained together (``step_together``) equal training them one by one.

``gd_numpy`` ensembles are bit-equal (``np.matmul`` calls BLAS once per slice); ``gd``
ensembles equal one-by-one runs to float rounding (``bmm`` vs ``mv``; autograd members
get the closed-form gradient in the batch). Parameters, optimizer buffers (momentum,
AdamW moments and step counts), losses and gradient norms are compared, also when
members leave the batch (a stopper, a non-finite loss) through the run loop.
"""

import numpy as np
import pytest

from core.components import Data, DataSet, Init, Problem
from core.config import resolve
from core.hookspecs import hookimpl
from core.loop import execute, prepare_run
from core.params import Param, validate_params
from core.registry import Registry
from plugins.gd import GD, GDNumpy

torch = pytest.importorskip("torch")

OPTIMIZERS = {
    "sgd": {"optimizer": "sgd", "weight_decay": 0.05},
    "momentum": {"optimizer": "momentum", "momentum": 0.9, "weight_decay": 0.05},
    "nesterov": {"optimizer": "momentum", "nesterov": True},
    "adamw": {"optimizer": "adamw", "weight_decay": 0.1, "betas": [0.8, 0.99]},
}
BACKENDS = {
    "gd_numpy": (GDNumpy, {}),
    "gd_closed_form": (GD, {"gradient": "closed_form"}),
    "gd_autograd": (GD, {"gradient": "autograd"}),
}
STEPS = 40


def _problem(seed, n=15, d=3, m=8, k=None):
    rng = np.random.default_rng(seed)
    tail = () if k is None else (k,)
    return Problem(
        X=rng.normal(size=(n, d)),
        Y=rng.normal(size=(n,) + tail),
        W0=rng.normal(size=(d, m)),
        a0=rng.normal(size=(m,) + tail),
        scaling="ntk",
        seed=seed,
        rng=np.random.default_rng(1000 + seed),
    )


def _algorithm(cls, problem, **params):
    algorithm = cls(**validate_params("algorithm", {"lr": 0.05, **params}, cls.params))
    algorithm.check(algorithm.config)
    algorithm.setup(problem)
    algorithm.loss()  # as the loop does right after set-up
    return algorithm


def _alone(cls, problem, steps, **params):
    algorithm = _algorithm(cls, problem, **params)
    for _ in range(steps):
        algorithm.step()
        algorithm.loss()
    return algorithm


def _together(cls, problems, steps, **params):
    members = [_algorithm(cls, p, **params) for p in problems]
    for _ in range(steps):
        cls.step_together(members)
        for member in members:
            member.loss()
    return members


def _flat(state, prefix=""):
    """Every array of a nested state dict, keyed by its path."""
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        elif isinstance(value, np.ndarray) or np.isscalar(value):
            out[prefix + key] = np.asarray(value)
    return out


def _assert_same(ours, reference, exact):
    a, b = _flat(ours.state_dict()), _flat(reference.state_dict())
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-11, atol=1e-13, err_msg=key)
    assert ours.n_steps == reference.n_steps
    rel = 0 if exact else 1e-11
    assert ours.loss() == pytest.approx(reference.loss(), rel=rel, abs=0)
    assert ours.scalars()["grad_norm"] == pytest.approx(
        reference.scalars()["grad_norm"], rel=rel, abs=0
    )


@pytest.mark.parametrize("train", ["both", "first"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_ensemble_equals_one_by_one(backend, optimizer, train):
    cls, extra = BACKENDS[backend]
    params = {**OPTIMIZERS[optimizer], **extra, "train": train}
    problems = [_problem(seed) for seed in range(4)]
    members = _together(cls, problems, STEPS, **params)
    assert members[0]._ensemble is not None and len(members[0]._ensemble.members) == 4
    for member, problem in zip(members, problems):
        _assert_same(member, _alone(cls, problem, STEPS, **params), exact=cls is GDNumpy)


@pytest.mark.parametrize("backend", ["gd_numpy", "gd_closed_form"])
def test_several_outputs_and_float32(backend):
    cls, extra = BACKENDS[backend]
    params = {**OPTIMIZERS["momentum"], **extra, "dtype": "float32"}
    problems = [_problem(seed, k=2) for seed in range(3)]
    members = _together(cls, problems, STEPS, **params)
    for member, problem in zip(members, problems):
        reference = _alone(cls, problem, STEPS, **params).state()
        for key, value in member.state().items():
            assert value.dtype == np.float32
            np.testing.assert_allclose(value, reference[key], rtol=1e-5, atol=1e-6)


def test_one_batched_evaluation_per_step():
    """Each member is evaluated once per step, in the batch (not on its own)."""
    members = _together(GDNumpy, [_problem(s) for s in range(3)], 10, optimizer="momentum")
    assert [m.n_evaluations for m in members] == [11, 11, 11]
    assert [m.n_steps for m in members] == [10, 10, 10]


@pytest.mark.parametrize("backend", ["gd_numpy", "gd_closed_form"])
@pytest.mark.parametrize("optimizer", ["momentum", "adamw"])
def test_members_leaving_and_stepping_alone(backend, optimizer):
    """Members drop out at different steps (the loop stops calling them); the last one
    steps alone (the loop calls ``step()``); every member ends as if trained alone."""
    cls, extra = BACKENDS[backend]
    params = {**OPTIMIZERS[optimizer], **extra}
    problems = [_problem(seed) for seed in range(4)]
    stops = [7, 20, 20, 33]
    members = [_algorithm(cls, p, **params) for p in problems]
    for step in range(max(stops)):
        active = [m for m, stop in zip(members, stops) if step < stop]
        if len(active) == 1:
            active[0].step()
        else:
            cls.step_together(active)
        for member in active:
            member.loss()
    for member, problem, stop in zip(members, problems, stops):
        _assert_same(member, _alone(cls, problem, stop, **params), exact=cls is GDNumpy)


def test_members_at_different_step_counts_step_one_by_one():
    """A member resumed at another step count than the others: stepped on its own."""
    problems = [_problem(seed) for seed in range(3)]
    members = [_algorithm(GDNumpy, p, optimizer="adamw") for p in problems]
    members[1].load_state_dict(_alone(GDNumpy, problems[1], 5, optimizer="adamw").state_dict())
    for _ in range(10):
        GDNumpy.step_together(members)
        for member in members:
            member.loss()
    for member, problem, steps in zip(members, problems, [10, 15, 10]):
        _assert_same(member, _alone(GDNumpy, problem, steps, optimizer="adamw"), exact=True)


def test_members_with_different_configs_are_not_stacked():
    problems = [_problem(seed) for seed in range(2)]
    members = [_algorithm(GDNumpy, problems[0], lr=0.05), _algorithm(GDNumpy, problems[1], lr=0.1)]
    for _ in range(5):
        GDNumpy.step_together(members)
    assert all(m._ensemble is None for m in members)
    _assert_same(members[1], _alone(GDNumpy, problems[1], 5, lr=0.1), exact=True)


# -- through the run loop --------------------------------------------------------------
class _Blobs(DataSet):
    """Gaussian inputs scaled by ``scale`` (a large scale makes GD diverge), sinus targets."""

    name = "test_blobs"
    params = (Param("scale", float, 1.0, "input scale"),)

    def load(self, rng):
        X = self.scale * rng.normal(size=(12, 2))
        return Data(X, np.sin(X.sum(axis=1)))


class _Normal(Init):
    """Standard normal W and a."""

    name = "test_normal"

    def initialize(self, d, m, k, rng):
        return rng.normal(size=(d, m)), rng.normal(size=m)


class _TestPlugin:
    @hookimpl
    def relulab_datasets():
        return [_Blobs]

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


def _config(tmp_path, registry, name, seed, scale, steps):
    config = {
        "experiment": "ensemble",
        "seed": seed,
        "model": {"width": 6},
        "data": {"name": "test_blobs", "scale": scale},
        "init": {"name": "test_normal"},
        "algorithm": {"name": name, "lr": 0.05, "optimizer": "momentum"},
        "stoppers": {"max_steps": {"steps": steps}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 10}},
        "savers": {"periodic": {"every_seconds": 1e9}},
        "run": {"runs_dir": str(tmp_path), "display": "off"},
    }
    return resolve(config, registry)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("name", ["gd_numpy", "gd"])
def test_run_loop_members_leave_on_a_stopper_and_on_a_non_finite_loss(tmp_path, registry, name):
    """Through ``core.loop.execute``: member 1 stops at step 15 (its stopper), member 2
    diverges (large inputs) and leaves with a non-finite loss; the others go to 40."""
    specs = [(0, 1.0, 40), (1, 1.0, 15), (2, 40.0, 40), (3, 1.0, 40)]
    together = [
        prepare_run(_config(tmp_path / "together", registry, name, *spec), "", registry)
        for spec in specs
    ]
    alone = [
        prepare_run(_config(tmp_path / "alone", registry, name, *spec), "", registry)
        for spec in specs
    ]
    statuses = execute(together)
    ensemble = together[0].algorithm._ensemble  # the last batch: members 0 and 3
    assert ensemble is not None and ensemble.members == [together[i].algorithm for i in (0, 3)]
    assert statuses == ["finished", "finished", "diverged", "finished"]
    assert [execute([ex])[0] for ex in alone] == statuses
    from core.store import load_run

    exact = name == "gd_numpy"
    for a, b in zip(together, alone):
        run_a, run_b = load_run(a.path), load_run(b.path)
        assert run_a.meta["steps"] == run_b.meta["steps"]
        for key in ("W", "a"):
            A, B = run_a.final_state()[key], run_b.final_state()[key]
            if exact or not np.all(np.isfinite(B)):
                np.testing.assert_array_equal(A, B)
            else:
                np.testing.assert_allclose(A, B, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(run_a.scalars["step"], run_b.scalars["step"])
        if exact:
            np.testing.assert_array_equal(run_a.scalars["loss"], run_b.scalars["loss"])
    diverged = load_run(together[2].path)
    assert 0 < diverged.meta["steps"] < 40


@pytest.mark.parametrize("name", ["gd_numpy", "gd"])
def test_a_sweep_trains_the_seeds_of_a_cell_together(tmp_path, registry, name):
    """``together_key`` groups the seeds of one cell; ``run_points`` trains them as one
    ensemble, ending where each seed's own run ends."""
    from core.store import load_run
    from core.sweep import together_key
    from core.sweep._worker import run_points

    configs = [_config(tmp_path / "alone", registry, name, seed, 1.0, 25) for seed in range(3)]
    keys = {together_key(config, registry) for config in configs}
    assert len(keys) == 1 and None not in keys
    other = _config(tmp_path, registry, name, 0, 2.0, 25)
    assert together_key(other, registry) not in keys
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
            if name == "gd_numpy":
                np.testing.assert_array_equal(together[key], alone[seed][key])
            else:
                np.testing.assert_allclose(together[key], alone[seed][key], rtol=1e-12)
