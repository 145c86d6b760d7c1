"""The acknowledgement names the institution's own contact (unit, department, phone), never
the regulator's hotline; a submission for an institution without one is refused."""
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp
from services.common.store import database
from services.intake.contacts import Contacts
from services.intake.service import IntakeService
from tests.support.harness import listening, publish_fact, submission, wait_until

pytestmark = pytest.mark.integration

CONTACTS = Contacts.load()


def acknowledgement(center, receipts, notices, **changes) -> dict:
    message_id = center.send(submission(**changes))
    [receipt] = receipts.wait_for(lambda m: m["body"]["message_id"] == message_id)
    assert receipt["body"]["status"] == "accepted", receipt["body"]
    number = receipt["body"]["complaint_no"]
    [notice] = notices.wait_for(lambda m: m["body"]["complaint_no"] == number)
    assert notice["body"]["template"] == "acknowledged"
    return notice["body"]["params"]["contact"]


def test_the_acknowledgement_names_the_institution_s_own_contact(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as notices, \
            run_services(settings, IntakeService):
        shandong = acknowledgement(center, receipts, notices, branch="BANKA-SD")
        jinan = acknowledgement(center, receipts, notices, branch="BANKA-SD-JN")  # no contact of its own
        insurer = acknowledgement(center, receipts, notices, institution="INSA", product="auto_insurance")

    department = "消费者权益保护部 Consumer Protection Department"
    assert shandong == {"unit": "甲银行山东省分行 Bank A Shandong Branch", "department": department,
                        "phone": "0531-8690-9559", "hours": "09:00-17:30 on working days", "name": department}
    assert jinan == CONTACTS.of("BANKA", None) and jinan["phone"] == "95599"
    assert insurer == CONTACTS.of("INSA", None) and insurer["unit"].startswith("甲财产保险")
    for contact in (shandong, jinan, insurer):
        assert contact["phone"] != "12378" and contact["unit"] and contact["department"]


def test_a_submission_for_an_institution_without_a_contact_is_refused(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as notices, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        # The organization routing announces has an institution the contacts do not know.
        organization = {"BANKA": ["BANKA", "BANKA-SD"], "INSA": ["INSA"], "BANKC": ["BANKC"]}
        publish_fact(center, "organization_changed", None, "routing", institutions=organization)
        wait_until(lambda: rpc.intake.health()["institutions_without_contact"] == ["BANKC"], "announced")
        message_id = center.send(submission(institution="BANKC", branch="BANKC"))
        [receipt] = receipts.wait_for(lambda m: m["body"]["message_id"] == message_id)
        assert receipt["body"]["status"] == "rejected" and receipt["body"]["complaint_no"] is None
        assert receipt["body"]["errors"] == {"institution": [
            "BANKC has no contact for its customers (services/intake/data/contacts.yaml)"]}
        assert rpc.intake.health()["rejections_kept"] == 1
        assert notices.drain() == []  # no acknowledgement without a contact
    assert database(settings, "intake")["complaints"].count_documents({"institution": "BANKC"}) == 0
