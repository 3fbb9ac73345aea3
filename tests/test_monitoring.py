"""Alert rules and the Grafana dashboard under deploy/: checked and unit-tested by promtool.

promtool checks the rule files and runs ``rules.test.yaml``, which has a firing case for every
alert; every panel query of the dashboard is checked by promtool as a recording rule, so a typo
in a dashboard cannot ship. The runbook (docs/operations.md) has a section per alert.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.signing.errors import RejectReason
from tests.promtool_fixtures import run_promtool

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "rules.yaml"
RULE_TESTS = MONITORING / "rules.test.yaml"
DASHBOARD = MONITORING / "dashboard.json"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Grafana's variables, as the dashboard would resolve them, so promtool can parse the queries.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "dcp-gateway"}


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_rules_file_passes_promtool_check() -> None:
    assert "SUCCESS" in run_promtool("check", "rules", str(RULES))


def test_every_alert_passes_its_promtool_unit_tests() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", RULE_TESTS.name, cwd=MONITORING)


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for group in tests
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {alert["alert"] for alert in _alerts()} == fired


def test_every_alert_has_severity_summary_and_a_runbook_section() -> None:
    runbook = OPERATIONS.read_text(encoding="utf-8")
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", runbook, re.M)
    }
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        url = alert["annotations"]["runbook_url"]
        assert url == f"docs/operations.md#{alert['alert'].lower()}"
        assert url.split("#")[1] in headings, f"no runbook section for {alert['alert']}"


def test_the_prometheus_rule_carries_exactly_the_rules_file() -> None:
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == yaml.safe_load(RULES.read_text())


def test_the_signature_alert_covers_every_signature_rejection_reason() -> None:
    (alert,) = [a for a in _alerts() if a["alert"] == "DcpGatewayIngressSignatureRejections"]
    found = re.search(r'reason=~"([^"]+)"', alert["expr"])
    assert found is not None
    listed = set(found.group(1).split("|"))
    assert listed == {reason.value for reason in RejectReason}


# -- dashboard ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_the_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "dcp-gateway" and dashboard["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in _panels(dashboard):
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'namespace="$namespace"' in target["expr"], panel["title"]
    placed = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(placed) == len(set(placed)), "panels overlap"


def test_the_dashboard_shows_what_the_operator_needs(dashboard: dict[str, Any]) -> None:
    """The panels the operations guide promises, each on the metric it is about."""
    queries = " ".join(t["expr"] for p in _panels(dashboard) for t in p["targets"])
    for metric in (
        "dcpgw_egress_messages_consumed_total",
        "dcpgw_egress_messages_accepted_total",
        "dcpgw_ingress_messages_total",
        "dcpgw_egress_requests_total",
        "dcpgw_egress_request_seconds_bucket",
        "dcpgw_egress_end_to_end_seconds_bucket",
        "dcpgw_egress_messages_retried_total",
        "dcpgw_egress_messages_dead_lettered_total",
        "dcpgw_egress_consumer_lag_records",
        "dcpgw_egress_in_flight_messages",
        "dcpgw_egress_fetch_paused",
        "dcpgw_egress_sign_seconds_bucket",
        "dcpgw_ingress_pushes_total",
        "dcpgw_ingress_rejected_total",
        "dcpgw_certificate_expiry_timestamp_seconds",
    ):
        assert metric in queries, metric


def test_every_panel_query_passes_promtool(dashboard: dict[str, Any], tmp_path: Path) -> None:
    rules = []
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in _GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unresolved variable in {panel['title']}: {expr}"
            record = f"dashboard:panel_{panel['id']}:{target['refId']}"
            rules.append({"record": record, "expr": expr})
    generated = tmp_path / "dashboard-queries.yaml"
    generated.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool("check", "rules", str(generated))


def test_every_metric_the_rules_and_dashboard_use_exists(dashboard: dict[str, Any]) -> None:
    """A renamed metric must not leave an alert or a panel silently empty."""
    from tests.test_deploy import served_metrics

    known = set()
    for name, kind in served_metrics().items():
        known.add(name)
        if kind == "histogram":
            known.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    text = RULES.read_text() + " ".join(t["expr"] for p in _panels(dashboard) for t in p["targets"])
    used = set(re.findall(r"\bdcpgw_[a-z_]+", text))
    assert used and used <= known, used - known
