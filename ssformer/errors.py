"""The exception a user's mistake raises, so the command line can tell it from a bug.

``ssformer`` prints a :class:`UserError` as one line naming the file or setting, and lets every
other exception show its traceback: a bug must not pass for a user mistake.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the user's input, files or settings (or an environment fault such as a full disk).

    A ``ValueError`` so that library callers who catch ``ValueError`` keep working; the message is
    one line that names what is wrong and where (the file, the setting) and, when there is one, what to do.
    """
