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

The NTK fast path (``gd`` with ``gradient="gram"``, :mod:`plugins.gd._gram`) is timed
apart at n = d = 1000, m = 8000 (``quick``: n = d = 200, m = 1600), float32, against the
same torch baseline: its step is one ``(n, n) x (n, m)`` product and element-wise work,

.. math::

    2 n^2 m + 2nm + 2nm + \approx 8 nm \quad (K G;\ H a;\ H^\top R;\ \text{relu, mask,
    } Z \text{ and } S \text{ updates}),

half the flops of the plain step at n = d; its rate row counts those flops.

Step rows give milliseconds with the torch baseline as reference (ratio < 1: faster);
rate rows give GFLOP/s with the matmul rate as reference (ratio: fraction of it).
Times are the best of k calls after a warm-up, over two passes through the candidates.
"""

import numpy as np

from core import model
from core.components import Problem
from core.params import validate_params

from .timing import best_of_passes, row

LR = 1e-6  # small: the parameters barely move over the repeats


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
    rows += _gram_rows(quick, machine_rate)
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


def _gram_rows(quick, machine_rate):
    """The NTK fast path against the torch baseline at n = d, m = 8 n."""
    from plugins.gd import GD

    n = d = 200 if quick else 1000
    m = 8 * n
    X, Y, W, a = _data(n, d, m)
    steps = {
        "torch nn.Module + autograd + SGD": _torch_module_step(X, Y, W, a),
        "plugin gd (gram)": _plugin_step(GD, X, Y, W, a, gradient="gram"),
    }
    seconds = best_of_passes(steps, repeats=2 if quick else 3)
    baseline = seconds["torch nn.Module + autograd + SGD"]
    t = seconds["plugin gd (gram)"]
    plain_flops, gram_flops = step_flops(n, d, m), gram_step_flops(n, d, m)
    size = f"n={n} d={d} m={m} float32"
    return [
        row(
            f"gd step n=d={n} m={m}, torch nn.Module + autograd + SGD",
            1e3 * baseline,
            "ms",
            note=f"{size}; {plain_flops / baseline / 1e9:.3g} GFLOP/s = "
            f"{plain_flops / baseline / 1e9 / machine_rate:.0%} of matmul",
        ),
        row(
            f"gd step n=d={n} m={m}, plugin gd (gram)",
            1e3 * t,
            "ms",
            baseline=1e3 * baseline,
            note=f"{baseline / t:.2f}x faster; {gram_flops / t / 1e9:.3g} GFLOP/s = "
            f"{gram_flops / t / 1e9 / machine_rate:.0%} of matmul "
            f"({gram_flops / 1e9:.3g} vs {plain_flops / 1e9:.3g} GFLOP a step)",
        ),
    ]
