r"""Ten seeds of one sweep cell: relulab's batched ensemble vs the seed's one-run-at-a-time style.

Problem (Polaczyk & Cyranka's grid, ``../shared/EXPERIMENTS.md``): N = 200 points
uniform in the cube [-1, 1]^d0 scaled to unit norm, labels +-1, d0 = 20, a two-layer
network of width d1 in {20, 60, 200} (``quick``: {20, 200}), both layers trained, no
biases, float32, full batch, SGD with momentum 0.9 (lr 0.01: no run diverges over the
timed steps), ten runs with different seeds.

Rows: microseconds per *run-step* (one optimizer step of one network).

seed style
    Ten ``nn.Sequential(Linear, ReLU, Linear)`` modules, ``MSELoss``, autograd and
    ``torch.optim.SGD(momentum=0.9)``, trained one after another, the loss read every
    step (``loss.item()``, as the seed's loop records it). The reference of the other
    rows.
relulab, run loop
    The ten runs as ten :class:`core.loop.Execution` objects driven by
    :func:`core.loop.execute` in lockstep: ``gd`` advances them with one
    ``step_together`` (one batched program for the ten networks) per step, and each
    member still checks its stoppers (``max_steps``, ``divergence``) and records its
    loss, elapsed time and gradient norm (the ``scalars`` logger every step) at every
    step. Per run-step cost = the difference between runs of two lengths divided by
    the extra steps and by 10, so set-up and the final saves cancel.
relulab, run loop without loggers
    The same with no logger (stoppers only): the loop's own overhead.
relulab, step_together only
    ``GD.step_together`` and each member's ``loss()`` in a bare Python loop: the
    batched program alone.

Every candidate runs on one CPU thread (tiny matrices: more threads cost more than they
save, and the seed style is no faster with torch's default two) and is timed in CPU
seconds of the process (``time.process_time``), best of the passes: on a shared machine
wall time mostly measures the other processes. Measured in the same process.
"""

import tempfile
import time

import numpy as np

from .timing import row

N, D0, RUNS, LR, MOMENTUM = 200, 20, 10, 0.01, 0.9


def _cpu_best_of(fn, repeats):
    """Least CPU seconds of this process over ``repeats`` calls of ``fn`` after a warm-up.

    Every candidate runs on one thread, so CPU time is its compute time; unlike wall
    time it does not count the time other processes of a shared machine hold the core.
    """
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _data(d0, d1, seed):
    """Polaczyk-Cyranka inputs and labels, W ~ N(0, 1), a uniform in +-1/sqrt(d1)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(N, d0))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = rng.uniform(-1.0, 1.0, size=(N, 1))
    Y /= np.abs(Y)
    W = rng.standard_normal((d0, d1))
    a = rng.uniform(-1.0, 1.0, size=d1) / np.sqrt(d1)
    return [v.astype(np.float32) for v in (X, Y[:, 0], W, a)]


def _seed_style(d1, steps):
    """Seconds for ``steps`` steps of each of the ten runs, one run after another."""
    import torch

    nets = []
    for seed in range(RUNS):
        X, Y, W, a = _data(D0, d1, seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(D0, d1, bias=False),
            torch.nn.ReLU(),
            torch.nn.Linear(d1, 1, bias=False),
        )
        with torch.no_grad():
            net[0].weight.copy_(torch.from_numpy(W.T.copy()))
            net[2].weight.copy_(torch.from_numpy(a[None, :].copy()))
        optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
        nets.append((net, optimizer, torch.from_numpy(X), torch.from_numpy(Y[:, None].copy())))
    mse = torch.nn.MSELoss()

    def train():
        for net, optimizer, X, Y in nets:
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                loss = mse(net(X), Y)
                loss.backward()
                optimizer.step()
                loss.item()

    return train


class _Plugins:
    """The bench's data and init plugins (the arrays of :func:`_data`)."""

    @staticmethod
    def make():
        from core.components import Data, DataSet, Init
        from core.hookspecs import hookimpl
        from core.params import Param

        class CubeSphere(DataSet):
            """Polaczyk-Cyranka data of the bench."""

            name = "bench_cube_sphere"
            params = (Param("d1", int, 20, "width (for the init)"),)

            def load(self, rng):
                X, Y, _, _ = _data(D0, self.d1, int(rng.integers(2**31)))
                return Data(X.astype(np.float64), Y.astype(np.float64))

        class Gaussian(Init):
            """W ~ N(0, 1), a uniform in +-1/sqrt(m)."""

            name = "bench_gaussian"

            def initialize(self, d, m, k, rng):
                W = rng.standard_normal((d, m))
                return W, rng.uniform(-1.0, 1.0, size=m) / np.sqrt(m)

        class Hooks:
            @hookimpl
            def relulab_datasets():
                return [CubeSphere]

            @hookimpl
            def relulab_inits():
                return [Gaussian]

        return Hooks


