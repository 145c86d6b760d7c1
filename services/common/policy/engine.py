"""The SLA policy engine: policies as data, and the due dates, warnings and extensions of
their clocks. Pure: no I/O but reading the YAML at load time, and no ``datetime.now()``.

Conventions (every datetime in and out is timezone-aware; results are in Asia/Shanghai):

``calendar_days`` limit of N
    Day 1 is the day after the start (Asia/Shanghai date). The limit ends at the end of
    day N, written as 23:59:59 of that day: received 2026-09-20 10:00 with 15 calendar
    days is due 2026-10-05T23:59:59+08:00. Holidays count (Order 3/2020 Art. 43: natural
    days), so the due date may fall on a holiday. Work done at or before ``due_by`` is in
    time.
``working_days`` limit of N
    The N-th working day after the start date, at 23:59:59. The start day never counts, so a
    complaint received on a holiday or a weekend counts from the next working day.
``hours`` limit of N
    ``started_at`` + N hours, exactly (a consultation at 23:30 is due 23:30 the next day).
``end_of_business_day`` limit of N
    The business end (calendar data, e.g. 17:30) of the start day if it is a working day and
    the start is before that time, otherwise of the next working day; N > 0 moves it N
    working days further.

Pauses (``paused=[(start, end), ...]``): the time is not counted and the clock resumes where
it stopped. Pauses are clipped to begin no earlier than ``started_at``, overlapping pauses
merge, and a pause that begins after the (so far) due time is ignored: a clock that has run
out is not revived. ``end=None`` means still paused: the due date is then undetermined and
``due_by`` returns ``None``.

- calendar-day, hour and end-of-business-day clocks: the due time moves by the exact paused
  duration.
- working-day clocks: the due date moves by the working days in (pause start date, pause end
  date]: the day the pause begins counted as a day the clock ran, and every working day
  after it up to and including the day it ends is given back (like the day of receipt, the
  day of resumption does not count). A same-day pause moves nothing; a pause from
  2026-09-30 to 2026-10-09 gives back two days (Oct 8 and 9; Oct 1-7 are holidays).

Extensions: a clock declares ordered steps; the n-th extension granted on a clock (``steps_taken
== n - 1``) is governed by step n: the new total may not exceed the step's ``to_total`` and,
if the step names approval roles, ``approvals`` must contain at least one of them. After the
last step every extension is refused. ``extended_to`` (the total now in force, in the clock's
unit) replaces the limit in ``due_by``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from services.common.policy.calendar import BusinessCalendar, end_of_day, to_shanghai
from services.common.policy.errors import NoDueDate
from services.common.reference import KINDS

DEFAULT_POLICIES_PATH = Path(__file__).with_name("data") / "policies.yaml"

LIMIT_UNITS = ("calendar_days", "working_days", "hours", "end_of_business_day")
# Limits whose due date the business calendar decides.
CALENDAR_LIMIT_UNITS = ("working_days", "end_of_business_day")
OFFSET_UNITS = ("calendar_days", "working_days", "hours")

Pause = tuple[datetime, datetime | None]


class PolicyError(ValueError):
    """The policy data is invalid (raised at load time)."""


class UnknownPolicy(NoDueDate):
    """No policy has that code, or no selection rule matches."""


class UnknownClock(NoDueDate):
    """The policy has no clock of that name."""


class ExtensionRefused(Exception):
    """An extension the policy does not allow. ``reason`` is a code, ``str()`` explains it.

    Reason codes: ``no_extensions`` (the clock has none), ``steps_exhausted`` (every declared
    step was used), ``invalid_request`` (requested days < 1), ``over_cap`` (the new total would
    exceed the step's cap), ``approval_missing`` (none of the step's roles approved).
    """

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


class ReviewWindowClosed(Exception):
    """The customer asked for a review after the review window had ended."""


@dataclass(frozen=True)
class Limit:
    """An amount of time: ``value`` in ``unit``."""

    value: int
    unit: str

    def __str__(self) -> str:
        return f"{self.value} {self.unit}"


@dataclass(frozen=True)
class WarningOffset:
    """A warning point ``value`` ``unit`` before a clock's limit, with a label."""

    value: int
    unit: str
    label: str


@dataclass(frozen=True)
class ExtensionStep:
    """One extension step: the total may go up to ``to_total``; ``approval`` is any-of
    (empty: no approval needed)."""

    to_total: Limit
    approval: frozenset[str]
    customer_told: bool = True
    reason_required: bool = True


