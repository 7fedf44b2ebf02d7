import datetime

from agentstore.v1 import event_pb2 as _event_pb2
from agentstore.v1 import session_pb2 as _session_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateSessionRequest(_message.Message):
    __slots__ = ("session_id", "app_name", "user_id", "agent_id", "metadata", "state", "ttl", "status", "create_time")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    app_name: str
    user_id: str
    agent_id: str
    metadata: _struct_pb2.Struct
    state: _struct_pb2.Struct
    ttl: _duration_pb2.Duration
    status: _session_pb2.SessionStatus
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., app_name: _Optional[str] = ..., user_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., state: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., status: _Optional[_Union[_session_pb2.SessionStatus, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id", "view")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    view: _session_pb2.SessionView
    def __init__(self, session_id: _Optional[str] = ..., view: _Optional[_Union[_session_pb2.SessionView, str]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("app_name", "user_id", "agent_id", "status", "show_deleted", "page_size", "page_token", "view")
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SHOW_DELETED_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    app_name: str
    user_id: str
    agent_id: str
    status: _session_pb2.SessionStatus
    show_deleted: bool
    page_size: int
    page_token: str
    view: _session_pb2.SessionView
    def __init__(self, app_name: _Optional[str] = ..., user_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., status: _Optional[_Union[_session_pb2.SessionStatus, str]] = ..., show_deleted: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., view: _Optional[_Union[_session_pb2.SessionView, str]] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_session_pb2.Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[_session_pb2.Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSessionRequest(_message.Message):
    __slots__ = ("session_id", "status", "metadata", "state_delta", "expire_time", "update_mask", "expected_version", "ttl")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATE_DELTA_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    status: _session_pb2.SessionStatus
    metadata: _struct_pb2.Struct
    state_delta: _struct_pb2.Struct
    expire_time: _timestamp_pb2.Timestamp
    update_mask: _field_mask_pb2.FieldMask
    expected_version: int
    ttl: _duration_pb2.Duration
    def __init__(self, session_id: _Optional[str] = ..., status: _Optional[_Union[_session_pb2.SessionStatus, str]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., state_delta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., expected_version: _Optional[int] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("session_id", "purge")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    purge: bool
    def __init__(self, session_id: _Optional[str] = ..., purge: _Optional[bool] = ...) -> None: ...

class DeleteSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class UndeleteSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class DeleteSessionsRequest(_message.Message):
    __slots__ = ("app_name", "user_id", "purge")
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    app_name: str
    user_id: str
    purge: bool
    def __init__(self, app_name: _Optional[str] = ..., user_id: _Optional[str] = ..., purge: _Optional[bool] = ...) -> None: ...

class DeleteSessionsResponse(_message.Message):
    __slots__ = ("deleted_count",)
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_count: int
    def __init__(self, deleted_count: _Optional[int] = ...) -> None: ...

class AppendEventsRequest(_message.Message):
    __slots__ = ("session_id", "events", "expected_last_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    expected_last_seq: int
    def __init__(self, session_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ..., expected_last_seq: _Optional[int] = ...) -> None: ...

class AppendStreamRequest(_message.Message):
    __slots__ = ("request_id", "session_id", "events", "expected_last_seq")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_id: str
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    expected_last_seq: int
    def __init__(self, request_id: _Optional[str] = ..., session_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ..., expected_last_seq: _Optional[int] = ...) -> None: ...

class AppendStreamResponse(_message.Message):
    __slots__ = ("request_id", "appended", "duplicates", "seqs", "last_seq", "version", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    APPENDED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    appended: int
    duplicates: int
    seqs: _containers.RepeatedScalarFieldContainer[int]
    last_seq: int
    version: int
    error: _status_pb2.Status
    def __init__(self, request_id: _Optional[str] = ..., appended: _Optional[int] = ..., duplicates: _Optional[int] = ..., seqs: _Optional[_Iterable[int]] = ..., last_seq: _Optional[int] = ..., version: _Optional[int] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class AppendEventsResponse(_message.Message):
    __slots__ = ("appended", "duplicates", "last_seq")
    class LastSeqEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    APPENDED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    appended: int
    duplicates: int
    last_seq: _containers.ScalarMap[str, int]
    def __init__(self, appended: _Optional[int] = ..., duplicates: _Optional[int] = ..., last_seq: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("session_id", "after_seq", "types", "page_size", "page_token", "before_seq", "author", "agent_id", "invocation_id", "branch", "start_time", "end_time", "descending")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    after_seq: int
    types: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    before_seq: int
    author: str
    agent_id: str
    invocation_id: str
    branch: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    descending: bool
    def __init__(self, session_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., types: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., before_seq: _Optional[int] = ..., author: _Optional[str] = ..., agent_id: _Optional[str] = ..., invocation_id: _Optional[str] = ..., branch: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., descending: _Optional[bool] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("session_id", "after_seq", "app_name", "user_id", "types", "follow", "agent_id", "resume_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    after_seq: int
    app_name: str
    user_id: str
    types: _containers.RepeatedScalarFieldContainer[str]
    follow: bool
    agent_id: str
    resume_token: str
    def __init__(self, session_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., app_name: _Optional[str] = ..., user_id: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., follow: _Optional[bool] = ..., agent_id: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("events", "caught_up", "heartbeat", "resume_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    caught_up: bool
    heartbeat: bool
    resume_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ..., caught_up: _Optional[bool] = ..., heartbeat: _Optional[bool] = ..., resume_token: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "app_name", "user_id", "agent_id", "session_id", "types", "page_size", "page_token", "author", "start_time", "end_time")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    query: str
    app_name: str
    user_id: str
    agent_id: str
    session_id: str
    types: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    author: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, query: _Optional[str] = ..., app_name: _Optional[str] = ..., user_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., session_id: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., author: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("event", "score", "snippet")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    event: _event_pb2.Event
    score: float
    snippet: str
    def __init__(self, event: _Optional[_Union[_event_pb2.Event, _Mapping]] = ..., score: _Optional[float] = ..., snippet: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "next_page_token")
    HITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    next_page_token: str
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetSessionStatsRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SessionStats(_message.Message):
    __slots__ = ("event_count", "events_by_type", "events_by_author", "text_chars", "first_event_time", "last_event_time", "events_by_role")
    class EventsByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class EventsByAuthorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class EventsByRoleEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_BY_AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    FIRST_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_BY_ROLE_FIELD_NUMBER: _ClassVar[int]
    event_count: int
    events_by_type: _containers.ScalarMap[str, int]
    events_by_author: _containers.ScalarMap[str, int]
    text_chars: int
    first_event_time: _timestamp_pb2.Timestamp
    last_event_time: _timestamp_pb2.Timestamp
    events_by_role: _containers.ScalarMap[str, int]
    def __init__(self, event_count: _Optional[int] = ..., events_by_type: _Optional[_Mapping[str, int]] = ..., events_by_author: _Optional[_Mapping[str, int]] = ..., text_chars: _Optional[int] = ..., first_event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., events_by_role: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetStoreStatsRequest(_message.Message):
    __slots__ = ("app_name",)
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    app_name: str
    def __init__(self, app_name: _Optional[str] = ...) -> None: ...

class StoreStats(_message.Message):
    __slots__ = ("total_sessions", "active_sessions", "deleted_sessions", "expired_sessions", "total_events", "average_events_per_session", "active_sessions_by_status")
    class ActiveSessionsByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TOTAL_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    DELETED_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_EVENTS_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    total_sessions: int
    active_sessions: int
    deleted_sessions: int
    expired_sessions: int
    total_events: int
    average_events_per_session: float
    active_sessions_by_status: _containers.ScalarMap[str, int]
    def __init__(self, total_sessions: _Optional[int] = ..., active_sessions: _Optional[int] = ..., deleted_sessions: _Optional[int] = ..., expired_sessions: _Optional[int] = ..., total_events: _Optional[int] = ..., average_events_per_session: _Optional[float] = ..., active_sessions_by_status: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ("app_name", "user_id")
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    app_name: str
    user_id: str
    def __init__(self, app_name: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class UpdateStateRequest(_message.Message):
    __slots__ = ("app_name", "user_id", "state_delta", "expected_version")
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_DELTA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    app_name: str
    user_id: str
    state_delta: _struct_pb2.Struct
    expected_version: int
    def __init__(self, app_name: _Optional[str] = ..., user_id: _Optional[str] = ..., state_delta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class RemoveEventsRequest(_message.Message):
    __slots__ = ("session_id", "newest", "seqs", "from_invocation_id", "all", "expected_last_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    FROM_INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    newest: bool
    seqs: SeqRange
    from_invocation_id: str
    all: bool
    expected_last_seq: int
    def __init__(self, session_id: _Optional[str] = ..., newest: _Optional[bool] = ..., seqs: _Optional[_Union[SeqRange, _Mapping]] = ..., from_invocation_id: _Optional[str] = ..., all: _Optional[bool] = ..., expected_last_seq: _Optional[int] = ...) -> None: ...

class SeqRange(_message.Message):
    __slots__ = ("first", "last")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...

class RemoveEventsResponse(_message.Message):
    __slots__ = ("removed_ranges", "removed_count", "removed", "notice_seq", "last_seq", "version")
    REMOVED_RANGES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    NOTICE_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    removed_ranges: _containers.RepeatedCompositeFieldContainer[SeqRange]
    removed_count: int
    removed: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    notice_seq: int
    last_seq: int
    version: int
    def __init__(self, removed_ranges: _Optional[_Iterable[_Union[SeqRange, _Mapping]]] = ..., removed_count: _Optional[int] = ..., removed: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ..., notice_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...
