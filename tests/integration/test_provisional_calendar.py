"""A year the State Council has not published, end to end over the real broker and store:
a complaint whose working-day limit reaches into that year is answered with a provisional
due date and its clock warns on the provisional calendar; when the year is published, the
operator's recompute moves it, the call center hears ``rescheduled`` and the customer is
told. Data that cannot give a due date at all gets the complaint answered all the same,
and the operators an alert."""
import dataclasses
import json
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, time

import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from prometheus_client import REGISTRY

from services.common import amqp, timeutil
from services.common.policy import SHANGHAI, load_calendars, load_policies
from services.common.store import database
from services.intake.service import IntakeService
from services.sla.service import SlaService
from tests.support.calendars import (
    declare_year,
    first_unpublished_year,
    first_working_day,
    write_calendars,
    write_policies,
)
from tests.support.harness import env_for, listening, submission, wait_until
from tests.support.infra import ROOT

pytestmark = pytest.mark.integration

YEAR = first_unpublished_year()  # 2027 as of chinesecalendar 1.11.0
RECEIVED = datetime.combine(datetime(YEAR - 1, 12, 20), time(10, 0), SHANGHAI)
CBRC = load_policies().get("cbrc-2012").clock("decision")
DEFAULTS = [{"when": {"kind": "consultation"}, "policy": "consultation-24h"},
            {"when": {"kind": "suggestion"}, "policy": "suggestion"},
            {"when": {"kind": "complaint"}, "policy": "cbirc-2020"}]