def _shift(moment: datetime, offset: int, unit: str, calendar: BusinessCalendar | None) -> datetime:
    """``moment`` moved back by ``offset`` ``unit`` (a warning point). See ``warning_points``."""
    if unit == "hours":
        return moment - timedelta(hours=offset)
    if unit == "calendar_days":
        return moment - timedelta(days=offset)
    if calendar is None:
        raise ValueError("a working-day offset needs a calendar")
    last = calendar.last_working_day_on_or_before(moment.date())
    day = calendar.previous_working_day(last, offset)
    return moment.replace(year=day.year, month=day.month, day=day.day)


def _deadline(start: datetime, value: int, unit: str, calendar: BusinessCalendar | None) -> datetime:
    if unit == "calendar_days":
        return end_of_day(start.date() + timedelta(days=value))
    if unit == "hours":
        return start + timedelta(hours=value)
    if calendar is None:
        raise ValueError(f"a {unit} limit needs a calendar")
    if unit == "working_days":
        return end_of_day(calendar.add_working_days(start.date(), value))
    if unit == "end_of_business_day":
        return calendar.end_of_business_day(start, value)
    raise PolicyError(f"unknown unit {unit!r}")


def _normalise_pauses(paused: Iterable[Sequence[datetime | None]], started_at: datetime) -> list[Pause]:
    """Clip to ``started_at``, drop empty pauses, sort and merge overlaps."""
    clipped: list[Pause] = []
    for item in paused:
        start, end = item
        if start is None:
            raise ValueError("a pause needs a start")
        s = max(to_shanghai(start), started_at)
        e = None if end is None else to_shanghai(end)
        if end is not None and to_shanghai(end) < to_shanghai(start):
            raise ValueError(f"pause ends before it starts: {start.isoformat()} .. {end.isoformat()}")
        if e is not None and e <= s:
            continue
        clipped.append((s, e))
    clipped.sort(key=lambda p: p[0])
    merged: list[Pause] = []
    for s, e in clipped:
        if merged:
            ps, pe = merged[-1]
            if pe is None:
                break  # everything after an open pause is inside it
            if s <= pe:
                merged[-1] = (ps, None if e is None else max(pe, e))
                continue
        merged.append((s, e))
    return merged


