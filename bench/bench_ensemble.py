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

floor: batched kernels alone
    The batched step's kernels for the ten networks timed bare (no Python, no
    dispatch): the two ``n x d0 x d1`` products, the ``(n, d1)`` passes (relu, mask)
    and the forward's matrix-vector product, with the ``bmm`` rate reached and the
    largest speed-up over the seed style this arithmetic allows on one thread.
2 threads (full mode, widest network only)
    The seed style and ``step_together`` with two threads each, timed in wall
    seconds (best of three short passes; the run loop is not timed on two threads:
    on a loaded machine a two-thread pass can stall for minutes).

Both sides compute in float32, the seed's dtype (torch's default; float64 products
run at about a third of the float32 rate here). The 1-thread rows are timed in CPU
seconds of the process (``time.process_time``): on a shared machine wall time mostly
measures the other processes. They are measured in rounds (three; ``quick``: one),
each timing the seed style (best of two) and every relulab row back to back, and
report the median over the rounds; a relulab row's speed-up is the median of the
rounds' own ratios, so that a drift of the machine's speed from one minute to the
next (the seed style ran at 161-200 us per run-step at d1 = 20 in four runs of one
afternoon) weighs on both sides of a ratio. Everything is measured in the same
process.

Arithmetic per run-step (N = 200, d0 = 20; one output, both layers trained)
-----------------------------------------------------------------------------
Both sides do the two ``N x d0 x d1`` products (``X W`` and the gradient of ``W``),
``4 N d0 d1`` FLOPs, plus ``O(N d1)`` terms: the seed style adds ``6 N d1`` (``H a``,
``R^T H``, the outer product ``R a^T``), the batched step ``2 N d1 + N d0 + 4 d0 d1``
(it regroups the backward pass as ``G = (X * gR)^T D``, ``grad_W = G diag(a)``,
``grad_a = sum_k W * G``: no ``(N, d1)`` outer product, no second matrix-vector
product). So 0.34 / 1.03 / 3.44 MFLOP (seed) and 0.33 / 0.99 / 3.30 MFLOP (batched)
at d1 = 20 / 60 / 200, and the batched step streams ``28 N d1`` bytes of ``(N, d1)``
float32 arrays (product out, relu in place, ``H a`` in, mask in place, product in): 0.11 /
0.34 / 1.1 MB, all in preallocated buffers (a fresh ``(B, N, d1)`` tensor per
operation, as autograd makes, cost more than the operation itself at d1 = 200: new
pages fault on first touch).

On this machine (AMD EPYC, AVX2, 2 cores, shared) the float32 ``bmm`` of these shapes
runs at 28-66 GFLOP/s on one thread (48-66 at d1 = 200), about the rate of a 512^3
product (46-68 GFLOP/s):
the batched step's arithmetic is at the machine's matmul rate. At d1 = 200 the two
products alone take 48-66 us per run-step and all the kernels 65-85 us (``floor``
rows), so against the seed style's 382 us (the issue's measurement, quieter machine)
the batched step cannot reach 10x on one thread: at most 4.5-5.9x, whatever the
Python around it. On the Intel Xeon (AVX-512) of later stops the products run at
127-143 GFLOP/s (80-88 % of the 512^3 rate) at d1 = 60 and 200, the kernels take 31-36
us per run-step at d1 = 200 against the seed style's 294-353 us (four runs on
2026-12-02): at most 9.2-9.9x there, with nothing around them. Rewriting the step for
the data a cell's runs share (one ``mm`` of ``X`` against all ten networks' neurons,
then one for the gradient) was measured too: 3.6 against 4.3 us per run-step for the
products at d1 = 20, 9.7 against 8.6 at 60 and 34.6 against 29.1 at 200 (the gradient
then needs one more ``(N, d1)`` pass), so the step keeps ``bmm``. Under the load of
the measurements in the README (load average
4 to 8 on the 2 cores) the seed style itself slows to 730-1100 us per run-step
(it allocates fresh ``(N, d1)`` tensors every step) while the kernels slow less, so
ratios measured under load are larger than on a quiet machine. At d1 = 20 and 60 the
kernels are far below a tenth of the seed style; what remains is per-operation
dispatch (2-3 us per torch call, 7-8 us when an operand is a Python number, about 20
calls per step for all ten networks) and the loop's per-member Python (stoppers,
``scalars`` row, trace). Two threads could split the ten ``bmm`` slices between the
cores, which the seed style's tiny single products cannot use; on the loaded machine
both sides ran slower with two threads (wall) than with one (CPU): 1.6-17x, threads
waiting on each other, so no two-thread row measured here is evidence either way.

