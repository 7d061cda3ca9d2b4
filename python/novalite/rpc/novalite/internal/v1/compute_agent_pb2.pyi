from novalite.rpc.novalite.compute.v1 import flavors_pb2 as _flavors_pb2
from novalite.rpc.novalite.compute.v1 import images_pb2 as _images_pb2
from novalite.rpc.novalite.compute.v1 import states_pb2 as _states_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrepareMoveRequest(_message.Message):
    __slots__ = ("server_id", "host", "flavor", "allocation", "migration_id")
    class AllocationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    flavor: _flavors_pb2.Flavor
    allocation: _containers.ScalarMap[str, int]
    migration_id: str
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ..., flavor: _Optional[_Union[_flavors_pb2.Flavor, _Mapping]] = ..., allocation: _Optional[_Mapping[str, int]] = ..., migration_id: _Optional[str] = ...) -> None: ...

class PrepareMoveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MigrateOutRequest(_message.Message):
    __slots__ = ("server_id", "host", "migration_id", "live")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    migration_id: str
    live: bool
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ..., migration_id: _Optional[str] = ..., live: _Optional[bool] = ...) -> None: ...

class MigrateOutResponse(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: str
    def __init__(self, source: _Optional[str] = ...) -> None: ...

class FinishMoveRequest(_message.Message):
    __slots__ = ("server_id", "host", "name", "flavor", "image", "source", "power_on", "guest")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    POWER_ON_FIELD_NUMBER: _ClassVar[int]
    GUEST_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    name: str
    flavor: _flavors_pb2.Flavor
    image: _images_pb2.Image
    source: str
    power_on: bool
    guest: GuestConfig
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ..., name: _Optional[str] = ..., flavor: _Optional[_Union[_flavors_pb2.Flavor, _Mapping]] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., source: _Optional[str] = ..., power_on: _Optional[bool] = ..., guest: _Optional[_Union[GuestConfig, _Mapping]] = ...) -> None: ...

class RevertMoveRequest(_message.Message):
    __slots__ = ("server_id", "host", "migration_id", "power_on")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    POWER_ON_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    migration_id: str
    power_on: bool
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ..., migration_id: _Optional[str] = ..., power_on: _Optional[bool] = ...) -> None: ...

class ConfirmMoveRequest(_message.Message):
    __slots__ = ("server_id", "host", "migration_id")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    migration_id: str
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ..., migration_id: _Optional[str] = ...) -> None: ...

class ConfirmMoveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RebuildInstanceRequest(_message.Message):
    __slots__ = ("server_id", "host", "name", "flavor", "image", "allocation", "power_on", "guest")
    class AllocationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    POWER_ON_FIELD_NUMBER: _ClassVar[int]
    GUEST_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    name: str
    flavor: _flavors_pb2.Flavor
    image: _images_pb2.Image
    allocation: _containers.ScalarMap[str, int]
    power_on: bool
    guest: GuestConfig
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ..., name: _Optional[str] = ..., flavor: _Optional[_Union[_flavors_pb2.Flavor, _Mapping]] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., allocation: _Optional[_Mapping[str, int]] = ..., power_on: _Optional[bool] = ..., guest: _Optional[_Union[GuestConfig, _Mapping]] = ...) -> None: ...

class ShelveInstanceRequest(_message.Message):
    __slots__ = ("server_id", "host")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class Vif(_message.Message):
    __slots__ = ("network_id", "network", "bridge", "mac", "address", "cidr", "gateway", "dhcp_server")
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    BRIDGE_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CIDR_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    DHCP_SERVER_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    network: str
    bridge: str
    mac: str
    address: str
    cidr: str
    gateway: str
    dhcp_server: str
    def __init__(self, network_id: _Optional[str] = ..., network: _Optional[str] = ..., bridge: _Optional[str] = ..., mac: _Optional[str] = ..., address: _Optional[str] = ..., cidr: _Optional[str] = ..., gateway: _Optional[str] = ..., dhcp_server: _Optional[str] = ...) -> None: ...

