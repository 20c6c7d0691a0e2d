r"""One full-batch gradient-descent step: numpy closed form vs a torch nn.Module.

A step is a forward pass, a backward pass and an SGD update of both layers, float32,
one output (k = 1), at n = 1000 points, d = 1000 inputs, m = 2000 neurons
(``quick``: n = 200, d = 200, m = 400). Its floating-point operations:

.. math::

    \underbrace{2ndm}_{Z = XW} + \underbrace{2nm}_{H a} + \underbrace{2nm}_{H^\top R}
    + \underbrace{2ndm}_{X^\top B} + \underbrace{4nm}_{\mathrm{relu},\ R a^\top,\ \odot D}
    + \underbrace{4n}_{R,\ \sum R^2} + \underbrace{2(dm + m)}_{\text{update}}
    \approx 4ndm = 8 \cdot 10^9.

Measured in the same process: the machine's float32 matmul rate for an
``(n, d) x (d, m)`` product (numpy and torch, before and after the steps, the best
kept; the faster library gives "the" rate), and the step of

- numpy: :func:`core.model.loss_and_grad` and in-place updates;
- torch baseline: ``nn.Sequential(Linear(d, m, bias=False), ReLU(), Linear(m, 1,
  bias=False))``, ``MSELoss``, autograd, ``torch.optim.SGD``;
- the plugins ``gd`` (autograd and closed form) and ``gd_numpy`` (``step()`` then
  ``loss()``, as the run loop calls them).

The NTK fast path (``gradient="gram"``, :mod:`plugins.gd._gram`) of ``gd`` and
``gd_numpy`` is timed apart at n = d = 1000, m = 8000 (``quick``: n = d = 200, m =
1600), float32, against the same torch baseline and ``gd_numpy``'s closed form: its
step is one ``(n, n) x (n, m)`` product and element-wise work,

.. math::

    2 n^2 m + 2nm + 2nm + \approx 8 nm \quad (K G;\ H a;\ H^\top R;\ \text{relu, mask,
    } Z \text{ and } S \text{ updates}),

half the flops of the plain step at n = d; its rate rows count those flops against
the matmul rate of an ``(n, n) x (n, m)`` product measured alike. Besides the flops a
step moves ``(n, m)`` arrays through memory; in *passes* (one ``(n, m)`` array read or
written once: 32 MB here; a bool mask a quarter), counting the products' outputs but
not their operands (:data:`PASSES`):

- torch nn.Module + autograd + SGD: ``X W^T`` out (1), relu (2), ``H a`` (1),
  ``H^T r`` (1), ``r a^T`` (1), ``threshold_backward`` (3), ``dZ^T X`` out (1), SGD on
  ``W`` (3): 13, and five fresh ``(n, m)`` tensors a step (their pages are faulted in
  anew);
- gd (gram): relu (2), ``H a``, ``H^T r`` (2), ``sign_``, ``mul_(a)`` (4), ``Z +=
  K diag(r) G`` in place (2), ``S += diag(r) G`` by ``addcmul_`` (3): 13, no
  allocation;
- gd_numpy (gram): mask (1.25), ``Z * mask`` (2.25), ``H a``, ``H^T r`` (2), ``r a^T``
  (1), ``*= mask`` (2.25), BLAS ``gemm`` into ``Z`` (2), ``G *= -lr``, ``S += G`` (5):
  15.75;
- gd_numpy (closed form): ``X W`` (1), mask (1.25), relu (2.25), ``H a``, ``H^T r``
  (2), ``r a^T`` (1), ``*= mask`` (2.25), ``X^T B`` (1), ``g *`` (2), the update
  ``W -= lr g`` (5): 17.75, six fresh arrays.

On one thread the gram paths do their element-wise work by row blocks of 2 MiB with the
update's element-wise part deferred to the next evaluation (:mod:`plugins.gd._gram`),
so of those passes only ``Z`` read, ``S`` read and written, the old ``G`` read, the new one
written and the product's ``Z`` reach memory (:data:`MEMORY_PASSES`: 7, numpy 7.25
with its mask).

So the gram step moves about half the bytes of the plain one with half its flops; the
exact recomputation of ``Z`` (``gram_refresh``, every 200 steps by default) costs
two more products each time, timed apart (its row gives the share per step).

Step rows give milliseconds with the torch baseline as reference (ratio < 1: faster);
rate rows give GFLOP/s with the matmul rate as reference (ratio: fraction of it).
Times are the best of k calls after a warm-up, over two passes through the candidates;
the gram rows come twice: wall time with the libraries' threads, then CPU time of the
process under ``limit_threads(1)`` (steadier on a shared machine).
"""

import contextlib
import time

import numpy as np

from core import model
from core.components import Problem
from core.params import validate_params

from .timing import best_of, best_of_passes, row

