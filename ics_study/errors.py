"""The one exception type for user mistakes.

Anything a user can fix (a bad value, a missing data folder, an unwritable output dir) raises
``UserError`` with a one-line message that names the problem and the fix. The CLI prints that line
and exits with status 2; it never shows a traceback for these.
"""


class UserError(Exception):
    """A mistake in the user's input, reported as one line without a traceback."""


class WriteFailed(Exception):
    """Writing a result file failed (a full disk, a quota, an I/O error): not the user's input.

    The CLI stops cleanly on it: one line naming the file and the error, that the last checkpoint is
    intact, and how to resume; exit status 4."""

    def __init__(self, path, error: OSError):
        self.path, self.error = str(path), error
        super().__init__(f"writing {path} failed: {error.strerror or error}")
