"""The organization as a service keeps it from routing's announcements, on the real store."""
import uuid
from datetime import timedelta

import pytest

from services.common import events, timeutil
from services.common.errors import Unavailable
from services.common.orgtree import ANNOUNCED, COLLECTION, AnnouncedOrganization
from services.common.store import client_for
from services.routing.organization import load_organization
from services.routing.routing import announcement

pytestmark = pytest.mark.integration

BODY = announcement(load_organization())


@pytest.fixture
def db(mongo_uri):
    database = client_for(mongo_uri)[f"t{uuid.uuid4().hex[:8]}_intake"]
    yield database
    database.client.drop_database(database.name)


def announced(body, occurred_at):
    event = events.make_event("organization_changed", None, body, "routing")
    return dict(event, occurred_at=timeutil.iso(occurred_at))


def test_the_latest_announcement_is_kept_whatever_order_they_arrive_in(db):
    kept = AnnouncedOrganization(db, ttl=0)
    with pytest.raises(Unavailable):
        kept.tree()
    now = timeutil.now()
    smaller = {code: units for code, units in BODY["units"].items() if code != "BANKA-SD-YT-ZF"}
    kept.keep(announced(BODY, now))
    kept.keep(announced(dict(BODY, units=smaller), now - timedelta(seconds=5)))  # an older reload, late
    assert kept.tree().ancestors("BANKA-SD-YT-ZF") == ("BANKA-SD-YT", "BANKA-SD", "BANKA")
    kept.keep(announced(dict(BODY, units=smaller), now + timedelta(seconds=5)))
    assert not kept.tree().has("BANKA-SD-YT-ZF")
    assert "BANKA-SD-YT" in kept.institutions()["BANKA"]


def test_a_record_from_before_the_tree_was_announced_is_replaced(db):
    db[COLLECTION].insert_one({"_id": ANNOUNCED, "institutions": BODY["institutions"], "at": timeutil.now()})
    kept = AnnouncedOrganization(db, ttl=0)
    assert kept.institutions() is not None
    with pytest.raises(Unavailable):  # unit codes alone say nothing of the tree
        kept.tree()
    kept.keep(announced(BODY, timeutil.now()))
    assert kept.tree().head_office("BANKA") == "BANKA"
