from novalite.rpc.novalite.internal.v1 import request_spec_pb2 as _request_spec_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BuildServersRequest(_message.Message):
    __slots__ = ("request_spec", "server_ids")
    REQUEST_SPEC_FIELD_NUMBER: _ClassVar[int]
    SERVER_IDS_FIELD_NUMBER: _ClassVar[int]
    request_spec: _request_spec_pb2.RequestSpec
    server_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_spec: _Optional[_Union[_request_spec_pb2.RequestSpec, _Mapping]] = ..., server_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BuildServersResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerActionRequest(_message.Message):
    __slots__ = ("id", "action", "request_id")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[ServerActionRequest.Action]
        ACTION_DELETE: _ClassVar[ServerActionRequest.Action]
        ACTION_REBOOT_SOFT: _ClassVar[ServerActionRequest.Action]
        ACTION_REBOOT_HARD: _ClassVar[ServerActionRequest.Action]
        ACTION_STOP: _ClassVar[ServerActionRequest.Action]
        ACTION_START: _ClassVar[ServerActionRequest.Action]
        ACTION_PAUSE: _ClassVar[ServerActionRequest.Action]
        ACTION_UNPAUSE: _ClassVar[ServerActionRequest.Action]
        ACTION_SUSPEND: _ClassVar[ServerActionRequest.Action]
        ACTION_RESUME: _ClassVar[ServerActionRequest.Action]
    ACTION_UNSPECIFIED: ServerActionRequest.Action
    ACTION_DELETE: ServerActionRequest.Action
    ACTION_REBOOT_SOFT: ServerActionRequest.Action
    ACTION_REBOOT_HARD: ServerActionRequest.Action
    ACTION_STOP: ServerActionRequest.Action
    ACTION_START: ServerActionRequest.Action
    ACTION_PAUSE: ServerActionRequest.Action
    ACTION_UNPAUSE: ServerActionRequest.Action
    ACTION_SUSPEND: ServerActionRequest.Action
    ACTION_RESUME: ServerActionRequest.Action
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    action: ServerActionRequest.Action
    request_id: str
    def __init__(self, id: _Optional[str] = ..., action: _Optional[_Union[ServerActionRequest.Action, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ServerActionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
