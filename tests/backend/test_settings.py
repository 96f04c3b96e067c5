"""The production settings, loaded in a fresh process as a server would load them: outside debug a
server starts only with a real secret key and its host names, passes Django's deployment check,
and on the local stack runs from the key kept in var/."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from backend.settings.env import INSECURE_DEVELOPMENT_KEY
from environment.local_secret import ensure_local_secret_key, secret_key_file

REPO_DIR = Path(__file__).resolve().parents[2]
# What Django's settings print when asked from the command line.
SHOW = "from django.conf import settings; print(settings.ALLOWED_HOSTS, settings.SECURE_SSL_REDIRECT)"


def production_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    """The test run's environment without its DJANGO_* values, as a server would start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "backend.settings.base",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "shop.example.com",
            # No local-stack key there, unless a test puts one.
            "VAR_DIR": str(var_dir),
        }
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


def start(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command], cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def settings_of(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return start(env, "-c", f"import django; django.setup(); {SHOW}")


def test_production_settings_pass_the_deployment_check(tmp_path: Path) -> None:
    result = start(production_env(tmp_path), "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_deployment_check_fails_on_plain_http(tmp_path: Path) -> None:
    # The escape hatch for a plain-HTTP run is what the deployment check flags: the test above
    # passes because of the HTTPS settings, not because the check finds nothing to say.
    env = production_env(tmp_path, DJANGO_HTTPS="0")
    result = start(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT" in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("", "DJANGO_SECRET_KEY is not set"),
        (INSECURE_DEVELOPMENT_KEY, "development key"),
        ("short-but-not-empty", "too weak"),
        ("ab" * 30, "too weak"),
    ],
)
def test_startup_is_refused_without_a_real_secret_key(tmp_path: Path, key: str, named: str) -> None:
    result = settings_of(production_env(tmp_path, DJANGO_SECRET_KEY=key))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr and named in result.stderr


def test_startup_is_refused_without_allowed_hosts(tmp_path: Path) -> None:
    result = settings_of(production_env(tmp_path, DJANGO_ALLOWED_HOSTS=""))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "DJANGO_ALLOWED_HOSTS" in result.stderr


def test_debug_runs_without_a_key(tmp_path: Path) -> None:
    env = production_env(tmp_path, DJANGO_DEBUG="1", DJANGO_SECRET_KEY="", DJANGO_ALLOWED_HOSTS="")
    result = settings_of(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['127.0.0.1',", "'localhost',", "'[::1]']", "False"]


def test_the_local_stack_runs_from_its_key_in_var_on_loopback_over_plain_http(tmp_path: Path) -> None:
    env = production_env(tmp_path, DJANGO_SECRET_KEY="", DJANGO_ALLOWED_HOSTS="")
    assert settings_of(env).returncode != 0

    created = start(env, "-m", "environment.local_secret")  # what make migrate runs first
    assert created.returncode == 0, created.stderr
    path = secret_key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    assert len(key) >= 50

    result = settings_of(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['127.0.0.1',", "'localhost',", "'[::1]']", "False"]
    # The key is kept: a second start, or the supervisor, reuses it.
    assert ensure_local_secret_key(path) == key
    assert start(env, "-m", "environment.local_secret").returncode == 0
    assert path.read_text().strip() == key


def test_a_local_key_others_may_read_is_refused(tmp_path: Path) -> None:
    path = secret_key_file(tmp_path)
    ensure_local_secret_key(path)
    path.chmod(0o644)
    result = settings_of(production_env(tmp_path, DJANGO_SECRET_KEY="", DJANGO_ALLOWED_HOSTS=""))
    assert result.returncode != 0
    assert "chmod 600" in result.stderr


def test_a_configured_key_wins_over_the_local_one_and_needs_allowed_hosts(tmp_path: Path) -> None:
    ensure_local_secret_key(secret_key_file(tmp_path))
    result = settings_of(production_env(tmp_path, DJANGO_ALLOWED_HOSTS=""))
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS" in result.stderr
