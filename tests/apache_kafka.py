"""Apache Kafka brokers for the test suite: jars from Maven Central, KRaft mode, loopback ports.

``tools/apache-kafka/pom.xml`` pins the version. Maven resolves the jars into its local
repository and writes their class path to a cache file outside the repository; this module
formats KRaft storage and starts combined broker+controller nodes with the JDK, as one broker
or as a cluster (for failover), optionally with TLS (client certificates) and SASL/SCRAM
listeners beside the plaintext one.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from xml.etree import ElementTree

from gateway.kafka.embedded import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[1]
POM = ROOT / "tools" / "apache-kafka" / "pom.xml"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}

#: The line a KRaft node logs once it is registered and unfenced, i.e. serving clients.
_STARTED = "Kafka Server started"


class ApacheKafkaUnavailable(RuntimeError):
    """No JDK or Maven here, or Maven could not resolve the jars."""


def kafka_version() -> str:
    version = ElementTree.parse(POM).findtext("m:properties/m:kafka.version", namespaces=_POM_NS)
    if not version:
        raise ApacheKafkaUnavailable(f"{POM} names no kafka.version property")
    return version


def missing_tools() -> list[str]:
    """The commands this module needs that are not on PATH (empty: it can run)."""
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dcp-gateway" / f"apache-kafka-{kafka_version()}"


def classpath() -> str:
    """The broker's class path, resolved by Maven once and cached (outside the repository)."""
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "classpath.txt"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once resolve it once
        if not _usable(target):
            _resolve(target)
    return target.read_text().strip()


def _usable(target: Path) -> bool:
    if not target.is_file():
        return False
    jars = target.read_text().strip().split(os.pathsep)
    return bool(jars) and all(Path(jar).is_file() for jar in jars)


