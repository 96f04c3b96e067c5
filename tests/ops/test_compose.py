"""Static checks of the compose stack (no Docker engine runs on our machines; `make lint` validates
docker-compose.yml against the compose-spec schema): every file it references exists, the start order is
enforced by healthchecks and depends_on conditions, and the ports, credentials and environment
agree with the app's settings, the Grafana provisioning and the Kafka Connect sink config."""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest
import yaml

from backend.settings.env import database_from_url
from consumers.settings import ConsumerSettings
from tests.ops.compose_stack import (
    APP_ROLES,
    BROKERS,
    REPO_DIR,
    bind_mounts,
    env_names_read_by_the_app,
    environment,
    published_ports,
    services,
    stack_env,
)


def test_the_seed_services_are_all_there() -> None:
    expected = {
        *BROKERS,
        "mysql-local",
        "clickhouse-local",
        "grafana",
        "kafka-connect",
        "kafka-ui",
        "redis",
        *APP_ROLES,
    }
    assert expected <= set(services())


def test_the_project_roles_share_one_image_built_from_the_dockerfile() -> None:
    images = {services()[role]["image"] for role in APP_ROLES}
    assert len(images) == 1
    for role in APP_ROLES:
        build = services()[role]["build"]
        assert (REPO_DIR / build["context"] / build["dockerfile"]).is_file()


def test_every_mounted_file_exists() -> None:
    mounted = [(name, source) for name, svc in services().items() for source in bind_mounts(svc)]
    assert mounted, "expected bind mounts (Grafana provisioning, Prometheus, Kafka Connect)"
    missing = [f"{name}: {source}" for name, source in mounted if not (REPO_DIR / source).exists()]
    assert missing == []


def test_start_order_is_enforced_by_healthchecks_and_conditions() -> None:
    svcs = services()
    for name, svc in svcs.items():
        for dependency, rule in svc.get("depends_on", {}).items():
            assert dependency in svcs, f"{name} depends on unknown service {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in svcs[dependency], f"{name} waits for {dependency} to be healthy"
    init = svcs["init"]["depends_on"]
    for dependency in (*BROKERS, "mysql-local", "clickhouse-local"):
        assert init[dependency]["condition"] == "service_healthy", dependency
    for role in APP_ROLES[1:]:
        assert svcs[role]["depends_on"]["init"]["condition"] == "service_completed_successfully", role
    assert svcs["init"]["restart"] == "no"


