"""What the commands share: option types, the baseline flag's parsing, and library
warnings on stderr."""

from __future__ import annotations

from pathlib import Path

import click

from harness.errors import HarnessError


def existing(path_type="any"):
    # Existence is checked by the library, which names the file and the fix.
    return click.Path(path_type=Path, dir_okay=path_type != "file")


def parse_baseline(text: str):
    """``blur``, ``mean`` or a number; its range is SalienceConfig's to check."""
    if text in ("blur", "mean"):
        return text
    try:
        return float(text)
    except ValueError:
        raise HarnessError(f"--baseline {text!r}: use blur, mean, or a grey level in [0, 1]"
                           ) from None


def log_to_stderr():
    """Library warnings (e.g. a cache file that had to be set aside) as ``warning: ...``
    lines on whatever stderr is at the time."""
    import logging

    class Echo(logging.Handler):
        def emit(self, record):
            click.echo(f"warning: {record.getMessage()}", err=True)

    log = logging.getLogger("harness")
    if not any(type(h).__name__ == "Echo" for h in log.handlers):
        log.addHandler(Echo())
        log.propagate = False
