from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class VmState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VM_STATE_UNSPECIFIED: _ClassVar[VmState]
    VM_STATE_BUILDING: _ClassVar[VmState]
    VM_STATE_ACTIVE: _ClassVar[VmState]
    VM_STATE_STOPPED: _ClassVar[VmState]
    VM_STATE_PAUSED: _ClassVar[VmState]
    VM_STATE_SUSPENDED: _ClassVar[VmState]
    VM_STATE_ERROR: _ClassVar[VmState]
    VM_STATE_DELETED: _ClassVar[VmState]
    VM_STATE_RESIZED: _ClassVar[VmState]
    VM_STATE_SHELVED: _ClassVar[VmState]
    VM_STATE_SHELVED_OFFLOADED: _ClassVar[VmState]
    VM_STATE_RESCUED: _ClassVar[VmState]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_NONE: _ClassVar[TaskState]
    TASK_STATE_SCHEDULING: _ClassVar[TaskState]
    TASK_STATE_NETWORKING: _ClassVar[TaskState]
    TASK_STATE_BLOCK_DEVICE_MAPPING: _ClassVar[TaskState]
    TASK_STATE_SPAWNING: _ClassVar[TaskState]
    TASK_STATE_DELETING: _ClassVar[TaskState]
    TASK_STATE_REBOOTING: _ClassVar[TaskState]
    TASK_STATE_REBOOTING_HARD: _ClassVar[TaskState]
    TASK_STATE_POWERING_OFF: _ClassVar[TaskState]
    TASK_STATE_POWERING_ON: _ClassVar[TaskState]
    TASK_STATE_PAUSING: _ClassVar[TaskState]
    TASK_STATE_UNPAUSING: _ClassVar[TaskState]
    TASK_STATE_SUSPENDING: _ClassVar[TaskState]
    TASK_STATE_RESUMING: _ClassVar[TaskState]
    TASK_STATE_RESIZE_PREP: _ClassVar[TaskState]
    TASK_STATE_RESIZE_MIGRATING: _ClassVar[TaskState]
    TASK_STATE_RESIZE_MIGRATED: _ClassVar[TaskState]
    TASK_STATE_RESIZE_FINISH: _ClassVar[TaskState]
    TASK_STATE_RESIZE_REVERTING: _ClassVar[TaskState]
    TASK_STATE_RESIZE_CONFIRMING: _ClassVar[TaskState]
    TASK_STATE_MIGRATING: _ClassVar[TaskState]
    TASK_STATE_REBUILDING: _ClassVar[TaskState]
    TASK_STATE_REBUILD_SPAWNING: _ClassVar[TaskState]
    TASK_STATE_SHELVING: _ClassVar[TaskState]
    TASK_STATE_SHELVING_OFFLOADING: _ClassVar[TaskState]
    TASK_STATE_UNSHELVING: _ClassVar[TaskState]
    TASK_STATE_RESCUING: _ClassVar[TaskState]
    TASK_STATE_UNRESCUING: _ClassVar[TaskState]

class PowerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POWER_STATE_NOSTATE: _ClassVar[PowerState]
    POWER_STATE_RUNNING: _ClassVar[PowerState]
    POWER_STATE_PAUSED: _ClassVar[PowerState]
    POWER_STATE_SHUTDOWN: _ClassVar[PowerState]
    POWER_STATE_CRASHED: _ClassVar[PowerState]
    POWER_STATE_SUSPENDED: _ClassVar[PowerState]
VM_STATE_UNSPECIFIED: VmState
VM_STATE_BUILDING: VmState
VM_STATE_ACTIVE: VmState
VM_STATE_STOPPED: VmState
VM_STATE_PAUSED: VmState
VM_STATE_SUSPENDED: VmState
VM_STATE_ERROR: VmState
VM_STATE_DELETED: VmState
VM_STATE_RESIZED: VmState
VM_STATE_SHELVED: VmState
VM_STATE_SHELVED_OFFLOADED: VmState
VM_STATE_RESCUED: VmState
TASK_STATE_NONE: TaskState
TASK_STATE_SCHEDULING: TaskState
TASK_STATE_NETWORKING: TaskState
TASK_STATE_BLOCK_DEVICE_MAPPING: TaskState
TASK_STATE_SPAWNING: TaskState
TASK_STATE_DELETING: TaskState
TASK_STATE_REBOOTING: TaskState
TASK_STATE_REBOOTING_HARD: TaskState
TASK_STATE_POWERING_OFF: TaskState
TASK_STATE_POWERING_ON: TaskState
TASK_STATE_PAUSING: TaskState
TASK_STATE_UNPAUSING: TaskState
TASK_STATE_SUSPENDING: TaskState
TASK_STATE_RESUMING: TaskState
TASK_STATE_RESIZE_PREP: TaskState
TASK_STATE_RESIZE_MIGRATING: TaskState
TASK_STATE_RESIZE_MIGRATED: TaskState
TASK_STATE_RESIZE_FINISH: TaskState
TASK_STATE_RESIZE_REVERTING: TaskState
TASK_STATE_RESIZE_CONFIRMING: TaskState
TASK_STATE_MIGRATING: TaskState
TASK_STATE_REBUILDING: TaskState
TASK_STATE_REBUILD_SPAWNING: TaskState
TASK_STATE_SHELVING: TaskState
TASK_STATE_SHELVING_OFFLOADING: TaskState
TASK_STATE_UNSHELVING: TaskState
TASK_STATE_RESCUING: TaskState
TASK_STATE_UNRESCUING: TaskState
POWER_STATE_NOSTATE: PowerState
POWER_STATE_RUNNING: PowerState
POWER_STATE_PAUSED: PowerState
POWER_STATE_SHUTDOWN: PowerState
POWER_STATE_CRASHED: PowerState
POWER_STATE_SUSPENDED: PowerState