def test_no_dependency_cycles() -> None:
    graph = {name: set(svc.get("depends_on", {})) for name, svc in services().items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for dependency in graph[name]:
                visit(dependency, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())


def test_init_applies_migrations_the_clickhouse_ddl_and_topics() -> None:
    command = " ".join(services()["init"]["command"])
    for step in ("manage.py migrate", "manage.py clickhouse_migrate", "manage.py kafka_topics"):
        assert step in command


def test_kafka_cluster_is_the_seeds_three_node_kraft_cluster() -> None:
    voters = []
    for node_id, name in enumerate(BROKERS, start=1):
        svc = services()[name]
        env = environment(svc)
        assert svc["image"].startswith("apache/kafka:")
        assert env["KAFKA_NODE_ID"] == str(node_id)
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        external = 19091 + node_id
        assert env["KAFKA_LISTENERS"] == f"PLAINTEXT://:29092,CONTROLLER://:29093,EXTERNAL://:{external}"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == (
            f"PLAINTEXT://{name}:29092,EXTERNAL://localhost:{external}"
        )
        assert published_ports(svc) == {external: external}
        voters.append(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["CLUSTER_ID"] == environment(services()[BROKERS[0]])["CLUSTER_ID"]
    expected_voters = ",".join(f"{i}@{name}:29093" for i, name in enumerate(BROKERS, start=1))
    assert set(voters) == {expected_voters}


def test_published_ports_are_the_seeds() -> None:
    svcs = services()
    assert published_ports(svcs["mysql-local"]) == {3306: 3306}
    assert published_ports(svcs["clickhouse-local"])[8123] == 8123
    assert published_ports(svcs["grafana"]) == {3001: 3000}
    assert published_ports(svcs["kafka-ui"]) == {8080: 8080}
    assert published_ports(svcs["kafka-connect"]) == {8083: 8083}
    assert published_ports(svcs["redis"]) == {6379: 6379}
    assert published_ports(svcs["web"]) == {8000: 8000}
    all_host_ports = [port for svc in svcs.values() for port in published_ports(svc)]
    assert len(all_host_ports) == len(set(all_host_ports)), "two services publish the same host port"


def test_app_environment_is_read_by_the_app_and_points_at_the_compose_services() -> None:
    svcs = services()
    known = env_names_read_by_the_app() | {"DJANGO_SETTINGS_MODULE"}
    for role in APP_ROLES:
        env = environment(svcs[role])
        unknown = set(env) - known
        assert not unknown, f"{role} sets variables the app never reads: {sorted(unknown)}"

    env = environment(svcs["web"])
    mysql = environment(svcs["mysql-local"])
    database = database_from_url(env["DATABASE_URL"])
    assert (database["HOST"], int(str(database["PORT"]))) == ("mysql-local", 3306)
    assert (database["USER"], database["PASSWORD"]) == (mysql["MYSQL_USER"], mysql["MYSQL_PASSWORD"])
    assert database["NAME"] == mysql["MYSQL_DATABASE"] == "ecommerce"
    assert (mysql["MYSQL_ROOT_PASSWORD"], mysql["MYSQL_USER"], mysql["MYSQL_PASSWORD"]) == (
        stack_env()["MYSQL_ROOT_PASSWORD"],
        "admin",
        stack_env()["MYSQL_PASSWORD"],
    )

    clickhouse = environment(svcs["clickhouse-local"])
    url = urlparse(env["CLICKHOUSE_URL"])
    assert (url.scheme, url.hostname, url.port) == ("http", "clickhouse-local", 8123)
    assert (url.username, url.password) == (clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"])
    assert (url.username, url.password) == ("admin", stack_env()["CLICKHOUSE_PASSWORD"])
    assert env["CLICKHOUSE_DATABASE"] == clickhouse["CLICKHOUSE_DB"] == "analytics"

    redis = urlparse(env["CELERY_BROKER_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    assert redis.password == stack_env()["REDIS_PASSWORD"] == environment(svcs["redis"])["REDIS_PASSWORD"]

    consumer = ConsumerSettings.from_env(env)
    assert consumer.kafka_bootstrap_servers == [f"{name}:29092" for name in BROKERS]
    assert consumer.clickhouse_url == env["CLICKHOUSE_URL"]
    assert (consumer.order_events_topic, consumer.analytics_topic) == ("order.events", "orders_analytics")


def test_web_and_its_healthcheck_use_the_apps_port_and_health_endpoint() -> None:
    web = services()["web"]
    assert "0.0.0.0:8000" in web["command"]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    urls = (REPO_DIR / "backend" / "urls.py").read_text() + (REPO_DIR / "backend" / "api.py").read_text()
    assert "healthz" in urls


def test_grafana_gets_the_clickhouse_plugin_and_every_variable_its_provisioning_uses() -> None:
    grafana = services()["grafana"]
    env = environment(grafana)
    assert "grafana-clickhouse-datasource" in env["GF_INSTALL_PLUGINS"].split(",")
    assert (env["GF_SECURITY_ADMIN_USER"], env["GF_SECURITY_ADMIN_PASSWORD"]) == (
        "admin",
        stack_env()["GRAFANA_ADMIN_PASSWORD"],
    )
    provisioning = (REPO_DIR / "grafana/provisioning/datasources/datasources.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)\}", provisioning))
    assert used and used <= set(env), f"unset in Grafana's environment: {sorted(used - set(env))}"
    assert (env["CLICKHOUSE_HOST"], env["CLICKHOUSE_PORT"]) == ("clickhouse-local", "8123")
    assert env["MYSQL_HOST"] == "mysql-local:3306"
    assert env["MYSQL_DATABASE"] == environment(services()["mysql-local"])["MYSQL_DATABASE"]
    assert env["PROMETHEUS_URL"] == "http://prometheus:9090"

    # The dashboard provider reads the directory the compose file mounts the dashboards into.
    provider = yaml.safe_load((REPO_DIR / "grafana/provisioning/dashboards/dashboards.yaml").read_text())
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith(".")}
    assert mounts[provider["providers"][0]["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_prometheus_scrapes_services_that_exist() -> None:
    config = yaml.safe_load((REPO_DIR / "grafana" / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host = target.split(":")[0]
            assert host in services(), f"{job['job_name']} scrapes unknown service {host}"
    assert "web:8000" in {t for job in config["scrape_configs"] for t in job["static_configs"][0]["targets"]}


def test_kafka_connect_is_optional_and_its_sink_agrees_with_clickhouse_and_the_topics() -> None:
    connect = services()["kafka-connect"]
    assert connect["profiles"] == ["connect"], "the Python sink is the default writer"
    connect_env = environment(connect)
    assert connect_env["CONNECT_BOOTSTRAP_SERVERS"] == ",".join(f"{b}:29092" for b in BROKERS)
    assert connect_env["CONNECT_VALUE_CONVERTER"] == "org.apache.kafka.connect.json.JsonConverter"

    connector = json.loads((REPO_DIR / "kafka-connect" / "clickhouse-sink.json").read_text())
    config = connector["config"]
    clickhouse = environment(services()["clickhouse-local"])
    app = ConsumerSettings.from_env(environment(services()["sink"]))
    assert config["connector.class"] == "com.clickhouse.kafka.connect.ClickHouseSinkConnector"
    assert (config["hostname"], config["port"]) == ("clickhouse-local", "8123")
    # The worker resolves the password from its own environment (Kafka's EnvVarConfigProvider).
    assert (config["username"], config["password"]) == (
        clickhouse["CLICKHOUSE_USER"],
        "${env:CLICKHOUSE_PASSWORD}",
    )
    assert connect_env["CLICKHOUSE_PASSWORD"] == clickhouse["CLICKHOUSE_PASSWORD"]
    assert connect_env["CONNECT_CONFIG_PROVIDERS"] == "env"
    assert connect_env["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"] == (
        "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
    )
    assert config["database"] == app.clickhouse_database
    assert config["topics"] == app.analytics_topic
    assert config["topic2TableMap"] == f"{app.analytics_topic}=orders_analytics"
    assert config["errors.deadletterqueue.topic.name"] == app.analytics_dlq_topic
    assert config["value.converter.schemas.enable"] == "false"


def test_debezium_is_optional_reads_with_its_own_account_and_relays_to_the_apps_topic() -> None:
    debezium = services()["debezium"]
    grants = services()["cdc-grants"]
    assert debezium["profiles"] == grants["profiles"] == ["connect"], "our relay is the default"
    assert "ports" not in debezium, "its REST API stays inside the compose network"
    env = environment(debezium)
    connector = json.loads((REPO_DIR / "kafka-connect" / "debezium-outbox.json").read_text())
    referenced = set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", json.dumps(connector)))
    assert referenced <= set(env), f"unset in the debezium service: {sorted(referenced - set(env))}"
    app = environment(services()["worker"])
    assert env["DEBEZIUM_TOPIC"] == app["ORDER_EVENTS_TOPIC"]
    assert env["DEBEZIUM_BOOTSTRAP_SERVERS"] == env["BOOTSTRAP_SERVERS"] == app["KAFKA_BOOTSTRAP_SERVERS"]
    assert (env["DEBEZIUM_DATABASE_HOST"], env["DEBEZIUM_DATABASE"]) == ("mysql-local", "ecommerce")
    assert env["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"] == (
        "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
    )
    # Its account is the one cdc-grants creates (kafka-connect/mysql-cdc-user.sql, tested on
    # MariaDB by tests/ops/test_cdc_grants.py), not the app's.
    assert env["DEBEZIUM_DATABASE_USER"] != environment(services()["mysql-local"])["MYSQL_USER"]
    command = " ".join(grants["command"])
    assert f"@cdc_user = '{env['DEBEZIUM_DATABASE_USER']}'" in command
    assert f"@cdc_database = '{env['DEBEZIUM_DATABASE']}'" in command
    assert "SOURCE /grants/mysql-cdc-user.sql" in command
    assert environment(grants)["CDC_MYSQL_PASSWORD"] == env["DEBEZIUM_DATABASE_PASSWORD"]
    assert grants["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert debezium["depends_on"]["cdc-grants"]["condition"] == "service_completed_successfully"
    for name in ("CONFIG", "OFFSET", "STATUS"):
        assert env[f"CONNECT_{name}_STORAGE_REPLICATION_FACTOR"] == "3"


@pytest.mark.parametrize(
    "image_service", ["mysql-local", "clickhouse-local", "grafana", "redis", "kafka-ui", "debezium"]
)
def test_third_party_images_are_pinned(image_service: str) -> None:
    image = services()[image_service]["image"]
    assert ":" in image and not image.endswith(":latest"), image


def test_compose_brokers_run_the_same_kafka_release_as_the_local_stack() -> None:
    script = (REPO_DIR / "scripts" / "services" / "kafka.sh").read_text()
    match = re.search(r"^KAFKA_VERSION=(\S+)", script, flags=re.MULTILINE)
    assert match, "KAFKA_VERSION not found in scripts/services/kafka.sh"
    for name in BROKERS:
        assert services()[name]["image"] == f"apache/kafka:{match.group(1)}", name


def test_init_and_the_roles_run_commands_that_exist() -> None:
    from django.core.management import get_commands

    commands = get_commands()
    init = " ".join(services()["init"]["command"])
    for name in re.findall(r"manage\.py (\w+)", init):
        assert name in commands, f"init runs manage.py {name}, which is not a management command"
    for role in ("transformer", "sink"):
        assert services()[role]["command"][:3] == ["python", "-m", "consumers"]
    runner = (REPO_DIR / "consumers" / "__main__.py").read_text() + (
        REPO_DIR / "consumers" / "runner.py"
    ).read_text()
    for role in ("transformer", "sink"):
        assert f'"{services()[role]["command"][3]}"' in runner, f"python -m consumers has no role {role}"


def initdb_script(service: str) -> str:
    """The script a database image runs on its first start, from the file mounted for it."""
    mounts = [v for v in services()[service]["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert len(mounts) == 1, f"{service}: expected one init script"
    return (REPO_DIR / mounts[0].split(":")[0]).read_text()


def test_grafana_reads_through_read_only_accounts_created_at_first_start() -> None:
    env = environment(services()["grafana"])
    grants = services()["grafana-grants"]
    user, password = env["MYSQL_USER"], env["MYSQL_PASSWORD"]
    assert user != environment(services()["mysql-local"])["MYSQL_USER"], (
        "Grafana must not use the app's account"
    )
    # The grants run after the migrations (their column grants need the outbox table), with the
    # account Grafana's datasource uses; tests/ops/test_grafana_grants.py runs the SQL on MariaDB.
    assert grants["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services()["grafana"]["depends_on"]["grafana-grants"]["condition"] == (
        "service_completed_successfully"
    )
    command = " ".join(grants["command"])
    assert f"@grafana_user = '{user}'" in command
    assert f"@grafana_database = '{env['MYSQL_DATABASE']}'" in command
    assert "SOURCE /grants/mysql-grafana-user.sql" in command
    assert environment(grants)["GRAFANA_MYSQL_PASSWORD"] == password
    assert "./grafana/sql/mysql-grafana-user.sql:/grants/mysql-grafana-user.sql:ro" in grants["volumes"]
    mysql_sql = (REPO_DIR / "grafana" / "sql" / "mysql-grafana-user.sql").read_text()
    assert not re.search(r"GRANT\s+(ALL|INSERT|UPDATE|DELETE)", mysql_sql, flags=re.IGNORECASE)

    clickhouse_sql = initdb_script("clickhouse-local")
    clickhouse = environment(services()["clickhouse-local"])
    user, password = env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"]
    assert user != clickhouse["CLICKHOUSE_USER"]
    # The script hashes the password it finds in the server's environment, the one Grafana uses.
    assert clickhouse["CLICKHOUSE_GRAFANA_PASSWORD"] == password
    assert '"$CLICKHOUSE_GRAFANA_PASSWORD" | sha256sum' in clickhouse_sql
    hashed = "IDENTIFIED WITH sha256_hash BY '${grafana_password_sha256}'"
    assert f"CREATE USER IF NOT EXISTS {user} {hashed}" in clickhouse_sql
    assert f"ALTER USER {user} {hashed}" in clickhouse_sql
    assert clickhouse["CLICKHOUSE_DB"] == "analytics"
    assert f"GRANT SELECT ON ${{CLICKHOUSE_DB}}.* TO {user}" in clickhouse_sql
    assert "readonly = 2" in clickhouse_sql
    # Every table outside the analytics database that a ClickHouse panel reads is granted.
    from tests.ops.grafana_queries import panel_queries

    for query in panel_queries():
        if query.datasource_type == "grafana-clickhouse-datasource":
            for table in re.findall(r"\bFROM\s+(system\.\w+)", query.text):
                assert f"GRANT SELECT ON {table} TO {user}" in clickhouse_sql, f"{query.key}: {table}"
