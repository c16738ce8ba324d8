"""File output: checked before any work, written atomically (a temporary file beside
the target, then a rename), so an interrupted or failed run never leaves a
half-written result, and never over a file or into a folder the harness did not
write."""

import contextlib
import os
import tempfile
from pathlib import Path

from harness.errors import HarnessError, first_line


def is_file(path) -> bool:
    """Whether ``path`` is a file; a name the file system cannot take (too long, a NUL)
    is none, where ``Path.is_file`` of Python 3.11 raises."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


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


# Written first into every folder the harness makes its own (a run folder, an overlay
# folder): a folder without it that holds anything is the user's, and is never written.
MARKER = ".harness"


def own_folder(folder, what: str) -> Path:
    """Make ``folder`` the harness's: create it, or take it when it is empty or carries
    the marker. Returns the marker's path.

    Raises:
        HarnessError: the folder holds files and no marker: the user's, named, untouched.
    """
    folder = Path(folder)
    marker = folder / MARKER
    if folder.is_dir() and not marker.is_file() and any(folder.iterdir()):
        raise HarnessError(f"{folder}: not empty and not a harness {what} (no {MARKER} "
                           "marker in it); name a new or empty folder: the harness never "
                           "writes over files it did not write")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            marker.write_text(f"This folder is a harness {what}: the next harness run into it "
                              "replaces the files the harness wrote here.\n")
    except OSError as exc:
        raise HarnessError(f"{folder}: cannot write the {what} ({first_line(exc)})") from None
    return marker


def check_replaceable(target, ours=None, force: bool = False, data: bytes | None = None
                      ) -> bool:
    """Whether ``target`` is to be written: refuse to replace a file the harness did
    not write. Absent: yes. ``data`` equal to its bytes: no (nothing to do).
    ``ours(path)`` true (the harness's own mark in it) or ``force``: yes.

    Raises:
        HarnessError: it exists, differs, and is not the harness's.
    """
    target = Path(target)
    if not target.exists():
        return True
    if target.is_dir():
        raise HarnessError(f"{target}: a folder is in the way of the file to write")
    if data is not None and target.stat().st_size == len(data) \
            and target.read_bytes() == data:
        return False
    if force or (ours is not None and ours(target)):
        return True
    raise HarnessError(f"{target}: exists and the harness did not write it; the harness "
                       "never overwrites a file of yours: remove it, write elsewhere, or "
                       "pass --force")


def safe_file_name(name: str, limit: int = 120) -> str:
    """``name`` as one file name: path separators, control characters and anything
    outside letters, digits and ``._-+@=`` become ``_``; no leading dot; at most
    ``limit`` characters."""
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._+@=-]", "_", name).lstrip(".")[:limit]
    return cleaned or "model"
