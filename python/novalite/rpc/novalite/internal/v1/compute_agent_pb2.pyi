from novalite.rpc.novalite.compute.v1 import flavors_pb2 as _flavors_pb2
from novalite.rpc.novalite.compute.v1 import images_pb2 as _images_pb2
from novalite.rpc.novalite.compute.v1 import states_pb2 as _states_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
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
    __slots__ = ("server_id", "host", "name", "flavor", "image", "source", "power_on")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    POWER_ON_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    name: str
    flavor: _flavors_pb2.Flavor
    image: _images_pb2.Image
    source: str
    power_on: bool
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ..., name: _Optional[str] = ..., flavor: _Optional[_Union[_flavors_pb2.Flavor, _Mapping]] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., source: _Optional[str] = ..., power_on: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("server_id", "host", "name", "flavor", "image", "allocation", "power_on")
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
    server_id: str
    host: str
    name: str
    flavor: _flavors_pb2.Flavor
    image: _images_pb2.Image
    allocation: _containers.ScalarMap[str, int]
    power_on: bool
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ..., name: _Optional[str] = ..., flavor: _Optional[_Union[_flavors_pb2.Flavor, _Mapping]] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., allocation: _Optional[_Mapping[str, int]] = ..., power_on: _Optional[bool] = ...) -> None: ...

class ShelveInstanceRequest(_message.Message):
    __slots__ = ("server_id", "host")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    host: str
    def __init__(self, server_id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("server_id", "name", "flavor", "image", "allocation", "host", "group_id")
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
    server_id: str
    name: str
    flavor: _flavors_pb2.Flavor
    image: _images_pb2.Image
    allocation: _containers.ScalarMap[str, int]
    host: str
    group_id: str
    def __init__(self, server_id: _Optional[str] = ..., name: _Optional[str] = ..., flavor: _Optional[_Union[_flavors_pb2.Flavor, _Mapping]] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., allocation: _Optional[_Mapping[str, int]] = ..., host: _Optional[str] = ..., group_id: _Optional[str] = ...) -> None: ...

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
