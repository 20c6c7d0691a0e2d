"""Run a relulab experiment from a Python config file.

Examples
--------
    python runner.py configs/jko_sinkhorn.py
    python runner.py configs/gd_sinus.py algorithm.lr=0.05 stoppers.max_steps.steps=500
    python runner.py --resume latest                  # continue the newest run
    python runner.py --resume RUN_DIR stoppers.max_steps.steps=5000   # extend it
    python runner.py --list-plugins [--json]
    python runner.py --help-plugin gd
    python runner.py configs/gd_sinus.py --dry-run    # validate, print, run nothing
    python runner.py configs/gd_sinus.py --live       # a window updated while it trains

``relulab run ...`` is the same command (``relulab plugins`` lists the plugins).
Overrides may come before or after the options.

A config with a ``sweep`` section runs every point (``--jobs N`` processes, or
``--dask local`` / ``--dask tcp://host:port``); ``--resume SWEEP_DIR`` resumes it.

Errors in configs and plugin names print one line and exit with code 2
(``--debug`` shows the traceback). A run that ends ``interrupted`` exits 130,
``diverged`` 3, ``failed`` 1; a sweep exits 1 when a point failed and 130 when
points were left unfinished.
"""

import argparse
import json
import sys

EXIT_CODES = {"finished": 0, "failed": 1, "diverged": 3, "interrupted": 130}


def build_parser(prog="runner.py"):
    """The argument parser of ``runner.py`` (``prog``: the name shown in usage)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a relulab experiment from a Python config file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Overrides: key.sub=value, value parsed as a Python literal "
        "(e.g. algorithm.lr=0.1 stoppers.wall_time=None model.width=[1,2]).",
    )
    parser.add_argument("config", nargs="?", help="config file (configs/*.py)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    parser.add_argument("--resume", metavar="RUN", help="run or sweep directory, or 'latest'")
    parser.add_argument("--runs-dir", help="root of the run store (default: run.runs_dir)")
    parser.add_argument("--list-plugins", action="store_true", help="list every plugin")
    parser.add_argument(
        "--json", action="store_true", help="with --list-plugins: print the list as JSON"
    )
    parser.add_argument("--help-plugin", metavar="NAME", help="show a plugin's parameters")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and print the resolved config; run nothing"
    )
    parser.add_argument("--jobs", type=int, help="sweep: number of local worker processes")
    parser.add_argument(
        "--dask",
        metavar="ADDR",
        help="sweep: 'local' (embedded LocalCluster) or a scheduler address",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="show the run in a window while it trains (the 'live' logger); "
        "without a display, one line and the terminal view",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def list_plugins(registry, console):
    from rich.table import Table

    table = Table(title="relulab plugins")
    for column in ("kind", "name", "provider", "status", "description"):
        table.add_column(column)
    names = {}
    for e in registry.entries():
        names.setdefault((e.kind, e.name), []).append(e)
    for e in registry.entries():
        provider = f"{e.provider} {e.version}".strip()
        if len(names[(e.kind, e.name)]) > 1:
            status = "[red]duplicate name[/red]"
        elif e.available:
            status = "[green]available[/green]"
        else:
            status = f"[yellow]unavailable: {e.install_hint}[/yellow]"
        table.add_row(e.kind, e.name, provider, status, e.cls.describe())
    console.print(table)
    for name, provider, error in registry.failures:
        console.print(f"[red]plugin {name} ({provider}) failed to load:[/red] {error}")


def _json_value(value):
    """``value`` if JSON can hold it as is, else its repr."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def plugins_json(registry):
    """Every plugin and load failure, as the JSON-ready dict ``--list-plugins --json`` prints.

    Returns
    -------
    listing : dict
        ``{"plugins": [...], "failures": [...]}``. A plugin is ``{"kind", "name",
        "provider", "version", "module", "available", "missing", "install_hint"
        (None when available), "duplicate", "description", "params"}``, each
        parameter ``{"name", "type", "default", "allowed", "resume_safe", "doc"}``; a failure is
        ``{"plugin", "provider", "error"}``.
    """
    from core.params import describe_type

    counts = {}
    for e in registry.entries():
        counts[(e.kind, e.name)] = counts.get((e.kind, e.name), 0) + 1
    plugins = []
    for e in registry.entries():
        params = [
            {
                "name": p.name,
                "type": describe_type(p.type, p.item_type).split(" ", 1)[1],
                "default": _json_value(p.default),
                "allowed": p.allowed(),
                "resume_safe": p.resume_safe,
                "doc": p.doc,
            }
            for p in e.cls.params
        ]
        plugins.append(
            {
                "kind": e.kind,
                "name": e.name,
                "provider": e.provider,
                "version": e.version,
                "module": e.module,
                "available": e.available,
                "missing": e.missing,
                "install_hint": None if e.available else e.install_hint,
                "duplicate": counts[(e.kind, e.name)] > 1,
                "description": e.cls.describe(),
                "params": params,
            }
        )
    failures = [
        {"plugin": name, "provider": provider, "error": error}
        for name, provider, error in registry.failures
    ]
    return {"plugins": plugins, "failures": failures}


