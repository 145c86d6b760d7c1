"""The operator's command after a calendar change, against a running SLA service: the year
its open clocks were counted on provisionally is published, the command starts a recompute
job, follows it to the end, and the clocks it moved are announced."""
import dataclasses
import json
import subprocess
import sys
from datetime import datetime, time, timedelta

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import timeutil
from services.common.policy import SHANGHAI, load_calendars, load_policies
from services.sla.service import SlaService
from tests.support.calendars import declare_year, first_unpublished_year, first_working_day, write_calendars
from tests.support.harness import env_for, listening, publish_fact
from tests.support.infra import ROOT

pytestmark = pytest.mark.integration

YEAR = first_unpublished_year()
CBRC = load_policies().get("cbrc-2012").clock("decision")


def received(center, no: str, received_at: datetime, institution: str = "BANKA") -> None:
    publish_fact(center, "complaint_received", no, "intake", institution=institution, branch=None, kind="complaint",
                 channel="phone", product="credit_card", received_at=timeutil.iso(received_at), policy="cbrc-2012",
                 due_by=None, direct=False, respondent_staff=[], group_size=1, app_id="cc-shandong")


def of(no: str, type_: str):
    return lambda m: m["routing_key"] == type_ and m["body"]["complaint_no"] == no


def recompute(settings, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.sla.recompute", *args], cwd=ROOT, env=env_for(settings),
                          capture_output=True, text=True, timeout=120)


def test_the_recompute_command_moves_the_open_clocks_a_published_year_changes(settings, run_services, center,
                                                                              tmp_path):
    calendars = write_calendars(tmp_path / "calendars.yaml")
    settings = dataclasses.replace(settings, calendars_path=str(calendars))
    december = datetime.combine(datetime(YEAR - 1, 12, 20), time(10, 0), SHANGHAI)
    november = december - timedelta(days=28)
    provisional = CBRC.due_by(december, calendar=load_calendars(calendars).default)
    with listening(settings.amqp_uri, "sla.events") as sla, run_services(settings, SlaService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        received(center, "BANKA-DECEMBER", december)
        received(center, "BANKA-NOVEMBER", november)           # due within the published year
        received(center, "INSA-DECEMBER", december, institution="INSA")
        for no in ("BANKA-DECEMBER", "BANKA-NOVEMBER", "INSA-DECEMBER"):
            sla.wait_for(of(no, "sla_started"))
        [view] = rpc.sla.clocks("BANKA-DECEMBER")
        assert view["provisional"] is True and timeutil.parse(view["due_by"]) == provisional
        # The State Council publishes the year, giving its first working day off as well.
        declare_year(calendars, YEAR, [first_working_day(YEAR)])
        published = CBRC.due_by(december, calendar=load_calendars(calendars).default)
        assert published > provisional

        done = recompute(settings, "--institution", "BANKA")
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)
        assert {k: job[k] for k in ("institution", "state", "total", "examined", "rescheduled", "confirmed")} == {
            "institution": "BANKA", "state": "done", "total": 2, "examined": 2, "rescheduled": 1, "confirmed": 0}
        assert "2/2" in done.stderr  # the progress bar
        [moved] = sla.wait_for(of("BANKA-DECEMBER", "sla_rescheduled"))
        body = moved["body"]["body"]
        assert timeutil.parse(body["previous_due_by"]) == provisional and timeutil.parse(body["due_by"]) == published
        assert (body["provisional"], body["previous_provisional"], body["reason"]) == (False, True, "year_published")
        [view] = rpc.sla.clocks("BANKA-DECEMBER")
        assert view["provisional"] is False and timeutil.parse(view["due_by"]) == published
        # The other institution was not in this job: still provisional.
        assert rpc.sla.clocks("INSA-DECEMBER")[0]["provisional"] is True

        # Started without waiting, the job runs on in the service.
        started = recompute(settings, "--institution", "INSA", "--no-wait")
        assert started.returncode == 0, started.stderr
        job = json.loads(started.stdout)
        assert job["state"] == "pending" and job["total"] == 1
        followed = recompute(settings, "--job", job["job_id"])
        assert followed.returncode == 0, followed.stderr
        assert {k: v for k, v in json.loads(followed.stdout).items() if k in ("job_id", "state", "rescheduled")} == {
            "job_id": job["job_id"], "state": "done", "rescheduled": 1}
        assert rpc.sla.clocks("INSA-DECEMBER")[0]["provisional"] is False
        sla.wait_for(of("INSA-DECEMBER", "sla_rescheduled"))
        moved = [m for m in sla.drain() if m["routing_key"] == "sla_rescheduled"]
        assert sorted(m["body"]["complaint_no"] for m in moved) == ["BANKA-DECEMBER", "INSA-DECEMBER"]
