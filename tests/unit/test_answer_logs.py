"""A domain error is an answer, not a fault: nameko's worker log keeps it to one INFO line."""
import logging

import pytest

from services.common.errors import Invalid, NotFound, quiet_answers


@pytest.fixture
def worker_log(caplog):
    quiet_answers()
    caplog.set_level(logging.DEBUG, logger="nameko.containers")
    return logging.getLogger("nameko.containers")


@pytest.mark.parametrize("answer", [NotFound("no complaint X"), Invalid("bad", {"days": ["too many"]})])
def test_an_answer_is_one_info_line(worker_log, caplog, answer):
    try:
        raise answer
    except Exception as exc:  # noqa: BLE001
        worker_log.exception("error handling worker %s: %s", "<worker>", exc)
    [record] = caplog.records
    assert (record.levelname, record.exc_info) == ("INFO", None)
    assert "Traceback" not in caplog.text


def test_a_fault_keeps_its_traceback(worker_log, caplog):
    try:
        raise KeyError("unexpected")
    except Exception as exc:  # noqa: BLE001
        worker_log.exception("error handling worker %s: %s", "<worker>", exc)
    [record] = caplog.records
    assert record.levelname == "ERROR" and record.exc_info is not None
    assert "Traceback" in caplog.text
