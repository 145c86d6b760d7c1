"""Each sample routing rule, escalation on arrival, recusal, and refused rule files."""

import copy

import pytest
import yaml

from services.routing.organization import load_organization
from services.routing.rules import (
    DEFAULT_PATH,
    RoutingError,
    RulesError,
    build_rules,
    load_rules,
)

OUTLET = "BANKA-SD-YT-ZF"  # county outlet, limit 5000.00
CITY = "BANKA-SD-WF"  # city branch, default limit 50000.00
BIG_CITY = "BANKA-SD-YT"  # city branch with a raised limit of 100000.00


@pytest.fixture(scope="module")
def org():
    return load_organization()


@pytest.fixture(scope="module")
def book(org):
    return load_rules(DEFAULT_PATH, org)


@pytest.fixture
def raw():
    return yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def complaint(**fields):
    base = {"institution": "BANKA", "kind": "complaint", "channel": "phone",
            "product": "deposit", "amount_in_dispute": None}
    base.update(fields)
    return base


def refused(raw, org) -> str:
    with pytest.raises(RulesError) as e:
        build_rules(raw, org)
    return str(e.value)


# -- first-inquiry responsibility ----------------------------------------------------


def test_complaint_stays_with_the_unit_that_first_received_it(book):
    d = book.route(complaint(branch=OUTLET, staff_id="A0027"))
    assert (d.rule, d.unit, d.department, d.office) == (
        "first_inquiry_responsibility", OUTLET, "CPC", "back")
    assert d.first_responder == {"unit": OUTLET, "staff": "A0027"}
    assert d.handler == "A0027"  # the first person keeps it when eligible
    assert d.priority == "normal" and not d.flags and not d.escalated_on_arrival


def test_without_a_branch_the_head_office_received_it(book):
    d = book.route(complaint())
    assert (d.unit, d.department) == ("BANKA", "CPD")
    assert d.first_responder["unit"] == "BANKA"


def test_direct_complaint_goes_to_head_office_first(book):
    d = book.route(complaint(branch=OUTLET, direct=True))
    assert (d.rule, d.unit, d.department, d.priority) == (
        "direct_complaint", "BANKA", "CPD", "first")
    assert d.first_responder["unit"] == OUTLET


@pytest.mark.parametrize("branch, expected", [
    (OUTLET, "BANKA-SD"),
    (CITY, "BANKA-SD"),
    ("BANKA-ZJ", "BANKA-ZJ"),
    ("BANKA", "BANKA"),
    (None, "BANKA"),
])
def test_regulator_forwarded_goes_to_the_tier1_lead_department(book, branch, expected):
    d = book.route(complaint(branch=branch, channel="regulator", regulator_ref="LN-1"))
    assert (d.rule, d.unit, d.department) == ("regulator_forwarded", expected, "CPD")
    assert "regulator_report" in d.flags


@pytest.mark.parametrize("fields", [
    {"group_size": 20, "channel": "visit"},
    {"group_size": 300, "channel": "visit"},
    {"cause_event": "natural_disaster"},
    {"cause_event": "safety_accident"},
    {"cause_event": "public_health"},
])
def test_major_complaint_goes_to_head_office_under_the_emergency_plan(book, fields):
    d = book.route(complaint(branch=OUTLET, direct=False, **fields))
    assert (d.rule, d.unit, d.department, d.priority) == (
        "major_complaint", "BANKA", "CPD", "first")
    assert d.flags == {"emergency_plan", "regulator_report"}


def test_nineteen_people_is_not_major(book):
    assert book.route(complaint(branch=OUTLET, channel="visit", group_size=19)).rule != "major_complaint"


@pytest.mark.parametrize("channel", ["phone", "letter", "web", "app", "wechat", "email", "regulator"])
def test_twenty_people_not_in_person_is_not_major(book, channel):
    """Art. 29 counts people in person: a call or a letter on behalf of many is not major."""
    assert book.route(complaint(branch=OUTLET, channel=channel, group_size=300,
                                regulator_ref="LN-1")).rule != "major_complaint"


def test_major_wins_over_direct_and_regulator(book):
    assert book.route(complaint(branch=OUTLET, direct=True, channel="visit", group_size=25)).rule == "major_complaint"
    d = book.route(complaint(branch=OUTLET, channel="regulator", regulator_ref="LN-1", cause_event="public_health"))
    assert d.rule == "major_complaint"


@pytest.mark.parametrize("channels", [None, [], ["counter"], "visit"])
def test_the_channels_in_person_are_named_in_the_data(raw, org, channels):
    raw["major"]["channels"] = channels
    assert "major: channels must list the channels that are in person" in refused(raw, org)


