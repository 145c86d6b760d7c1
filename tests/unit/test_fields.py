"""The shared field rules check exactly what the OpenAPI document states: each pattern is
judged by a JSON Schema validator (as clients and schemathesis judge it) and by the field,
and both must agree on any text."""
import jsonschema_rs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from marshmallow import ValidationError

from services.common import timeutil
from services.common.fields import AMOUNT, CODE, CURRENCY, NOT_BLANK, WHITESPACE, Day, Moment, Pattern
from services.common.submission import ComplaintNumber

PATTERNS = {"code": CODE, "currency": CURRENCY, "not_blank": NOT_BLANK, "amount": AMOUNT,
            "complaint_no": Pattern(ComplaintNumber().regex.pattern, error="x")}
# Text near each pattern's edges: white space of every kind, digits of other scripts, newlines.
EDGY = st.text(alphabet=st.sampled_from(
    "aZ09-_.:+ \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2028\u3000\ufeff\u0663\uff10B")) | st.text()


def documented(pattern: str):
    return jsonschema_rs.validator_for({"type": "string", "pattern": pattern}).is_valid


def checked(validator: Pattern, value: str) -> bool:
    try:
        validator(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(PATTERNS))
@given(value=EDGY)
@example(value="BANKA\n")
@example(value="\u0663")
def test_the_document_and_the_field_agree(name, value):
    validator = PATTERNS[name]
    assert documented(validator.regex.pattern)(value) == checked(validator, value)


@given(EDGY)
def test_not_blank_is_what_strip_calls_blank(value):
    assert checked(NOT_BLANK, value) == bool(value.strip())


def test_white_space_is_what_python_calls_white_space():
    spaces = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
    assert documented(f"^[{WHITESPACE}]+$")(spaces)
    assert not checked(NOT_BLANK, spaces)


@pytest.mark.parametrize("text, year", [("1900-01-01", True), ("2999-12-31", True), ("1899-12-31", False),
                                        ("9999-12-31", False), ("0001-01-01T00:00:00+14:00", False)])
def test_the_years_of_a_bound_are_the_documented_ones(text, year):
    assert documented(timeutil.YEAR_PATTERN)(text) == year
    if year:
        timeutil.parse_bound(text, upper=True)
    else:
        with pytest.raises(ValueError):
            timeutil.parse_bound(text, upper=True)


@pytest.mark.parametrize("field, text, year", [
    (Moment(), "1900-01-01T00:00:00+08:00", True), (Moment(), "2999-12-31T23:59:59-12:00", True),
    (Moment(), "0001-01-01T00:00:00+14:00", False), (Moment(), "9999-12-31T23:59:59-14:00", False),
    (Day(), "2026-12-20", True), (Day(), "1899-12-31", False), (Day(), "9999-12-31", False),
])
def test_times_and_days_are_taken_in_the_documented_years(field, text, year):
    assert field.metadata["pattern"] == timeutil.YEAR_PATTERN
    assert documented(timeutil.YEAR_PATTERN)(text) == year
    if year:
        field.deserialize(text)
    else:
        with pytest.raises(ValidationError, match="year"):
            field.deserialize(text)
