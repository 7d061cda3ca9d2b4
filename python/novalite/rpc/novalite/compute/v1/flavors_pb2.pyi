import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Flavor(_message.Message):
    __slots__ = ("id", "name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap", "is_public", "extra_specs", "created_at")
    class ExtraSpecsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VCPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    ROOT_GB_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_GB_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    IS_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    EXTRA_SPECS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int
    swap: int
    is_public: bool
    extra_specs: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., vcpus: _Optional[int] = ..., memory_mb: _Optional[int] = ..., root_gb: _Optional[int] = ..., ephemeral_gb: _Optional[int] = ..., swap: _Optional[int] = ..., is_public: _Optional[bool] = ..., extra_specs: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateFlavorRequest(_message.Message):
    __slots__ = ("name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap", "is_public", "extra_specs")
    class ExtraSpecsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VCPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    ROOT_GB_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_GB_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    IS_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    EXTRA_SPECS_FIELD_NUMBER: _ClassVar[int]
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int
    swap: int
    is_public: bool
    extra_specs: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., vcpus: _Optional[int] = ..., memory_mb: _Optional[int] = ..., root_gb: _Optional[int] = ..., ephemeral_gb: _Optional[int] = ..., swap: _Optional[int] = ..., is_public: _Optional[bool] = ..., extra_specs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteFlavorRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteFlavorResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFlavorsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFlavorsResponse(_message.Message):
    __slots__ = ("flavors", "next_page_token")
    FLAVORS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    flavors: _containers.RepeatedCompositeFieldContainer[Flavor]
    next_page_token: str
    def __init__(self, flavors: _Optional[_Iterable[_Union[Flavor, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetFlavorRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SetFlavorExtraSpecsRequest(_message.Message):
    __slots__ = ("flavor_id", "extra_specs")
    class ExtraSpecsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    EXTRA_SPECS_FIELD_NUMBER: _ClassVar[int]
    flavor_id: str
    extra_specs: _containers.ScalarMap[str, str]
    def __init__(self, flavor_id: _Optional[str] = ..., extra_specs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UnsetFlavorExtraSpecsRequest(_message.Message):
    __slots__ = ("flavor_id", "keys")
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    flavor_id: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, flavor_id: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class AddFlavorAccessRequest(_message.Message):
    __slots__ = ("flavor_id", "project_id")
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    flavor_id: str
    project_id: str
    def __init__(self, flavor_id: _Optional[str] = ..., project_id: _Optional[str] = ...) -> None: ...

class RemoveFlavorAccessRequest(_message.Message):
    __slots__ = ("flavor_id", "project_id")
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    flavor_id: str
    project_id: str
    def __init__(self, flavor_id: _Optional[str] = ..., project_id: _Optional[str] = ...) -> None: ...

class ListFlavorAccessRequest(_message.Message):
    __slots__ = ("flavor_id",)
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    flavor_id: str
    def __init__(self, flavor_id: _Optional[str] = ...) -> None: ...

class FlavorAccess(_message.Message):
    __slots__ = ("flavor_id", "project_ids")
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    flavor_id: str
    project_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, flavor_id: _Optional[str] = ..., project_ids: _Optional[_Iterable[str]] = ...) -> None: ...
