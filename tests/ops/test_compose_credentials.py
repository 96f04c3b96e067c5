"""The compose stack is safe to start as it is: every host port binds to 127.0.0.1 unless .env says
otherwise, every credential comes from .env and is required (no default, no literal in
docker-compose.yml or in a file it mounts), Redis asks for a password, and `make env` writes
strong values and never overwrites an existing .env."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from backend.settings.env import secret_key
from scripts.compose_env import PLACEHOLDER, read_env_file
from tests.ops.compose_stack import (
    ENV_EXAMPLE,
    REFERENCE,
    REPO_DIR,
    MissingVariable,
    environment,
    raw_compose,
    resolve,
    services,
    stack_env,
    strings,
)

LOOPBACK_PORT = re.compile(r"^(?:127\.0\.0\.1|\$\{BIND_ADDRESS:-127\.0\.0\.1\}):\d+:\d+(?:/(?:tcp|udp))?$")
# Names under which a value is a credential.
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|PWD|SECRET|TOKEN|_KEY$|AUTH", re.IGNORECASE)
# A value that is nothing but a required reference to .env.
REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z][A-Z0-9_]*):\?[^}]+\}$")
# The seed's passwords, and the example's placeholder.
KNOWN_LITERALS = ("test123", "grafana123", "admin123", PLACEHOLDER)


def raw_services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = raw_compose()["services"]
    return found


def example_keys() -> set[str]:
    return set(read_env_file(ENV_EXAMPLE.read_text()))


def mounted_files() -> list[Path]:
    """Every file a service bind-mounts, directories walked."""
    found = []
    for svc in raw_services().values():
        for volume in svc.get("volumes", []):
            source = Path(REPO_DIR / volume.split(":", 1)[0]) if volume.startswith(".") else None
            if source is None:
                continue
            found.extend(sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source])
    return found


def test_every_host_port_binds_to_loopback_unless_env_says_otherwise() -> None:
    entries = [(name, str(e)) for name, svc in raw_services().items() for e in svc.get("ports", [])]
    assert len(entries) >= 12
    wide = [f"{name}: {entry}" for name, entry in entries if not LOOPBACK_PORT.match(entry)]
    assert wide == [], "published on every interface"
    assert read_env_file(ENV_EXAMPLE.read_text())["BIND_ADDRESS"] == "127.0.0.1"
    # As Compose resolves them, with and without BIND_ADDRESS in .env.
    for name, svc in services().items():
        for entry in svc.get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), f"{name}: {entry}"
    unset = {k: v for k, v in stack_env().items() if k != "BIND_ADDRESS"}
    for name, svc in resolve(raw_compose(), unset)["services"].items():
        for entry in svc.get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), f"{name}: {entry}"


def test_every_credential_in_the_compose_file_is_required_from_env() -> None:
    checked = 0
    for name, svc in raw_services().items():
        for key, value in environment(svc).items():
            if SECRET_NAME.search(key) and not key.endswith("_CLASS") and key != "AUTH_TYPE":
                assert REQUIRED.match(value), f"{name}: {key} is {value!r}, not ${{VAR:?...}} from .env"
                checked += 1
            for url in re.findall(r"\b[a-z]+://[^\s\"']+", value):
                password = urlparse(url).password
                if password is not None:
                    assert REQUIRED.match(password), f"{name}: {key} carries a literal password"
                    checked += 1
    assert checked >= 15


def test_no_literal_password_on_a_command_line_of_the_compose_file() -> None:
    for name, svc in raw_services().items():
        commands = [svc.get("command", []), svc.get("healthcheck", {}).get("test", [])]
        text = " ".join(strings(commands))
        for flag in re.findall(r"(?:--password[ =]|(?<![\w-])-p(?=\S)|requirepass )(\S+)", text):
            # A variable, or printf's placeholder for one (Redis' config file).
            given = flag.strip("\"'")
            assert given.startswith(("$", "%s")), f"{name}: a literal password on a command line"
        for literal in KNOWN_LITERALS:
            assert literal not in " ".join(strings(svc)), f"{name}: {literal}"


def test_no_literal_password_in_the_files_the_stack_mounts() -> None:
    files = mounted_files()
    names = {p.name for p in files}
    assert {"datasources.yaml", "clickhouse-sink.json", "clickhouse-grafana-user.sh"} <= names
    assert "mysql-grafana-user.sql" in names
    for path in files:
        text = path.read_text()
        for literal in KNOWN_LITERALS:
            assert literal not in text, f"{path}: {literal}"
        # SQL: a password is given only as a variable (a session variable spliced into the
        # statement, or a hash the shell computed from the environment).
        pattern = r"\bIDENTIFIED\s+(?:WITH\s+\w+\s+)?BY[\s',]+([^;\n]{0,40})"
        for given in re.findall(pattern, text, flags=re.IGNORECASE):
            assert given.startswith(("${", "QUOTE(@")), f"{path}: password {given}"
        if path.suffix in {".yaml", ".yml", ".json"}:
            document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            for key, value in _pairs(document):
                if SECRET_NAME.search(key) and isinstance(value, str):
                    assert value.startswith("${") and value.endswith("}"), f"{path}: {key} = {value!r}"


def _pairs(node: Any) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((str(key), value))
            found.extend(_pairs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_pairs(item))
    return found


def test_every_variable_the_compose_file_uses_is_in_env_example() -> None:
    used = {
        m.group("name")
        for text in strings(raw_compose())
        for m in REFERENCE.finditer(text)
        if m.group("name")
    }
    assert {"BIND_ADDRESS", "DJANGO_SECRET_KEY", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= used
    assert used - example_keys() == set()


def test_a_missing_credential_stops_compose_with_a_message_naming_make_env() -> None:
    for name in sorted(k for k in example_keys() if SECRET_NAME.search(k)):
        env = {k: v for k, v in stack_env().items() if k != name}
        with pytest.raises(MissingVariable, match=f"{name}: set it in .env: make env"):
            resolve(raw_compose(), env)


def test_redis_asks_for_the_password_every_client_url_carries() -> None:
    redis = services()["redis"]
    password = stack_env()["REDIS_PASSWORD"]
    assert environment(redis)["REDIS_PASSWORD"] == password
    command = " ".join(redis["command"])
    assert """printf 'requirepass %s\\n' "$REDIS_PASSWORD" > /tmp/redis.conf""" in command
    assert "exec docker-entrypoint.sh redis-server /tmp/redis.conf" in command
    assert 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping' in " ".join(redis["healthcheck"]["test"])
    urls = [
        (name, value)
        for name, svc in services().items()
        for value in environment(svc).values()
        if value.startswith("redis://")
    ]
    assert {name for name, _ in urls} >= {"web", "worker", "beat", "transformer", "sink"}
    for name, url in urls:
        assert urlparse(url).password == password, f"{name}: {url}"


def make_env(output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "env", f"ENV_FILE={output}"], cwd=REPO_DIR, capture_output=True, text=True, timeout=60
    )


def test_make_env_writes_strong_credentials_and_never_overwrites(tmp_path: Path) -> None:
    output = tmp_path / ".env"
    result = make_env(output)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    written = read_env_file(output.read_text())
    example = read_env_file(ENV_EXAMPLE.read_text())
    assert set(written) == set(example)
    assert PLACEHOLDER not in written.values()
    secrets_written = {k: v for k, v in written.items() if example[k] == PLACEHOLDER}
    assert set(secrets_written) >= {k for k in example if SECRET_NAME.search(k)}
    for key, value in secrets_written.items():
        assert len(value) >= 43 and value.isalnum(), key
    assert len(set(secrets_written.values())) == len(secrets_written), "every credential is its own"
    # The settings take the key (long and varied enough), and Compose resolves with the file.
    assert secret_key(written["DJANGO_SECRET_KEY"], local=None, debug=False) == written["DJANGO_SECRET_KEY"]
    resolved = resolve(raw_compose(), written)
    assert environment(resolved["services"]["web"])["DJANGO_SECRET_KEY"] == written["DJANGO_SECRET_KEY"]

    before = output.read_text()
    again = make_env(output)
    assert again.returncode != 0
    assert "exists" in again.stderr
    assert output.read_text() == before


def test_env_stays_out_of_git_and_out_of_the_image() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO_DIR, timeout=30)
    assert ignored.returncode == 0, ".env is not git-ignored"
    tracked = subprocess.run(
        ["git", "ls-files", ".env.example"], cwd=REPO_DIR, capture_output=True, text=True
    )
    assert tracked.stdout.strip() == ".env.example"
    dockerignore = (REPO_DIR / ".dockerignore").read_text().splitlines()
    assert ".env" in dockerignore
