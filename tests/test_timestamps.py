"""The one signed timestamp form: ``YYYY-MM-DDTHH:MM:SSZ``, UTC, every field at full width."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sonic_registry.errors import InvalidManifest
from sonic_registry.manifest import format_time, parse_time


def test_round_trip() -> None:
    moment = datetime(2027, 1, 31, 23, 59, 58, tzinfo=UTC)
    assert parse_time(format_time(moment)) == moment
    assert parse_time("2026-11-30T08:00:00Z").tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2027-1-31T00:00:00Z",  # strptime accepted unpadded fields
        "2027-01-31T0:00:00Z",
        "2027-01-31T00:00:00",  # no zone
        "2027-01-31T00:00:00+00:00",
        "2027-01-31T00:00:00.5Z",
        "2027-01-31",
        "2027-02-30T00:00:00Z",  # no such day
        "2027-01-31T24:00:00Z",
        "２０２７-01-31T00:00:00Z",  # fullwidth digits
        " 2027-01-31T00:00:00Z",
        "",
        20270131,
        None,
    ],
)
def test_anything_else_is_one_clear_error(text: Any) -> None:
    with pytest.raises(InvalidManifest, match="expected a UTC time like 2027-01-31T00:00:00Z") as e:
        parse_time(text, field="expires", path="release.toml")
    assert "expires" in str(e.value) and "release.toml" in str(e.value)
