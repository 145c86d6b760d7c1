"""Intake's entrypoints: the call centers' queue (and the notification gateway's delivery
reports on it), RPC for the HTTP edge, events it follows, the chase of late reports."""
from __future__ import annotations

from nameko.rpc import rpc
from nameko.timer import timer

from services.common.consumers import Delivery, inbound, subscribe, subscribe_each
from services.common.outbox import Outbox
from services.common.policy import book_loaders
from services.common.store import Domain
from services.common.submission import ReceivedWindow
from services.intake.intake import HTTP_APP_ID, INDEXES, Intake
from services.intake.notices import is_report
from services.intake.records import FOLLOWED_FACTS


class IntakeService:
    name = "intake"

    desk = Domain(Intake, indexes=INDEXES,
                  options=lambda settings: {**book_loaders(settings), "window": ReceivedWindow.of(settings)})
    outbox = Outbox()

    @inbound()
    def receive(self, delivery: Delivery):
        # complaints.inbound carries submissions and the gateway's delivery reports.
        if is_report(delivery):
            self.desk.notices.receive_report(delivery, self.outbox)
        else:
            self.desk.submit_delivery(delivery, self.outbox)

    @timer(interval=1)
    def chase_notices(self):
        """Flag notices not reported delivered in time and send them on the next medium."""
        return self.desk.notices.chase(self.outbox)

    @rpc
    def submit(self, payload: dict, channel: str, idempotency_key: str, app_id: str = HTTP_APP_ID,
               submitter: dict | None = None) -> dict:
        """A submission over HTTP; ``submitter`` is who submits (the token's sub, unit, roles)."""
        return self.desk.submit(dict(payload, channel=channel), app_id, idempotency_key, self.outbox,
                                submitter=submitter).as_rpc()

    @rpc
    def get(self, complaint_no: str, visible_units: list | None = None) -> dict:
        return self.desk.get(complaint_no, visible_units)

    @rpc
    def list(self, filters: dict, visible_units: list | None = None, limit: int = 50, cursor: str | None = None):
        return self.desk.list(filters, visible_units, limit, cursor)

    @rpc
    def health(self) -> dict:
        return self.desk.health()

    @rpc
    def act(self, complaint_no: str, action: str, data: dict, actor: dict, visible_units: list | None = None):
        """decision, close, reopen, withdraw: the lifecycle actions intake owns."""
        return self.desk.records.act(complaint_no, action, data, actor, visible_units, self.outbox)

    @subscribe("organization_changed")
    def on_organization_changed(self, event: dict):
        self.desk.organization_changed(event)

    # Facts other services publish, followed into the record (services/intake/data/facts.yaml).
    @subscribe_each(*FOLLOWED_FACTS)
    def follow(self, event: dict):
        self.desk.records.follow(event, self.outbox)
