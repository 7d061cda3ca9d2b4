"""The host's side of novalite's flat DHCP networks (Nova's linux_net): the
networks scripts/setup_network.sh made on this machine (a bridge and a dnsmasq
each, described in ``<networks_path>/<name>/network.json``), and the DHCP host
entries that make a network's dnsmasq hand a guest's MAC address the fixed IP the
conductor chose.

An entry is a file of dnsmasq's --dhcp-hostsdir, which dnsmasq reads as soon as it
appears; removing one also releases the guest's lease (dhcp_release, as Nova's
force_dhcp_release) and asks dnsmasq to forget the entry (SIGHUP), so the address
can go to another guest at once. Blocking (files, signals, dhcp_release).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from novalite.objects.records import Vif

LOG = logging.getLogger(__name__)

DEFAULT_NETWORKS_PATH = "/var/lib/novalite/networks"
DESCRIPTION = "network.json"
_ENTRY_RE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class HostNetwork:
    """A network as this machine has it."""

    name: str
    bridge: str
    cidr: str
    gateway: str
    dhcp_server: str
    hosts_dir: Path
    pid_file: Path


def host_networks(networks_path: str | os.PathLike[str]) -> list[HostNetwork]:
    """The networks described under ``networks_path`` whose bridge exists here, by
    name (a description that cannot be read is logged and skipped)."""
    root = Path(networks_path)
    found = []
    for description in sorted(root.glob(f"*/{DESCRIPTION}")):
        try:
            d = json.loads(description.read_text())
            net = HostNetwork(name=str(d["name"]), bridge=str(d["bridge"]), cidr=str(d["cidr"]),
                              gateway=str(d["gateway"]), dhcp_server=str(d["dhcp_server"]),
                              hosts_dir=Path(d["hosts_dir"]), pid_file=Path(d["pid_file"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            LOG.warning("ignoring network description %s: %s", description, e)
            continue
        if not Path("/sys/class/net", net.bridge).exists():
            LOG.warning("network %s: bridge %s does not exist on this host (run "
                        "scripts/setup_network.sh); not offered", net.name, net.bridge)
            continue
        found.append(net)
    return found


def _by_bridge(networks_path: str | os.PathLike[str], bridge: str) -> HostNetwork | None:
    return next((n for n in host_networks(networks_path) if n.bridge == bridge), None)


def _entry(net: HostNetwork, instance_id: str) -> Path:
    if not _ENTRY_RE.match(instance_id):
        raise ValueError(f"instance id {instance_id!r} cannot name a DHCP host entry")
    return net.hosts_dir / instance_id


def add_dhcp_host(networks_path: str | os.PathLike[str], instance_id: str, vif: Vif,
                  hostname: str) -> None:
    """Make the network's dnsmasq give ``vif.mac`` the address ``vif.address``.
    ValueError if this host does not have the VIF's network."""
    net = _by_bridge(networks_path, vif.bridge)
    if net is None:
        raise ValueError(f"this host has no network on bridge {vif.bridge} "
                         f"(network {vif.network}); run scripts/setup_network.sh")
    entry = _entry(net, instance_id)
    tmp = entry.with_name(f".{entry.name}.tmp")
    tmp.write_text(f"{vif.mac},{vif.address},{hostname}\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, entry)


def remove_dhcp_hosts(networks_path: str | os.PathLike[str], instance_id: str) -> None:
    """Forget the instance's entries on every network of this host, and release
    their leases. Nothing to forget is fine."""
    for net in host_networks(networks_path):
        entry = _entry(net, instance_id)
        try:
            mac, address, _ = entry.read_text().strip().split(",", 2)
        except (OSError, ValueError):
            continue
        entry.unlink(missing_ok=True)
        release = shutil.which("dhcp_release")
        if release is not None:
            subprocess.run([release, net.bridge, address, mac], capture_output=True, check=False)
        try:
            os.kill(int(net.pid_file.read_text().strip()), signal.SIGHUP)
        except (OSError, ValueError) as e:
            LOG.warning("could not tell dnsmasq of %s to forget %s: %s", net.name, address, e)
