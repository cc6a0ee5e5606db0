"""Entry point of the ``ssformer`` command: dispatches to the sub-command modules."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Sequence

from ssformer import __version__

# Each sub-command module defines ``add_parser(subparsers)``, which registers its parser and sets
# ``func`` to the function that runs it. Add a module here to add a command.
from ssformer.cli import commands
from ssformer.cli.help import polish, subcommands
from ssformer.errors import UserError
from ssformer.utils import DiskFullError

# The user's environment, not a bug: a file that is missing, unwritable or in the way, a full disk.
ENVIRONMENT_ERRORS = (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError,
                      DiskFullError)
ENVIRONMENT_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG,
                      errno.ELOOP, errno.EXDEV}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssformer", description="SSformer semantic segmentation")
    parser.add_argument("--version", action="version", version=f"ssformer {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in commands():
        module.add_parser(subparsers)
    polish(parser)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Arguments; one left over is reported with the sub-command's usage, not the top-level one."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = subcommands(parser).get(getattr(args, "command", None) or "", parser)
        given = list(sys.argv[1:] if argv is None else argv)
        no_value = [given[i + 1] for i, a in enumerate(given[:-1]) if a == "--set" and "=" not in given[i + 1]]
        hint = f" (--set takes KEY=VALUE in one word: --set {no_value[0]}={extra[0]})" if no_value else ""
        sub.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


class _Notes(logging.Handler):
    """The library's notes (e.g. settings a checkpoint did not carry) as one stderr line each."""

    command = "ssformer"

    def emit(self, record: logging.LogRecord) -> None:
        print(f"ssformer {self.command}: note: {record.getMessage()}", file=sys.stderr)


_NOTES = _Notes(logging.WARNING)


def _show_notes(command: str) -> None:
    _NOTES.command = command
    logger = logging.getLogger("ssformer")
    if _NOTES not in logger.handlers:
        logger.addHandler(_NOTES)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _show_notes(args.command)
    try:
        return int(args.func(args) or 0)
    except (UserError, OSError) as e:  # the user's to fix: one clear line, no traceback
        if isinstance(e, OSError) and not isinstance(e, ENVIRONMENT_ERRORS) and e.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"ssformer {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    # Any other exception (a plain ValueError included) is a bug: its traceback shows.


def _one_line(error: Exception) -> str:
    """The message; an OS error without one of ours reads "what: file" (its strerror and filename)."""
    if isinstance(error, OSError) and not isinstance(error, DiskFullError) and error.filename is not None:
        where = f"{error.filename} -> {error.filename2}" if error.filename2 is not None else f"{error.filename}"
        return f"{error.strerror or error}: {where}"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
