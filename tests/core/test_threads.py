"""core.threads: how many threads a run uses, and limit_threads on torch and BLAS."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from threadpoolctl import threadpool_info

from core import threads
from core.components import Problem
from core.threads import TINY_WORK, limit_threads, problem_work, resolve_threads


def _problem(n, d, m, k=None):
    tail = () if k is None else (k,)
    return Problem(
        X=np.zeros((n, d)), Y=np.zeros((n,) + tail), W0=np.zeros((d, m)), a0=np.zeros((m,) + tail)
    )


def _blas_threads():
    return [pool["num_threads"] for pool in threadpool_info()]


def _python(code, **env):
    """Run ``code`` in a fresh interpreter at the repository root; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


# -- resolve_threads ---------------------------------------------------------------
def test_problem_work_counts_both_products():
    assert problem_work(_problem(20, 2, 300)) == 20 * 300 * 3
    assert problem_work(_problem(10, 4, 7, k=3)) == 10 * 7 * (4 + 3)


@pytest.mark.parametrize("worker", [False, True])
def test_a_positive_setting_is_used_as_given(worker):
    big = _problem(1000, 20, 1000)
    assert resolve_threads(3, _problem(20, 2, 300), worker=worker) == 3
    assert resolve_threads(1, big, worker=worker) == 1
    assert resolve_threads(64, big, worker=worker) == 64


def test_auto_is_one_thread_in_a_sweep_worker(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 8)
    assert resolve_threads(0, _problem(1000, 20, 1000), worker=True) == 1
    assert resolve_threads(0, None, worker=True) == 1  # before the problem is built
    assert resolve_threads(2, None) == 2


def test_auto_single_run_is_chosen_by_size(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 8)
    assert problem_work(_problem(20, 2, 300)) < TINY_WORK  # configs/gd_sinus.py
    assert resolve_threads(0, _problem(20, 2, 300)) == 1
    assert resolve_threads(0, _problem(1000, 1000, 2000)) == 8  # bench_gd's full size
    monkeypatch.setattr(threads, "TINY_WORK", 60)
    assert resolve_threads(0, _problem(1, 58, 1)) == 1  # work 59
    assert resolve_threads(0, _problem(5, 5, 2)) == 8  # work 60


def test_usable_cpus_is_the_affinity_mask():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert threads.usable_cpus() == (expected or os.cpu_count())


@pytest.mark.parametrize("setting", [-1, -4])
def test_a_negative_setting_is_an_error(setting):
    with pytest.raises(ValueError, match="threads"):
        resolve_threads(setting, _problem(20, 2, 300))


# -- limit_threads -----------------------------------------------------------------
def test_limit_threads_sets_and_restores_torch_and_blas():
    torch = pytest.importorskip("torch")
    import scipy.linalg  # noqa: F401  (limit_threads loads scipy's own BLAS)

    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    with limit_threads(1) as n:
        assert n == 1
        assert torch.get_num_threads() == 1
        assert _blas_threads() == [1] * len(blas_before)
    assert torch.get_num_threads() == torch_before
    assert _blas_threads() == blas_before


def test_nested_limits_restore_the_outer_one():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with limit_threads(1):
        with limit_threads(3):
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == 1
        assert _blas_threads() == [1] * len(_blas_threads())
    assert torch.get_num_threads() == before


def test_a_nested_limit_with_the_same_count_changes_nothing(monkeypatch):
    """It does not search the loaded libraries again (2 ms each: a sweep's tiny runs)."""
    import scipy.linalg  # noqa: F401  (limit_threads loads scipy's own BLAS)
    import threadpoolctl

    calls = []
    real = threadpoolctl.threadpool_limits

    def counting(*args, **kwargs):
        calls.append(kwargs.get("limits"))
        return real(*args, **kwargs)

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", counting)
    blas_before = _blas_threads()
    with limit_threads(1):
        inside = _blas_threads()
        with limit_threads(1):
            assert _blas_threads() == inside
            with limit_threads(2):
                with limit_threads(2):
                    pass
            assert _blas_threads() == inside
        assert _blas_threads() == inside
    assert calls == [1, 2]
    assert _blas_threads() == blas_before


def test_limits_are_restored_when_the_block_raises():
    torch = pytest.importorskip("torch")
    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    with pytest.raises(RuntimeError, match="boom"), limit_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == torch_before
    assert _blas_threads() == blas_before
    assert not any(isinstance(f, threads._AfterImport) for f in sys.meta_path)


@pytest.mark.parametrize("n", [0, -2])
def test_limit_threads_needs_a_positive_count(n):
    with pytest.raises(ValueError, match="threads"):
        with limit_threads(n):
            pass


def test_limit_threads_does_not_import_torch():
    code = (
        "import sys\n"
        "from core.threads import limit_threads\n"
        "with limit_threads(1):\n"
        "    import numpy as np; np.ones((50, 50)) @ np.ones((50, 50))\n"
        "print('torch' in sys.modules, len(sys.meta_path))\n"
    )
    imported, finders = _python(code).split()
    assert imported == "False"
    baseline = _python("import sys, core.threads; print(len(sys.meta_path))")
    assert finders == baseline  # the import hook is gone


def test_torch_imported_inside_the_block_gets_the_limit_then_its_default():
    pytest.importorskip("torch")
    default = int(_python("import torch; print(torch.get_num_threads())"))
    code = (
        "import sys\n"
        "from core.threads import limit_threads\n"
        f"with limit_threads({default + 1}):\n"
        "    assert 'torch' not in sys.modules\n"
        "    import torch\n"
        "    inside = torch.get_num_threads()\n"
        "    x = torch.ones(200, 200) @ torch.ones(200, 200)\n"
        "loader = torch.__spec__.loader\n"
        "print(inside, torch.get_num_threads(), 'exec_module' in vars(loader))\n"
    )
    inside, after, patched = _python(code).split()
    assert (int(inside), int(after), patched) == (default + 1, default, "False")


def test_a_torch_import_that_fails_inside_the_block_leaves_no_hook():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from core.threads import limit_threads\n"
        "n = len(sys.meta_path)\n"
        "with limit_threads(1):\n"
        "    try:\n"
        "        import torch\n"
        "    except ImportError:\n"
        "        print('ImportError')\n"
        "print(len(sys.meta_path) == n)\n"
    )
    assert _python(code).split() == ["ImportError", "True"]


def test_torch_is_told_its_thread_count_even_when_openmp_already_reads_it(monkeypatch):
    """``torch.set_num_threads`` also limits torch's own MKL, which threadpoolctl's
    OpenMP limit leaves alone: it must be called even when get_num_threads() == n."""
    import torch

    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda k: calls.append(k) or real(k))
    before = torch.get_num_threads()
    with limit_threads(1):
        assert torch.get_num_threads() == 1
    assert calls == [1, before] and torch.get_num_threads() == before


def test_scipys_own_blas_is_limited_even_when_first_loaded_by_the_block():
    code = (
        "from core.threads import limit_threads\n"
        "from threadpoolctl import threadpool_info\n"
        "with limit_threads(1):\n"
        "    print(sorted({p['filepath'] for p in threadpool_info() if p['num_threads'] != 1}))\n"
        "    print(any('scipy' in p['filepath'] for p in threadpool_info()))\n"
    )
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    unlimited, scipy_loaded = out.stdout.splitlines()
    assert unlimited == "[]" and scipy_loaded == "True"