def _resolve(target: Path) -> None:
    if missing := missing_tools():
        raise ApacheKafkaUnavailable(f"not on PATH: {', '.join(missing)}")
    partial = target.with_suffix(".partial")
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:build-classpath",
            f"-Dmdep.outputFile={partial}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0 or not partial.is_file():
        raise ApacheKafkaUnavailable(
            f"mvn could not resolve Apache Kafka {kafka_version()}:\n{result.stdout}{result.stderr}"
        )
    partial.replace(target)


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def _cluster_id() -> str:
    """A Kafka ``Uuid`` in its text form: 16 random bytes, URL-safe base64, no padding."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


@dataclass(frozen=True)
class BrokerTls:
    """PEM files for the TLS listeners: the broker's key and chain, and the CA it trusts for
    client certificates."""

    keystore: Path  # PKCS#8 key followed by the certificate chain
    truststore: Path  # CA certificate(s)


@dataclass
class _Node:
    node_id: int
    data_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    ssl_port: int = field(default_factory=free_port)
    sasl_ssl_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def config(self) -> Path:
        return self.data_dir / "server.properties"


class ApacheKafka:
    """One or more combined broker+controller nodes on loopback. Use as a context manager.

    With ``nodes=3`` it is a cluster with replication factor 3 and ``min.insync.replicas=2``,
    so one node can be stopped (``stop_node``) and started again (``start_node``) while
    clients carry on. ``tls`` adds an SSL listener that requires client certificates and,
    with ``scram_users``, a SASL_SSL listener with SCRAM-SHA-512.
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        workdir: Path | None = None,
        tls: BrokerTls | None = None,
        scram_users: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        if scram_users and tls is None:
            raise ValueError("SCRAM users need the TLS listener (SASL_SSL)")
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="apache-kafka-"))
        self.tls = tls
        self.scram_users = dict(scram_users or {})
        self.extra = dict(extra or {})
        self.nodes = [_Node(i + 1, self.workdir / f"node-{i + 1}") for i in range(nodes)]
        self.version = kafka_version()

    # -- addresses -------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def ssl_bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.ssl_port}" for n in self.nodes)

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.sasl_ssl_port}" for n in self.nodes)

    # -- life cycle ------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> ApacheKafka:
        cp = classpath()
        cluster_id = _cluster_id()
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            node.config.write_text(self._properties(node))
        formats = [self._format(cp, cluster_id, node) for node in self.nodes]
        for node, proc in zip(self.nodes, formats, strict=True):
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"formatting node {node.node_id} failed:\n{out.decode()}")
        for node in self.nodes:
            self._launch(cp, node)
        try:
            self._wait_started(self.nodes, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            self._end(node, graceful=False)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_node(self, index: int, *, graceful: bool = False) -> None:
        """Stop one node: SIGKILL (a crash) by default, or a controlled shutdown."""
        self._end(self.nodes[index], graceful=graceful)

    def start_node(self, index: int, timeout: float = 90.0) -> None:
        node = self.nodes[index]
        self._launch(classpath(), node)
        self._wait_started([node], timeout)

    def pid(self, index: int) -> int:
        proc = self.nodes[index].proc
        if proc is None:
            raise RuntimeError(f"node {index} is not running")
        return proc.pid

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers ---------------------------------------------------------------------------

    def _properties(self, node: _Node) -> str:
        replicas = len(self.nodes)
        min_isr = 2 if replicas >= 3 else 1
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        listeners = {
            "PLAINTEXT": node.port,
            "CONTROLLER": node.controller_port,
        }
        protocols = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
        props: dict[str, str | int] = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.data_dir / "data"),
            "num.partitions": 1,
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": 5,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            # Tests: joins without the 3 s wait for more members, short sessions allowed.
            "group.initial.rebalance.delay.ms": 0,
            "group.min.session.timeout.ms": 1000,
        }
        if self.tls is not None:
            listeners["SSL"] = node.ssl_port
            protocols["SSL"] = "SSL"
            props.update(
                {
                    "ssl.keystore.type": "PEM",
                    "ssl.keystore.location": str(self.tls.keystore),
                    "ssl.truststore.type": "PEM",
                    "ssl.truststore.location": str(self.tls.truststore),
                    "listener.name.ssl.ssl.client.auth": "required",
                }
            )
        if self.scram_users:
            listeners["SASL_SSL"] = node.sasl_ssl_port
            protocols["SASL_SSL"] = "SASL_SSL"
            props.update(
                {
                    "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                    "listener.name.sasl_ssl.ssl.client.auth": "none",
                    "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    ),
                }
            )
        props["listeners"] = ",".join(f"{n}://127.0.0.1:{p}" for n, p in listeners.items())
        props["advertised.listeners"] = ",".join(
            f"{n}://127.0.0.1:{p}" for n, p in listeners.items() if n != "CONTROLLER"
        )
        props["listener.security.protocol.map"] = ",".join(f"{n}:{p}" for n, p in protocols.items())
        props.update(self.extra)
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _format(self, cp: str, cluster_id: str, node: _Node) -> subprocess.Popen[bytes]:
        scram = [
            arg
            for user, password in self.scram_users.items()
            for arg in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]")
        ]
        return subprocess.Popen(
            [
                _java(),
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",  # an ID may start with "-"
                f"--config={node.config}",
                *scram,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def _launch(self, cp: str, node: _Node) -> None:
        if node.proc is not None and node.proc.poll() is None:
            raise RuntimeError(f"node {node.node_id} is already running")
        with open(node.log, "ab") as log:
            log.write(b"--- start ---\n")
            log.flush()
            node.proc = subprocess.Popen(
                [
                    _java(),
                    "-Xms128m",
                    "-Xmx768m",
                    "-Djava.awt.headless=true",
                    "-Dorg.slf4j.simpleLogger.showDateTime=true",
                    "-cp",
                    cp,
                    "kafka.Kafka",
                    str(node.config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def _wait_started(self, nodes: list[_Node], timeout: float) -> None:
        """Each node's log says it is serving, after the ``--- start ---`` line just written."""
        deadline = time.monotonic() + timeout
        waiting = list(nodes)
        while waiting:
            for node in list(waiting):
                assert node.proc is not None
                if node.proc.poll() is not None:
                    raise RuntimeError(
                        f"Kafka node {node.node_id} exited with {node.proc.returncode} at start; "
                        f"last lines of {node.log}:\n{_tail(node.log)}"
                    )
                if _STARTED in node.log.read_text(errors="replace").rsplit("--- start ---", 1)[-1]:
                    waiting.remove(node)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(
                    f"Kafka node(s) {[n.node_id for n in waiting]} did not start within "
                    f"{timeout:.0f} s; last lines of {waiting[0].log}:\n{_tail(waiting[0].log)}"
                )
            if waiting:
                time.sleep(0.1)

    @staticmethod
    def _end(node: _Node, *, graceful: bool) -> None:
        proc, node.proc = node.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"
