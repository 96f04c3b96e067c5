"""Loads docker-compose.yml and the files around it for the static checks in tests/ops.

`compose()` is the file as Docker Compose sees it with the `.env` that `make env` writes (its
`${VAR}` references resolved the way Compose resolves them); `raw_compose()` is the file as written,
for the checks of what it may contain.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from scripts.compose_env import generate, read_env_file

REPO_DIR = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_DIR / "docker-compose.yml"
ENV_EXAMPLE = REPO_DIR / ".env.example"
APP_ROLES = ("init", "web", "worker", "beat", "watermark", "transformer", "sink")
BROKERS = ("kafka-local1", "kafka-local2", "kafka-local3")

# Compose's interpolation: $$ is a literal $; ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}.
REFERENCE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class MissingVariable(Exception):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op") or "", match.group("arg") or ""
        current = env.get(name)
        unset = current is None or (op.startswith(":") and current == "")
        if op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op.endswith("-") and unset:
            return arg
        return current or ""

    return REFERENCE.sub(replace, value)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def strings(node: Any) -> Iterator[str]:
    """Every string value of a parsed document (comments are gone)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)


@cache
def stack_env() -> dict[str, str]:
    """A .env as `make env` writes it (fresh random credentials), cached for the session."""
    return read_env_file(generate(ENV_EXAMPLE.read_text()))


@cache
def raw_compose() -> dict[str, Any]:
    # PyYAML resolves the `<<:` merge keys the file uses for the brokers and the app roles, the way
    # Docker Compose does.
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@cache
def compose() -> dict[str, Any]:
    resolved: dict[str, Any] = resolve(raw_compose(), stack_env())
    return resolved


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """host port -> container port."""
    mapping = {}
    for entry in service.get("ports", []):
        parts = str(entry).split(":")  # [ip:]host:container[/protocol]
        assert len(parts) >= 2, f"port {entry!r} is not published on a fixed host port"
        mapping[int(parts[-2])] = int(parts[-1].split("/")[0])
    return mapping


def bind_mounts(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


def env_names_read_by_the_app() -> set[str]:
    """Every environment variable the Django settings, the consumers' settings and the shared
    defaults (environment/) read."""
    pattern = re.compile(r"\b(?:env_[a-z]+|_int|_str|_float)\(\s*(?:env,\s*)?\"([A-Z][A-Z0-9_]*)\"")
    names: set[str] = set()
    sources = [
        *(REPO_DIR / "backend" / "settings").glob("*.py"),
        REPO_DIR / "consumers" / "settings.py",
        REPO_DIR / "environment" / "__init__.py",
    ]
    for path in sources:
        names |= set(pattern.findall(path.read_text()))
    return names