def test_credit_card_complaint_goes_to_the_card_department_with_the_product_owner(book):
    d = book.route(complaint(branch=CITY, product="credit_card"))
    assert (d.rule, d.unit, d.department, d.office) == (
        "credit_card_complaint", CITY, "CARD", "front")
    assert [(x.unit, x.code, x.office) for x in d.involved] == [
        ("BANKA", "CARDOPS", "middle")]


def test_outlet_without_a_card_department_uses_its_lead_contact(book):
    d = book.route(complaint(branch=OUTLET, product="credit_card"))
    assert (d.unit, d.department) == (OUTLET, "CPC")


def test_suggestion_brings_in_the_product_owner(book):
    d = book.route(complaint(branch=CITY, kind="suggestion", product="debit_card"))
    assert d.rule == "product_suggestion" and d.unit == CITY
    assert [(x.unit, x.code) for x in d.involved] == [(CITY, "OPS")]


def test_consultation_is_answered_at_the_front(book):
    assert book.route(complaint(branch=OUTLET, kind="consultation")).department == "DESK"
    d = book.route(complaint(branch=CITY, kind="consultation"))
    assert (d.department, d.office) == ("RETAIL", "front")


def test_insurer_complaint_routes_inside_the_insurer(book):
    d = book.route(complaint(institution="INSA", branch="INSA-SC-CD-WH",
                             product="auto_insurance", amount_in_dispute="1200.00"))
    assert (d.unit, d.department) == ("INSA-SC-CD-WH", "CPC")


# -- escalation on arrival -----------------------------------------------------------


def test_within_authority_stays(book):
    assert book.route(complaint(branch=OUTLET, amount_in_dispute="5000.00")).unit == OUTLET


def test_above_the_outlet_limit_goes_to_the_city_lead_department(book):
    d = book.route(complaint(branch=OUTLET, amount_in_dispute="5000.01"))
    assert (d.unit, d.department, d.office) == (BIG_CITY, "CPD", "back")
    assert d.escalated_on_arrival == (
        f"{OUTLET}: amount 5000.01 above its limit 5000.00; escalated to {BIG_CITY}",)


def test_escalation_repeats_until_a_unit_has_the_authority(book):
    d = book.route(complaint(branch=OUTLET, amount_in_dispute="2000000.00"))
    assert d.unit == "BANKA" and len(d.escalated_on_arrival) == 3
    d = book.route(complaint(branch=OUTLET, amount_in_dispute="80000.00"))
    assert d.unit == BIG_CITY  # its raised limit covers it
    d = book.route(complaint(branch="BANKA-SD-WF-KW", amount_in_dispute="80000.00"))
    assert d.unit == "BANKA-SD"  # the default city limit does not


def test_a_product_the_unit_may_not_decide_goes_up(book):
    d = book.route(complaint(branch=OUTLET, product="agency_sales"))
    assert d.unit == "BANKA-SD"  # neither the outlet nor the city may decide it
    assert all("agency_sales is not within its authority" in r
               for r in d.escalated_on_arrival)
    assert [x.code for x in d.involved] == ["PROD"]
    assert book.route(complaint(branch=OUTLET, product="wealth_management")).unit == BIG_CITY


def test_escalated_major_rules_are_not_lowered(book):
    d = book.route(complaint(branch=OUTLET, direct=True, amount_in_dispute="9000000.00"))
    assert d.unit == "BANKA" and not d.escalated_on_arrival


# -- recusal -------------------------------------------------------------------------


def test_respondent_staff_is_never_the_handler(book, org):
    d = book.route(complaint(branch="BANKA-SD", staff_id="A0013", respondent_staff=["A0013"]))
    assert d.handler not in (None, "A0013")
    assert d.first_responder["staff"] == "A0013"


def test_nobody_eligible_leaves_no_handler(book):
    d = book.route(complaint(branch=OUTLET, respondent_staff=["A0027"]))
    assert (d.unit, d.handler) == (OUTLET, None)


# -- bad complaints ------------------------------------------------------------------


def test_unknown_branch_or_institution_is_refused(book):
    with pytest.raises(RoutingError, match="unknown branch 'NOPE'"):
        book.route(complaint(branch="NOPE"))
    with pytest.raises(RoutingError, match="unknown branch 'INSA-SC'"):
        book.route(complaint(branch="INSA-SC"))
    with pytest.raises(RoutingError, match="unknown institution"):
        book.route(complaint(institution="NOPE"))
    with pytest.raises(RoutingError, match="not a decimal"):
        book.route(complaint(amount_in_dispute="a lot"))


# -- matchers ------------------------------------------------------------------------


