import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServerGroup(_message.Message):
    __slots__ = ("id", "name", "project_id", "policy", "max_server_per_host", "members", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MAX_SERVER_PER_HOST_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    project_id: str
    policy: str
    max_server_per_host: int
    members: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., project_id: _Optional[str] = ..., policy: _Optional[str] = ..., max_server_per_host: _Optional[int] = ..., members: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateServerGroupRequest(_message.Message):
    __slots__ = ("name", "policy", "max_server_per_host")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MAX_SERVER_PER_HOST_FIELD_NUMBER: _ClassVar[int]
    name: str
    policy: str
    max_server_per_host: int
    def __init__(self, name: _Optional[str] = ..., policy: _Optional[str] = ..., max_server_per_host: _Optional[int] = ...) -> None: ...

class GetServerGroupRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListServerGroupsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListServerGroupsResponse(_message.Message):
    __slots__ = ("server_groups",)
    SERVER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    server_groups: _containers.RepeatedCompositeFieldContainer[ServerGroup]
    def __init__(self, server_groups: _Optional[_Iterable[_Union[ServerGroup, _Mapping]]] = ...) -> None: ...

class DeleteServerGroupRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteServerGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
