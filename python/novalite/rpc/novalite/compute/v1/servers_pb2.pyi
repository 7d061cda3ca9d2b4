import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from novalite.rpc.novalite.compute.v1 import faults_pb2 as _faults_pb2
from novalite.rpc.novalite.compute.v1 import states_pb2 as _states_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RebootType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REBOOT_TYPE_UNSPECIFIED: _ClassVar[RebootType]
    REBOOT_TYPE_SOFT: _ClassVar[RebootType]
    REBOOT_TYPE_HARD: _ClassVar[RebootType]
REBOOT_TYPE_UNSPECIFIED: RebootType
REBOOT_TYPE_SOFT: RebootType
REBOOT_TYPE_HARD: RebootType

class Server(_message.Message):
    __slots__ = ("id", "name", "project_id", "user_id", "flavor_id", "image_id", "status", "vm_state", "task_state", "power_state", "host", "availability_zone", "metadata", "created_at", "updated_at", "launched_at", "fault", "addresses", "locked", "locked_reason", "key_name", "config_drive")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VM_STATE_FIELD_NUMBER: _ClassVar[int]
    TASK_STATE_FIELD_NUMBER: _ClassVar[int]
    POWER_STATE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAUNCHED_AT_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    LOCKED_REASON_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DRIVE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    project_id: str
    user_id: str
    flavor_id: str
    image_id: str
    status: str
    vm_state: _states_pb2.VmState
    task_state: _states_pb2.TaskState
    power_state: _states_pb2.PowerState
    host: str
    availability_zone: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    launched_at: _timestamp_pb2.Timestamp
    fault: _faults_pb2.Fault
    addresses: _containers.RepeatedCompositeFieldContainer[Address]
    locked: bool
    locked_reason: str
    key_name: str
    config_drive: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., flavor_id: _Optional[str] = ..., image_id: _Optional[str] = ..., status: _Optional[str] = ..., vm_state: _Optional[_Union[_states_pb2.VmState, str]] = ..., task_state: _Optional[_Union[_states_pb2.TaskState, str]] = ..., power_state: _Optional[_Union[_states_pb2.PowerState, str]] = ..., host: _Optional[str] = ..., availability_zone: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., launched_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fault: _Optional[_Union[_faults_pb2.Fault, _Mapping]] = ..., addresses: _Optional[_Iterable[_Union[Address, _Mapping]]] = ..., locked: _Optional[bool] = ..., locked_reason: _Optional[str] = ..., key_name: _Optional[str] = ..., config_drive: _Optional[bool] = ...) -> None: ...

