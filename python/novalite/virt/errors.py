"""The virt driver's errors: plain Python, no grpc. The compute agent maps them to its
own domain errors (InstanceNotFound -> NotFound, SpawnFailed -> a build failure with
the message as the fault, HypervisorUnavailable -> the host is down)."""

from __future__ import annotations


class DriverError(Exception):
    """Base of every error raised by novalite.virt."""


class HypervisorUnavailable(DriverError):
    """libvirt cannot be reached (daemon down, libvirt-python missing, bad URI)."""


class InvalidInstanceId(DriverError, ValueError):
    """An instance id that cannot name a domain (empty, too long, odd characters)."""


class InstanceNotFound(DriverError):
    """No domain of this driver has this instance id."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"instance {instance_id} not found on this hypervisor")
        self.instance_id = instance_id


class SpawnFailed(DriverError):
    """Creating the disk, defining or starting the domain failed; the message carries
    libvirt's (or qemu-img's) own. Nothing is left behind: no domain, no disk."""

    def __init__(self, instance_id: str, message: str) -> None:
        super().__init__(f"spawning instance {instance_id} failed: {message}")
        self.instance_id = instance_id
        self.reason = message


class InstanceExists(SpawnFailed):
    """spawn() for an instance id that already has a domain here."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id, "a domain for this instance already exists")


class ActionFailed(DriverError):
    """A lifecycle action that libvirt refused or that makes no sense in the domain's
    current state (pause a shut-off guest, resume one that was never suspended)."""

    def __init__(self, instance_id: str, action: str, message: str) -> None:
        super().__init__(f"{action} of instance {instance_id} failed: {message}")
        self.instance_id = instance_id
        self.action = action
        self.reason = message


class ImageError(DriverError):
    """An image that cannot be read or created (qemu-img's message included)."""