@dataclass(frozen=True)
class ClockRule:
    """One clock of a policy (``decision``, ``review``, ...): its limit, warnings, extensions."""

    policy: str
    name: str
    limit: Limit
    starts_on: str = "received"
    description: str = ""
    warnings: tuple[WarningOffset, ...] = ()
    extensions: tuple[ExtensionStep, ...] = ()

    @property
    def max_total(self) -> int:
        """The largest total any chain of extensions can reach (the limit if none)."""
        return self.extensions[-1].to_total.value if self.extensions else self.limit.value

    def with_limit(self, value: int) -> ClockRule:
        """A copy with another limit in the same unit (e.g. the reply time promised for a
        suggestion when it was recorded)."""
        if value < 0:
            raise ValueError("a limit is >= 0")
        return replace(self, limit=Limit(value, self.limit.unit))

    def due_by(
        self,
        started_at: datetime,
        *,
        calendar: BusinessCalendar | None,
        paused: Iterable[Sequence[datetime | None]] = (),
        extended_to: int | Limit | None = None,
    ) -> datetime | None:
        """When this clock runs out, for a clock started at ``started_at``.

        ``calendar`` is needed for working-day and end-of-business-day clocks (and may be
        None for calendar-day and hour clocks). ``paused`` are (start, end) intervals not
        counted; ``end=None`` (still paused) makes the result ``None``. ``extended_to`` is
        the total limit now in force after extensions, in the clock's unit. See the module
        docstring for the exact conventions. A day to count in a year not published yet is
        counted on the provisional calendar (``provisional_years`` says which years); one in
        a year the calendar cannot count at all raises ``CalendarYearUnknown``.
        """
        start = to_shanghai(started_at)
        value = self.limit.value
        if extended_to is not None:
            if isinstance(extended_to, Limit):
                if extended_to.unit != self.limit.unit:
                    raise ValueError(f"extended_to is in {extended_to.unit}, the clock counts {self.limit.unit}")
                extended_to = extended_to.value
            if extended_to < value:
                raise ValueError(f"extended_to {extended_to} is shorter than the limit {value}")
            value = extended_to
        due = _deadline(start, value, self.limit.unit, calendar)
        for s, e in _normalise_pauses(paused, start):
            if s >= due:
                break  # the clock had run out before this pause (and all later ones)
            if e is None:
                return None
            if self.limit.unit == "working_days":
                assert calendar is not None
                given_back = calendar.working_days_between(s.date(), e.date())
                due = end_of_day(calendar.add_working_days(due.date(), given_back))
            else:
                due = due + (e - s)
        return due

    def provisional_years(
        self, started_at: datetime, due_by: datetime | None, calendar: BusinessCalendar | None
    ) -> tuple[int, ...]:
        """The years not published yet whose provisional calendar counted this due date (see
        ``calendar``): none for a calendar-day or hour limit, which no calendar decides."""
        if due_by is None or calendar is None or self.limit.unit not in CALENDAR_LIMIT_UNITS:
            return ()
        return calendar.provisional_years(to_shanghai(started_at).date(), to_shanghai(due_by).date())

    def restart(
        self,
        new_material_at: datetime,
        *,
        calendar: BusinessCalendar | None,
        paused: Iterable[Sequence[datetime | None]] = (),
        extended_to: int | Limit | None = None,
    ) -> datetime | None:
        """The due date when a repeat complaint brings new facts and reasons: the limit counts
        again from ``new_material_at`` (Order 3/2020 Art. 18). Pauses before that moment no
        longer matter (they are clipped away); an extension already granted carries over
        only if the caller passes ``extended_to``."""
        return self.due_by(new_material_at, calendar=calendar, paused=paused, extended_to=extended_to)

    def warning_points(
        self,
        due_by: datetime,
        calendar: BusinessCalendar | None,
        *,
        not_before: datetime | None = None,
    ) -> list[tuple[str, datetime]]:
        """The warning points before ``due_by``, earliest first, as (label, when).

        - ``hours`` / ``calendar_days`` offset k: ``due_by`` minus k hours / k days.
        - ``working_days`` offset k: the moment from which k working days remain: the same
          time of day as ``due_by``, on the k-th working day before the last working day on
          or before the due date (the due date itself if it is a working day). For a
          calendar-day limit ending on a holiday, the last working day before the holiday
          is the last day that counts.

        Points earlier than ``not_before`` (e.g. the start of the clock) are left out.
        """
        due = to_shanghai(due_by)
        floor = None if not_before is None else to_shanghai(not_before)
        points = []
        for w in self.warnings:
            at = _shift(due, w.value, w.unit, calendar)
            if floor is None or at >= floor:
                points.append((w.label, at))
        points.sort(key=lambda p: p[1])
        return points

    def extension_step(self, steps_taken: int) -> ExtensionStep | None:
        """The step the next extension falls under, or None when none is left."""
        if steps_taken < 0:
            raise ValueError("steps_taken is >= 0")
        return self.extensions[steps_taken] if steps_taken < len(self.extensions) else None

    def extend(
        self,
        current_total: int,
        requested_days: int,
        approvals: Iterable[str] = (),
        *,
        steps_taken: int = 0,
    ) -> int:
        """The new total limit after extending by ``requested_days`` (in the clock's unit),
        or ``ExtensionRefused``.

        ``current_total`` is the limit in force (the base limit before any extension),
        ``steps_taken`` the number of extensions already granted on this clock; the
        granted extension is step ``steps_taken + 1``, so the caller records
        ``steps_taken + 1``. ``approvals`` are the roles that approved this request.
        Under cbirc-2020: the first extension may bring the total to at most 30 days and
        needs ``handler`` or ``supervisor``; the second to at most 60 and needs
        ``superior_unit`` or ``head_office_senior_manager``; a third is refused.
        """
        if current_total < self.limit.value:
            raise ValueError(f"current_total {current_total} is below the limit {self.limit.value}")
        if not self.extensions:
            raise ExtensionRefused("no_extensions", f"{self.policy}/{self.name} allows no extension")
        step = self.extension_step(steps_taken)
        if step is None:
            raise ExtensionRefused(
                "steps_exhausted",
                f"{self.policy}/{self.name} allows {len(self.extensions)} extension(s); all were used",
            )
        if requested_days < 1:
            raise ExtensionRefused("invalid_request", "an extension adds at least 1 day")
        new_total = current_total + requested_days
        cap = step.to_total.value
        if new_total > cap:
            raise ExtensionRefused(
                "over_cap",
                f"extension {steps_taken + 1} may bring the total to at most {cap} {self.limit.unit}; "
                f"{current_total} + {requested_days} = {new_total}",
            )
        if step.approval and not (step.approval & set(approvals)):
            raise ExtensionRefused(
                "approval_missing",
                f"extension {steps_taken + 1} needs the approval of one of {sorted(step.approval)}",
            )
        return new_total


