"""Complaints are kept, with their history and proof of notice, at least a year after closing:
the operators' purge removes only what closed longer ago than the retention setting."""
from datetime import timedelta

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, timeutil
from services.common.store import database
from services.intake import retention
from services.intake.service import IntakeService
from tests.support.harness import accepted, listening, publish_fact, wait_until

pytestmark = pytest.mark.integration

HANDLER = {"sub": "sd-jn-001", "unit": "BANKA-SD", "roles": ["handler"]}
DAYS = 400


def closed_complaint(center, outbound, rpc, action="close") -> str:
    complaint_no = accepted(center, outbound)
    publish_fact(center, "complaint_assigned", complaint_no, "routing", unit="BANKA-SD", department=None,
                 office=None, reason="routed", flags=[])
    wait_until(lambda: rpc.intake.get(complaint_no, None)["status"] == "assigned", "assigned")
    if action == "withdraw":
        rpc.intake.act(complaint_no, "withdraw", {}, HANDLER, None)
    else:
        rpc.intake.act(complaint_no, "decision", {"outcome": "upheld", "message": "已退还"}, HANDLER, None)
        rpc.intake.act(complaint_no, "close", {"satisfaction": "satisfied", "root_cause": "fees_and_pricing"},
                       HANDLER, None)
    return complaint_no


def test_the_purge_removes_only_what_closed_longer_ago_than_the_retention(settings, run_services, center,
                                                                          monkeypatch, capsys):
    db = database(settings, "intake")
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        expired = closed_complaint(center, outbound, rpc)
        withdrawn_long_ago = closed_complaint(center, outbound, rpc, action="withdraw")
        just_younger = closed_complaint(center, outbound, rpc)
        reopened = closed_complaint(center, outbound, rpc)
        rpc.intake.act(reopened, "reopen", {"reason": "客户申请核查"}, HANDLER, None)
        still_open = accepted(center, outbound, received_at=(timeutil.now() - timedelta(days=60)).isoformat())

    now = timeutil.now()
    # Closed (or withdrawn) just over, and just under, the retention ago.
    for number, age in ((expired, DAYS + 1), (withdrawn_long_ago, DAYS + 1), (just_younger, DAYS - 1)):
        db["complaints"].update_one({"_id": number}, {"$set": {"closed_at": now - timedelta(days=age)}})
    # A repeat merged into it while it was open: kept with it.
    db["merged_messages"].insert_one({"_id": "m-1", "app_id": "cc", "message_id": "m-1", "merged_into": expired})
    assert db["notices"].count_documents({"complaint_no": expired}) == 3  # acknowledged, decided, closed

    monkeypatch.setenv("MONGO_URI", settings.mongo_uri)
    monkeypatch.setenv("DB_PREFIX", settings.db_prefix)
    monkeypatch.setenv("RETENTION_DAYS", str(DAYS))
    retention.main(["--dry-run"])
    assert f"2 complaint(s) closed over {DAYS} days ago" in capsys.readouterr().out
    assert db["complaints"].count_documents({"_id": expired}) == 1  # a dry run removes nothing

    retention.main([])
    assert f"removed 2 complaint(s) closed over {DAYS} days ago" in capsys.readouterr().out
    left = {row["_id"] for row in db["complaints"].find({}, {"_id": 1})}
    assert expired not in left and withdrawn_long_ago not in left
    assert {just_younger, reopened, still_open} <= left
    # What is kept of a complaint goes with it, and only with it.
    assert db["notices"].count_documents({"complaint_no": {"$in": [expired, withdrawn_long_ago]}}) == 0
    assert db["merged_messages"].count_documents({"merged_into": expired}) == 0
    for number in (just_younger, reopened, still_open):
        assert db["notices"].count_documents({"complaint_no": number}) >= 1
    retention.main([])
    assert "removed 0 complaint(s)" in capsys.readouterr().out
