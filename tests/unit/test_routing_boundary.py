"""Routing's service boundary without a broker: loading the files' text."""
import pytest

from services.common.errors import Invalid
from services.routing import organization, rules
from services.routing.routing import build

ORG_TEXT = organization.DEFAULT_PATH.read_text(encoding="utf-8")
RULES_TEXT = rules.DEFAULT_PATH.read_text(encoding="utf-8")


def test_the_shipped_files_build():
    org, book = build(ORG_TEXT, RULES_TEXT)
    assert "BANKA" in org.institutions and book.rules[-1].name == "first_inquiry_responsibility"


@pytest.mark.parametrize("org_text, rules_text, key, problem", [
    ("units: [", RULES_TEXT, "organization", "not valid YAML"),
    (ORG_TEXT.replace("parent: BANKA-SD-YT\n", "parent: BANKA-SD-NOWHERE\n", 1), RULES_TEXT,
     "organization", "unknown parent 'BANKA-SD-NOWHERE'"),
    (ORG_TEXT, RULES_TEXT.replace("unit: tier1_of_branch", "unit: tier9", 1), "rules", "unknown target 'tier9'"),
    (ORG_TEXT, "rules: {", "rules", "not valid YAML"),
])
def test_invalid_files_are_refused_with_every_problem(org_text, rules_text, key, problem):
    with pytest.raises(Invalid) as refused:
        build(org_text, rules_text)
    assert list(refused.value.details) == [key]
    assert any(problem in p for p in refused.value.details[key])