@dataclass(frozen=True)
class Policy:
    """An SLA policy: its clocks and, for complaints, the review window."""

    code: str
    description: str
    source: str
    clocks: Mapping[str, ClockRule]
    review_window: Limit | None = None

    def clock(self, name: str) -> ClockRule:
        """The clock ``name``; ``UnknownClock`` if the policy has none."""
        try:
            return self.clocks[name]
        except KeyError:
            raise UnknownClock(f"policy {self.code!r} has no clock {name!r} (has {sorted(self.clocks)})") from None

    @property
    def primary_clock(self) -> ClockRule:
        """The clock that starts on receipt (the first such in the data): the one whose
        ``due_by`` intake reports on a receipt (decision, consultation_answer, reply, ...)."""
        for rule in self.clocks.values():
            if rule.starts_on == "received":
                return rule
        raise UnknownClock(f"policy {self.code!r} has no clock that starts on receipt")

    def review_window_ends(self, decided_at: datetime, *, calendar: BusinessCalendar | None = None) -> datetime:
        """The last moment the customer may ask for a review of a decision received at
        ``decided_at`` (cbirc-2020: end of the 30th calendar day after it)."""
        if self.review_window is None:
            raise UnknownClock(f"policy {self.code!r} has no review window")
        return _deadline(to_shanghai(decided_at), self.review_window.value, self.review_window.unit, calendar)

    def review_due_by(
        self,
        decided_at: datetime,
        requested_at: datetime,
        *,
        calendar: BusinessCalendar | None = None,
        paused: Iterable[Sequence[datetime | None]] = (),
    ) -> datetime | None:
        """The due date of the review clock for a review requested at ``requested_at``;
        ``ReviewWindowClosed`` if the request came after the window."""
        if to_shanghai(requested_at) < to_shanghai(decided_at):
            raise ValueError("a review is requested after the decision")
        ends = self.review_window_ends(decided_at, calendar=calendar)
        if to_shanghai(requested_at) > ends:
            raise ReviewWindowClosed(
                f"review requested {to_shanghai(requested_at).isoformat()}, window ended {ends.isoformat()}"
            )
        return self.clock("review").due_by(requested_at, calendar=calendar, paused=paused)


@dataclass(frozen=True)
class SelectionRule:
    """Chooses ``policy`` when every named criterion matches (None: any)."""

    policy: str
    institution: frozenset[str] | None = None
    kind: frozenset[str] | None = None
    channel: frozenset[str] | None = None

    def matches(self, institution: str | None, kind: str, channel: str | None) -> bool:
        return all(
            allowed is None or value in allowed
            for allowed, value in ((self.institution, institution), (self.kind, kind), (self.channel, channel))
        )


