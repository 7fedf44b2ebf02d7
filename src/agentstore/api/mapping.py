"""Conversions between protobuf messages and domain values. Nothing here touches storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from agentstore.domain.sessions import Session, SessionStatus, StoreStats
from agentstore.v1 import session_pb2, session_service_pb2

__all__ = [
    "session_status_from_proto",
    "session_to_proto",
    "store_stats_to_proto",
    "struct_to_dict",
    "timestamp_to_datetime",
]

_STATUS_TO_PROTO: dict[SessionStatus, session_pb2.SessionStatus] = {
    SessionStatus.ACTIVE: session_pb2.SESSION_STATUS_ACTIVE,
    SessionStatus.COMPLETED: session_pb2.SESSION_STATUS_COMPLETED,
    SessionStatus.FAILED: session_pb2.SESSION_STATUS_FAILED,
}
_STATUS_FROM_PROTO: dict[int, SessionStatus] = {
    value: key for key, value in _STATUS_TO_PROTO.items()
}


def session_status_from_proto(value: int) -> SessionStatus | None:
    """The domain status, or None for UNSPECIFIED (and for numbers this server does not know,
    which the caller rejects)."""
    return _STATUS_FROM_PROTO.get(value)


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def dict_to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def timestamp_to_datetime(message: timestamp_pb2.Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


def datetime_to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def duration_to_timedelta(message: duration_pb2.Duration) -> timedelta:
    return message.ToTimedelta()


def session_to_proto(session: Session) -> session_pb2.Session:
    message = session_pb2.Session(
        id=session.id,
        app_name=session.app_name,
        user_id=session.user_id,
        agent_id=session.agent_id,
        status=_STATUS_TO_PROTO[session.status],
        metadata=dict_to_struct(session.metadata),
        state=dict_to_struct(session.state),
        version=session.version,
        last_seq=session.last_seq,
        event_count=session.event_count,
        create_time=datetime_to_timestamp(session.create_time),
        update_time=datetime_to_timestamp(session.update_time),
    )
    if session.expire_time is not None:
        message.expire_time.CopyFrom(datetime_to_timestamp(session.expire_time))
    if session.delete_time is not None:
        message.delete_time.CopyFrom(datetime_to_timestamp(session.delete_time))
    return message


def store_stats_to_proto(stats: StoreStats) -> session_service_pb2.StoreStats:
    return session_service_pb2.StoreStats(
        total_sessions=stats.total_sessions,
        active_sessions=stats.active_sessions,
        deleted_sessions=stats.deleted_sessions,
        expired_sessions=stats.expired_sessions,
        total_events=stats.total_events,
        average_events_per_session=stats.average_events_per_session,
        active_sessions_by_status=stats.active_sessions_by_status,
    )
