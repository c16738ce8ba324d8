"""The one exception type for a user's mistake.

A ``HarnessError`` is printed by the CLI as a single line (exit code 2, no traceback);
any other exception is a bug and keeps its traceback.
"""


class HarnessError(Exception):
    """A problem with the user's input: a bad path, model, image or setting."""
