"""Files that hold audit data or secrets: created 0600 (owner only), whatever the umask.

Dead letters, checkpoints and spools carry raw audit events (user names, source IPs, request
bodies); they are never created readable by others. An existing file's mode is left as the owner
set it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

PRIVATE = 0o600


def open_private(path: str | os.PathLike[str], mode: str = "ab") -> BinaryIO:
    """Open ``path`` for binary writing/appending; a file created here is 0600."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    if "a" in mode:
        flags |= os.O_APPEND
    elif "w" in mode:
        flags |= os.O_TRUNC
    if "+" in mode:
        flags = (flags & ~os.O_WRONLY) | os.O_RDWR
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, flags, PRIVATE)
    return os.fdopen(fd, mode)  # type: ignore[return-value]  # binary modes only: a BufferedWriter


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename); the file is 0600."""
    tmp = f"{os.fspath(path)}.tmp"
    try:
        os.unlink(tmp)  # a leftover from a crash may have another mode
    except FileNotFoundError:
        pass
    with open_private(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def readable_by_others(path: str | os.PathLike[str]) -> bool:
    """True when group or others may read ``path``."""
    try:
        return bool(os.stat(path).st_mode & 0o044)
    except OSError:
        return False
