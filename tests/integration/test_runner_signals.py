"""Ctrl-C or SIGTERM at any moment of a service's start stops it cleanly (nameko 2.14,
interrupted or stopped half way through its start, fails and leaves the process hanging;
the runner holds the signal until the start is done)."""
import signal
import subprocess
import sys
import time

import pytest

from tests.support.harness import env_for
from tests.support.infra import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("delay", [0.1, 0.8, 2.0])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_or_after_start_stops_the_process_cleanly(settings, tmp_path, delay, signum):
    log = tmp_path / "service.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.common.runner", "services.intake.service", "services.routing.service"],
            cwd=ROOT, env=env_for(settings), stdout=output, stderr=subprocess.STDOUT)
    time.sleep(delay)
    process.send_signal(signum)
    try:
        returncode = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert returncode == 0, text
    assert "Traceback" not in text, text
    assert "stopping services" in text  # it started, then stopped, whenever the signal came
