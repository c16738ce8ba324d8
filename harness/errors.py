"""Every exception type the library raises, and the helpers that word its messages.

A :class:`HarnessError` is printed by the CLI as a single line (exit code 2, no
traceback); any other exception is a bug and keeps its traceback.
"""

class HarnessError(Exception):
    """A problem with the user's input: a bad path, model, image or setting."""


class ModelTimeout(HarnessError):
    """A batch did not finish within the model's time limit."""


class NoCamHead(HarnessError):
    """The model has no head that CAM can read."""


class NonFiniteOutput(HarnessError):
    """The model returned NaN or infinity; ``rows`` indexes the offending images."""

    def __init__(self, model_name: str, rows):
        import numpy as np

        self.model_name = model_name
        self.rows = np.asarray(rows)
        super().__init__(self.describe(self.rows))

    def describe(self, image_indices) -> str:
        shown = ", ".join(str(int(i)) for i in list(image_indices)[:10])
        more = " ..." if len(image_indices) > 10 else ""
        return f"model {self.model_name} returned NaN or infinite scores for images {shown}{more}"

    def remapped(self, index) -> "NonFiniteOutput":
        """The same failure with ``rows`` looked up in ``index`` (rows of a batch ->
        images, or a shard's images -> the whole set's)."""
        import numpy as np

        return NonFiniteOutput(self.model_name, np.unique(np.asarray(index)[self.rows]))

    def __reduce__(self):
        # a cluster worker sends the failure back pickled
        return NonFiniteOutput, (self.model_name, self.rows)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a third-party exception's message (its type when it has none),
    cut to ``limit`` characters: libraries' multi-line errors become one readable line."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def excerpt(value, limit: int = 40) -> str:
    """A piece of a file's content as it may appear in an error: printable characters
    only, at most ``limit`` of them (a file may hold secrets); strings quoted, other
    values as Python writes them."""
    text = value if isinstance(value, str) else repr(value)
    shown = "".join(c if c.isprintable() else "?" for c in text[:limit])
    more = "..." if len(text) > limit else ""
    return (repr(shown) if isinstance(value, str) else shown) + more


def did_you_mean(word: str, options, n: int = 1, quote: bool = True) -> str:
    """``"; did you mean 'x'?"`` with the closest of ``options`` to a misspelt ``word``,
    or ``""`` when none is close."""
    import difflib

    close = difflib.get_close_matches(word, sorted(options), n=n)
    names = [repr(c) if quote else c for c in close]
    return f"; did you mean {' or '.join(names)}?" if close else ""


def printable(text) -> str:
    """``text`` with each control or other unprintable character written as its escape
    (``\\n``, ``\\x1b``, ``\\u2028``): a name read from a file or a manifest cannot start
    a line of its own (a fake ``PASS``), move the cursor or split a CSV or Markdown row."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)
