"""``make run`` (``python -m deploy.local``) as a newcomer meets it: it starts the store and
every service, the HTTP edge answers, a call center's complaint is accepted, a service
killed with kill -9 is restarted while the rest runs on, and Ctrl-C leaves nothing behind;
without a broker it says so and exits instead of hanging."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from services.common import amqp
from tests.support.harness import CallCenter, listening, submission, wait_until
from tests.support.infra import ROOT, free_port, rabbit_vhost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STOP_WITHIN = 20.0


def local_run_env(amqp_uri: str, tmp_path: Path, store_port: int, gateway_port: int) -> dict:
    env = dict(os.environ, AMQP_URI=amqp_uri, STORE_PORT=str(store_port), STORE_PATH=str(tmp_path / "store"),
               GATEWAY_ADDRESS=f"127.0.0.1:{gateway_port}", DB_PREFIX=f"deploy{uuid.uuid4().hex[:8]}",
               PYTHONUNBUFFERED="1")
    env.pop("MONGO_URI", None)
    return env


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc: honcho's children run in sessions of their own)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening_on(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def health(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_make_run_serves_a_complaint_and_stops_everything_on_ctrl_c(tmp_path):
    store_port, gateway_port = free_port(), free_port()
    with rabbit_vhost() as amqp_uri:
        log_path = tmp_path / "run.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "deploy.local"], cwd=ROOT, stdout=log,
                                       stderr=subprocess.STDOUT,
                                       env=local_run_env(amqp_uri, tmp_path, store_port, gateway_port))
        children: set[int] = set()
        try:
            wait_until(lambda: health(gateway_port) or process.poll() is not None, "the HTTP edge answers /health",
                       timeout=60)
            assert process.poll() is None, log_path.read_text()
            output = log_path.read_text()
            assert f"http://127.0.0.1:{gateway_port}" in output
            assert f"mongodb://127.0.0.1:{store_port}/" in output
            assert "guest:***@" in output and "guest:guest@" not in output
            assert "services.gateway.tokens" in output

            with listening(amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts:
                call_center = CallCenter(amqp_uri, app_id="cc-deploy")
                try:
                    message_id = call_center.send(submission())
                finally:
                    call_center.close()
                [receipt] = receipts.wait_for(lambda m: m["body"].get("message_id") == message_id, timeout=60)
            assert receipt["routing_key"] == "receipt.cc-deploy"
            assert receipt["body"]["status"] == "accepted", receipt["body"]
            assert receipt["body"]["complaint_no"]
            assert any((tmp_path / "store").iterdir()), "the store keeps its data under STORE_PATH"

            children = descendants(process.pid)
            assert len(children) >= 3, "the store, intake and the gateway run as processes of their own"
            started = time.monotonic()
            process.send_signal(signal.SIGINT)
            process.wait(STOP_WITHIN)
            wait_until(lambda: not any(alive(pid) for pid in children), "every child process has exited",
                       timeout=max(STOP_WITHIN - (time.monotonic() - started), 1.0))
            assert not listening_on(gateway_port), "the HTTP edge's port is free again"
            assert not listening_on(store_port), "the store's port is free again"
            assert time.monotonic() - started < STOP_WITHIN
        finally:
            for pid in descendants(process.pid) | children:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            if process.poll() is None:
                process.kill()
                process.wait(10)
    output = log_path.read_text()
    assert "SIGINT received" in output
    assert "Traceback" not in output, output


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def service_pid(root: int, module: str) -> int | None:
    found = [pid for pid in descendants(root) if alive(pid) and module in command_line(pid)]
    return found[0] if len(found) == 1 else None


def accepted_over_amqp(amqp_uri: str) -> dict:
    with listening(amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts:
        call_center = CallCenter(amqp_uri, app_id="cc-deploy")
        try:
            message_id = call_center.send(submission())
        finally:
            call_center.close()
        [receipt] = receipts.wait_for(lambda m: m["body"].get("message_id") == message_id, timeout=60)
    return receipt["body"]


def test_a_service_killed_with_kill_9_is_restarted_and_the_rest_runs_on(tmp_path):
    store_port, gateway_port = free_port(), free_port()
    with rabbit_vhost() as amqp_uri:
        log_path = tmp_path / "run.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "deploy.local"], cwd=ROOT, stdout=log,
                                       stderr=subprocess.STDOUT,
                                       env=local_run_env(amqp_uri, tmp_path, store_port, gateway_port))
        try:
            wait_until(lambda: health(gateway_port) or process.poll() is not None, "the HTTP edge answers /health",
                       timeout=60)
            assert accepted_over_amqp(amqp_uri)["status"] == "accepted"
            intake = wait_until(lambda: service_pid(process.pid, "services.intake.service"), "intake runs")
            gateway = service_pid(process.pid, "services.gateway.service")
            os.kill(intake, signal.SIGKILL)

            wait_until(lambda: f"intake (pid={intake}) died: killed by SIGKILL" in log_path.read_text(),
                       "make run says intake died and how", timeout=20)

            def new_intake() -> int | None:
                pid = service_pid(process.pid, "services.intake.service")
                return pid if pid != intake else None

            restarted = wait_until(new_intake, "intake runs again", timeout=60)
            assert process.poll() is None, log_path.read_text()
            assert "restarting it in 1 s" in log_path.read_text()
            # The others ran on: the same gateway process, the store still there.
            assert service_pid(process.pid, "services.gateway.service") == gateway
            assert listening_on(store_port)
            wait_until(lambda: health(gateway_port), "the HTTP edge answers /health with intake back")
            assert accepted_over_amqp(amqp_uri)["status"] == "accepted"  # the new intake answers

            process.send_signal(signal.SIGINT)
            process.wait(STOP_WITHIN)
            children = {restarted, gateway}
            wait_until(lambda: not any(alive(pid) for pid in children), "every child process has exited",
                       timeout=STOP_WITHIN)
            assert not listening_on(gateway_port) and not listening_on(store_port)
        finally:
            for pid in descendants(process.pid):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_make_run_without_a_broker_says_so_and_exits(tmp_path):
    closed_port, store_port = free_port(), free_port()
    env = local_run_env(f"amqp://guest:guest@127.0.0.1:{closed_port}/", tmp_path, store_port, free_port())
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "deploy.local"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < 10, f"took {elapsed:.1f}s to give up"
    assert f"Cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:{closed_port}/" in result.stderr
    assert "rabbitmq-server" in result.stderr and "docker run" in result.stderr
    assert not (tmp_path / "store").exists(), "no store is started without a broker"
    assert not listening_on(store_port)
