"""The one exception type for user mistakes.

Anything a user can fix (a bad value, a missing data folder, an unwritable output dir) raises
``UserError`` with a one-line message that names the problem and the fix. The CLI prints that line
and exits with status 2; it never shows a traceback for these.
"""


class UserError(Exception):
    """A mistake in the user's input, reported as one line without a traceback."""