@dataclass(frozen=True)
class PolicyBook:
    """Every policy, and the ordered rules that choose one for a complaint."""

    policies: Mapping[str, Policy]
    selection: tuple[SelectionRule, ...] = ()
    version: Any = None

    def get(self, code: str) -> Policy:
        """The policy ``code``; ``UnknownPolicy`` if there is none."""
        try:
            return self.policies[code]
        except KeyError:
            raise UnknownPolicy(f"no policy {code!r} (have {sorted(self.policies)})") from None

    def select(self, institution: str | None, kind: str, channel: str | None) -> Policy:
        """The policy of the first selection rule that matches; ``UnknownPolicy`` if none."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        for rule in self.selection:
            if rule.matches(institution, kind, channel):
                return self.get(rule.policy)
        raise UnknownPolicy(f"no selection rule for institution={institution!r} kind={kind!r} channel={channel!r}")


# -- loading ------------------------------------------------------------------------------


def _limit(raw: Any, where: str, units: Sequence[str] = LIMIT_UNITS) -> Limit:
    if not isinstance(raw, Mapping) or "value" not in raw or "unit" not in raw:
        raise PolicyError(f"{where}: expected {{value, unit}}, got {raw!r}")
    value, unit = raw["value"], raw["unit"]
    if unit not in units:
        raise PolicyError(f"{where}: unit {unit!r} not one of {tuple(units)}")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PolicyError(f"{where}: value must be an integer >= 0, got {value!r}")
    if value == 0 and unit != "end_of_business_day":
        raise PolicyError(f"{where}: a {unit} amount must be >= 1")
    return Limit(value, unit)


def _roles(raw: Any, where: str) -> frozenset[str]:
    if raw in (None, "none", []):
        return frozenset()
    if isinstance(raw, str):
        return frozenset([raw])
    if isinstance(raw, list) and all(isinstance(r, str) for r in raw):
        return frozenset(raw)
    raise PolicyError(f"{where}: approval must be a list of roles or none, got {raw!r}")


def _clock(policy: str, raw: Mapping[str, Any]) -> ClockRule:
    name = raw.get("name")
    if not name:
        raise PolicyError(f"{policy}: a clock without a name")
    where = f"{policy}/{name}"
    limit = _limit(raw.get("limit"), f"{where}.limit")
    warnings = []
    for i, w in enumerate(raw.get("warnings") or ()):
        off = _limit(w, f"{where}.warnings[{i}]", OFFSET_UNITS)
        warnings.append(WarningOffset(off.value, off.unit, str(w.get("label") or f"{off.value}_{off.unit}_before")))
    steps = []
    previous = limit.value
    for i, s in enumerate(raw.get("extensions") or ()):
        to_total = _limit(s.get("to_total"), f"{where}.extensions[{i}].to_total")
        if to_total.unit != limit.unit:
            raise PolicyError(f"{where}.extensions[{i}]: unit {to_total.unit} differs from the limit's {limit.unit}")
        if to_total.value <= previous:
            raise PolicyError(f"{where}.extensions[{i}]: to_total {to_total.value} does not exceed {previous}")
        previous = to_total.value
        steps.append(
            ExtensionStep(
                to_total=to_total,
                approval=_roles(s.get("approval"), f"{where}.extensions[{i}]"),
                customer_told=bool(s.get("customer_told", True)),
                reason_required=bool(s.get("reason_required", True)),
            )
        )
    return ClockRule(
        policy=policy,
        name=str(name),
        limit=limit,
        starts_on=str(raw.get("starts_on", "received")),
        description=str(raw.get("description", "")).strip(),
        warnings=tuple(warnings),
        extensions=tuple(steps),
    )


def _codes(raw: Any, where: str) -> frozenset[str] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return frozenset([raw])
    if isinstance(raw, list) and raw and all(isinstance(r, str) for r in raw):
        return frozenset(raw)
    raise PolicyError(f"{where}: expected a code or a list of codes, got {raw!r}")


def policies_from_data(raw: Mapping[str, Any]) -> PolicyBook:
    """Build a PolicyBook from parsed policies.yaml data (validates it; ``PolicyError``)."""
    policies: dict[str, Policy] = {}
    for p in raw.get("policies") or ():
        code = p.get("code")
        if not code or code in policies:
            raise PolicyError(f"policy code missing or repeated: {code!r}")
        clocks: dict[str, ClockRule] = {}
        for c in p.get("clocks") or ():
            rule = _clock(code, c)
            if rule.name in clocks:
                raise PolicyError(f"{code}: clock {rule.name!r} repeated")
            clocks[rule.name] = rule
        if not clocks:
            raise PolicyError(f"{code}: no clocks")
        window = p.get("review_window")
        policies[code] = Policy(
            code=code,
            description=str(p.get("description", "")).strip(),
            source=str(p.get("source", "")).strip(),
            clocks=clocks,
            review_window=None if window is None else _limit(window, f"{code}.review_window", OFFSET_UNITS),
        )
    rules = []
    for i, r in enumerate(raw.get("selection") or ()):
        where = f"selection[{i}]"
        when = r.get("when") or {}
        unknown = set(when) - {"institution", "kind", "channel"}
        if unknown:
            raise PolicyError(f"{where}: unknown criteria {sorted(unknown)}")
        if r.get("policy") not in policies:
            raise PolicyError(f"{where}: unknown policy {r.get('policy')!r}")
        kinds = _codes(when.get("kind"), where)
        if kinds and not kinds <= set(KINDS):
            raise PolicyError(f"{where}: kind must be among {KINDS}")
        rules.append(
            SelectionRule(
                policy=r["policy"],
                institution=_codes(when.get("institution"), where),
                kind=kinds,
                channel=_codes(when.get("channel"), where),
            )
        )
    return PolicyBook(policies=policies, selection=tuple(rules), version=raw.get("version"))


def load_policies(path: str | Path | None = None) -> PolicyBook:
    """Read and validate policies.yaml (default: the shipped ``data/policies.yaml``)."""
    raw = yaml.safe_load(Path(path or DEFAULT_POLICIES_PATH).read_text(encoding="utf-8")) or {}
    return policies_from_data(raw)


__all__ = [
    "CALENDAR_LIMIT_UNITS",
    "ClockRule",
    "ExtensionRefused",
    "ExtensionStep",
    "Limit",
    "Policy",
    "PolicyBook",
    "PolicyError",
    "ReviewWindowClosed",
    "SelectionRule",
    "UnknownClock",
    "UnknownPolicy",
    "WarningOffset",
    "load_policies",
    "policies_from_data",
]
