"""The data behind the proof of notice: the media and their report limits, the contacts told
to customers, and what counts as a delivery report."""
import json
from datetime import timedelta

import pytest

from services.common.consumers import Delivery
from services.intake.contacts import Contacts
from services.intake.notices import NoticePolicy, is_report, parse_report

POLICY = NoticePolicy.load()
CONTACT = {"unit": "甲银行总行", "department": "消费者权益保护部", "phone": "95599"}


def test_the_shipped_policy_prefers_sms_then_email_then_letter_then_a_call():
    assert [m.medium for m in POLICY.media] == ["sms", "email", "letter", "phone"]
    assert all(m.report_within >= timedelta(hours=1) for m in POLICY.media)


def test_the_next_medium_is_the_first_untried_one_the_customer_gave():
    everything = {"phone": "13800138000", "email": "a@b.cn", "address": "济南市历下区"}
    assert [(m.medium, to) for m, to in [POLICY.reach(everything)]] == [("sms", "13800138000")]
    assert POLICY.reach(everything, ["sms"])[0].medium == "email"
    assert POLICY.reach({"email": "a@b.cn"})[1] == "a@b.cn"
    assert POLICY.reach({"phone": "1", "address": "x"}, ["sms"])[0].medium == "letter"
    assert POLICY.reach({"phone": "1"}, ["sms"])[0].medium == "phone"
    assert POLICY.reach({"phone": "1"}, ["sms", "phone"]) is None
    assert POLICY.reach({}) is None


def test_a_broken_policy_is_refused_with_every_problem():
    with pytest.raises(ValueError) as refused:
        NoticePolicy.from_data({"media": [
            {"medium": "fax", "address": "phone", "report_within": {"value": 1, "unit": "hours"}},
            {"medium": "sms", "address": "wechat", "report_within": {"value": 0, "unit": "hours"}},
            {"medium": "email", "address": "email", "report_within": {"value": 2, "unit": "weeks"}},
        ]})
    message = str(refused.value)
    for problem in ("media[0].medium", "media[1].address", "media[1].report_within", "media[2].report_within"):
        assert problem in message
    with pytest.raises(ValueError, match="at least one medium"):
        NoticePolicy.from_data({})


def delivery(body, routing_key="notification.report.sms") -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Delivery(body=raw, routing_key=routing_key, properties={}, headers={})


def test_a_report_is_told_by_its_routing_key_and_checked_against_its_contract():
    report = {"notification_id": "n-1", "status": "delivered", "at": "2026-11-24T10:00:00+08:00", "detail": None}
    assert is_report(delivery(report)) and not is_report(delivery(report, "complaint.submit.phone"))
    parsed, errors = parse_report(delivery({**report, "carrier": "CMCC"}))  # a newer gateway's extra field
    assert errors == {} and parsed["status"] == "delivered" and parsed["at"].utcoffset() == timedelta(hours=8)
    for body, field in ((b"\xff", "body"), (b"[1]", "body"), (b"[" * 5000, "body"),
                        ({**report, "status": "read"}, "status"), ({**report, "at": "2026-11-24T10:00"}, "at"),
                        ({k: v for k, v in report.items() if k != "notification_id"}, "notification_id")):
        parsed, errors = parse_report(delivery(body))
        assert parsed is None and field in errors, body


def test_the_shipped_contacts_are_the_institutions_own():
    contacts = Contacts.load()
    assert set(contacts.institutions) >= {"BANKA", "INSA"}
    for contact in [*contacts.institutions.values(), *contacts.units.values()]:
        assert contact["phone"] != "12378" and contact["unit"] and contact["department"]
    assert contacts.of("BANKA", "BANKA-SD")["phone"] == contacts.units["BANKA-SD"]["phone"]
    head_office = contacts.institutions["BANKA"]
    assert contacts.of("BANKA", "BANKA-SD-YT") == {**head_office, "name": head_office["department"]}
    assert contacts.of("INSA", "BANKA-SD")["phone"] == contacts.institutions["INSA"]["phone"]  # another's unit
    assert contacts.of("BANKZ", None) is None
    assert contacts.missing(["BANKA", "BANKZ", "INSA"]) == ["BANKZ"]


def test_contacts_missing_a_field_or_naming_the_regulator_s_hotline_are_refused():
    with pytest.raises(ValueError) as refused:
        Contacts.from_data({
            "regulator_hotlines": ["12378"],
            "institutions": {"BANKA": {**CONTACT, "phone": "12378"}, "INSA": {"unit": "总公司", "phone": "1"}},
            "units": {"BANKB-SD": {**CONTACT, "institution": "BANKB"}},
        })
    message = str(refused.value)
    assert "institutions.BANKA: 12378 is the regulator's hotline" in message
    assert "institutions.INSA: department missing" in message
    assert "units.BANKB-SD: institution must be one of the institutions with a contact" in message
    with pytest.raises(ValueError, match="at least one institution"):
        Contacts.from_data({"institutions": {}})
