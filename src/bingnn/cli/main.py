"""``bingnn`` command line entry point.

Each subcommand lives in its own module of :mod:`bingnn.cli` that exposes
``register(subparsers)``; ``register`` adds its parser and sets ``func=run`` where
``run(args) -> int`` does the work. To add a command, append its module name to
:data:`COMMANDS`.

Errors users can cause (bad arguments, missing or corrupt files, bad recipe keys, no GPU, an
optional package that is not installed) are reported on one line, ``bingnn: error: ...``, with
exit code 2; ``--debug`` shows the traceback instead. The path options several commands share
(``--out``, ``--teacher``) are checked before any work starts. Ctrl-C exits with code 130 and
says how to resume.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from bingnn import __version__
from bingnn._flags import check_environment

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


#: Where each optional dependency comes from (``pip install ...``); anything else is
#: installed under its own name.
_EXTRA_OF = {
    "torch": '"bingnn[train]"',
    "torch_geometric": '"bingnn[train]"',
    "scipy": '"bingnn[train]"',
    "tqdm": '"bingnn[train]"',
    "matplotlib": '"bingnn[train]"',
    "tomli": '"bingnn[train]"',
    "ogb": '"bingnn[ogb]"',
    "h5py": "h5py",
}


def missing_module_message(command: str, error: ImportError) -> str:
    """One line: which module ``bingnn <command>`` lacks and the ``pip install`` that adds it."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        lines = str(error).strip().splitlines()  # a message of our own, e.g. from a reader
        return lines[0] if lines else f"'bingnn {command}' cannot import a module it needs"
    if error.name == "bingnn._native":
        return (
            "bingnn's native extension is not built: reinstall bingnn (pip install .) or, in a "
            "source checkout, run python setup.py build_ext --inplace"
        )
    top = error.name.split(".")[0]
    return (
        f"'bingnn {command}' needs {top}, which is not installed: "
        f"pip install {_EXTRA_OF.get(top, top)}"
    )


def _is_own_bug(error: ImportError) -> bool:
    """An import error inside bingnn itself (a missing name or module), not a missing
    dependency: shown with its traceback."""
    name = error.name or ""
    return (name == "bingnn" or name.startswith("bingnn.")) and name != "bingnn._native"


def _register_unavailable(sub: argparse._SubParsersAction, module: str, error: ImportError) -> None:
    missing = (error.name or str(error)).split(".")[0]
    for command in _MODULE_COMMANDS.get(module, (module.removesuffix("_cmd"),)):
        # Accept any arguments (no option prefix), so the error below is the one users see.
        p = sub.add_parser(
            command, help=f"(unavailable: needs {missing})", prefix_chars="\x01", add_help=False
        )
        p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)

        def run(args: argparse.Namespace, command: str = command) -> int:
            raise CLIError(missing_module_message(command, error))

        p.set_defaults(func=run)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input, not a bug: reported on one line."""
    errors: list[type[BaseException]] = [CLIError, ValueError, TypeError, OSError, ImportError]
    try:
        from bingnn.train.checkpoint import CheckpointError

        errors.append(CheckpointError)
    except ImportError:  # pragma: no cover - the training side is not installed
        pass
    return tuple(errors)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename and str(e).startswith("[Errno"):
        return _os_error(e)
    msg = str(e).strip().splitlines()
    text = msg[0] if msg else type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    return text


def _os_error(e: OSError) -> str:
    """A raw ``[Errno N] ...: 'path'`` from the OS, said in words with the path."""
    name = str(e.filename)
    if isinstance(e, FileExistsError) and os.path.exists(name) and not os.path.isdir(name):
        return f"{name} is a file where a folder is needed; give another path or move the file"
    if isinstance(e, NotADirectoryError):
        return f"{name}: part of this path is a file where a folder is needed"
    if isinstance(e, IsADirectoryError):
        return f"{name} is a folder, expected a file"
    if isinstance(e, PermissionError):
        return f"{name}: permission denied"
    if isinstance(e, FileNotFoundError):
        return f"{name}: no such file or folder"
    return f"{name}: {e.strerror or type(e).__name__}"


def _check_paths(args: argparse.Namespace) -> None:
    """Check the path options several commands share, before any work starts: ``--out`` must
    be (or become) a folder, ``--teacher`` an existing file."""
    from bingnn.cli._common import check_input_file, check_output_folder

    if getattr(args, "out", None):
        check_output_folder(args.out)
    if getattr(args, "teacher", None):
        check_input_file(args.teacher, "the teacher's model file", "--teacher")


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
        check_environment()
        _check_paths(args)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
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
    except ImportError as e:  # an optional dependency the command needs is not installed
        if args.debug or _is_own_bug(e):
            raise
        print(f"bingnn: error: {missing_module_message(args.command, e)}", file=sys.stderr)
        return EXIT_USAGE
    except _expected_errors() as e:
        if args.debug:
            raise
        print(f"bingnn: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