LR = 1e-6  # small: the parameters barely move over the repeats

PASSES = {
    "torch nn.Module + autograd + SGD": 13,
    "plugin gd (gram)": 13,
    "plugin gd_numpy (closed form)": 17.75,
    "plugin gd_numpy (gram)": 15.75,
}
"""``(n, m)`` passes of element-wise work a step, products' outputs included (docstring)."""

MEMORY_PASSES = {**PASSES, "plugin gd (gram)": 7, "plugin gd_numpy (gram)": 7.25}
"""Of :data:`PASSES`, those that reach memory on one thread (the gram paths work by
cached row blocks there; on several threads all of :data:`PASSES` do)."""


def step_flops(n, d, m, k=1):
    """Floating-point operations of one step (see the module docstring)."""
    return 4 * n * d * m + 4 * n * m * k + 4 * n * m + 4 * n * k + 2 * (d * m + m * k)


def gram_step_flops(n, d, m, k=1):
    """Floating-point operations of one ``gradient="gram"`` step (module docstring)."""
    return 2 * n * n * m + 4 * n * m * k + 8 * n * m


def _data(n, d, m, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)
    Y = rng.standard_normal(n).astype(np.float32)
    W = rng.standard_normal((d, m)).astype(np.float32)
    a = (rng.standard_normal(m) / np.sqrt(m)).astype(np.float32)
    return X, Y, W, a


def _numpy_step(X, Y, W, a):
    W, a = W.copy(), a.copy()

    def step():
        _, grad_W, grad_a = model.loss_and_grad(X, Y, W, a)
        np.subtract(W, LR * grad_W, out=W)
        np.subtract(a, LR * grad_a, out=a)

    return step


def _torch_module_step(X, Y, W, a):
    import torch

    net = torch.nn.Sequential(
        torch.nn.Linear(W.shape[0], W.shape[1], bias=False),
        torch.nn.ReLU(),
        torch.nn.Linear(W.shape[1], 1, bias=False),
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(W.T.copy()))
        net[2].weight.copy_(torch.from_numpy(a[None, :].copy()))
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y[:, None].copy())
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    mse = torch.nn.MSELoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = mse(net(Xt), Yt)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def _plugin_step(cls, X, Y, W, a, **params):
    algorithm = cls(
        **validate_params("algorithm", {"lr": LR, "dtype": "float32", **params}, cls.params)
    )
    algorithm.setup(Problem(X=X, Y=Y, W0=W, a0=a))
    algorithm.loss()

    def step():
        algorithm.step()
        algorithm.loss()

    return step


def _matmul_rates(X, W, repeats):
    import torch

    flops = 2 * X.shape[0] * X.shape[1] * W.shape[1]
    Xt, Wt = torch.from_numpy(X), torch.from_numpy(W)
    seconds = best_of_passes({"numpy": lambda: X @ W, "torch": lambda: Xt @ Wt}, repeats)
    return np.array([flops / seconds["numpy"] / 1e9, flops / seconds["torch"] / 1e9])


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    from plugins.gd import GD, GDNumpy

    n, d, m = (200, 200, 400) if quick else (1000, 1000, 2000)
    repeats = 3 if quick else 4
    size = f"n={n} d={d} m={m} float32"
    X, Y, W, a = _data(n, d, m)
    flops = step_flops(n, d, m)
    before = _matmul_rates(X, W, 3 * repeats)

    steps = {
        "numpy closed form": _numpy_step(X, Y, W, a),
        "torch nn.Module + autograd + SGD": _torch_module_step(X, Y, W, a),
        "plugin gd (autograd)": _plugin_step(GD, X, Y, W, a),
        "plugin gd (closed_form)": _plugin_step(GD, X, Y, W, a, gradient="closed_form"),
        "plugin gd_numpy": _plugin_step(GDNumpy, X, Y, W, a),
    }
    seconds = best_of_passes(steps, repeats)
    baseline = seconds["torch nn.Module + autograd + SGD"]
    # Measured before and after the steps, best kept: the machine may be shared.
    numpy_rate, torch_rate = np.maximum(before, _matmul_rates(X, W, 3 * repeats)).tolist()
    machine_rate = max(numpy_rate, torch_rate)

    rows = [
        row("matmul (n,d)x(d,m), numpy", numpy_rate, "GFLOP/s", note=size),
        row(
            "matmul (n,d)x(d,m), torch",
            torch_rate,
            "GFLOP/s",
            note=f"step = {flops / 1e9:.3g} GFLOP",
        ),
    ]
    for name, t in seconds.items():
        rate = flops / t / 1e9
        rows.append(
            row(
                f"gd step, {name}",
                1e3 * t,
                "ms",
                baseline=1e3 * baseline,
                note=f"{rate:.3g} GFLOP/s = {rate / machine_rate:.0%} of matmul",
            )
        )
    rows += _gram_rows(quick)
    for name in ("numpy closed form", "torch nn.Module + autograd + SGD"):
        rows.append(
            row(
                f"gd step rate, {name}",
                flops / seconds[name] / 1e9,
                "GFLOP/s",
                baseline=machine_rate,
                note="ratio = fraction of matmul",
            )
        )
    return rows


