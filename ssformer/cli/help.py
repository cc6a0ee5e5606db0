"""How ``--help`` reads: module docstrings without their Sphinx markup, and every option's default.

The sub-command modules write their descriptions as docstrings (``a literal``, :mod:`a.module`)
and their option helps by hand; :func:`polish` turns the markup into plain words and appends
``(default: ...)`` to options whose help does not say it already.
"""

from __future__ import annotations

import argparse
import re

_ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|obj):`~?\.?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str | None) -> str | None:
    """``x`` -> x, :func:`x` -> x: a terminal shows the words, not the markup."""
    if not text:
        return text
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def _shown(value: object) -> str:
    """A default as it would be typed: ``512 512`` for a pair."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


class _DefaultsMixin:
    """Appends ``(default: X)`` where the help does not mention a default and there is one to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if not action.option_strings or "default" in text.lower() or not _has_default(action):
            return text
        return f"{text} (default: {_shown(default).replace('%', '%%')})"


class HelpFormatter(_DefaultsMixin, argparse.HelpFormatter):
    """Descriptions re-wrapped; defaults shown."""


class RawDescriptionHelpFormatter(_DefaultsMixin, argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written (docstrings with lists); defaults shown."""


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of ``parser`` by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def polish(parser: argparse.ArgumentParser) -> None:
    """Plain-text descriptions and helps, defaults shown, for ``parser`` and its sub-commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain(choice.help)
    for sub in subcommands(parser).values():
        raw = issubclass(sub.formatter_class, argparse.RawDescriptionHelpFormatter)
        sub.formatter_class = RawDescriptionHelpFormatter if raw else HelpFormatter
        sub.description = plain(sub.description)
        for action in sub._actions:
            if action.help is None and action.option_strings and _has_default(action):
                action.help = f"default: {_shown(action.default)}"  # an option written without a help text
            action.help = plain(action.help) if action.help is not argparse.SUPPRESS else action.help


def _has_default(action: argparse.Action) -> bool:
    """A default worth printing: not None, a flag's True/False, an empty list or SUPPRESS (0 and 1 are)."""
    default = action.default
    if default is None or isinstance(default, bool) or default is argparse.SUPPRESS:
        return False
    return not (isinstance(default, (list, tuple)) and not default)
