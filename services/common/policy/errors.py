"""The one family of errors that means "no due date can be computed" (missing calendar or
policy data), so that callers answer the complaint without one instead of failing."""
from __future__ import annotations


class NoDueDate(LookupError):
    """The data needed to compute a due date is missing: a calendar year, a policy, a clock."""