def help_plugin(registry, name, console):
    from rich.table import Table

    from core.errors import PluginError, did_you_mean

    found = [e for e in registry.entries() if e.name == name]
    if not found:
        every = sorted({e.name for e in registry.entries()})
        raise PluginError(f"no plugin named {name!r}" + did_you_mean(name, every))
    for e in found:
        table = Table(title=f"{e.kind} {e.name!r} ({e.provider}): {e.cls.describe()}")
        for column in ("parameter", "default", "allowed", "description"):
            table.add_column(column)
        for p in e.cls.params:
            doc = p.doc + (" (may change on --resume)" if p.resume_safe else "")
            table.add_row(p.name, repr(p.default), p.allowed(), doc)
        console.print(table)
        if not e.available:
            console.print(f"unavailable: needs {', '.join(e.missing)}; {e.install_hint}")


def _exit_code(status):
    return EXIT_CODES.get(status, 1)


def _sweep_exit_code(path):
    """130 if points were left interrupted or pending, 1 if any failed, else 0."""
    from core.sweep import read_status

    counts = read_status(path)["counts"]
    if counts.get("interrupted") or counts.get("pending") or counts.get("running"):
        return EXIT_CODES["interrupted"]
    return EXIT_CODES["failed"] if counts.get("failed") or counts.get("crashed") else 0


def main(argv=None, prog="runner.py"):
    """Command-line entry point; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``); overrides may come anywhere.
    prog : str
        The command's name in usage and messages (``relulab run`` calls it so).
    """
    parser = build_parser(prog)
    args = parser.parse_intermixed_args(argv)
    if args.json and not args.list_plugins:
        parser.error("--json goes with --list-plugins")
    args.prog = prog
    args.user_paths = []  # the run store and run the command writes to, once known
    from rich.console import Console

    console = Console()
    try:
        return _main(args, console)
    except KeyboardInterrupt:  # Ctrl-C outside a run's loop (validating, starting up)
        print("interrupted", file=sys.stderr)
        return EXIT_CODES["interrupted"]
    except Exception as exc:
        from core.cli import report_error

        return report_error(exc, args.debug, paths=args.user_paths)


LIVE_OVERRIDE = "loggers.live={}"
"""What ``--live`` adds: the ``live`` logger (plugins/live.py), its settings kept if set."""


def _live_override(args):
    return [LIVE_OVERRIDE] if args.live else []


def _refuse_live_sweep(args):
    from core.errors import ConfigError

    if args.live:
        raise ConfigError(
            "--live shows one run and a sweep runs many; "
            "watch a point with plot.py RUN --animate once it has run"
        )


def _main(args, console):
    from core import config as config_mod
    from core.errors import ConfigError
    from core.loop import resume_run, start_run
    from core.registry import get_registry
    from core.store import resolve_target
    from core.sweep import is_sweep_dir

    registry = get_registry()
    if args.list_plugins:
        if args.json:
            print(json.dumps(plugins_json(registry), indent=2))
        else:
            list_plugins(registry, console)
        return 0
    if args.help_plugin:
        help_plugin(registry, args.help_plugin, console)
        return 0
    if args.resume:
        target = resolve_target(args.resume, runs_dir=args.runs_dir)
        args.user_paths.append(target)
        config_file = args.config if args.config and args.config.endswith(".py") else None
        overrides = [args.config] if args.config and not config_file else []
        overrides += list(args.overrides) + _live_override(args)
        if is_sweep_dir(target):
            _refuse_live_sweep(args)
            from core import sweep

            config = None
            if config_file:  # check that the sweep still matches this config
                config, _, _ = config_mod.load(config_file, overrides, registry)
            elif overrides:
                raise ConfigError(
                    "--resume of a sweep takes no overrides (its points "
                    "would no longer match); give the config file instead"
                )
            path = sweep.resume_sweep(
                target,
                registry=registry,
                jobs=args.jobs,
                dask=args.dask,
                config=config,
                runs_dir=args.runs_dir,
            )
            print(path)
            return _sweep_exit_code(path)
        if config_file:
            raise ConfigError(f"--resume continues a run with its own config; got {config_file}")
        run = resume_run(target, registry, overrides=overrides)
        print(run.path)
        return _exit_code(run.meta["status"])

    if not args.config:
        raise ConfigError(f"no config file given (usage: {args.prog} CONFIG [key=value ...])")
    overrides = list(args.overrides) + _live_override(args)
    config, source, _ = config_mod.load(args.config, overrides, registry)
    if "sweep" in config:
        _refuse_live_sweep(args)
    if args.runs_dir:  # recorded in config.json, and passed on explicitly
        config["run"]["runs_dir"] = args.runs_dir
    args.user_paths.append(config["run"]["runs_dir"])
    if args.dry_run:
        print(json.dumps(config, indent=2))
        if "sweep" in config:  # resolve every point, as the sweep itself would first
            from core.sweep import expand_sweep

            _, points = expand_sweep(config, registry)
            print(f"sweep: {len(points)} points, all valid", file=sys.stderr)
        return 0
    if "sweep" in config:
        from core import sweep

        path = sweep.run_sweep(
            config,
            source,
            registry=registry,
            jobs=args.jobs,
            dask=args.dask,
            config_path=args.config,
            runs_dir=args.runs_dir,
        )
        print(path)
        return _sweep_exit_code(path)
    run = start_run(config, source, registry, runs_dir=args.runs_dir, config_path=args.config)
    print(run.path)
    return _exit_code(run.meta["status"])


if __name__ == "__main__":
    sys.exit(main())
