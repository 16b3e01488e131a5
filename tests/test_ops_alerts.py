"""ops/prometheus: the alert rules parse, cover what the runbook promises, and name only metrics that exist.

No promtool on any registry this project can reach, so each expression's metric names are pulled out of the
PromQL (strings, label matchers, grouping clauses, ranges and function calls removed) and checked against the
sample names the services' registry (services.runtime.Metrics) and the monthly job's push
(reprolab.monitoring.outcome_registry) really export.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from reprolab.monitoring import MONTHLY_METRICS, MonthlyOutcome, outcome_registry
from services.runtime import Metrics

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "ops" / "prometheus" / "alerts.yml"
REQUIRED = {"ServiceDown", "HighLatencyP95", "High5xxRate", "MonthlyRunFailed", "MonthlyRunSkipped", "GateFailed",
            "DriftWarned"}
PROMETHEUS_BUILTIN = {"up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
            "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                      # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                                 # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)                                # ranges
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        after = expr[m.end():].lstrip()
        if after.startswith("(") or m.group(0).lower() in KEYWORDS:
            continue                                                       # a function or an operator
        if re.match(r"^\d", expr[m.start() - 1:m.start()] or " "):
            continue                                                       # 5m, 1e9
        names.add(m.group(0))
    return names


def exported() -> set[str]:
    metrics = Metrics("test")
    metrics.observe("GET", "/x", 200, 0.1)  # a labelled family shows its samples once it has a child
    metrics.serving("m", "v")
    for name in metrics.counters:
        labels = {k: "x" for k in metrics.counters[name]._labelnames}
        metrics.inc(name, **labels)
    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    outcome = outcome_registry(MonthlyOutcome(exit_code=0, verdict="pass"))
    names |= {s.name for family in outcome.collect() for s in family.samples}
    return names


def rules() -> list[dict]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_metric_name_extraction_sees_through_promql():
    assert metric_names('sum by (job) (rate(a_total{status=~"5.."}[5m])) / sum(rate(b_total[5m])) > 0.05') == {
        "a_total", "b_total"}
    assert metric_names("time() - last_seconds > 35 * 86400") == {"last_seconds"}
    assert metric_names('histogram_quantile(0.95, sum by (le) (rate(h_bucket{route!~"/x"}[5m]))) > 2') == {"h_bucket"}


def test_rules_cover_the_runbook_and_are_complete():
    found = rules()
    names = [r["alert"] for r in found]
    assert REQUIRED <= set(names) and len(names) == len(set(names))
    operations = (REPO / "docs" / "operations.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", operations, flags=re.M)}
    for rule in found:
        assert rule["expr"].strip() and rule["labels"]["severity"] in {"page", "warn", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        doc, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert doc == "docs/operations.md" and anchor in anchors, (rule["alert"], anchor)
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_metric_an_alert_names_is_exported(rule):
    names = metric_names(rule["expr"])
    assert names, rule["expr"]
    missing = names - exported() - PROMETHEUS_BUILTIN
    assert not missing, f"{rule['alert']}: {missing} is exported by nobody"


def test_monthly_metric_list_is_what_the_job_pushes():
    outcome = outcome_registry(MonthlyOutcome(exit_code=0, verdict="warn"))
    assert {f.name for f in outcome.collect()} == set(MONTHLY_METRICS)


def test_prometheus_config_loads_the_rules_and_scrapes_every_compose_service():
    config = yaml.safe_load((REPO / "ops" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]
    served = {name for name, svc in compose.items() if str(svc.get("build", {}).get("dockerfile", "")).startswith(
        "services/")} - {"images"}  # every long-running service image, the extractor's included
    assert served == {"ingest", "query", "embed", "extract"}
    assert {j for j in jobs if j.startswith("reprolab-")} == {f"reprolab-{name}" for name in served}
    for name in sorted(served):
        (target,) = jobs[f"reprolab-{name}"]["static_configs"][0]["targets"]
        host, port = target.split(":")
        assert host in compose and any(port in str(p) for p in compose[host].get("expose", []) + compose[host].get(
            "ports", [])), name
    assert jobs["pushgateway"]["honor_labels"] is True


def test_every_counter_a_route_increments_is_declared():
    """`Metrics.inc` refuses an undeclared name at request time: catch it here instead."""
    from services.runtime import DOMAIN_COUNTERS

    used = {m.group(1) for path in (REPO / "services").rglob("*.py")
            for m in re.finditer(r'metrics\.inc\(\s*"([a-z_]+)"', path.read_text())}
    assert {"documents_ingested_total", "embeddings_total"} <= used
    assert used <= set(DOMAIN_COUNTERS), used - set(DOMAIN_COUNTERS)


def test_an_undeclared_counter_is_refused():
    with pytest.raises(KeyError, match="not declared"):
        Metrics("test").inc("made_up_total")