def _gram_rows(quick):
    """The NTK fast path against the torch baseline and gd_numpy at n = d, m = 8 n: wall
    time with the libraries' threads, then CPU time on one thread (steady under load)."""
    from core.threads import limit_threads
    from plugins.gd import GD, GDNumpy

    n = d = 200 if quick else 1000
    m = 8 * n
    X, Y, W, a = _data(n, d, m)
    K = X @ X.T
    repeats = 2
    steps = {
        "torch nn.Module + autograd + SGD": _torch_module_step(X, Y, W, a),
        "plugin gd (gram)": _plugin_step(GD, X, Y, W, a, gradient="gram"),
        "plugin gd_numpy (closed form)": _plugin_step(GDNumpy, X, Y, W, a),
        "plugin gd_numpy (gram)": _plugin_step(GDNumpy, X, Y, W, a, gradient="gram"),
    }
    rows = []
    settings = (("", time.perf_counter, None), (", 1 thread CPU time", time.process_time, 1))
    for label, clock, threads in settings:
        with limit_threads(threads) if threads else contextlib.nullcontext():
            seconds = best_of_passes(steps, repeats, clock=clock)
            rate = _gram_matmul_rate(K, W, repeats, clock)
            refresh = _refresh_seconds(GD, X, Y, W, a, clock)
        memory = MEMORY_PASSES if threads == 1 else PASSES
        rows += _gram_step_rows(n, d, m, seconds, label, rate, refresh, memory)
    return rows


def _gram_matmul_rate(K, W, repeats, clock):
    """GFLOP/s of the gram step's product ``K W`` ``(n, n) x (n, m)`` (n = d), numpy's or
    torch's, the faster."""
    import torch

    n, m = W.shape
    Kt, Wt = torch.from_numpy(K), torch.from_numpy(W)
    fns = {"numpy": lambda: K @ W, "torch": lambda: Kt @ Wt}
    seconds = best_of_passes(fns, repeats, clock=clock)
    return 2 * n * n * m / min(seconds.values()) / 1e9


def _refresh_seconds(cls, X, Y, W, a, clock):
    """Seconds of one exact recomputation of ``Z`` (``GramPath.refresh``, SGD)."""
    algorithm = cls(
        **validate_params(
            "algorithm", {"lr": LR, "dtype": "float32", "gradient": "gram"}, cls.params
        )
    )
    algorithm.setup(Problem(X=X, Y=Y, W0=W, a0=a))
    return best_of(algorithm._gram.refresh, repeats=1, clock=clock)


def _gram_step_rows(n, d, m, seconds, label, matmul_rate, refresh, memory):
    baseline_name = "torch nn.Module + autograd + SGD"
    baseline = seconds[baseline_name]
    plain_flops, gram_flops = step_flops(n, d, m), gram_step_flops(n, d, m)
    megabytes = 4 * n * m / 1e6
    size = f"n=d={n} m={m}"
    rows = [
        row(
            f"gram matmul (n,n)x(n,m){label}",
            matmul_rate,
            "GFLOP/s",
            note=f"{size} float32; the gram step's product",
        )
    ]
    for name, t in seconds.items():
        flops = gram_flops if "gram" in name else plain_flops
        rate = flops / t / 1e9
        notes = [
            f"{flops / 1e9:.3g} GFLOP at {rate:.3g} GFLOP/s = {rate / matmul_rate:.0%} of matmul",
            f"{PASSES[name]:g} (n,m) passes, {memory[name]:g} to memory = "
            f"{memory[name] * megabytes:.0f} MB",
        ]
        if name != baseline_name:
            notes.insert(0, f"{baseline / t:.2f}x faster")
        if name == "plugin gd_numpy (gram)":
            numpy_plain = seconds["plugin gd_numpy (closed form)"]
            notes.append(f"{numpy_plain / t:.2f}x gd_numpy closed form")
        rows.append(
            row(
                f"gd step {size}, {name}{label}",
                1e3 * t,
                "ms",
                baseline=None if name == baseline_name else 1e3 * baseline,
                note="; ".join(notes),
            )
        )
    gram_step = seconds["plugin gd (gram)"]
    rows.append(
        row(
            f"gd gram refresh {size}{label}",
            1e3 * refresh,
            "ms",
            baseline=1e3 * gram_step,
            note=f"every gram_refresh=200 steps: {refresh / 200 / gram_step:.1%} of a step "
            "(2 products, 4 with momentum)",
        )
    )
    return rows
