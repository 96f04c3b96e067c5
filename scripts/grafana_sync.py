"""Create or update the project's Grafana datasources and dashboards in an existing Grafana.

The compose stack provisions Grafana from files at start-up; this script pushes the very same
definitions (grafana/provisioning/datasources/datasources.yaml and grafana/dashboards/*.json)
through Grafana's HTTP API, for a Grafana that runs elsewhere. Running it twice is harmless:
datasources are matched by uid and dashboards are saved with overwrite.

    python -m scripts.grafana_sync [--dry-run] [--skip-datasources]

Environment:
    GRAFANA_URL                        e.g. http://localhost:3001 (required)
    GRAFANA_TOKEN                      a service-account token, or else
    GRAFANA_USER / GRAFANA_PASSWORD    basic auth (the compose stack: admin / GRAFANA_ADMIN_PASSWORD of .env)
    and every ${VAR} the datasource file uses (CLICKHOUSE_HOST, CLICKHOUSE_PORT, CLICKHOUSE_USER,
    CLICKHOUSE_PASSWORD, MYSQL_HOST, MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, PROMETHEUS_URL),
    as the Grafana server reaches those services.

Exit status: 0 on success, 2 for bad configuration (missing variables, unreadable files),
1 when Grafana refuses or cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_DIR = Path(__file__).resolve().parent.parent
DATASOURCES_FILE = REPO_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARDS_DIR = REPO_DIR / "grafana" / "dashboards"
# The folder the compose stack's dashboard provider uses (grafana/provisioning/dashboards).
FOLDER_UID = "outbox-analytics"
FOLDER_TITLE = "Outbox analytics"

# Grafana's own provisioning syntax: $VAR or ${VAR}; $$ is a literal dollar.
_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
# The keys of a provisioning entry that Grafana's datasource API accepts as they are.
_DATASOURCE_API_KEYS = (
    "name",
    "uid",
    "type",
    "access",
    "url",
    "user",
    "database",
    "basicAuth",
    "basicAuthUser",
    "isDefault",
    "jsonData",
    "secureJsonData",
)


class ConfigError(Exception):
    """The script cannot run with the given environment or files."""


@dataclass(frozen=True)
class GrafanaTarget:
    url: str
    credential: str | tuple[str, str]


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Expands $VAR and ${VAR} like Grafana's provisioning does, but refuses unset variables
    (Grafana would silently use an empty string and provision a broken datasource)."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(2)
        if name not in env:
            missing.append(name)
            return ""
        return env[name]

    expanded = _ENV_REFERENCE.sub(replace, text)
    if missing:
        raise ConfigError("set these environment variables: " + ", ".join(sorted(set(missing))))
    return expanded


def load_datasources(env: Mapping[str, str], path: Path = DATASOURCES_FILE) -> list[dict[str, Any]]:
    """The datasource API payloads of the provisioning file, with the environment expanded."""
    try:
        document = yaml.safe_load(expand_env(path.read_text(encoding="utf-8"), env))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    entries = document.get("datasources") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path} lists no datasources")
    return [{key: entry[key] for key in _DATASOURCE_API_KEYS if key in entry} for entry in entries]


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> list[dict[str, Any]]:
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise ConfigError(f"no dashboards in {directory}")
    dashboards = []
    for path in paths:
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read dashboard {path}: {exc}") from exc
        if not isinstance(dashboard, dict) or not dashboard.get("uid"):
            raise ConfigError(f"dashboard {path} has no uid")
        dashboards.append(dashboard)
    return dashboards


def grafana_target(env: Mapping[str, str]) -> GrafanaTarget:
    url = env.get("GRAFANA_URL", "").strip()
    if not url.startswith(("http://", "https://")):
        raise ConfigError("set GRAFANA_URL to Grafana's address, e.g. http://localhost:3001")
    token = env.get("GRAFANA_TOKEN", "").strip()
    if token:
        return GrafanaTarget(url, token)
    user, password = env.get("GRAFANA_USER", "").strip(), env.get("GRAFANA_PASSWORD", "")
    if not user or not password:
        raise ConfigError("set GRAFANA_TOKEN, or GRAFANA_USER and GRAFANA_PASSWORD")
    return GrafanaTarget(url, (user, password))


def dashboard_save_payload(dashboard: Mapping[str, Any], folder_uid: str) -> dict[str, Any]:
    # No numeric id: Grafana matches by uid, so the same file updates the same dashboard everywhere.
    body = {key: value for key, value in dashboard.items() if key != "id"}
    return {
        "dashboard": body,
        "folderUid": folder_uid,
        "overwrite": True,
        "message": "synced from the project's dashboards",
    }


def sync(api: Any, datasources: list[dict[str, Any]], dashboards: list[dict[str, Any]]) -> list[str]:
    """Upserts datasources (by uid), the folder and the dashboards; returns what it did."""
    from grafana_client.client import GrafanaClientError

    done: list[str] = []
    for datasource in datasources:
        uid = datasource["uid"]
        try:
            api.datasource.get_datasource_by_uid(uid)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.datasource.create_datasource(datasource)
            done.append(f"created datasource {uid}")
        else:
            api.datasource.update_datasource_by_uid(uid, datasource)
            done.append(f"updated datasource {uid}")
    if dashboards:
        try:
            api.folder.get_folder(FOLDER_UID)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
            done.append(f"created folder {FOLDER_UID}")
    for dashboard in dashboards:
        api.dashboard.update_dashboard(dashboard_save_payload(dashboard, FOLDER_UID))
        done.append(f"saved dashboard {dashboard['uid']} ({dashboard.get('title', '')})")
    return done


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the API payloads, change nothing")
    parser.add_argument("--skip-datasources", action="store_true", help="push the dashboards only")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    try:
        datasources = [] if args.skip_datasources else load_datasources(env)
        dashboards = load_dashboards()
        if args.dry_run:
            payload = {
                "datasources": datasources,
                "dashboards": [dashboard_save_payload(d, FOLDER_UID) for d in dashboards],
            }
            print(json.dumps(payload, indent=2))
            return 0
        target = grafana_target(env)
    except ConfigError as exc:
        print(f"grafana_sync: {exc}", file=sys.stderr)
        return 2

    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

    api = GrafanaApi.from_url(target.url, credential=target.credential, timeout=10.0)
    try:
        for line in sync(api, datasources, dashboards):
            print(line)
    except (GrafanaException, OSError) as exc:
        print(f"grafana_sync: Grafana at {target.url} refused or is unreachable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
