"""Files only this account may read: secrets, keys, generated passwords."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE = 0o600


def create_once(path: Path, text: str) -> bool:
    """Write `text` to a new file of mode 0600; False, and nothing written, if it exists.

    O_EXCL: two processes starting at once never both write, and never read a half-written
    file as the other's."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True


def replace(path: Path, data: bytes | str, mode: int = PRIVATE) -> None:
    """Write `data` to a temporary file beside `path` (`mode`, fsynced) and move it into place
    in one step: a reader sees the old file or the new one, never a part."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask may have taken bits away
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
