"""deploy.local's decisions, without starting anything."""
from __future__ import annotations

from pathlib import Path

from deploy import local


def test_only_the_services_present_in_the_tree_are_run(tmp_path):
    for name in ("intake", "gateway"):
        (tmp_path / "services" / name).mkdir(parents=True)
        (tmp_path / "services" / name / "service.py").write_text("")
    (tmp_path / "services" / "sla").mkdir()
    entries = {
        "intake": "python -m services.common.runner services.intake.service",
        "sla": "python -m services.common.runner services.sla.service",
        "gateway": "python -m services.common.runner services.gateway.service",
        "odd": "python -m http.server",
    }
    assert list(local.present_services(entries, tmp_path)) == ["intake", "gateway"]


def test_the_real_procfile_runs_intake_and_the_gateway():
    present = local.present_services(local.procfile_entries())
    assert {"intake", "gateway"} <= present.keys()
    assert all(Path(local.module_path(local.service_module(command))).is_file() for command in present.values())


def test_uris_are_printed_without_their_password():
    assert local.redact("amqp://guest:guest@127.0.0.1:5672/") == "amqp://guest:***@127.0.0.1:5672/"
    assert local.redact("mongodb://127.0.0.1:27117/?directConnection=true") == (
        "mongodb://127.0.0.1:27117/?directConnection=true")


def test_addresses_split_into_host_and_port():
    assert local.split_address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert local.split_address(":8001") == ("127.0.0.1", 8001)



def test_a_dead_service_is_restarted_later_the_more_often_it_died_in_a_row():
    assert [local.restart_delay(n) for n in range(1, 8)] == [1.0, 2.0, 5.0, 10.0, 30.0, 30.0, 30.0]


def test_how_a_service_ended_is_said_in_words():
    assert local.how_it_ended(-9) == "killed by SIGKILL"
    assert local.how_it_ended(1) == "exited with code 1"
