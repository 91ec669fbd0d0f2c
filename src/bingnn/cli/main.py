"""``bingnn`` command line entry point.

Each subcommand lives in its own module of :mod:`bingnn.cli` that exposes
``register(subparsers)``; ``register`` adds its parser and sets ``func=run`` where
``run(args) -> int`` does the work. To add a command, append its module name to
:data:`COMMANDS`.

Errors users can cause (bad arguments, missing or corrupt files, bad recipe keys, no GPU) are
reported on one line, ``bingnn: error: ...``, with exit code 2; ``--debug`` shows the traceback
instead. Ctrl-C exits with code 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from bingnn import __version__

#: Subcommand modules, in ``--help`` order (``bingnn.cli.<name>``).
COMMANDS: list[str] = [
    "train_cmd", "distill_cmd", "eval_cmd", "export_cmd", "infer_cmd", "node_cmd", "report_cmd",
]

#: The subcommands each module adds, for modules whose names differ (used to say what is
#: missing when a module cannot be imported).
_MODULE_COMMANDS: dict[str, tuple[str, ...]] = {"node_cmd": ("train-node", "distill-node")}

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """An error to report on one line (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """Argument parser whose errors are one line: ``bingnn: error: ...``."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        self.exit(EXIT_USAGE, f"bingnn: error: {message}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bingnn",
        description="Binary graph neural networks: train, distil and evaluate binary DGCNNs.",
    )
    parser.add_argument("--version", action="version", version=f"bingnn {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"bingnn.cli.{name}")
            module.register(sub)
        except ImportError as e:
            # A deployment box may have only the engine (numpy + the native extension): the
            # training commands then say what is missing instead of breaking `bingnn infer`.
            _register_unavailable(sub, name, e)
    return parser


def _register_unavailable(sub: argparse._SubParsersAction, module: str, error: ImportError) -> None:
    missing = error.name or str(error)
    for command in _MODULE_COMMANDS.get(module, (module.removesuffix("_cmd"),)):
        # Accept any arguments (no option prefix), so the error below is the one users see.
        p = sub.add_parser(
            command, help=f"(unavailable: needs {missing})", prefix_chars="\x01", add_help=False
        )
        p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)

        def run(args: argparse.Namespace, command: str = command) -> int:
            raise CLIError(
                f"'bingnn {command}' needs {missing}, which is not installed; install it "
                "(e.g. pip install torch==2.13.0 torch_geometric) or use 'bingnn infer'"
            )

        p.set_defaults(func=run)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input, not a bug: reported on one line."""
    errors: list[type[BaseException]] = [CLIError, ValueError, TypeError, OSError]
    try:
        from bingnn.train.checkpoint import CheckpointError

        errors.append(CheckpointError)
    except ImportError:  # pragma: no cover - the training side is not installed
        pass
    return tuple(errors)


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    text = msg[0] if msg else type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(
            "\nbingnn: interrupted; run the same command again to resume from the last epoch",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as e:
        if args.debug:
            raise
        print(
            f"bingnn: error: 'bingnn {args.command}' needs {e.name or e}, which is not "
            "installed; install it (e.g. pip install torch==2.13.0 torch_geometric)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except _expected_errors() as e:
        if args.debug:
            raise
        print(f"bingnn: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