class GuestConfig(_message.Message):
    __slots__ = ("hostname", "vifs", "config_drive", "user_data", "key_name", "key_data", "admin_pass", "metadata", "project_id", "availability_zone", "launch_index", "kernel_path", "ramdisk_path", "kernel_args")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VIFS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DRIVE_FIELD_NUMBER: _ClassVar[int]
    USER_DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_DATA_FIELD_NUMBER: _ClassVar[int]
    ADMIN_PASS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    KERNEL_PATH_FIELD_NUMBER: _ClassVar[int]
    RAMDISK_PATH_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ARGS_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    vifs: _containers.RepeatedCompositeFieldContainer[Vif]
    config_drive: bool
    user_data: bytes
    key_name: str
    key_data: str
    admin_pass: str
    metadata: _containers.ScalarMap[str, str]
    project_id: str
    availability_zone: str
    launch_index: int
    kernel_path: str
    ramdisk_path: str
    kernel_args: str
    def __init__(self, hostname: _Optional[str] = ..., vifs: _Optional[_Iterable[_Union[Vif, _Mapping]]] = ..., config_drive: _Optional[bool] = ..., user_data: _Optional[bytes] = ..., key_name: _Optional[str] = ..., key_data: _Optional[str] = ..., admin_pass: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., project_id: _Optional[str] = ..., availability_zone: _Optional[str] = ..., launch_index: _Optional[int] = ..., kernel_path: _Optional[str] = ..., ramdisk_path: _Optional[str] = ..., kernel_args: _Optional[str] = ...) -> None: ...

class GetConsoleOutputRequest(_message.Message):
    __slots__ = ("server_id", "host")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class GetConsoleOutputResponse(_message.Message):
    __slots__ = ("output",)
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    output: str
    def __init__(self, output: _Optional[str] = ...) -> None: ...

class ShelveInstanceResponse(_message.Message):
    __slots__ = ("power_state", "snapshot")
    POWER_STATE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    power_state: _states_pb2.PowerState
    snapshot: str
    def __init__(self, power_state: _Optional[_Union[_states_pb2.PowerState, str]] = ..., snapshot: _Optional[str] = ...) -> None: ...

class PowerStateResponse(_message.Message):
    __slots__ = ("power_state",)
    POWER_STATE_FIELD_NUMBER: _ClassVar[int]
    power_state: _states_pb2.PowerState
    def __init__(self, power_state: _Optional[_Union[_states_pb2.PowerState, str]] = ...) -> None: ...

class BuildInstanceRequest(_message.Message):
    __slots__ = ("server_id", "name", "flavor", "image", "allocation", "host", "group_id", "guest")
    class AllocationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    GUEST_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    name: str
    flavor: _flavors_pb2.Flavor
    image: _images_pb2.Image
    allocation: _containers.ScalarMap[str, int]
    host: str
    group_id: str
    guest: GuestConfig
    def __init__(self, server_id: _Optional[str] = ..., name: _Optional[str] = ..., flavor: _Optional[_Union[_flavors_pb2.Flavor, _Mapping]] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., allocation: _Optional[_Mapping[str, int]] = ..., host: _Optional[str] = ..., group_id: _Optional[str] = ..., guest: _Optional[_Union[GuestConfig, _Mapping]] = ...) -> None: ...

class BuildInstanceResponse(_message.Message):
    __slots__ = ("power_state",)
    POWER_STATE_FIELD_NUMBER: _ClassVar[int]
    power_state: _states_pb2.PowerState
    def __init__(self, power_state: _Optional[_Union[_states_pb2.PowerState, str]] = ...) -> None: ...

class DeleteInstanceRequest(_message.Message):
    __slots__ = ("server_id", "host")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class DeleteInstanceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunActionRequest(_message.Message):
    __slots__ = ("server_id", "host", "action")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    action: str
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class RunActionResponse(_message.Message):
    __slots__ = ("power_state",)
    POWER_STATE_FIELD_NUMBER: _ClassVar[int]
    power_state: _states_pb2.PowerState
    def __init__(self, power_state: _Optional[_Union[_states_pb2.PowerState, str]] = ...) -> None: ...
