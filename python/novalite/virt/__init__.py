"""The virt layer: one libvirt driver for real QEMU guests (`qemu:///system`) and for
simulated hosts (libvirt's test driver, `test:///PATH.xml`), plus local images.

Everything here blocks: async callers use `asyncio.to_thread`. No grpc here.
"""

from novalite.virt.driver import (
    DOMAIN_PREFIX,
    INSTANCE_NS,
    HostInfo,
    LibvirtDriver,
    domain_name,
    nova_power_state,
    node_uri,
    write_test_node,
)
from novalite.virt.errors import (
    ActionFailed,
    DriverError,
    HypervisorUnavailable,
    ImageError,
    InstanceExists,
    InstanceNotFound,
    InvalidInstanceId,
    SpawnFailed,
)

__all__ = [
    "DOMAIN_PREFIX",
    "INSTANCE_NS",
    "ActionFailed",
    "DriverError",
    "HostInfo",
    "HypervisorUnavailable",
    "ImageError",
    "InstanceExists",
    "InstanceNotFound",
    "InvalidInstanceId",
    "LibvirtDriver",
    "SpawnFailed",
    "domain_name",
    "nova_power_state",
    "node_uri",
    "write_test_node",
]
