"""The one exception type for a user's mistake.

A ``HarnessError`` is printed by the CLI as a single line (exit code 2, no traceback);
any other exception is a bug and keeps its traceback.
"""


class HarnessError(Exception):
    """A problem with the user's input: a bad path, model, image or setting."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a third-party exception's message (its type when it has none),
    cut to ``limit`` characters: libraries' multi-line errors become one readable line."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def did_you_mean(word: str, options, n: int = 1, quote: bool = True) -> str:
    """``"; did you mean 'x'?"`` with the closest of ``options`` to a misspelt ``word``,
    or ``""`` when none is close."""
    import difflib

    close = difflib.get_close_matches(word, sorted(options), n=n)
    names = [repr(c) if quote else c for c in close]
    return f"; did you mean {' or '.join(names)}?" if close else ""
