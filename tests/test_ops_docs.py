"""docs/operations.md stays complete and true: a section per topic of the brief, the runbook's entries, the cost
estimate with its assumptions, every repository path it cites present, every service variable it lists read by
services/settings.py."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPERATIONS = REPO / "docs" / "operations.md"
TOPICS = ("Documentation", "Configuration", "Logging", "Monitoring", "Runtime environment on AWS", "Model versioning",
          "Model storage and deployment", "Notifications and warnings", "Runbook", "Monthly AWS cost estimate")
RUNBOOK = ("The monthly run failed", "The gate failed", "Drift warned",
           "A bad model reached clients: roll back to last month's version", "Re-embedding a client's index")


def _headings(level: str) -> list[str]:
    return re.findall(rf"^{level} (.+)$", OPERATIONS.read_text(), flags=re.M)


def test_a_section_per_topic_and_the_runbook_entries():
    assert set(TOPICS) <= set(_headings("##"))
    assert set(RUNBOOK) <= set(_headings("###"))
    cost = OPERATIONS.read_text().split("## Monthly AWS cost estimate", 1)[1].split("\n## ", 1)[0]
    assert "Assumptions:" in cost and "embedded profile" in cost and "production profile" in cost
    assert re.search(r"\*\*~\$[\d,]+ a month\*\*", cost)


def test_every_path_it_cites_exists():
    text = OPERATIONS.read_text()
    cited = set(re.findall(r"`((?:docs|ops|docker|services|reprolab|tests|examples|stages|\.github)/[\w./-]+)`", text))
    cited |= set(re.findall(r"\]\(([\w./-]+\.md)\)", text))
    assert len(cited) > 15
    missing = sorted(p for p in cited if not ((REPO / p).exists() or (OPERATIONS.parent / p).exists()))
    assert not missing, missing


def test_every_service_variable_in_its_table_is_a_setting():
    from services.settings import Settings

    table = OPERATIONS.read_text().split("| variable | service | meaning |", 1)[1].split("\n\n", 1)[0]
    names = {line.split("|")[1] for line in table.splitlines() if line.startswith("| `")}
    variables = {v for cell in names for v in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    assert {"WRITE_API_KEYS", "READ_API_KEYS", "EMBED_MODELS"} <= variables
    fields = {f.upper() for f in Settings.model_fields} | {"REPROLAB_LOG_LEVEL"}
    assert variables <= fields, variables - fields
