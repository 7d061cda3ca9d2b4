from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QuotaSet(_message.Message):
    __slots__ = ("instances", "cores", "ram")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    RAM_FIELD_NUMBER: _ClassVar[int]
    instances: int
    cores: int
    ram: int
    def __init__(self, instances: _Optional[int] = ..., cores: _Optional[int] = ..., ram: _Optional[int] = ...) -> None: ...

class Quota(_message.Message):
    __slots__ = ("project_id", "limits", "usage")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    limits: QuotaSet
    usage: QuotaSet
    def __init__(self, project_id: _Optional[str] = ..., limits: _Optional[_Union[QuotaSet, _Mapping]] = ..., usage: _Optional[_Union[QuotaSet, _Mapping]] = ...) -> None: ...

class GetQuotaRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class SetQuotaRequest(_message.Message):
    __slots__ = ("project_id", "instances", "cores", "ram")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    RAM_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    instances: int
    cores: int
    ram: int
    def __init__(self, project_id: _Optional[str] = ..., instances: _Optional[int] = ..., cores: _Optional[int] = ..., ram: _Optional[int] = ...) -> None: ...