def _registry():
    from core.registry import Registry

    return Registry(
        builtins=[
            "plugins.stoppers",
            "plugins.loggers",
            "plugins.savers",
            "plugins.gd",
            "plugins.optimizers",
        ],
        entry_points=False,
        extra_plugins=[(_Plugins.make(), "bench")],
    )


def _config(registry, runs_dir, d1, seed, steps, loggers):
    from core.config import resolve

    return resolve(
        {
            "experiment": "bench_ensemble",
            "seed": seed,
            "model": {"width": d1},
            "data": {"name": "bench_cube_sphere", "d1": d1},
            "init": {"name": "bench_gaussian"},
            "algorithm": {
                "name": "gd",
                "lr": LR,
                "optimizer": "momentum",
                "momentum": MOMENTUM,
                "dtype": "float32",
                "gradient": "closed_form",
            },
            "stoppers": {"max_steps": {"steps": steps}, "divergence": {}},
            "loggers": {"scalars": {"every": 1}} if loggers else {},
            "savers": {"periodic": {"every_seconds": 1e9}},
            "run": {"runs_dir": str(runs_dir), "display": "off", "threads": 1},
        },
        registry,
    )


def _loop_seconds(registry, runs_dir, d1, steps, loggers):
    """CPU seconds of :func:`core.loop.execute` on ten fresh runs of ``steps`` steps."""
    from core.loop import execute, prepare_run

    executions = [
        prepare_run(_config(registry, runs_dir, d1, seed, steps, loggers), "", registry)
        for seed in range(RUNS)
    ]
    start = time.process_time()
    statuses = execute(executions)
    seconds = time.process_time() - start
    if statuses != ["finished"] * RUNS:
        raise RuntimeError(f"bench runs did not finish: {statuses}")
    return seconds


def _loop_per_run_step(registry, runs_dir, d1, short, long, loggers, passes):
    """(best long run - best short run) / (extra steps x runs); the long run's whole
    time per run-step when load makes the difference meaningless (not positive)."""
    t_short = min(_loop_seconds(registry, runs_dir, d1, short, loggers) for _ in range(passes))
    t_long = min(_loop_seconds(registry, runs_dir, d1, long, loggers) for _ in range(passes))
    if t_long <= t_short:
        return t_long / (long * RUNS)
    return (t_long - t_short) / ((long - short) * RUNS)


def _step_together(d1, steps):
    from core.components import Problem
    from core.params import validate_params
    from plugins.gd import GD

    members = []
    for seed in range(RUNS):
        X, Y, W, a = _data(D0, d1, seed)
        params = {
            "lr": LR,
            "optimizer": "momentum",
            "momentum": MOMENTUM,
            "dtype": "float32",
            "gradient": "closed_form",
        }
        member = GD(**validate_params("algorithm", params, GD.params))
        member.setup(Problem(X=X, Y=Y, W0=W, a0=a))
        member.loss()
        members.append(member)

    def train():
        for _ in range(steps):
            GD.step_together(members)
            for member in members:
                member.loss()

    return train


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    from core.threads import limit_threads

    widths = (20, 200) if quick else (20, 60, 200)
    seed_steps, short, long = (20, 20, 60) if quick else (100, 100, 500)
    passes = 1 if quick else 3
    registry = _registry()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for d1 in widths:
            size = f"N={N} d0={D0} d1={d1}, 10 runs, float32"
            with limit_threads(1):
                seed = _cpu_best_of(_seed_style(d1, seed_steps), passes + 1) / (seed_steps * RUNS)
                bare = _cpu_best_of(_step_together(d1, long), passes + 1) / (long * RUNS)
            loop = _loop_per_run_step(registry, tmp, d1, short, long, True, passes)
            no_log = _loop_per_run_step(registry, tmp, d1, short, long, False, passes)
            us = 1e6
            rows.append(
                row(
                    f"seed style, d1={d1}",
                    us * seed,
                    "us/run-step",
                    note=f"{size}; 1 thread",
                )
            )
            for name, value in (
                ("relulab run loop", loop),
                ("relulab run loop without loggers", no_log),
                ("relulab step_together only", bare),
            ):
                rows.append(
                    row(
                        f"{name}, d1={d1}",
                        us * value,
                        "us/run-step",
                        baseline=us * seed,
                        note=f"{seed / value:.1f}x faster than the seed style; 1 thread",
                    )
                )
    return rows
