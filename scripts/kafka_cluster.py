"""A private 3-node KRaft cluster of scripts/services/kafka.sh, on its own free ports and data
directory, for whoever needs to break brokers: the Kafka fault tests and `make chaos`. The shared
cluster (127.0.0.1:19092-19094) is never touched.

    cluster = PrivateKafka.create()
    try:
        cluster.start()
        cluster.stop_node(3)  # a broker failure; start() brings it back
    finally:
        cluster.remove()
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from environment import REPO_DIR

KAFKA_SH = REPO_DIR / "scripts" / "services" / "kafka.sh"


class ClusterError(RuntimeError):
    """The private cluster could not be set up or did not do what it was asked."""


@dataclass
class PrivateKafka:
    env: dict[str, str]
    bootstrap: list[str]
    var_dir: Path

    @classmethod
    def create(cls, *, heap: str = "-Xms128m -Xmx384m") -> PrivateKafka:
        """A cluster on free ports in a fresh directory, reusing the installed Kafka jars
        (read-only); not started yet."""
        shared_var = Path(os.environ.get("VAR_DIR", REPO_DIR / "var"))
        jars = shared_var / "kafka" / "lib"
        if not (jars / ".installed").exists():
            raise ClusterError(
                f"Kafka jars are not installed in {jars}; run `make kafka-jars`"
                " (scripts/services/kafka.sh install)"
            )
        base = free_port_base()
        var_dir = Path(tempfile.mkdtemp(prefix="kafka-private-"))
        (var_dir / "kafka").mkdir()
        (var_dir / "kafka" / "lib").symlink_to(jars)
        env = {
            **os.environ,
            "VAR_DIR": str(var_dir),
            "KAFKA_NODES": "3",
            "KAFKA_PORT_BASE": str(base),
            "KAFKA_CONTROLLER_PORT_BASE": str(base + 100),
            "KAFKA_HEAP_OPTS": heap,
        }
        return cls(env=env, bootstrap=[f"127.0.0.1:{base + n}" for n in (1, 2, 3)], var_dir=var_dir)

    def run(self, *args: str, timeout: float = 120) -> None:
        try:
            done = subprocess.run(
                ["bash", str(KAFKA_SH), *args], env=self.env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"kafka.sh {' '.join(args)} did not finish within {timeout:.0f}s") from exc
        if done.returncode != 0:
            raise ClusterError(
                f"kafka.sh {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def start(self) -> None:
        """Starts every node that is not running and waits for the cluster (KAFKA_START_TIMEOUT
        seconds, kafka.sh's default 90)."""
        self.run("start", timeout=int(self.env.get("KAFKA_START_TIMEOUT") or 90) + 60)

    def stop(self) -> None:
        self.run("stop")

    def stop_node(self, node: int) -> None:
        self.run("stop-node", str(node))

    def kill_node(self, node: int) -> None:
        """A crash: no controlled shutdown, so the metadata lists the node until it is fenced."""
        self.run("kill-node", str(node))

    def in_sync_replicas(self, topic: str, partition: int) -> list[int]:
        """The partition's in-sync replicas as the cluster's metadata lists them."""
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + 20
        while True:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                try:
                    (description,) = admin.describe_topics([topic])
                finally:
                    admin.close()
                break
            except Exception as exc:  # the client asked a stopped broker: ask again
                if time.monotonic() > deadline:
                    raise ClusterError(f"could not describe {topic} on the private cluster: {exc}") from exc
                time.sleep(0.2)
        (state,) = [p for p in description["partitions"] if p["partition_index"] == partition]
        return sorted(state["isr_nodes"])

    def remove(self) -> None:
        """Stops every node (best effort) and deletes the cluster's directory."""
        try:
            self.stop()
        except ClusterError:
            pass
        finally:
            shutil.rmtree(self.var_dir, ignore_errors=True)


def _port_is_free(port: int) -> bool:
    # Binding, not connecting: a port can be taken by the local end of an outgoing connection,
    # which refuses connections yet makes a broker's bind fail.
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base() -> int:
    # Below Linux's ephemeral range (32768 and up), where client sockets pick their local ports,
    # and clear of the shared cluster's 19092-19094 and 29093-29095.
    for _ in range(50):
        base = random.randrange(20000, 28000, 10)
        ports = [base + n for n in (1, 2, 3)] + [base + 100 + n for n in (1, 2, 3)]
        if all(_port_is_free(port) for port in ports):
            return base
    raise ClusterError("no free port range for a private Kafka cluster")
