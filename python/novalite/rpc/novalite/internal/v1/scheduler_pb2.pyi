from novalite.rpc.novalite.compute.v1 import faults_pb2 as _faults_pb2
from novalite.rpc.novalite.internal.v1 import request_spec_pb2 as _request_spec_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SelectDestinationsRequest(_message.Message):
    __slots__ = ("request_spec", "instance_uuids", "return_alternates", "migration_uuid")
    REQUEST_SPEC_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_UUIDS_FIELD_NUMBER: _ClassVar[int]
    RETURN_ALTERNATES_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_UUID_FIELD_NUMBER: _ClassVar[int]
    request_spec: _request_spec_pb2.RequestSpec
    instance_uuids: _containers.RepeatedScalarFieldContainer[str]
    return_alternates: bool
    migration_uuid: str
    def __init__(self, request_spec: _Optional[_Union[_request_spec_pb2.RequestSpec, _Mapping]] = ..., instance_uuids: _Optional[_Iterable[str]] = ..., return_alternates: _Optional[bool] = ..., migration_uuid: _Optional[str] = ...) -> None: ...

class SelectDestinationsResponse(_message.Message):
    __slots__ = ("selections",)
    SELECTIONS_FIELD_NUMBER: _ClassVar[int]
    selections: _containers.RepeatedCompositeFieldContainer[InstanceSelection]
    def __init__(self, selections: _Optional[_Iterable[_Union[InstanceSelection, _Mapping]]] = ...) -> None: ...

class InstanceSelection(_message.Message):
    __slots__ = ("instance_uuid", "hosts")
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    instance_uuid: str
    hosts: _containers.RepeatedCompositeFieldContainer[Selection]
    def __init__(self, instance_uuid: _Optional[str] = ..., hosts: _Optional[_Iterable[_Union[Selection, _Mapping]]] = ...) -> None: ...

class Selection(_message.Message):
    __slots__ = ("host", "host_uuid", "allocation", "availability_zone", "weight")
    class AllocationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    HOST_FIELD_NUMBER: _ClassVar[int]
    HOST_UUID_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    host: str
    host_uuid: str
    allocation: _containers.ScalarMap[str, int]
    availability_zone: str
    weight: float
    def __init__(self, host: _Optional[str] = ..., host_uuid: _Optional[str] = ..., allocation: _Optional[_Mapping[str, int]] = ..., availability_zone: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class NoValidHost(_message.Message):
    __slots__ = ("reason", "rejections", "instance_index", "missing")
    REASON_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    reason: str
    rejections: _containers.RepeatedCompositeFieldContainer[_faults_pb2.Rejection]
    instance_index: int
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reason: _Optional[str] = ..., rejections: _Optional[_Iterable[_Union[_faults_pb2.Rejection, _Mapping]]] = ..., instance_index: _Optional[int] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class ReportHostsRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class ReportHostsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RefreshAggregatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RefreshAggregatesResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReleaseAllocationRequest(_message.Message):
    __slots__ = ("instance_uuid",)
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    instance_uuid: str
    def __init__(self, instance_uuid: _Optional[str] = ...) -> None: ...

class ReleaseAllocationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClaimAllocationRequest(_message.Message):
    __slots__ = ("instance_uuid", "host", "allocation")
    class AllocationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    instance_uuid: str
    host: str
    allocation: _containers.ScalarMap[str, int]
    def __init__(self, instance_uuid: _Optional[str] = ..., host: _Optional[str] = ..., allocation: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ClaimAllocationResponse(_message.Message):
    __slots__ = ("claimed",)
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    claimed: bool
    def __init__(self, claimed: _Optional[bool] = ...) -> None: ...

class MoveAllocationRequest(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class MoveAllocationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