``torch.compile`` was tried on the batched step: it needs the C++ compiler at run
time, took 145 s to compile one shape on the loaded machine and recompiles for every
new batch size (members leave the batch), for about 10 % less time per step than the
hand-written buffers at d1 = 200: not used.
"""

import tempfile
import time

import numpy as np

from .timing import best_of, row

N, D0, RUNS, LR, MOMENTUM = 200, 20, 10, 0.01, 0.9


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


def _config(registry, runs_dir, d1, seed, steps, loggers, threads=1):
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
            "run": {"runs_dir": str(runs_dir), "display": "off", "threads": threads},
        },
        registry,
    )


def _loop_seconds(registry, runs_dir, d1, steps, loggers, threads=1):
    """Seconds of :func:`core.loop.execute` on ten fresh runs of ``steps`` steps: CPU
    seconds on one thread, wall seconds on more."""
    from core.loop import execute, prepare_run

    clock = time.process_time if threads == 1 else time.perf_counter
    executions = [
        prepare_run(_config(registry, runs_dir, d1, seed, steps, loggers, threads), "", registry)
        for seed in range(RUNS)
    ]
    start = clock()
    statuses = execute(executions)
    seconds = clock() - start
    if statuses != ["finished"] * RUNS:
        raise RuntimeError(f"bench runs did not finish: {statuses}")
    return seconds


def _loop_per_run_step(registry, runs_dir, d1, short, long, loggers, passes, threads=1):
    """(best long run - best short run) / (extra steps x runs); the long run's whole
    time per run-step when load makes the difference meaningless (not positive)."""
    args = (registry, runs_dir, d1)
    t_short = min(_loop_seconds(*args, short, loggers, threads) for _ in range(passes))
    t_long = min(_loop_seconds(*args, long, loggers, threads) for _ in range(passes))
    if t_long <= t_short:
        return t_long / (long * RUNS)
    return (t_long - t_short) / ((long - short) * RUNS)


def _round(registry, runs_dir, d1, seed_steps, short, long):
    """One round: the seed style and each relulab row, back to back (seconds per
    run-step), so that a drift of the machine's speed between rounds weighs on the
    ratios of a round alike."""
    from core.threads import limit_threads

    cpu = time.process_time
    with limit_threads(1):
        seed = best_of(_seed_style(d1, seed_steps), 2, clock=cpu) / (seed_steps * RUNS)
        bare = best_of(_step_together(d1, long), 2, clock=cpu) / (long * RUNS)
    args = (registry, runs_dir, d1, short, long)
    return {
        "seed": seed,
        "bare": bare,
        "loop": _loop_per_run_step(*args, True, 1),
        "no_log": _loop_per_run_step(*args, False, 1),
    }


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


def _kernels(d1, clock, repeats):
    """Seconds per call of the batched step's kernels for the ten networks, bare.

    ``products``: the two ``n x d0 x d1`` products (``X W`` and ``(X r)^T D``);
    ``passes``: the ``(n, d1)`` element-wise passes (relu, the mask); ``gemv``: the
    forward's ``relu(X W) a``. Their sum is the step without any Python or dispatch
    cost around it: a floor for the batched step with this arithmetic.
    """
    import torch

    arrays = [_data(D0, d1, seed) for seed in range(RUNS)]
    X, _, W, a = (torch.stack([torch.from_numpy(v[i]) for v in arrays]) for i in range(4))
    H = torch.empty(RUNS, N, d1)
    G, out = torch.empty(RUNS, D0, d1), torch.empty(RUNS, 1, N)
    XR = X.clone()
    torch.bmm(X, W, out=H).relu_()
    fns = {
        "products": lambda: (
            torch.bmm(X, W, out=H),
            torch.bmm(XR.transpose(1, 2), H, out=G),  # H: the mask, in the step
        ),
        "passes": lambda: (H.relu_(), H.sign_()),  # the mask replaces H, as in the step
        "gemv": lambda: torch.bmm(a[:, None, :], H.transpose(1, 2), out=out),
    }
    return {k: best_of(f, repeats, clock=clock) for k, f in fns.items()}


def _peak(clock, repeats):
    """GFLOP/s of one float32 512 x 512 x 512 product (the machine's matmul rate)."""
    import torch

    A, B, C = torch.randn(512, 512), torch.randn(512, 512), torch.empty(512, 512)
    return 2 * 512**3 / best_of(lambda: torch.mm(A, B, out=C), repeats, clock=clock) / 1e9


def _flops(d1):
    """FLOPs per run-step: the seed style's and the batched step's (one output)."""
    products = 4 * N * D0 * d1
    seed = products + 6 * N * d1  # H a, R^T H, the outer product R a^T (2nm each)
    batched = products + 2 * N * d1 + N * D0 + 4 * D0 * d1  # H a; X*r; G*a, W*G summed
    return seed, batched


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    from core.threads import limit_threads

    widths = (20, 200) if quick else (20, 60, 200)
    seed_steps, short, long = (20, 20, 60) if quick else (100, 100, 500)
    passes = 1 if quick else 3
    cpu, wall = time.process_time, time.perf_counter
    registry = _registry()
    rows = []
    us = 1e6
    with limit_threads(1):
        peak = _peak(cpu, 3 if quick else 10)
    rows.append(row("float32 512^3 product, 1 thread", peak, "GFLOP/s", note="machine rate"))
    with tempfile.TemporaryDirectory() as tmp:
        for d1 in widths:
            size = f"N={N} d0={D0} d1={d1}, 10 runs, float32"
            with limit_threads(1):
                kernels = _kernels(d1, cpu, 20 if quick else 200)
            rounds = [_round(registry, tmp, d1, seed_steps, short, long) for _ in range(passes)]
            seeds = [r["seed"] for r in rounds]
            seed = float(np.median(seeds))
            rows.append(
                row(
                    f"seed style, d1={d1}",
                    us * seed,
                    "us/run-step",
                    note=f"{size}; 1 thread; median of {passes} rounds "
                    f"({', '.join(f'{us * x:.0f}' for x in seeds)})",
                )
            )
            for key, name in (
                ("loop", "relulab run loop"),
                ("no_log", "relulab run loop without loggers"),
                ("bare", "relulab step_together only"),
            ):
                ratios = [r["seed"] / r[key] for r in rounds]
                rows.append(
                    row(
                        f"{name}, d1={d1}",
                        us * float(np.median([r[key] for r in rounds])),
                        "us/run-step",
                        baseline=us * seed,
                        note=f"{np.median(ratios):.1f}x faster than the seed style (median of"
                        f" the rounds' ratios: {', '.join(f'{x:.1f}' for x in ratios)});"
                        " 1 thread",
                    )
                )
            flops_seed, flops_batched = _flops(d1)
            per_run = {k: us * v / RUNS for k, v in kernels.items()}
            floor = sum(kernels.values()) / RUNS
            rate = 4 * N * D0 * d1 * RUNS / kernels["products"] / 1e9
            rows.append(
                row(
                    f"floor: batched kernels alone, d1={d1}",
                    us * floor,
                    "us/run-step",
                    baseline=us * seed,
                    note=(
                        f"at most {seed / floor:.1f}x; products {per_run['products']:.1f} us"
                        f" at {rate:.0f} GFLOP/s ({rate / peak:.0%} of 512^3), passes"
                        f" {per_run['passes']:.1f}, gemv {per_run['gemv']:.1f};"
                        f" {flops_batched / 1e6:.2f} MFLOP/run-step (seed"
                        f" {flops_seed / 1e6:.2f}); 1 thread"
                    ),
                )
            )
            if quick or d1 != max(widths):
                continue
            with limit_threads(2):  # short: on a loaded machine two threads can stall
                seed2 = best_of(_seed_style(d1, 20), 3, clock=wall) / (20 * RUNS)
                bare2 = best_of(_step_together(d1, 40), 3, clock=wall) / (40 * RUNS)
            rows.append(
                row(
                    f"seed style, 2 threads, d1={d1}",
                    us * seed2,
                    "us/run-step",
                    baseline=us * seed,
                    note=f"wall time; {seed / seed2:.2f}x faster than its 1-thread CPU time",
                )
            )
            rows.append(
                row(
                    f"relulab step_together only, 2 threads, d1={d1}",
                    us * bare2,
                    "us/run-step",
                    baseline=us * seed2,
                    note=(
                        f"{seed2 / bare2:.1f}x faster than the seed style on 2 threads,"
                        f" {seed / bare2:.1f}x than on 1; wall time"
                    ),
                )
            )
    return rows
