"""Helpers shared by tests that need outside programs."""

from __future__ import annotations

import os
import shutil

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
