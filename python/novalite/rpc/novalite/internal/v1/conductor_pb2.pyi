from novalite.rpc.novalite.internal.v1 import request_spec_pb2 as _request_spec_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BuildServersRequest(_message.Message):
    __slots__ = ("request_spec", "server_ids", "admin_pass")
    REQUEST_SPEC_FIELD_NUMBER: _ClassVar[int]
    SERVER_IDS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_PASS_FIELD_NUMBER: _ClassVar[int]
    request_spec: _request_spec_pb2.RequestSpec
    server_ids: _containers.RepeatedScalarFieldContainer[str]
    admin_pass: str
    def __init__(self, request_spec: _Optional[_Union[_request_spec_pb2.RequestSpec, _Mapping]] = ..., server_ids: _Optional[_Iterable[str]] = ..., admin_pass: _Optional[str] = ...) -> None: ...

class BuildServersResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerActionRequest(_message.Message):
    __slots__ = ("id", "action", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    action: str
    request_id: str
    def __init__(self, id: _Optional[str] = ..., action: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ServerActionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
