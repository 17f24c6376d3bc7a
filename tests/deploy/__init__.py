"""The container deployment: docker-compose.yml, the Dockerfile and the scripts in docker/.

Shared helpers: the compose file as Compose itself reads it (YAML merge keys resolved, then
`${VAR:-default}` interpolated with no variable set), the Dockerfile's instructions, and the
scripts of docker/ loaded as modules.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SCRIPTS = REPO / "docker"
SECRETS_EXAMPLE = SCRIPTS / "secrets.example"
APP_SERVICES = ("api", "worker", "beat", "flower")

_VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


def interpolate_text(text: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}."""

    def replace(match: re.Match) -> str:
        escaped, name, operator, default, bare = match.groups()
        if escaped:
            return "$"
        if bare:
            return variables.get(bare, "")
        value = variables.get(name)
        if operator == ":-":
            return value or default
        if operator == "-":
            return default if value is None else value
        if operator in (":?", "?") and not value:
            raise ValueError(f"{name} is required: {default}")
        return value or ""

    return _VARIABLE.sub(replace, text)


def interpolate(node: Any, variables: dict[str, str] | None = None) -> Any:
    variables = variables or {}
    if isinstance(node, dict):
        return {key: interpolate(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, variables) for value in node]
    if isinstance(node, str):
        return interpolate_text(node, variables)
    return node


def raw_compose() -> dict:
    """docker-compose.yml as YAML gives it: merge keys resolved, nothing interpolated."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose() -> dict:
    """docker-compose.yml as Compose runs it when no variable is set: the defaults."""
    return interpolate(raw_compose())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    logical: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines, inside a continued instruction too
        logical.append(stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            word, _space, rest = " ".join(logical).partition(" ")
            instructions.append((word.upper(), rest.strip()))
            logical = []
    return instructions


def dockerfile_json(instruction: str) -> list[str]:
    """The exec-form (JSON array) arguments of the last INSTRUCTION of the final stage."""
    values = [rest for word, rest in dockerfile_instructions() if word == instruction]
    assert values, f"the Dockerfile has no {instruction}"
    return json.loads(values[-1].split(" CMD ", 1)[-1] if instruction == "HEALTHCHECK"
                      else values[-1])


def load_script(name: str) -> ModuleType:
    """docker/NAME.py as a module (the image installs it as /usr/local/bin/h4-NAME)."""
    path = SCRIPTS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"h4_docker_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _rest) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def image_env() -> dict[str, str]:
    """The ENV of the image (the final stage), PATH left out."""
    env: dict[str, str] = {}
    for word, rest in final_stage():
        if word == "ENV":
            for item in rest.split():
                name, _eq, value = item.partition("=")
                if name != "PATH":
                    env[name] = value
    return env
