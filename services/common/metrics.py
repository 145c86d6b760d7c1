"""The platform's Prometheus metrics, each defined once (prometheus-client's default
registry of the process). A service records into them; serving them over HTTP is the
process's business, not the domain's.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge

DUE_DATES = Counter(
    "complaints_due_dates",
    "Due dates computed on receipt (intake) or when a clock starts (sla), by outcome: final; "
    "provisional (counted on a calendar year the State Council has not published); "
    "unavailable (no calendar or policy data to count on: an operator's alert)",
    ["service", "outcome"],
)

WITHOUT_DUE_DATE = Gauge(
    "complaints_without_due_date",
    "Open complaints (intake) or clocks and complaints without a clock (sla) that have no due "
    "date because calendar or policy data is missing, as last counted by the service's health: "
    "fix the data, then run python -m services.sla.recompute",
    ["service"],
)
