"""The sample organization loads, answers hierarchy queries, and bad data is refused."""

import copy
from dataclasses import FrozenInstanceError
from decimal import Decimal

import pytest
import yaml

from services.routing.organization import (
    DEFAULT_PATH,
    OrganizationError,
    UnknownUnit,
    build_organization,
    load_organization,
)

OUTLET = "BANKA-SD-YT-ZF"  # a county outlet under Yantai city branch, Shandong


@pytest.fixture(scope="module")
def org():
    return load_organization()


@pytest.fixture
def raw():
    return yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def refused(data) -> str:
    with pytest.raises(OrganizationError) as e:
        build_organization(data)
    return str(e.value)


def unit_of(data, code):
    return next(u for u in data["units"] if u["code"] == code)


# -- the sample ----------------------------------------------------------------------


def test_sample_has_the_four_levels_and_real_departments(org):
    bank = [org.unit(c) for c in org.units if org.unit(c).institution == "BANKA"]
    tier1 = [u for u in bank if u.level == "tier1"]
    assert len(tier1) >= 3 and len({u.region for u in tier1}) == len(tier1)
    for t in tier1:
        cities = org.children(t.code)
        assert len(cities) >= 2 and all(c.level == "city" for c in cities)
        for c in cities:
            counties = org.children(c.code)
            assert len(counties) >= 2 and all(k.level == "county" for k in counties)
    offices = {d.office for d in org.unit("BANKA").departments}
    assert offices == {"front", "middle", "back"}
    functions = {d.function for d in org.unit("BANKA-SD").departments}
    assert {"retail", "corporate", "credit_card", "it", "operations", "risk", "pricing",
            "consumer_protection", "hr", "audit", "discipline_inspection"} <= functions
    assert {d.function for d in org.unit(OUTLET).departments} == {
        "front_desk", "consumer_protection"}


def test_head_office_code_is_the_institution(org):
    assert org.head_office("BANKA").code == "BANKA"
    assert org.head_office("INSA").level == "head_office"
    with pytest.raises(UnknownUnit):
        org.head_office("NOPE")


def test_hierarchy_queries(org):
    assert org.parent(OUTLET).code == "BANKA-SD-YT"
    assert org.parent("BANKA") is None
    assert [u.code for u in org.ancestors(OUTLET)] == ["BANKA-SD-YT", "BANKA-SD", "BANKA"]
    assert [u.code for u in org.path(OUTLET)] == ["BANKA", "BANKA-SD", "BANKA-SD-YT", OUTLET]
    assert OUTLET in org.subtree("BANKA-SD")
    assert "BANKA-ZJ" not in org.subtree("BANKA-SD")
    assert org.subtree(OUTLET) == frozenset({OUTLET})
    assert org.is_within(OUTLET, "BANKA-SD") and org.is_within(OUTLET, OUTLET)
    assert not org.is_within("BANKA-SD", OUTLET)
    assert not org.is_within(OUTLET, "BANKA-ZJ")
    with pytest.raises(UnknownUnit):
        org.unit("NOPE")


def test_lowest_common_ancestor(org):
    lca = org.lowest_common_ancestor
    assert lca(OUTLET, "BANKA-SD-YT-LS").code == "BANKA-SD-YT"
    assert lca(OUTLET, "BANKA-SD-WF-KW").code == "BANKA-SD"
    assert lca(OUTLET, "BANKA-ZJ-WZ-LC").code == "BANKA"
    assert lca(OUTLET, "BANKA-SD-YT").code == "BANKA-SD-YT"
    assert lca(OUTLET, OUTLET).code == OUTLET
    assert lca(OUTLET, "INSA-SC") is None


def test_departments_by_office_and_function(org):
    cp = org.department("BANKA-SD", function="consumer_protection")
    assert (cp.unit, cp.code, cp.office) == ("BANKA-SD", "CPD", "back")
    assert org.department(OUTLET, function="discipline_inspection") is None
    assert org.discipline_inspection(OUTLET).unit == "BANKA-SD-YT"
    assert org.consumer_protection(OUTLET).unit == OUTLET
    assert org.department("BANKA", office="middle", function="it").code == "IT"
    # middle-office owners of products and causes, nearest up the path
    assert org.department(OUTLET, product="credit_card", nearest=True).code == "CARDOPS"
    assert org.department(OUTLET, product="personal_loan", nearest=True).unit == "BANKA-SD-YT"
    assert org.department("BANKA-SD", cause="fees_and_pricing", nearest=True).unit == "BANKA-SD"
    assert org.department(OUTLET, product="auto_insurance", nearest=True) is None


def test_authority_is_data_with_defaults_by_level_and_overrides(org):
    assert org.unit(OUTLET).authority.max_amount == Decimal("5000.00")
    assert "wealth_management" in org.unit(OUTLET).authority.excluded_products
    assert org.unit("BANKA-SD-YT").authority.max_amount == Decimal("100000.00")  # override
    assert org.unit("BANKA-SD-WF").authority.max_amount == Decimal("50000.00")
    assert org.unit("BANKA").authority.max_amount is None


def test_handler_for_recuses_and_prefers_the_first_person(org):
    cpd = org.department("BANKA-SD", function="consumer_protection")
    handlers = [s.id for s in org.staff_in("BANKA-SD", "CPD") if "handler" in s.roles]
    assert org.handler_for(cpd) == handlers[0]
    assert org.handler_for(cpd, exclude=[handlers[0]]) == handlers[1]
    assert org.handler_for(cpd, prefer=handlers[1]) == handlers[1]
    everyone = [s.id for s in org.staff_in("BANKA-SD", "CPD")]
    assert org.handler_for(cpd, exclude=everyone) is None


