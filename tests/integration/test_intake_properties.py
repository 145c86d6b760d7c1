"""A property over the real broker and store: whatever a publisher sends to
complaints.inbound (hostile bodies, properties, headers, routing keys and sizes), intake
answers it with exactly one receipt and keeps it (a complaint, or a kept rejection), and no
handler ever fails (nothing retried, nothing parked)."""
from __future__ import annotations

import json
import logging
import uuid

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from kombu import Connection

from services.common import amqp
from services.common.store import database
from services.intake.intake import MAX_BODY_BYTES
from services.intake.service import IntakeService
from tests.support.harness import listening, publish_raw, submission, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = 120
FIELDS = ("schema", "external_id", "received_at", "institution", "branch", "kind", "customer", "product", "subject",
          "description", "demand", "amount_in_dispute", "currency", "direct", "regulator_ref", "staff_id",
          "respondent_staff", "group_size", "cause_event", "repeat_of", "new_facts", "channel")
HOSTILE_TEXT = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("\x00.$\ud800\udfff"), max_size=40)
KEYS = st.one_of(st.sampled_from(FIELDS), HOSTILE_TEXT, st.sampled_from(["$where", "a.b", "nul\x00", "customer.phone"]))
DATES = st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2099-01-01T00:00:00+08:00",
                         "1900-01-01T00:00:00+08:00", "2026-13-45T25:61:00+08:00", "2026-11-24T10:00:00"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2 ** 63),
                    st.floats(allow_nan=False, allow_infinity=False), HOSTILE_TEXT, DATES)
JSON_VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(KEYS, children, max_size=4), max_leaves=12)


def dumps(value) -> bytes:
    # surrogatepass: a lone surrogate goes out as the escape a hostile publisher writes.
    return json.dumps(value, ensure_ascii=True).encode("utf-8")


def with_raw(member: str) -> bytes:
    return dumps(submission())[:-1] + b", " + member.encode() + b"}"


BODIES = st.one_of(
    # a complaint with some fields replaced and some added, of any kind and under any key
    st.builds(lambda changed, added: dumps({**submission(), **changed, **added}),
              st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=3),
              st.dictionaries(KEYS, JSON_VALUES, max_size=3)),
    DATES.map(lambda moment: dumps(submission(received_at=moment))),
    JSON_VALUES.map(dumps),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=20_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.integers(min_value=4_000, max_value=6_000).map(lambda digits: with_raw('"group_size": ' + "9" * digits)),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", '"\\ud800"', '"\\udfff\\u0000"']).map(
        lambda raw: with_raw(f'"demand": {raw}')),
    st.integers(min_value=1, max_value=64).map(lambda extra: dumps(
        submission(description="x" * (MAX_BODY_BYTES + extra - len(dumps(submission(description=""))))))),
)
TEXT_OR_BYTES = st.one_of(st.text(max_size=60), st.binary(min_size=1, max_size=60))
PROPERTIES = st.fixed_dictionaries({}, optional={
    "app_id": st.one_of(st.just("cc-prop"), TEXT_OR_BYTES, st.text(alphabet="cC-", min_size=129, max_size=250)),
    "content_type": st.one_of(st.just("application/json"), TEXT_OR_BYTES),
    "correlation_id": TEXT_OR_BYTES,
    "type": TEXT_OR_BYTES,
    "priority": st.integers(min_value=0, max_value=9),
    "timestamp": st.integers(min_value=0, max_value=2 ** 40),
})
HEADERS = st.one_of(
    st.dictionaries(st.text(max_size=30), st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1), st.text(max_size=30),
                                                    st.binary(max_size=30), st.booleans()), max_size=8),
    st.integers(min_value=500, max_value=2_000).map(lambda n: {f"h{i}.$\x00": "v" * 40 for i in range(n)}),
)
ROUTING_KEYS = st.one_of(st.sampled_from([f"complaint.submit.{c}" for c in ("phone", "web", "regulator", "fax")]),
                         st.text(max_size=60), st.binary(max_size=60))
NEW_ID = st.builds(lambda: uuid.uuid4().hex)
MESSAGE_IDS = st.one_of(NEW_ID, st.none(), TEXT_OR_BYTES)
PROPER = {"app_id": "cc-prop", "content_type": "application/json"}
SUBMIT = "complaint.submit.phone"
# body, properties, headers, routing key, message_id: a hostile body in a proper envelope,
# a proper complaint in a hostile envelope, or hostile everything.
MESSAGES = st.one_of(
    st.tuples(BODIES, st.just(PROPER), st.just({}), st.just(SUBMIT), NEW_ID),
    st.tuples(st.builds(lambda: dumps(submission())), PROPERTIES, HEADERS, ROUTING_KEYS, MESSAGE_IDS),
    st.tuples(BODIES, PROPERTIES, HEADERS, ROUTING_KEYS, MESSAGE_IDS),
)


def queue_depth(amqp_uri: str, name: str) -> int:
    with Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue=name, passive=True).message_count


def test_every_message_is_answered_once_and_kept_whatever_it_holds(settings, run_services, caplog):
    caplog.set_level(logging.WARNING)
    db = database(settings, "intake")
    answered = []
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts:
        with run_services(settings, IntakeService):

            @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None,
                                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
            @given(MESSAGES)
            # Always among the examples: what broke intake before (each its own class).
            @example((dumps(submission(received_at="0001-01-01T00:00:00+14:00")), PROPER, {}, SUBMIT, "date"))
            @example((b'{"a":' * 10_000 + b"1" + b"}" * 10_000, PROPER, {}, SUBMIT, "deep"))
            @example((with_raw('"customer\\u0000": 1'), PROPER, {"k.$\x00": b"\xff"}, SUBMIT, b"\xff-id"))
            @example((dumps(submission()), {"app_id": b"\xfe"}, {}, b"complaint.submit.\xff", "bytes"))
            def answered_once_and_kept(message):
                body, properties, headers, routing_key, message_id = message
                kept_before = db["complaints"].count_documents({}) + db["rejections"].count_documents({})
                before = len(receipts.drain())
                if message_id is not None:
                    properties = dict(properties, message_id=message_id)
                publish_raw(settings.amqp_uri, routing_key, body, headers, delivery_mode=2, **properties)
                [receipt] = receipts.wait_for(lambda m: True, count=before + 1, timeout=30)[before:]
                answered.append(receipt)
                status = receipt["body"]["status"]
                assert status in ("accepted", "duplicate", "rejected"), receipt
                assert receipt["routing_key"] in ("receipt.cc-prop", "receipt.unknown") or receipt[
                    "routing_key"].startswith("receipt."), receipt
                # Kept: a new complaint, or the rejection whole (a duplicate is the first one's).
                kept = db["complaints"].count_documents({}) + db["rejections"].count_documents({})
                assert kept == kept_before + (0 if status == "duplicate" else 1), receipt
                failed = [r.getMessage() for r in caplog.records if r.name.startswith(("nameko", "services"))]
                assert not failed, failed  # no handler exception, no retry

            answered_once_and_kept()
            assert queue_depth(settings.amqp_uri, "intake.inbound.parked") == 0
        # Stopped: every receipt it will send has been sent; none came twice.
        wait_until(lambda: len(receipts.drain()) >= len(answered), "the receipts are in")
        assert len(receipts.drain()) == len(answered)
