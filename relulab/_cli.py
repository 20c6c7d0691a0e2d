"""The ``relulab`` command: one entry point for the command-line tools.

``relulab run`` is ``runner.py``, ``relulab plot`` is ``plot.py``, ``relulab
postprocess`` is ``postprocess.py`` (same arguments, same exit codes: each
subcommand calls that script's ``main(argv)``), and ``relulab plugins`` lists the
plugins (``runner.py --list-plugins``, ``--json`` for machines) or shows one
(``runner.py --help-plugin NAME``).
"""

import argparse
import importlib
import inspect
import sys

__all__ = ["main", "COMMANDS"]

USAGE = "relulab {run,plot,postprocess,plugins} ..."

COMMANDS = {
    "run": ("runner", "run an experiment from a config file, or --resume one"),
    "plot": ("plot", "draw the figures of a run or sweep"),
    "postprocess": ("postprocess", "compute the indicators of a run or sweep"),
    "plugins": (None, "list the plugins (--json for machines), or show one's parameters"),
}

EPILOG = """\
examples:
  relulab run configs/gd_sinus.py model.width=400 --runs-dir /tmp/runs
  relulab run --resume latest stoppers.max_steps.steps=5000
  relulab plot latest
  relulab postprocess latest --json
  relulab plugins --json
  relulab plugins gd

'relulab COMMAND --help' shows a command's options."""


def _top_parser():
    parser = argparse.ArgumentParser(
        prog="relulab",
        usage=USAGE,
        description="Train two-layer ReLU networks, record the runs, plot and analyse them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "".join(f"  {name:<13}{doc}\n" for name, (_, doc) in COMMANDS.items())
        + "\n"
        + EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"relulab {_version()}")
    return parser


def _plugins_parser():
    parser = argparse.ArgumentParser(
        prog="relulab plugins",
        description="List every plugin (kind, name, provider, availability), or show the "
        "parameters of the plugins called NAME.",
    )
    parser.add_argument("name", nargs="?", help="a plugin name: show its parameters")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the list as JSON (kind, name, provider, version, available, "
        "install_hint, description, params)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _version():
    from . import __version__

    return __version__


def _script_main(module_name, argv, prog):
    """Call ``module_name.main(argv)``, with ``prog`` when the script accepts it."""
    script_main = importlib.import_module(module_name).main
    if "prog" in inspect.signature(script_main).parameters:
        return script_main(argv, prog=prog)
    return script_main(argv)


def _plugins(argv):
    args = _plugins_parser().parse_args(argv)
    if args.name is not None:
        if args.json:
            _plugins_parser().error("--json lists every plugin; give no NAME")
        runner_argv = ["--help-plugin", args.name]
    else:
        runner_argv = ["--list-plugins"] + ["--json"] * args.json
    return _script_main("runner", runner_argv + ["--debug"] * args.debug, "relulab plugins")


def main(argv=None):
    """Entry point of the ``relulab`` command; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``relulab`` (default ``sys.argv[1:]``): a command,
        then that command's own arguments.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _top_parser()
    if not argv:
        print(
            f"error: no command given; commands: {', '.join(COMMANDS)} (relulab --help)",
            file=sys.stderr,
        )
        return 2
    if argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    command, rest = argv[0], argv[1:]
    if command == "--version":
        parser.parse_args([command])  # prints and exits 0
    if command not in COMMANDS:
        from core.errors import did_you_mean

        print(
            f"error: unknown command {command!r}; commands: {', '.join(COMMANDS)}"
            + did_you_mean(command, list(COMMANDS)),
            file=sys.stderr,
        )
        return 2
    if command == "plugins":
        return _plugins(rest)
    return _script_main(COMMANDS[command][0], rest, f"relulab {command}")


if __name__ == "__main__":
    sys.exit(main())