def test_tree_has_the_contract_shape(org):
    trees = org.tree()
    assert [t["code"] for t in trees] == ["BANKA", "INSA"]

    def check(node, parent):
        assert set(node) == {"code", "institution", "name", "level", "parent", "region",
                             "departments", "children"}
        assert node["parent"] == parent
        assert node["level"] in ("head_office", "tier1", "city", "county")
        for d in node["departments"]:
            assert set(d) == {"code", "name", "office"}
            assert d["office"] in ("front", "middle", "back")
        return 1 + sum(check(c, node["code"]) for c in node["children"])

    assert sum(check(t, None) for t in trees) == len(org.units)
    visible = org.tree("BANKA-SD-YT")
    assert len(visible) == 1 and visible[0]["code"] == "BANKA-SD-YT"
    assert {c["code"] for c in visible[0]["children"]} == org.subtree("BANKA-SD-YT") - {
        "BANKA-SD-YT"}


def test_organization_is_immutable(org):
    with pytest.raises(FrozenInstanceError):
        org.unit(OUTLET).parent = "BANKA"
    with pytest.raises(TypeError):
        org._units["X"] = None


# -- refused data ----------------------------------------------------------------------


def test_cycle_is_refused(raw):
    unit_of(raw, "BANKA-SD")["parent"] = "BANKA-SD-YT-ZF"
    msg = refused(raw)
    assert "cycle in the hierarchy" in msg and "BANKA-SD" in msg


def test_unknown_parent_is_refused(raw):
    unit_of(raw, OUTLET)["parent"] = "BANKA-XX"
    assert f"unit {OUTLET}: unknown parent 'BANKA-XX'" in refused(raw)


def test_duplicate_codes_are_refused(raw):
    raw["units"].append(copy.deepcopy(unit_of(raw, OUTLET)))
    unit_of(raw, "BANKA-SD")["departments"] = [
        {"code": "CPD", "name": "a", "office": "back", "function": "consumer_protection"},
        {"code": "CPD", "name": "b", "office": "back", "function": "hr"},
    ]
    raw["staff"].append(dict(raw["staff"][0]))
    msg = refused(raw)
    assert f"unit {OUTLET}: duplicate unit code" in msg
    assert "unit BANKA-SD: duplicate department code 'CPD'" in msg
    assert f"staff {raw['staff'][0]['id']}: duplicate staff id" in msg


def test_level_must_follow_the_parent(raw):
    unit_of(raw, OUTLET)["parent"] = "BANKA-SD"  # a county straight under a tier-1
    assert "does not follow its parent BANKA-SD's level tier1 (expected city)" in refused(raw)


def test_missing_consumer_protection_on_the_path_is_refused(raw):
    no_cp = lambda u: [d for d in u["departments"]  # noqa: E731
                       if d["function"] != "consumer_protection"]
    for code in ("BANKA", "BANKA-SD", "BANKA-SD-YT", OUTLET):
        unit_of(raw, code)["departments"] = no_cp(unit_of(raw, code))
    raw["staff"] = [s for s in raw["staff"] if s["department"] not in ("CPD", "CPC")]
    msg = refused(raw)
    assert (f"unit {OUTLET}: no consumer-protection department or contact on its path to "
            f"the head office (BANKA -> BANKA-SD -> BANKA-SD-YT -> {OUTLET})") in msg
    # siblings with their own contact are fine
    assert "unit BANKA-SD-YT-LS:" not in msg


def test_staff_in_unknown_unit_or_department_is_refused(raw):
    raw["staff"].append({"id": "Z1", "name": "x", "unit": "NOPE", "department": "CPD",
                         "roles": ["handler"]})
    raw["staff"].append({"id": "Z2", "name": "y", "unit": OUTLET, "department": "CARD",
                         "roles": ["wizard"]})
    msg = refused(raw)
    assert "staff Z1: unknown unit 'NOPE'" in msg
    assert f"staff Z2: unknown department 'CARD' in unit {OUTLET}" in msg
    assert "staff Z2: unknown role 'wizard'" in msg


def test_every_problem_is_listed_at_once(raw):
    unit_of(raw, OUTLET)["parent"] = "BANKA-XX"
    unit_of(raw, "BANKA-SD-WF")["level"] = "county"
    unit_of(raw, "BANKA-ZJ")["colour"] = "red"
    with pytest.raises(OrganizationError) as e:
        build_organization(raw)
    problems = e.value.problems
    assert len(problems) >= 3
    assert any("unknown parent" in p for p in problems)
    assert any("BANKA-SD-WF: level county does not follow" in p for p in problems)
    assert any("unit BANKA-ZJ: unknown field 'colour'" in p for p in problems)
    assert str(e.value).startswith(f"invalid organization ({len(problems)} problems)")


def test_head_office_rules(raw):
    unit_of(raw, "BANKA-SD")["level"] = "head_office"
    unit_of(raw, "INSA-SC")["parent"] = "BANKA"
    msg = refused(raw)
    assert "unit BANKA-SD: a head office has no parent" in msg
    assert "unit INSA-SC: parent BANKA belongs to another institution" in msg


def test_owner_function_must_exist_at_head_office(raw):
    raw["institutions"][0]["middle_office_owners"]["products"]["deposit"] = "marketing"
    assert "product deposit is owned by 'marketing'" in refused(raw)


def test_not_yaml_is_refused(tmp_path):
    bad = tmp_path / "org.yaml"
    bad.write_text("units: [unclosed", encoding="utf-8")
    with pytest.raises(OrganizationError, match="not valid YAML"):
        load_organization(bad)
