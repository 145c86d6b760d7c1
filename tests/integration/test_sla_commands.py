"""The operator's command after a calendar change, against a running SLA service."""
import json
import subprocess
import sys

import pytest

from services.sla.service import SlaService
from tests.support.harness import env_for
from tests.support.infra import ROOT

pytestmark = pytest.mark.integration


def test_recompute_command_reaches_every_open_clock_of_the_institution(settings, run_services):
    with run_services(settings, SlaService):
        done = subprocess.run([sys.executable, "-m", "services.sla.recompute", "--institution", "BANKA"], cwd=ROOT,
                              env=env_for(settings), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # The shipped calendars did not change since the service loaded them: nothing moves.
    assert result == {"institution": "BANKA", "changed_days": 0, "examined": 0, "recomputed": 0}