def due_dates(service: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("complaints_due_dates_total", {"service": service, "outcome": outcome}) or 0.0


@contextmanager
def platform(settings, run_services, tmp_path, selection: list[dict]):
    """Intake and SLA on policy and calendar files of the test's own; what the call center
    and the customer hear; RPC."""
    calendars = write_calendars(tmp_path / "calendars.yaml")
    policies = write_policies(tmp_path / "policies.yaml", selection)
    # RECEIVED may lie ahead of today (it must reach into the unpublished year): the test
    # stands on that day, as far as the plausibility of received_at goes.
    ahead = max(0.0, (RECEIVED - timeutil.now()).total_seconds())
    settings = dataclasses.replace(settings, calendars_path=str(calendars), policies_path=str(policies),
                                   received_at_skew=settings.received_at_skew + ahead)
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as notices, \
            run_services(settings, IntakeService, SlaService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        yield settings, outbound, notices, rpc


def test_a_complaint_into_an_unpublished_year_is_provisional_until_the_year_is_published(settings, run_services,
                                                                                          center, tmp_path):
    working_days = [{"when": {"institution": "BANKA", "kind": "complaint"}, "policy": "cbrc-2012"}, *DEFAULTS]
    with platform(settings, run_services, tmp_path, working_days) as (settings, outbound, notices, rpc):
        _provisional_until_published(settings, center, outbound, notices, rpc)


def _provisional_until_published(settings, center, outbound, notices, rpc):
    provisional_before = due_dates("intake", "provisional")
    provisional = CBRC.due_by(RECEIVED, calendar=load_calendars(settings.calendars_path).default)
    assert provisional.year == YEAR

    message_id = center.send(submission(received_at=RECEIVED.isoformat()))
    [receipt] = outbound.wait_for(lambda m: m["body"].get("message_id") == message_id)
    assert receipt["body"]["status"] == "accepted" and receipt["body"]["provisional"] is True
    assert timeutil.parse(receipt["body"]["due_by"]) == provisional
    number = receipt["body"]["complaint_no"]
    [acknowledged] = notices.wait_for(lambda m: m["body"]["complaint_no"] == number)
    assert acknowledged["body"]["template"] == "acknowledged"
    assert acknowledged["body"]["params"]["provisional"] is True
    assert due_dates("intake", "provisional") == provisional_before + 1
    # The clock runs, and will warn, on the provisional calendar.
    [clock] = wait_until(lambda: _clocks(rpc, number), "the clock started")
    assert clock["provisional"] is True and timeutil.parse(clock["due_by"]) == provisional
    stored = database(settings, "sla")["clocks"].find_one({"complaint_no": number})
    assert [p["label"] for p in stored["points"]] == ["3_working_days_before", "1_working_days_before", "breach"]
    assert timeutil.local(stored["next_fire_at"]) == timeutil.local(stored["points"][0]["at"])
    view = rpc.intake.get(number, None)
    assert view["sla"]["provisional"] is True and view["sla"]["error"] is None
    assert rpc.intake.health()["complaints_without_due_date"] == 0

    # The State Council publishes the year, its first working day off as well.
    declare_year(settings.calendars_path, YEAR, [first_working_day(YEAR)])
    published = CBRC.due_by(RECEIVED, calendar=load_calendars(settings.calendars_path).default)
    assert published > provisional
    done = subprocess.run([sys.executable, "-m", "services.sla.recompute"], cwd=ROOT, env=env_for(settings),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rescheduled"] == 1

    [told] = outbound.wait_for(lambda m: m["routing_key"] == "status.cc-shandong"
                               and m["body"]["complaint_no"] == number and m["body"]["status"] == "rescheduled")
    assert timeutil.parse(told["body"]["due_by"]) == published
    assert timeutil.parse(told["body"]["previous_due_by"]) == provisional
    assert (told["body"]["provisional"], told["body"]["reason"]) == (False, "year_published")
    [notice] = notices.wait_for(lambda m: m["body"]["complaint_no"] == number
                                and m["body"]["template"] == "rescheduled")
    assert timeutil.parse(notice["body"]["params"]["due_by"]) == published
    assert timeutil.parse(notice["body"]["params"]["previous_due_by"]) == provisional
    view = rpc.intake.get(number, None)
    assert timeutil.parse(view["due_by"]) == published and view["sla"]["provisional"] is False
    assert "sla_rescheduled" in [entry["type"] for entry in view["history"]]


def _clocks(rpc, number):
    try:
        return rpc.sla.clocks(number)
    except Exception:  # noqa: BLE001 - NotFound until the receipt's event arrived
        return None


def test_without_a_policy_for_it_a_complaint_is_answered_and_the_operators_alerted(settings, run_services,
                                                                                   center, tmp_path):
    no_suggestions = [p for p in DEFAULTS if p["when"]["kind"] != "suggestion"]
    with platform(settings, run_services, tmp_path, no_suggestions) as (settings, outbound, notices, rpc):
        intake_rpc = rpc
        message_id = center.send(submission(kind="suggestion", received_at=RECEIVED.isoformat()))
        [receipt] = outbound.wait_for(lambda m: m["body"].get("message_id") == message_id)
        number = receipt["body"]["complaint_no"]
        assert receipt["body"]["status"] == "accepted" and receipt["body"]["due_by"] is None
        notices.wait_for(lambda m: m["body"]["complaint_no"] == number and m["body"]["template"] == "acknowledged")
        assert intake_rpc.intake.health()["complaints_without_due_date"] == 1
        assert REGISTRY.get_sample_value("complaints_without_due_date", {"service": "intake"}) == 1
        assert "no selection rule" in intake_rpc.intake.get(number, None)["sla"]["error"]
        # SLA, on the same data, keeps it without a clock: an operator's alert too.
        wait_until(lambda: rpc.sla.health()["complaints_without_clock"] == 1, "SLA kept it without a clock")
        # The data is fixed and the recompute run: the clock starts, intake learns its due date.
        write_policies(settings.policies_path, DEFAULTS)
        job = rpc.sla.start_recompute(None)
        wait_until(lambda: rpc.sla.recompute_job(job["job_id"])["state"] == "done", "the job is done")
        assert rpc.sla.recompute_job(job["job_id"])["started"] == 1
        wait_until(lambda: intake_rpc.intake.get(number, None)["due_by"], "intake has the due date")
        assert intake_rpc.intake.get(number, None)["sla"]["error"] is None
        assert rpc.sla.health()["complaints_without_clock"] == 0
        assert intake_rpc.intake.health()["complaints_without_due_date"] == 0
