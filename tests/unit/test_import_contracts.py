"""The boundaries written in pyproject.toml hold; the backup file package loads alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKUP_FILE = ROOT / "common" / "backupfile"
SERVICE_PACKAGES = {"celery", "redis", "flask", "flask_smorest", "kombu"}


def backup_file_modules() -> list[str]:
    """Every module of common.backupfile, found from its files rather than by importing it."""
    modules = []
    for path in sorted(BACKUP_FILE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


@pytest.mark.parametrize("contract", ["backupfile-standalone", "backupfile-read-without-write",
                                      "client-without-server", "no-cycles",
                                      "api-without-worker"])
def test_import_contract_is_kept(contract: str) -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache", "--contract", contract],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_backup_file_package_loads_without_celery_redis_or_flask() -> None:
    modules = backup_file_modules()
    assert "common.backupfile.write.pipeline" in modules
    imports = "; ".join(f"import {name}" for name in modules)
    program = f"import json, sys; {imports}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", program],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    timed = {line.rsplit("|", 1)[-1].strip().split(".")[0]
             for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "common" in timed
    assert (loaded | timed) & SERVICE_PACKAGES == set()
    assert {"worker", "api", "cli"} & (loaded | timed) == set()