class Address(_message.Message):
    __slots__ = ("network", "address", "version", "mac", "type")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    network: str
    address: str
    version: int
    mac: str
    type: str
    def __init__(self, network: _Optional[str] = ..., address: _Optional[str] = ..., version: _Optional[int] = ..., mac: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class SchedulerHints(_message.Message):
    __slots__ = ("group", "same_host", "different_host")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SAME_HOST_FIELD_NUMBER: _ClassVar[int]
    DIFFERENT_HOST_FIELD_NUMBER: _ClassVar[int]
    group: str
    same_host: _containers.RepeatedScalarFieldContainer[str]
    different_host: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., same_host: _Optional[_Iterable[str]] = ..., different_host: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateServerRequest(_message.Message):
    __slots__ = ("name", "flavor_id", "image_id", "min_count", "max_count", "availability_zone", "metadata", "scheduler_hints", "key_name", "user_data", "admin_pass", "config_drive", "networks")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_HINTS_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_DATA_FIELD_NUMBER: _ClassVar[int]
    ADMIN_PASS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DRIVE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    flavor_id: str
    image_id: str
    min_count: int
    max_count: int
    availability_zone: str
    metadata: _containers.ScalarMap[str, str]
    scheduler_hints: SchedulerHints
    key_name: str
    user_data: bytes
    admin_pass: str
    config_drive: bool
    networks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., flavor_id: _Optional[str] = ..., image_id: _Optional[str] = ..., min_count: _Optional[int] = ..., max_count: _Optional[int] = ..., availability_zone: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., scheduler_hints: _Optional[_Union[SchedulerHints, _Mapping]] = ..., key_name: _Optional[str] = ..., user_data: _Optional[bytes] = ..., admin_pass: _Optional[str] = ..., config_drive: _Optional[bool] = ..., networks: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateServerResponse(_message.Message):
    __slots__ = ("servers", "reservation_id", "admin_pass")
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_PASS_FIELD_NUMBER: _ClassVar[int]
    servers: _containers.RepeatedCompositeFieldContainer[Server]
    reservation_id: str
    admin_pass: str
    def __init__(self, servers: _Optional[_Iterable[_Union[Server, _Mapping]]] = ..., reservation_id: _Optional[str] = ..., admin_pass: _Optional[str] = ...) -> None: ...

class GetServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ServerFilters(_message.Message):
    __slots__ = ("status", "name", "host", "project_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    status: str
    name: str
    host: str
    project_id: str
    def __init__(self, status: _Optional[str] = ..., name: _Optional[str] = ..., host: _Optional[str] = ..., project_id: _Optional[str] = ...) -> None: ...

class ListServersRequest(_message.Message):
    __slots__ = ("filters", "page_size", "page_token")
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filters: ServerFilters
    page_size: int
    page_token: str
    def __init__(self, filters: _Optional[_Union[ServerFilters, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListServersResponse(_message.Message):
    __slots__ = ("servers", "next_page_token")
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    servers: _containers.RepeatedCompositeFieldContainer[Server]
    next_page_token: str
    def __init__(self, servers: _Optional[_Iterable[_Union[Server, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchServersRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ServerEvent(_message.Message):
    __slots__ = ("server", "time")
    SERVER_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    server: Server
    time: _timestamp_pb2.Timestamp
    def __init__(self, server: _Optional[_Union[Server, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RebootServerRequest(_message.Message):
    __slots__ = ("id", "type")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: RebootType
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[RebootType, str]] = ...) -> None: ...

class StopServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class StartServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PauseServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UnpauseServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SuspendServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ResumeServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RescueServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UnrescueServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListServerActionsRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetConsoleOutputRequest(_message.Message):
    __slots__ = ("id", "length")
    ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    id: str
    length: int
    def __init__(self, id: _Optional[str] = ..., length: _Optional[int] = ...) -> None: ...

class GetConsoleOutputResponse(_message.Message):
    __slots__ = ("output",)
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    output: str
    def __init__(self, output: _Optional[str] = ...) -> None: ...

class ListServerActionsResponse(_message.Message):
    __slots__ = ("actions",)
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[InstanceAction]
    def __init__(self, actions: _Optional[_Iterable[_Union[InstanceAction, _Mapping]]] = ...) -> None: ...

class InstanceAction(_message.Message):
    __slots__ = ("action", "request_id", "user_id", "project_id", "start_time", "finish_time", "message", "events")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    action: str
    request_id: str
    user_id: str
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    message: str
    events: _containers.RepeatedCompositeFieldContainer[InstanceActionEvent]
    def __init__(self, action: _Optional[str] = ..., request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., project_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., events: _Optional[_Iterable[_Union[InstanceActionEvent, _Mapping]]] = ...) -> None: ...

class InstanceActionEvent(_message.Message):
    __slots__ = ("event", "start_time", "finish_time", "result", "traceback")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    event: str
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    result: str
    traceback: str
    def __init__(self, event: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result: _Optional[str] = ..., traceback: _Optional[str] = ...) -> None: ...

class ResizeServerRequest(_message.Message):
    __slots__ = ("id", "flavor_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    flavor_id: str
    def __init__(self, id: _Optional[str] = ..., flavor_id: _Optional[str] = ...) -> None: ...

class ConfirmResizeRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevertResizeRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MigrateServerRequest(_message.Message):
    __slots__ = ("id", "host")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    id: str
    host: str
    def __init__(self, id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class LiveMigrateServerRequest(_message.Message):
    __slots__ = ("id", "host")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    id: str
    host: str
    def __init__(self, id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class EvacuateServerRequest(_message.Message):
    __slots__ = ("id", "host")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    id: str
    host: str
    def __init__(self, id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class MetadataItems(_message.Message):
    __slots__ = ("items",)
    class ItemsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.ScalarMap[str, str]
    def __init__(self, items: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RebuildServerRequest(_message.Message):
    __slots__ = ("id", "image_id", "name", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    image_id: str
    name: str
    metadata: MetadataItems
    def __init__(self, id: _Optional[str] = ..., image_id: _Optional[str] = ..., name: _Optional[str] = ..., metadata: _Optional[_Union[MetadataItems, _Mapping]] = ...) -> None: ...

class ShelveServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ShelveOffloadServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UnshelveServerRequest(_message.Message):
    __slots__ = ("id", "availability_zone", "host")
    ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    id: str
    availability_zone: str
    host: str
    def __init__(self, id: _Optional[str] = ..., availability_zone: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class LockServerRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UnlockServerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UpdateServerRequest(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class SetServerMetadataRequest(_message.Message):
    __slots__ = ("id", "metadata", "replace")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    id: str
    metadata: _containers.ScalarMap[str, str]
    replace: bool
    def __init__(self, id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., replace: _Optional[bool] = ...) -> None: ...

class DeleteServerMetadataRequest(_message.Message):
    __slots__ = ("id", "keys")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    id: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class ListMigrationsRequest(_message.Message):
    __slots__ = ("server_id", "host")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class ListMigrationsResponse(_message.Message):
    __slots__ = ("migrations",)
    MIGRATIONS_FIELD_NUMBER: _ClassVar[int]
    migrations: _containers.RepeatedCompositeFieldContainer[Migration]
    def __init__(self, migrations: _Optional[_Iterable[_Union[Migration, _Mapping]]] = ...) -> None: ...

class Migration(_message.Message):
    __slots__ = ("id", "server_id", "migration_type", "status", "source_host", "dest_host", "old_flavor_id", "new_flavor_id", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_HOST_FIELD_NUMBER: _ClassVar[int]
    DEST_HOST_FIELD_NUMBER: _ClassVar[int]
    OLD_FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    server_id: str
    migration_type: str
    status: str
    source_host: str
    dest_host: str
    old_flavor_id: str
    new_flavor_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., server_id: _Optional[str] = ..., migration_type: _Optional[str] = ..., status: _Optional[str] = ..., source_host: _Optional[str] = ..., dest_host: _Optional[str] = ..., old_flavor_id: _Optional[str] = ..., new_flavor_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
