"""Masking of personal data (phone and ID numbers) for logs and for events that do not need it."""
from __future__ import annotations


def mask(value: str | None, keep_start: int = 3, keep_end: int = 4) -> str | None:
    if not value:
        return value
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[-keep_end:]


def masked_customer(customer: dict) -> dict:
    """The customer as logs and other services may see them: name, masked contacts."""
    return {
        "name": customer.get("name"),
        "phone": mask(customer.get("phone")),
        "email": mask(customer.get("email"), 2, 0) if customer.get("email") else None,
        "id_type": customer.get("id_type"),
        "id_number": mask(customer.get("id_number"), 4, 4),
    }
