"""Reading complaints: one by number, and filtered pages with a cursor, within the caller's units."""
from datetime import timedelta

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import timeutil
from services.common.errors import Invalid, NotFound
from services.intake.service import IntakeService
from tests.support.harness import CallCenter, listening, submission

pytestmark = pytest.mark.integration


def test_pages_filters_and_visibility(settings, run_services):
    center = CallCenter(settings.amqp_uri)
    base = timeutil.now().replace(microsecond=0) - timedelta(days=30)
    with listening(settings.amqp_uri, "complaints.outbound", "receipt.#") as receipts, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        sent = []
        for n in range(7):
            branch = "BANKA-SD" if n % 2 == 0 else "BANKA-ZJ"
            sent.append(center.send(submission(branch=branch, received_at=(base + timedelta(days=n)).isoformat())))
        recent = center.send(submission(branch="BANKA-SD"))
        receipts.wait_for(lambda m: m["body"]["message_id"] in sent + [recent], count=8)

        everything, cursor, pages = [], None, 0
        while True:
            page = rpc.intake.list({"to": (base + timedelta(days=6)).date().isoformat()}, None, 3, cursor)
            everything += page["items"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert len({c["complaint_no"] for c in everything}) == 7
        received = [c["received_at"] for c in everything]
        assert received == sorted(received, reverse=True)  # newest first

        shandong = rpc.intake.list({}, ["BANKA-SD"], 50, None)["items"]
        assert {c["unit"] for c in shandong} == {"BANKA-SD"} and len(shandong) == 5
        first_days = rpc.intake.list({"from": (base.date()).isoformat(), "to": (base + timedelta(days=1)).date()
                                      .isoformat()}, None, 50, None)["items"]
        assert len(first_days) == 2
        # Received 24 to 30 days ago under a 15-day limit: overdue while open; the recent one is not.
        overdue = rpc.intake.list({"overdue": True}, None, 50, None)["items"]
        assert {c["complaint_no"] for c in overdue} == {c["complaint_no"] for c in everything}
        [in_time] = rpc.intake.list({"overdue": False}, None, 50, None)["items"]
        assert in_time["complaint_no"] not in {c["complaint_no"] for c in everything}
        assert rpc.intake.list({"status": "closed"}, None, 50, None)["items"] == []

        one = shandong[0]["complaint_no"]
        assert rpc.intake.get(one, ["BANKA-SD"])["complaint_no"] == one
        with pytest.raises(NotFound):
            rpc.intake.get(one, ["BANKA-ZJ"])
        with pytest.raises(NotFound):
            rpc.intake.get("BANKA-261124-0000000", None)
        with pytest.raises(Invalid):
            rpc.intake.list({}, None, 10, "not-a-cursor")
    center.close()
