"""Routing over the real broker and store, with the real intake: complaints published by a
call center are assigned, moved by handlers, escalated by the SLA service and reviewed."""
import subprocess
import sys
from dataclasses import replace

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, timeutil
from services.common.errors import Invalid, NotFound
from services.intake.service import IntakeService
from services.routing import organization, rules
from services.routing.service import RoutingService
from tests.support.harness import accepted, env_for, listening, publish_fact, submission, wait_until
from tests.support.infra import ROOT

pytestmark = pytest.mark.integration

ZF, LS, KW, YT = "BANKA-SD-YT-ZF", "BANKA-SD-YT-LS", "BANKA-SD-WF-KW", "BANKA-SD-YT"
ZF_HANDLER = {"sub": "A0027", "name": "宋晓东", "unit": ZF, "roles": ["handler", "consumer_protection"]}
LS_HANDLER = {"sub": "A0030", "name": "彭春生", "unit": LS, "roles": ["handler", "consumer_protection"]}
KW_HANDLER = {"sub": "A0044", "name": "魏敏", "unit": KW, "roles": ["handler", "consumer_protection"]}
STATUS = "status.cc-shandong"





def assigned(rpc, complaint_no, unit=None) -> dict:
    """The complaint as intake shows it, once routing's assignment (at `unit`) reached it."""
    def ready():
        view = rpc.intake.get(complaint_no, None)
        done = view["assignment"] and (unit is None or view["assignment"]["unit"] == unit)
        return view if done else None
    return wait_until(ready, f"{complaint_no} is assigned{f' to {unit}' if unit else ''}")




