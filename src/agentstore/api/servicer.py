"""The grpc.aio servicer: decode the request, call the service, encode the reply. Rules live in
the service layer; status codes in api.errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from agentstore.api.auth import Authenticator
from agentstore.api.errors import handle_errors
from agentstore.api.event_encoding import encode_event_page
from agentstore.api.mapping import (
    append_ack_to_proto,
    append_request_fields,
    duration_to_timedelta,
    fill_search_hit,
    fill_session,
    optional_time,
    removal_fields,
    removal_to_proto,
    request_id_of,
    scoped_state_to_proto,
    session_stats_to_proto,
    session_status_from_proto,
    session_to_proto,
    store_stats_to_proto,
    struct_to_dict,
    timestamp_to_datetime,
)
from agentstore.api.open_calls import OpenCalls
from agentstore.api.response_budget import encode_page
from agentstore.api.stream_encoding import StreamEncoder
from agentstore.service.appends import AppendService
from agentstore.service.events import EventService
from agentstore.service.requests import (
    CreateSessionFields,
    EventListFields,
    SearchFields,
    SessionListFields,
    StreamFields,
    UpdateSessionFields,
    UpdateStateFields,
)
from agentstore.service.search import SearchService
from agentstore.service.sessions import SessionService
from agentstore.service.states import StateService
from agentstore.service.streams import StreamService
from agentstore.tracing import Tracing
from agentstore.v1 import session_pb2, session_service_pb2, session_service_pb2_grpc

__all__ = ["SessionServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


def _with_state(view: int) -> bool:
    return view != session_pb2.SESSION_VIEW_BASIC


class SessionServicer(session_service_pb2_grpc.SessionServiceServicer):
    def __init__(
        self,
        sessions: SessionService,
        events: EventService,
        appends: AppendService,
        search: SearchService,
        streams: StreamService,
        states: StateService,
        auth: Authenticator,
    ) -> None:
        self._states = states
        self._sessions = sessions
        self._events = events
        self._appends = appends
        self._search = search
        self._streams = streams
        self._auth = auth
        self._stream_encoder = StreamEncoder()
        self.open_calls = OpenCalls()
        # Set by the app when tracing is on: each call is a span (api.errors.handle_errors).
        self.tracing: Tracing | None = None

    @handle_errors
    async def CreateSession(
        self, request: session_service_pb2.CreateSessionRequest, context: Context
    ) -> session_pb2.Session:
        caller = await self._auth.caller_of(context)
        fields: CreateSessionFields = {
            "session_id": request.session_id,
            "app_name": request.app_name,
            "user_id": request.user_id,
            "agent_id": request.agent_id,
            "status": session_status_from_proto(request.status, "status"),
            "metadata": struct_to_dict(request.metadata, "metadata"),
            "state": struct_to_dict(request.state, "state"),
            "ttl": (duration_to_timedelta(request.ttl, "ttl") if request.HasField("ttl") else None),
            "create_time": (
                timestamp_to_datetime(request.create_time, "create_time")
                if request.HasField("create_time")
                else None
            ),
        }
        return session_to_proto(await self._sessions.create(caller, fields))

    @handle_errors
    async def GetSession(
        self, request: session_service_pb2.GetSessionRequest, context: Context
    ) -> session_pb2.Session:
        caller = await self._auth.caller_of(context)
        session = await self._sessions.get(
            caller,
            request.session_id,
            with_state=_with_state(request.view),
            with_scopes=request.view == session_pb2.SESSION_VIEW_WITH_SCOPED_STATE,
        )
        return session_to_proto(session)

    @handle_errors
    async def ListSessions(
        self, request: session_service_pb2.ListSessionsRequest, context: Context
    ) -> bytes:  # an encoded ListSessionsResponse
        caller = await self._auth.caller_of(context)
        fields: SessionListFields = {
            "app_name": request.app_name,
            "user_id": request.user_id,
            "agent_id": request.agent_id,
            "status": session_status_from_proto(request.status, "status"),
            "show_deleted": request.show_deleted,
        }
        page = await self._sessions.list(
            caller,
            fields,
            page_size_requested=request.page_size,
            page_token=request.page_token,
            with_state=_with_state(request.view),
        )
        response = session_service_pb2.ListSessionsResponse()
        return encode_page(response, response.sessions, page, fill_session)

    @handle_errors
    async def UpdateSession(
        self, request: session_service_pb2.UpdateSessionRequest, context: Context
    ) -> session_pb2.Session:
        caller = await self._auth.caller_of(context)
        if request.HasField("update_mask"):
            paths = set(request.update_mask.paths)
        else:
            # No mask: change what the request sets (AIP-134).
            present = {
                "status": request.status != session_pb2.SESSION_STATUS_UNSPECIFIED,
                "metadata": request.HasField("metadata"),
                "state_delta": request.HasField("state_delta"),
                "expire_time": request.HasField("expire_time"),
                "ttl": request.HasField("ttl"),
            }
            paths = {path for path, is_set in present.items() if is_set}
        fields: UpdateSessionFields = {
            "session_id": request.session_id,
            "fields": frozenset(paths),
            "status": session_status_from_proto(request.status, "status"),
            "metadata": struct_to_dict(request.metadata, "metadata"),
            "state_delta": struct_to_dict(request.state_delta, "state_delta"),
            "expire_time": optional_time(request, "expire_time"),
            "ttl": (duration_to_timedelta(request.ttl, "ttl") if request.HasField("ttl") else None),
            "expected_version": (
                request.expected_version if request.HasField("expected_version") else None
            ),
        }
        return session_to_proto(await self._sessions.update(caller, fields))

    @handle_errors
    async def DeleteSession(
        self, request: session_service_pb2.DeleteSessionRequest, context: Context
    ) -> session_service_pb2.DeleteSessionResponse:
        caller = await self._auth.caller_of(context)
        session = await self._sessions.delete(caller, request.session_id, purge=request.purge)
        response = session_service_pb2.DeleteSessionResponse()
        if session is not None:
            fill_session(response.session, session)
        return response

    @handle_errors
    async def UndeleteSession(
        self, request: session_service_pb2.UndeleteSessionRequest, context: Context
    ) -> session_pb2.Session:
        caller = await self._auth.caller_of(context)
        session = await self._sessions.undelete(caller, request.session_id)
        return session_to_proto(session)

    @handle_errors
    async def DeleteSessions(
        self, request: session_service_pb2.DeleteSessionsRequest, context: Context
    ) -> session_service_pb2.DeleteSessionsResponse:
        caller = await self._auth.caller_of(context)
        count = await self._sessions.delete_many(
            caller,
            request.app_name,
            request.user_id,
            purge=request.purge,
        )
        return session_service_pb2.DeleteSessionsResponse(deleted_count=count)

    @handle_errors
    async def GetStoreStats(
        self, request: session_service_pb2.GetStoreStatsRequest, context: Context
    ) -> session_service_pb2.StoreStats:
        caller = await self._auth.caller_of(context)
        stats = await self._sessions.store_stats(caller, request.app_name)
        return store_stats_to_proto(stats)

    @handle_errors
    async def GetState(
        self, request: session_service_pb2.GetStateRequest, context: Context
    ) -> session_pb2.ScopedState:
        caller = await self._auth.caller_of(context)
        state = await self._states.get(caller, request.app_name, request.user_id)
        return scoped_state_to_proto(state)

    @handle_errors
    async def UpdateState(
        self, request: session_service_pb2.UpdateStateRequest, context: Context
    ) -> session_pb2.ScopedState:
        caller = await self._auth.caller_of(context)
        fields: UpdateStateFields = {
            "app_name": request.app_name,
            "user_id": request.user_id,
            "state_delta": struct_to_dict(request.state_delta, "state_delta"),
            "expected_version": (
                request.expected_version if request.HasField("expected_version") else None
            ),
        }
        return scoped_state_to_proto(await self._states.update(caller, fields))

    @handle_errors
    async def AppendEvents(
        self,
        request_iterator: AsyncIterator[session_service_pb2.AppendEventsRequest],
        context: Context,
    ) -> session_service_pb2.AppendEventsResponse:
        caller = await self._auth.caller_of(context)
        totals = await self._appends.append_stream(
            caller, request_iterator, append_request_fields, self._auth.recheck(caller)
        )
        return session_service_pb2.AppendEventsResponse(
            appended=totals.appended, duplicates=totals.duplicates, last_seq=totals.last_seq
        )

    @handle_errors
    async def AppendStream(
        self,
        request_iterator: AsyncIterator[session_service_pb2.AppendStreamRequest],
        context: Context,
    ) -> AsyncIterator[session_service_pb2.AppendStreamResponse]:
        caller = await self._auth.caller_of(context)
        acks = self._appends.acknowledged_stream(
            caller,
            request_iterator,
            append_request_fields,
            request_id_of,
            self._auth.recheck(caller),
        )
        async for ack in acks:
            yield append_ack_to_proto(ack)

    @handle_errors
    async def ListEvents(
        self, request: session_service_pb2.ListEventsRequest, context: Context
    ) -> bytes:  # an encoded ListEventsResponse
        caller = await self._auth.caller_of(context)
        fields: EventListFields = {
            "session_id": request.session_id,
            "after_seq": request.after_seq,
            "before_seq": request.before_seq,
            "types": list(request.types),
            "author": request.author,
            "agent_id": request.agent_id,
            "invocation_id": request.invocation_id,
            "branch": request.branch,
            "descending": request.descending,
            "start_time": optional_time(request, "start_time"),
            "end_time": optional_time(request, "end_time"),
        }
        page = await self._events.list(
            caller,
            fields,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return encode_event_page(page)

    @handle_errors
    async def GetSessionStats(
        self, request: session_service_pb2.GetSessionStatsRequest, context: Context
    ) -> session_service_pb2.SessionStats:
        caller = await self._auth.caller_of(context)
        stats = await self._events.stats(caller, request.session_id)
        return session_stats_to_proto(stats)

    @handle_errors
    async def StreamEvents(
        self, request: session_service_pb2.StreamEventsRequest, context: Context
    ) -> AsyncIterator[bytes]:  # encoded StreamEventsResponses
        caller = await self._auth.caller_of(context)
        fields: StreamFields = {
            "session_id": request.session_id,
            "after_seq": request.after_seq,
            "app_name": request.app_name,
            "user_id": request.user_id,
            "agent_id": request.agent_id,
            "types": list(request.types),
            "follow": request.follow,
            "resume_token": request.resume_token,
        }
        recheck = self._auth.recheck(caller)
        async for message in self._streams.stream(caller, fields, recheck):
            for response in self._stream_encoder.encode(message):
                yield response

    @handle_errors
    async def Search(
        self, request: session_service_pb2.SearchRequest, context: Context
    ) -> bytes:  # an encoded SearchResponse
        caller = await self._auth.caller_of(context)
        fields: SearchFields = {
            "query": request.query,
            "app_name": request.app_name,
            "user_id": request.user_id,
            "agent_id": request.agent_id,
            "session_id": request.session_id,
            "types": list(request.types),
            "author": request.author,
            "start_time": optional_time(request, "start_time"),
            "end_time": optional_time(request, "end_time"),
        }
        page = await self._search.search(
            caller,
            fields,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        response = session_service_pb2.SearchResponse()
        return encode_page(response, response.hits, page, fill_search_hit)

    @handle_errors
    async def RemoveEvents(
        self, request: session_service_pb2.RemoveEventsRequest, context: Context
    ) -> session_service_pb2.RemoveEventsResponse:
        caller = await self._auth.caller_of(context)
        outcome = await self._events.remove(caller, removal_fields(request))
        return removal_to_proto(outcome)
