from novalite.rpc.novalite.compute.v1 import flavors_pb2 as _flavors_pb2
from novalite.rpc.novalite.compute.v1 import images_pb2 as _images_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InstanceGroup(_message.Message):
    __slots__ = ("uuid", "policy", "members", "hosts", "max_server_per_host")
    UUID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    MAX_SERVER_PER_HOST_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    policy: str
    members: _containers.RepeatedScalarFieldContainer[str]
    hosts: _containers.RepeatedScalarFieldContainer[str]
    max_server_per_host: int
    def __init__(self, uuid: _Optional[str] = ..., policy: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ..., hosts: _Optional[_Iterable[str]] = ..., max_server_per_host: _Optional[int] = ...) -> None: ...

class RequestSpec(_message.Message):
    __slots__ = ("request_id", "project_id", "user_id", "flavor", "image", "availability_zone", "instance_group", "same_host", "different_host", "force_hosts", "force_nodes", "ignore_hosts", "requested_host", "is_rebuild")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_GROUP_FIELD_NUMBER: _ClassVar[int]
    SAME_HOST_FIELD_NUMBER: _ClassVar[int]
    DIFFERENT_HOST_FIELD_NUMBER: _ClassVar[int]
    FORCE_HOSTS_FIELD_NUMBER: _ClassVar[int]
    FORCE_NODES_FIELD_NUMBER: _ClassVar[int]
    IGNORE_HOSTS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_HOST_FIELD_NUMBER: _ClassVar[int]
    IS_REBUILD_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    project_id: str
    user_id: str
    flavor: _flavors_pb2.Flavor
    image: _images_pb2.Image
    availability_zone: str
    instance_group: InstanceGroup
    same_host: _containers.RepeatedScalarFieldContainer[str]
    different_host: _containers.RepeatedScalarFieldContainer[str]
    force_hosts: _containers.RepeatedScalarFieldContainer[str]
    force_nodes: _containers.RepeatedScalarFieldContainer[str]
    ignore_hosts: _containers.RepeatedScalarFieldContainer[str]
    requested_host: str
    is_rebuild: bool
    def __init__(self, request_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., flavor: _Optional[_Union[_flavors_pb2.Flavor, _Mapping]] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., availability_zone: _Optional[str] = ..., instance_group: _Optional[_Union[InstanceGroup, _Mapping]] = ..., same_host: _Optional[_Iterable[str]] = ..., different_host: _Optional[_Iterable[str]] = ..., force_hosts: _Optional[_Iterable[str]] = ..., force_nodes: _Optional[_Iterable[str]] = ..., ignore_hosts: _Optional[_Iterable[str]] = ..., requested_host: _Optional[str] = ..., is_rebuild: _Optional[bool] = ...) -> None: ...