def test_every_matcher(org, raw):
    raw["rules"][:0] = [
        {"name": "big_in_zhejiang", "when": {"branch_within": "BANKA-ZJ",
                                             "amount": {"min": "10000", "max": "20000"}},
         "then": {"unit": "parent_of_branch", "function": "consumer_protection"}},
        {"name": "city_cards", "when": {"branch_level": "city", "product": ["credit_card"],
                                        "institution": "BANKA", "channel": ["app", "web"]},
         "then": {"unit": "BANKA-SC", "function": "credit_card", "office": "front"}},
        {"name": "wenzhou", "when": {"branch": ["BANKA-ZJ-WZ-LC"], "regulator": False},
         "then": {"unit": "head_office", "check_authority": False}},
    ]
    book = build_rules(raw, org)
    assert book.route(complaint(branch="BANKA-ZJ-SX-YC", amount_in_dispute="10000")).rule == (
        "big_in_zhejiang")
    d = book.route(complaint(branch="BANKA-ZJ-SX-YC", amount_in_dispute="15000"))
    assert d.unit == "BANKA-ZJ-SX" and not d.escalated_on_arrival
    assert book.route(complaint(branch="BANKA-ZJ-SX-YC", amount_in_dispute="20000.01")
                      ).rule != "big_in_zhejiang"
    assert book.route(complaint(branch="BANKA-ZJ-SX-YC")).rule != "big_in_zhejiang"
    d = book.route(complaint(branch=CITY, product="credit_card", channel="app"))
    assert (d.rule, d.unit, d.department) == ("city_cards", "BANKA-SC", "CARD")
    assert book.route(complaint(branch=CITY, product="credit_card")).rule != "city_cards"
    assert book.route(complaint(branch="BANKA-ZJ-WZ-LC")).unit == "BANKA"


# -- refused rule files --------------------------------------------------------------


def test_sample_rules_load(book):
    assert book.rules[-1].name == "first_inquiry_responsibility"
    assert not book.rules[-1].when


def test_unknown_target_and_fields_are_refused(org, raw):
    raw["rules"][0]["then"]["unit"] = "grandparent_of_branch"
    raw["rules"][1]["when"]["colour"] = "red"
    raw["rules"][2]["then"]["deadline"] = 3
    raw["rules"][3]["when"]["product"] = ["credit_card", "bitcoin"]
    raw["rules"][4]["then"]["flags"] = ["panic"]
    raw["rules"][5]["then"]["function"] = "marketing"
    msg = refused(raw, org)
    assert "rule major_complaint: unknown target 'grandparent_of_branch'" in msg
    assert "rule direct_complaint: unknown field when.colour" in msg
    assert "rule regulator_forwarded: unknown field then.deadline" in msg
    assert "rule credit_card_complaint: when.product 'bitcoin' is unknown" in msg
    assert "rule product_suggestion: unknown flag 'panic'" in msg
    assert "rule consultation: no department anywhere has function 'marketing'" in msg
    assert msg.startswith("invalid routing rules (6 problems)")


def test_a_fixed_target_needs_its_institution(org, raw):
    raw["rules"][0]["then"]["unit"] = "BANKA-SD"
    assert "fixed target BANKA-SD needs when.institution: BANKA" in refused(raw, org)


def test_a_catch_all_is_required(org, raw):
    raw["rules"].pop()
    assert "the last rule must be a catch-all" in refused(raw, org)


def test_duplicate_rule_names_are_refused(org, raw):
    raw["rules"].insert(0, copy.deepcopy(raw["rules"][0]))
    assert "rule major_complaint: duplicate rule name" in refused(raw, org)


# -- never-valid reasons -------------------------------------------------------------


@pytest.mark.parametrize("code, text", [
    ("designed_by_higher_department", ""),
    (None, "该产品系上级部门开发设计，本行无法处理"),
    (None, "This was Designed by Head Office, not us"),
    (None, "代理机构销售的保险"),
    (None, "it was sold by an agent"),
    (None, "合作机构开展的业务"),
    (None, "run by a partner institution"),
    (None, "司法已终结"),
    (None, "the court has ruled on it"),
    (None, "公安已立案，等待结果"),
    (None, "the police have a case open"),
    (None, "监管已答复客户"),
    (None, "The regulator has answered"),
])
def test_never_valid_reasons_match_by_code_and_keyword(book, code, text):
    assert book.reasons.never_valid_match(code, text) is not None


@pytest.mark.parametrize("text", ["客户账户开立于潍坊分行，属地管理",
                                  "the account is held at Weifang branch"])
def test_ordinary_reasons_pass(book, text):
    assert book.reasons.never_valid_match(None, text) is None
