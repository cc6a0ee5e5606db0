"""Entry point of the ``ssformer`` command: dispatches to the sub-command modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ssformer import __version__

# Each sub-command module defines ``add_parser(subparsers)``, which registers its parser and sets
# ``func`` to the function that runs it. Add a module here to add a command.
from ssformer.cli import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssformer", description="SSformer semantic segmentation")
    parser.add_argument("--version", action="version", version=f"ssformer {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in commands():
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as e:  # user errors: one clear line, no traceback
        print(f"ssformer {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
