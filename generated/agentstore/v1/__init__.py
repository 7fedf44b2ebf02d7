"""Generated stubs of the agentstore.v1 contract. Do not edit: run `python tools/codegen.py`."""

from agentstore.v1 import event_pb2 as event_pb2
from agentstore.v1 import event_pb2_grpc as event_pb2_grpc
from agentstore.v1 import session_pb2 as session_pb2
from agentstore.v1 import session_pb2_grpc as session_pb2_grpc
from agentstore.v1 import session_service_pb2 as session_service_pb2
from agentstore.v1 import session_service_pb2_grpc as session_service_pb2_grpc
