import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Content(_message.Message):
    __slots__ = ("role", "text")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    role: str
    text: str
    def __init__(self, role: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class EventActions(_message.Message):
    __slots__ = ("state_delta", "app_state_delta", "user_state_delta")
    STATE_DELTA_FIELD_NUMBER: _ClassVar[int]
    APP_STATE_DELTA_FIELD_NUMBER: _ClassVar[int]
    USER_STATE_DELTA_FIELD_NUMBER: _ClassVar[int]
    state_delta: _struct_pb2.Struct
    app_state_delta: _struct_pb2.Struct
    user_state_delta: _struct_pb2.Struct
    def __init__(self, state_delta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., app_state_delta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., user_state_delta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "session_id", "seq", "position", "type", "author", "invocation_id", "agent_id", "branch", "content", "data", "actions", "metadata", "create_time", "resume_token")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    session_id: str
    seq: int
    position: int
    type: str
    author: str
    invocation_id: str
    agent_id: str
    branch: str
    content: Content
    data: _struct_pb2.Struct
    actions: EventActions
    metadata: _struct_pb2.Struct
    create_time: _timestamp_pb2.Timestamp
    resume_token: str
    def __init__(self, event_id: _Optional[str] = ..., session_id: _Optional[str] = ..., seq: _Optional[int] = ..., position: _Optional[int] = ..., type: _Optional[str] = ..., author: _Optional[str] = ..., invocation_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., branch: _Optional[str] = ..., content: _Optional[_Union[Content, _Mapping]] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., actions: _Optional[_Union[EventActions, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resume_token: _Optional[str] = ...) -> None: ...
