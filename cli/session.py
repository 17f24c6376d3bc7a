"""The client's saved login: `{url, user, token}` in a file only its owner can read."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cli.errors import NOT_AUTHENTICATED, ClientError

FILE_MODE = 0o600
FOLDER_MODE = 0o700


@dataclass(frozen=True)
class Session:
    url: str
    token: str
    user: str = ""


def session_path() -> Path:
    """`H4_SESSION_FILE`, else `$XDG_CONFIG_HOME/h4backup/session.json` (~/.config)."""
    explicit = os.environ.get("H4_SESSION_FILE")
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "h4backup" / "session.json"


def save_session(session: Session, path: Path | None = None) -> Path:
    """Write the token so that it is never readable by others, not even for an instant."""
    path = path or session_path()
    _make_private_folder(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(session), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _make_private_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=FOLDER_MODE)
    # The umask may have cleared bits of the mode, never added any; chmod makes it exact.
    folder.chmod(FOLDER_MODE)


def load_session(path: Path | None = None) -> Session:
    path = path or session_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClientError("not logged in: run `h4backup login` first",
                          NOT_AUTHENTICATED) from None
    _warn_if_readable_by_others(path)
    try:
        data = json.loads(text)
        return Session(url=data["url"], token=data["token"], user=data.get("user", ""))
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"the session file {path} is damaged: run `h4backup login` again",
                          NOT_AUTHENTICATED) from None


def _warn_if_readable_by_others(path: Path) -> None:
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        print(f"h4backup: warning: {path} is readable by others; log in again to rewrite it "
              "with mode 0600", file=sys.stderr)


def remove_session(path: Path | None = None) -> bool:
    path = path or session_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
