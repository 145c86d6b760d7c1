"""Identifiers: event and message ids, and complaint numbers people can read out on the phone.

A complaint number is ``<INSTITUTION>-<YYMMDD>-<serial><check>``, e.g. ``BANKA-261124-0004217``:
the institution's code, the day it was received, a serial unique within the institution,
and a Luhn check digit so that a digit misheard on the phone is caught before a lookup.
"""
from __future__ import annotations

import re
import threading
import uuid
from datetime import datetime

from pymongo import ReturnDocument

COMPLAINT_NO = re.compile(r"^(?P<institution>[A-Z0-9]+)-(?P<day>\d{6})-(?P<serial>\d{6,})(?P<check>\d)$")


def new_id() -> str:
    return str(uuid.uuid4())


def luhn_digit(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def format_complaint_no(institution: str, received_at: datetime, serial: int) -> str:
    digits = f"{serial:06d}"
    return f"{institution}-{received_at:%y%m%d}-{digits}{luhn_digit(digits)}"


def is_valid_complaint_no(text: str) -> bool:
    match = COMPLAINT_NO.match(text or "")
    return bool(match) and luhn_digit(match["serial"]) == match["check"]


class SerialBlocks:
    """Serials per institution, reserved from the store in blocks.

    One ``find_one_and_update`` reserves ``block`` serials, so the hot path costs one
    round trip per block, not per complaint. Several processes never share a serial; a
    process that dies leaves a gap, which is harmless (numbers are unique, not dense).
    """

    def __init__(self, collection, block: int = 50):
        self._collection = collection
        self._block = block
        self._lock = threading.Lock()
        self._ranges: dict[str, list[int]] = {}

    def next(self, institution: str) -> int:
        with self._lock:
            current = self._ranges.get(institution)
            if not current or current[0] > current[1]:
                counter = self._collection.find_one_and_update(
                    {"_id": institution},
                    {"$inc": {"next": self._block}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                top = counter["next"]
                current = [top - self._block + 1, top]
                self._ranges[institution] = current
            serial = current[0]
            current[0] += 1
            return serial
