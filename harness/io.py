"""File output: checked before any work, and written atomically (a temporary file
beside the target, then a rename), so an interrupted or failed run never leaves a
half-written result."""

import contextlib
import os
import tempfile
from pathlib import Path

from harness.errors import HarnessError, first_line


def check_writable(folder, what: str) -> None:
    """Refuse, before any work, a ``folder`` that cannot be created or written: a file
    in its way, or a read-only place. Creates nothing.

    Raises:
        HarnessError: naming the folder and why.
    """
    folder = Path(folder)
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise HarnessError(f"{folder}: cannot create the {what}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise HarnessError(f"{folder}: cannot write the {what}: {probe} is read-only")


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path in ``target``'s folder; on success it replaces ``target``,
    on error it is removed.

    Raises:
        HarnessError: the file could not be written (a full disk, a read-only folder).
    """
    target = Path(target)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix,
                                   dir=target.parent)
        os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make results unreadable to the team
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise HarnessError(f"{target}: cannot write ({first_line(exc)}); nothing was "
                           "written there") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
