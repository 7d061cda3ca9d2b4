import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_STATE_UNSPECIFIED: _ClassVar[ServiceState]
    SERVICE_STATE_UP: _ClassVar[ServiceState]
    SERVICE_STATE_DOWN: _ClassVar[ServiceState]

class ServiceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_STATUS_UNSPECIFIED: _ClassVar[ServiceStatus]
    SERVICE_STATUS_ENABLED: _ClassVar[ServiceStatus]
    SERVICE_STATUS_DISABLED: _ClassVar[ServiceStatus]
SERVICE_STATE_UNSPECIFIED: ServiceState
SERVICE_STATE_UP: ServiceState
SERVICE_STATE_DOWN: ServiceState
SERVICE_STATUS_UNSPECIFIED: ServiceStatus
SERVICE_STATUS_ENABLED: ServiceStatus
SERVICE_STATUS_DISABLED: ServiceStatus

class ResourceClassUsage(_message.Message):
    __slots__ = ("resource_class", "total", "reserved", "allocation_ratio", "capacity", "used")
    RESOURCE_CLASS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_RATIO_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    resource_class: str
    total: int
    reserved: int
    allocation_ratio: float
    capacity: int
    used: int
    def __init__(self, resource_class: _Optional[str] = ..., total: _Optional[int] = ..., reserved: _Optional[int] = ..., allocation_ratio: _Optional[float] = ..., capacity: _Optional[int] = ..., used: _Optional[int] = ...) -> None: ...

class ComputeView(_message.Message):
    __slots__ = ("vcpus_used", "free_ram_mb", "free_disk_mb", "num_instances", "num_io_ops", "failed_builds")
    VCPUS_USED_FIELD_NUMBER: _ClassVar[int]
    FREE_RAM_MB_FIELD_NUMBER: _ClassVar[int]
    FREE_DISK_MB_FIELD_NUMBER: _ClassVar[int]
    NUM_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NUM_IO_OPS_FIELD_NUMBER: _ClassVar[int]
    FAILED_BUILDS_FIELD_NUMBER: _ClassVar[int]
    vcpus_used: int
    free_ram_mb: int
    free_disk_mb: int
    num_instances: int
    num_io_ops: int
    failed_builds: int
    def __init__(self, vcpus_used: _Optional[int] = ..., free_ram_mb: _Optional[int] = ..., free_disk_mb: _Optional[int] = ..., num_instances: _Optional[int] = ..., num_io_ops: _Optional[int] = ..., failed_builds: _Optional[int] = ...) -> None: ...

class Host(_message.Message):
    __slots__ = ("name", "uuid", "state", "status", "disabled_reason", "last_seen_up", "resources", "compute", "hypervisor_type", "hypervisor_version", "availability_zone", "traits")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DISABLED_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UP_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    HYPERVISOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    HYPERVISOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    name: str
    uuid: str
    state: ServiceState
    status: ServiceStatus
    disabled_reason: str
    last_seen_up: _timestamp_pb2.Timestamp
    resources: _containers.RepeatedCompositeFieldContainer[ResourceClassUsage]
    compute: ComputeView
    hypervisor_type: str
    hypervisor_version: int
    availability_zone: str
    traits: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., uuid: _Optional[str] = ..., state: _Optional[_Union[ServiceState, str]] = ..., status: _Optional[_Union[ServiceStatus, str]] = ..., disabled_reason: _Optional[str] = ..., last_seen_up: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[ResourceClassUsage, _Mapping]]] = ..., compute: _Optional[_Union[ComputeView, _Mapping]] = ..., hypervisor_type: _Optional[str] = ..., hypervisor_version: _Optional[int] = ..., availability_zone: _Optional[str] = ..., traits: _Optional[_Iterable[str]] = ...) -> None: ...

class ListHostsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListHostsResponse(_message.Message):
    __slots__ = ("hosts", "next_page_token")
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedCompositeFieldContainer[Host]
    next_page_token: str
    def __init__(self, hosts: _Optional[_Iterable[_Union[Host, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EnableHostRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DisableHostRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class HostTraitRequest(_message.Message):
    __slots__ = ("name", "trait")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRAIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    trait: str
    def __init__(self, name: _Optional[str] = ..., trait: _Optional[str] = ...) -> None: ...
