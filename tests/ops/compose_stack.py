"""Loads docker-compose.yml and the files around it for the static checks in tests/ops."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_DIR = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_DIR / "docker-compose.yml"
APP_ROLES = ("init", "web", "worker", "beat", "watermark", "transformer", "sink")
BROKERS = ("kafka-local1", "kafka-local2", "kafka-local3")


@cache
def compose() -> dict[str, Any]:
    # PyYAML resolves the `<<:` merge keys the file uses for the brokers and the app roles, the way
    # Docker Compose does.
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


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
