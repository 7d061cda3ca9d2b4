import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Aggregate(_message.Message):
    __slots__ = ("id", "name", "availability_zone", "hosts", "metadata", "created_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    availability_zone: str
    hosts: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., availability_zone: _Optional[str] = ..., hosts: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateAggregateRequest(_message.Message):
    __slots__ = ("name", "availability_zone", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    availability_zone: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., availability_zone: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetAggregateRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListAggregatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAggregatesResponse(_message.Message):
    __slots__ = ("aggregates",)
    AGGREGATES_FIELD_NUMBER: _ClassVar[int]
    aggregates: _containers.RepeatedCompositeFieldContainer[Aggregate]
    def __init__(self, aggregates: _Optional[_Iterable[_Union[Aggregate, _Mapping]]] = ...) -> None: ...

class UpdateAggregateRequest(_message.Message):
    __slots__ = ("id", "name", "availability_zone")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    availability_zone: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., availability_zone: _Optional[str] = ...) -> None: ...

class DeleteAggregateRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteAggregateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AddAggregateHostRequest(_message.Message):
    __slots__ = ("id", "host")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    id: str
    host: str
    def __init__(self, id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class RemoveAggregateHostRequest(_message.Message):
    __slots__ = ("id", "host")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    id: str
    host: str
    def __init__(self, id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class SetAggregateMetadataRequest(_message.Message):
    __slots__ = ("id", "metadata", "unset")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UNSET_FIELD_NUMBER: _ClassVar[int]
    id: str
    metadata: _containers.ScalarMap[str, str]
    unset: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., unset: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAvailabilityZonesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAvailabilityZonesResponse(_message.Message):
    __slots__ = ("availability_zones",)
    AVAILABILITY_ZONES_FIELD_NUMBER: _ClassVar[int]
    availability_zones: _containers.RepeatedCompositeFieldContainer[AvailabilityZone]
    def __init__(self, availability_zones: _Optional[_Iterable[_Union[AvailabilityZone, _Mapping]]] = ...) -> None: ...

class AvailabilityZone(_message.Message):
    __slots__ = ("name", "available", "hosts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    available: bool
    hosts: _containers.RepeatedCompositeFieldContainer[ZoneHost]
    def __init__(self, name: _Optional[str] = ..., available: _Optional[bool] = ..., hosts: _Optional[_Iterable[_Union[ZoneHost, _Mapping]]] = ...) -> None: ...

class ZoneHost(_message.Message):
    __slots__ = ("name", "up", "enabled")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    name: str
    up: bool
    enabled: bool
    def __init__(self, name: _Optional[str] = ..., up: _Optional[bool] = ..., enabled: _Optional[bool] = ...) -> None: ...
