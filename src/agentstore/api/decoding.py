"""Registering the service: a request the server cannot decode is INVALID_ARGUMENT, and a
response the servicer encoded itself is sent as it is.

The generated registration decodes with `FromString`, and grpc reports its DecodeError (a
string with invalid UTF-8, a truncated message, nesting past protobuf's limit) as UNKNOWN.
Here each method decodes leniently: what cannot be decoded arrives at the servicer as
`UNDECODABLE`, which `handle_errors` (api.errors) and the append stream turn into
INVALID_ARGUMENT on the field `request`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from agentstore.domain.errors import InvalidArgument

__all__ = ["UNDECODABLE", "Undecodable", "add_service", "undecodable_request"]


class Undecodable:
    """What the servicer receives in place of a request message that could not be decoded."""

    __slots__ = ()


UNDECODABLE = Undecodable()


def undecodable_request() -> InvalidArgument:
    return InvalidArgument.of(
        "request",
        "could not be decoded: invalid UTF-8 in a string, a truncated message, or nesting "
        "deeper than protobuf allows",
    )


def _lenient(message_class: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    def decode(data: bytes) -> Message | Undecodable:
        try:
            return message_class.FromString(data)
        except DecodeError:
            return UNDECODABLE

    return decode


def _encoded_or(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """Responses the servicer encoded itself (to measure or share them) go out as they are."""

    def encode(response: Any) -> bytes:
        return response if type(response) is bytes else serialize(response)

    return encode


_HANDLERS: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_service(server: grpc.aio.Server, service: ServiceDescriptor, servicer: Any) -> None:
    """Serve every method of `service` with the servicer's method of the same name."""
    handlers = {}
    for method in service.methods:
        make_handler = _HANDLERS[(method.client_streaming, method.server_streaming)]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = make_handler(
            getattr(servicer, method.name),
            request_deserializer=_lenient(request_class),
            response_serializer=_encoded_or(response_class.SerializeToString),
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    # As the generated code does: registered methods skip the generic lookup per call.
    server.add_registered_method_handlers(service.full_name, handlers)
