"""The client's conversions between protobuf values and Python ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import timestamp_pb2

from agentstore.client.convert import time_from_timestamp, timestamp_from_time


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (1, 999_999_999),
        (-1, 1),
        (-1_576_800_000, 123_456_789),
        (1_764_750_000, 500),
        (1_764_750_000, 1_500),
        (253_402_300_799, 999_999_999),  # the last second of 9999
        (-62_135_596_800, 0),  # 0001-01-01
    ],
)
def test_a_timestamp_reads_as_protobuf_itself_reads_it(seconds: int, nanos: int) -> None:
    timestamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    converted = time_from_timestamp(timestamp)
    assert converted == timestamp.ToDatetime(tzinfo=UTC)
    assert converted.tzinfo is UTC


def test_a_time_goes_there_and_back_to_the_microsecond() -> None:
    moment = datetime(2026, 12, 3, 9, 30, 15, 123_456, tzinfo=UTC)
    assert time_from_timestamp(timestamp_from_time(moment)) == moment
