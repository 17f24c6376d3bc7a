"""Helpers shared by tests that need outside programs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def require_tool(name: str) -> str:
    """Path of an outside program; a missing one skips locally but fails under CI."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package: {name})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def age_decrypts(path: Path, passphrase: str, out: Path) -> subprocess.CompletedProcess:
    """`age -d` as an administrator runs it. It reads a passphrase from a terminal only:
    expect answers its prompt. Its exit status is the returncode."""
    script = (f'spawn -noecho {require_tool("age")} -d -o $env(H4_OUT) $env(H4_IN)\n'
              'expect -re "(?i)passphrase"\n'
              'send -- "$env(H4_PASSPHRASE)\\r"\n'
              'expect eof\n'
              'lassign [wait] pid spawn_id os_error status\n'
              'exit $status\n')
    return subprocess.run([require_tool("expect"), "-c", script], capture_output=True,
                          text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "H4_PASSPHRASE": passphrase,
                               "H4_IN": str(path), "H4_OUT": str(out)})
