"""The client's saved login: `{url, token, user}`, and the server certificate's trust chosen
at login (`ca_cert` or `fingerprint`), in a file only its owner can read."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.errors import NOT_AUTHENTICATED, ClientError
from cli.remote import Trust, fingerprint_text

FILE_MODE = 0o600
FOLDER_MODE = 0o700


@dataclass(frozen=True)
class Session:
    url: str
    token: str
    user: str = ""
    trust: Trust = field(default_factory=Trust)

    def as_json(self) -> dict[str, str]:
        """Flat, and the trust only when one was chosen: `{url, token, user}` otherwise."""
        saved = {"ca_cert": self.trust.ca_cert, "fingerprint": self.trust.fingerprint}
        return {"url": self.url, "token": self.token, "user": self.user,
                **{name: value for name, value in saved.items() if value}}


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
            json.dump(session.as_json(), handle)
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
        return Session(url=data["url"], token=data["token"], user=data.get("user", ""),
                       trust=_saved_trust(data))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ClientError(f"the session file {path} is damaged: run `h4backup login` again",
                          NOT_AUTHENTICATED) from None


def _saved_trust(data: dict[str, Any]) -> Trust:
    """Checked again: a hand-edited fingerprint must fail here, not as a TLS error."""
    if data.get("fingerprint"):
        return Trust(fingerprint=fingerprint_text(data["fingerprint"]))
    # The CA file itself is looked for when it is used; it may be restored by then.
    return Trust(ca_cert=str(data["ca_cert"])) if data.get("ca_cert") else Trust()


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
