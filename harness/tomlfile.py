"""Reading the TOML files users write (run.toml, gate.toml, zoo manifests): one clear
line for a missing file, bad TOML or a misspelt key."""

from __future__ import annotations

import tomllib
from pathlib import Path

from harness.errors import HarnessError, did_you_mean, excerpt


def read_toml(path, what: str) -> dict:
    """Parse ``path``; ``what`` names the kind of file in the error ("config file")."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: no such {what}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not valid TOML ({exc})") from None


def check_keys(found, allowed, where: str) -> None:
    """Refuse a key outside ``allowed``, suggesting the closest valid one."""
    for key in found:
        if key not in allowed:
            raise HarnessError(f"{where}: unknown key {excerpt(key)}"
                               f"{did_you_mean(key, allowed)}")
