"""Property: whatever a client sends to any RPC, the answer is a result or a clear status.

Requests for every RPC are generated from the protos' descriptors and sent through a real
server, as are bytes no encoder would make (tests/fuzzing.py). Never INTERNAL or UNKNOWN, no
status message with SQL or exception text, and afterwards every session the requests touched
still reads back whole. bench/fuzz.py runs the same for much longer."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import grpc

from agentstore.app import AgentStoreServer
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.e2e.events_support import append, event, message
from tests.fuzzing import SERVICE, fuzz_every_rpc

CASES_PER_RPC = 250


async def test_no_request_to_any_rpc_gets_an_unclear_status(
    server: AgentStoreServer, channel: grpc.aio.Channel, stub: SessionServiceStub
) -> None:
    app_name = f"fuzz-{uuid.uuid4().hex[:8]}"
    known_ids = []
    for index in range(3):
        session = await stub.CreateSession(
            pb.CreateSessionRequest(app_name=app_name, session_id=f"{app_name}-{index}")
        )
        await append(stub, message(session.id, [event("seed text"), event("more")]))
        known_ids.append(session.id)
    started = time.monotonic()
    by_rpc = await fuzz_every_rpc(stub, channel, known_ids, app_name, CASES_PER_RPC)
    elapsed = time.monotonic() - started
    totals: Counter[str] = Counter()
    for codes in by_rpc.values():
        totals.update(codes)
    total = sum(totals.values())
    print(f"\n{total} requests in {elapsed:.1f} s over {len(SERVICE.methods)} RPCs: {dict(totals)}")
    assert total >= len(SERVICE.methods) * CASES_PER_RPC
    # Whatever the requests did, every session they could reach still reads back whole: the
    # listing decodes every row, deleted ones included, and the live ones read in full.
    everything = await stub.ListSessions(
        pb.ListSessionsRequest(app_name=app_name, show_deleted=True, page_size=1000)
    )
    live = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, page_size=1000))
    assert {s.id for s in live.sessions} <= {s.id for s in everything.sessions}
    for session in live.sessions:
        again = await stub.GetSession(pb.GetSessionRequest(session_id=session.id))
        assert again.state == session.state
        events = await stub.ListEvents(pb.ListEventsRequest(session_id=session.id))
        assert all(e.session_id == session.id for e in events.events)
    assert server.open_streams == 0
