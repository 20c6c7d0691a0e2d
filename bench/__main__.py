"""Run relulab's benchmarks and print one table: ``python -m bench [--quick]``.

Run from the repository root. Every module ``bench/bench_<topic>.py`` is discovered
and run in name order.

Interface of a benchmark module
-------------------------------
A module ``bench/bench_<topic>.py`` defines::

    def run(quick: bool) -> list[dict]

``quick=True`` asks for small sizes (a few seconds in all); full mode should stay
under about a minute. Each returned row is a dict with the keys

name : str
    What was measured (``"gd step, numpy closed form"``).
value : float
    The measurement.
unit : str
    Its unit (``"ms"``, ``"GFLOP/s"``...).
baseline : float or None
    The reference it is compared with, in the same unit.
ratio : float or None
    ``value / baseline`` unless the module says otherwise in ``note``.
note : str
    Sizes, derived rates, anything a reader needs; may be empty.

:func:`bench.timing.row` builds such a dict; :func:`bench.timing.best_of` gives the
best-of-k time after a warm-up and :func:`bench.timing.best_of_passes` that of several
candidates over repeated passes. Time with the best of several repeats: the machine
may be shared. A module that raises is reported as one row with its error,
and the others still run.

Options
-------
--quick           small sizes
--only SUBSTRING  run only the modules whose topic contains SUBSTRING (``--only gd``)
--json PATH       also write ``{"machine": ..., "rows": [...]}`` to PATH (each row
                  gets its module's topic under ``"bench"``)
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

KEYS = ("name", "value", "unit", "baseline", "ratio", "note")


def discover():
    """Topics of the ``bench_<topic>.py`` modules beside this file, sorted."""
    here = Path(__file__).resolve().parent
    return sorted(p.stem[len("bench_") :] for p in here.glob("bench_*.py"))


def machine():
    """Python, library versions and CPU counts, for the table title and the JSON."""
    import numpy as np

    from core.threads import usable_cpus

    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


def run_module(topic, quick):
    """Rows of one module, each with ``bench = topic``; an error becomes one row."""
    try:
        module = importlib.import_module(f"bench.bench_{topic}")
        rows = module.run(quick)
    except Exception as exc:  # one broken bench must not hide the others
        traceback.print_exc()
        return [
            {
                "bench": topic,
                "name": "ERROR",
                "value": None,
                "unit": "",
                "baseline": None,
                "ratio": None,
                "note": f"{type(exc).__name__}: {exc}",
            }
        ]
    return [{"bench": topic, **{key: r.get(key) for key in KEYS}} for r in rows]


def _fmt(x):
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def print_table(rows, info, seconds):
    from rich.console import Console
    from rich.table import Table

    title = (
        f"relulab benchmarks ({seconds:.1f} s): python {info['python']}, "
        f"numpy {info['numpy']}, torch {info.get('torch')}, {info['cpu_count']} CPUs"
    )
    table = Table(title=title)
    for column, justify in [
        ("bench", "left"),
        ("name", "left"),
        ("value", "right"),
        ("unit", "left"),
        ("baseline", "right"),
        ("ratio", "right"),
        ("note", "left"),
    ]:
        table.add_column(column, justify=justify)
    for r in rows:
        table.add_row(*(_fmt(r[key]) for key in ("bench",) + KEYS))
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 150))  # no wrapping in logs
    console.print(table)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument(
        "--only",
        metavar="SUBSTRING",
        default="",
        help="run only the modules whose topic contains SUBSTRING",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    topics = [t for t in discover() if args.only in t]
    if not topics:
        parser.error(f"no benchmark matches --only {args.only!r}; topics: {discover()}")
    start = time.perf_counter()
    rows = [r for topic in topics for r in run_module(topic, args.quick)]
    info = machine()
    print_table(rows, info, time.perf_counter() - start)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": info, "quick": args.quick, "rows": rows}, indent=2) + "\n"
        )
    return 1 if any(r["name"] == "ERROR" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