def test_a_complaint_at_an_outlet_stays_there_and_a_direct_one_goes_to_head_office(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            run_services(settings, IntakeService, RoutingService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        at_outlet = accepted(center, outbound, branch=ZF, staff_id="A0025")
        direct = accepted(center, outbound, branch=ZF, direct=True)

        [told] = outbound.wait_for(lambda m: m["routing_key"] == STATUS and m["body"]["status"] == "assigned"
                                   and m["body"]["complaint_no"] == at_outlet)
        assert told["body"]["unit"] == ZF
        view = assigned(rpc, at_outlet)
        # First-inquiry responsibility: the outlet keeps it, in its consumer-protection contact;
        # the person who took it is on record (A0025 works the front desk, so A0027 handles it).
        assert view["assignment"] == {"unit": ZF, "department": "CPC", "office": "back", "handler": "A0027"}
        assert view["first_responder"] == {"unit": ZF, "staff": "A0025"}
        assert view["status"] == "assigned"

        view = assigned(rpc, direct)
        assert view["assignment"]["unit"] == "BANKA" and view["assignment"]["department"] == "CPD"
        routed = rpc.routing.assignment(direct, None)
        assert routed["priority"] == "first" and routed["first_responder"]["unit"] == ZF

        # The organization as the caller may see it (CONTRACTS §3).
        [tree] = rpc.routing.org_units(YT)
        assert tree["code"] == YT and {c["code"] for c in tree["children"]} >= {ZF, LS}
        assert {t["code"] for t in rpc.routing.org_units(None)} == {"BANKA", "INSA"}
        with pytest.raises(NotFound):
            rpc.routing.visible_units("NOPE")


def test_transfer_then_reject_lands_above_both_and_a_sibling_sees_nothing(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            run_services(settings, IntakeService, RoutingService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        complaint_no = accepted(center, outbound, branch=ZF)
        assigned(rpc, complaint_no, ZF)
        zf_units = rpc.routing.visible_units(ZF)
        kw_units = rpc.routing.visible_units(KW)
        assert zf_units == [ZF]

        # A sibling branch's handler: as if the complaint did not exist, at routing and intake.
        for action, data in (("accept", {}), ("escalate", {"reason": "x"})):
            with pytest.raises(NotFound):
                rpc.routing.act(complaint_no, action, data, KW_HANDLER)
        with pytest.raises(NotFound):
            rpc.intake.get(complaint_no, kw_units)

        with pytest.raises(Invalid) as refused:
            rpc.routing.act(complaint_no, "transfer", {"to_unit": LS, "reason": "该产品系上级部门开发设计"},
                            ZF_HANDLER)
        assert "reason" in refused.value.details
        pending = rpc.routing.act(complaint_no, "transfer", {"to_unit": LS, "reason": "客户账户开立于龙山支行"},
                                  ZF_HANDLER)
        assert pending["unit"] == ZF and pending["pending_transfer"]["to_unit"] == LS  # the sender stays accountable

        after = rpc.routing.act(complaint_no, "transfer_reject", {"reason": "客户从未在本支行办理业务"},
                                LS_HANDLER)
        assert (after["unit"], after["department"]) == (YT, "CPD")  # above both, never back to ZF
        assert after["transfer_count"] == 0 and after["refused_by"] == [LS] and ZF in after["passed_on"]

        [escalated] = outbound.wait_for(lambda m: m["routing_key"] == STATUS
                                        and m["body"]["status"] == "escalated")
        assert escalated["body"]["complaint_no"] == complaint_no
        assert escalated["body"]["escalated_to"] == YT
        view = assigned(rpc, complaint_no, YT)
        assert view["unit"] == YT and view["assignment"]["department"] == "CPD"
        assert [t["type"] for t in view["transfers"]] == ["complaint_transfer_requested",
                                                           "complaint_transfer_rejected"]
        # Now the outlet that passed it on no longer sees it.
        with pytest.raises(NotFound):
            rpc.routing.act(complaint_no, "accept", {}, ZF_HANDLER)


def test_sla_breach_escalates_to_the_parent_and_a_review_goes_above_the_decider(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            run_services(settings, IntakeService, RoutingService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        complaint_no = accepted(center, outbound, branch=ZF)
        assigned(rpc, complaint_no, ZF)
        publish_fact(center, "sla_breached", complaint_no, "sla", policy="cbirc-2020", clock="decision",
                due_by=timeutil.iso(timeutil.now()), unit=ZF)
        view = assigned(rpc, complaint_no, YT)
        assert view["assignment"]["department"] == "CPD"
        routed = rpc.routing.assignment(complaint_no, None)
        assert routed["escalations"][-1]["trigger"] == "sla_breach"

        publish_fact(center, "complaint_reopened", complaint_no, "intake", reason="客户申请核查",
                decided_at=timeutil.iso(timeutil.now()), decided_by_unit=YT)
        view = assigned(rpc, complaint_no, "BANKA-SD")
        assert view["assignment"]["department"] == "CPD"
        assert rpc.routing.assignment(complaint_no, None)["unit"] == "BANKA-SD"


def broken_organization(tmp_path):
    text = organization.DEFAULT_PATH.read_text(encoding="utf-8")
    text = text.replace("staff:\n", "  - {code: BANKA-SD-XX, institution: BANKA, name: 幽灵支行, level: county,\n"
                                    "     parent: BANKA-SD-NOWHERE, region: '370000', departments: []}\n\nstaff:\n", 1)
    path = tmp_path / "organization.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def reload_command(settings, *args):
    return subprocess.run([sys.executable, "-m", "services.routing.reload", *args], cwd=ROOT,
                          env=env_for(settings), capture_output=True, text=True, timeout=60)


def test_a_broken_organization_is_refused_and_the_old_one_stays(settings, run_services, center, tmp_path):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            run_services(settings, IntakeService, RoutingService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        before = rpc.routing.health()
        done = reload_command(settings, "--organization", str(broken_organization(tmp_path)))
        assert done.returncode == 1, done.stderr
        assert "refused" in done.stderr and "unknown parent 'BANKA-SD-NOWHERE'" in done.stderr
        with pytest.raises(Invalid) as invalid:
            rpc.routing.reload(str(broken_organization(tmp_path)))
        assert any("BANKA-SD-XX" in p for p in invalid.value.details["organization"])
        assert rpc.routing.health()["version"] == before["version"]

        complaint_no = accepted(center, outbound, branch=LS)
        assert assigned(rpc, complaint_no, LS)["assignment"]["department"] == "CPC"


def rules_sending_everything_up(tmp_path):
    """The sample rules, but the catch-all sends a complaint to the branch's parent."""
    text = rules.DEFAULT_PATH.read_text(encoding="utf-8")
    head, catch_all = text.rsplit("unit: first_receiving_unit", 1)
    path = tmp_path / "rules.yaml"
    path.write_text(head + "unit: parent_of_branch" + catch_all, encoding="utf-8")
    return path


def route_all(rpc, center, outbound, bodies) -> dict:
    numbers = {body["external_id"]: accepted(center, outbound, **body) for body in bodies}
    found = {}
    for external_id, complaint_no in numbers.items():
        view = assigned(rpc, complaint_no)
        routed = rpc.routing.assignment(complaint_no, None)
        found[external_id] = (view["assignment"], routed["priority"], routed["flags"], routed["first_responder"],
                              routed["version"], [h["type"] for h in view["history"]].count("complaint_assigned"))
    return found


def sample_bodies():
    branches = [ZF, LS, KW, YT, "BANKA-SD", "BANKA-ZJ-WZ-LC", "BANKA-SC-MY-FC", None]
    bodies = []
    for i, branch in enumerate(branches):
        body = submission(external_id=f"same-{i}", product="deposit",
                          amount_in_dispute=["300.00", "9000.00", "80000.00"][i % 3])
        if branch is not None:
            body["branch"] = branch
        bodies.append(body)
    bodies += [submission(external_id="same-direct", branch=KW, direct=True),
               dict(submission(external_id="same-major", branch=LS, group_size=30, product="mortgage",
                               representatives=[{"name": "王强", "phone": "13900000001"}, {"name": "刘洋"}]),
                    channel="visit"),
               # As many people, by letter: not in person, so not a major complaint (Art. 29).
               dict(submission(external_id="same-petition", branch=LS, group_size=30, product="mortgage"),
                    channel="letter"),
               submission(external_id="same-wealth", branch=ZF, product="wealth_management"),
               submission(external_id="same-recused", branch=ZF, respondent_staff=["A0027"])]
    return bodies


def test_two_routing_instances_route_as_one_and_a_reload_reaches_both(
        settings, run_services, center, tmp_path):
    bodies = sample_bodies()
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        with run_services(settings, IntakeService, RoutingService):
            alone = route_all(rpc, center, outbound, bodies)

        two = replace(settings, db_prefix=settings.db_prefix + "two")
        with run_services(two, IntakeService, RoutingService), run_services(two, RoutingService):
            together = route_all(rpc, center, outbound, bodies)
            assert together == alone
            assert all(version == 1 and assigned_once == 1 for *_, version, assigned_once in alone.values())
            # Recusal: the outlet's only consumer-protection contact is named, so nobody there
            # is handed it; the outlet stays accountable (its handler escalates it).
            assert alone["same-recused"][0] == {"unit": ZF, "department": "CPC", "office": "back", "handler": None}
            assert alone["same-major"][0]["unit"] == "BANKA"
            assert alone["same-major"][2] == ["emergency_plan", "regulator_report"]
            # (a mortgage is beyond the outlet's authority: its city branch, not head office)
            assert alone["same-petition"][0]["unit"] == YT and alone["same-petition"][1:3] == ("normal", [])

            # A reload taken by one instance is in force on both within a second or so.
            result = rpc.routing.reload(None, str(rules_sending_everything_up(tmp_path)))
            assert result["version"] == 2
            wait_until(lambda: all(rpc.routing.health()["version"] == 2 for _ in range(8)), "both use version 2")
            later = [submission(external_id=f"later-{i}", branch=ZF, product="deposit") for i in range(6)]
            for view in route_all(rpc, center, outbound, later).values():
                assert view[0]["unit"] == YT
