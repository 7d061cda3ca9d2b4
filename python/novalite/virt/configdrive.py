"""Config drives, as Nova's (nova/virt/configdrive.py and the metadata it holds,
nova/api/metadata/base.py): an ISO 9660 image labelled ``config-2`` with the
server's metadata under ``openstack/latest/``:

* ``meta_data.json``: uuid, name, hostname, launch_index, availability_zone,
  project_id, the server's metadata (``meta``), its key pair (``public_keys``,
  ``keys``), its admin password (``admin_pass``, as Nova's libvirt driver adds it),
  a random seed;
* ``user_data``: the user data, as given (absent when there is none);
* ``network_data.json``: one link per NIC (its MAC address) and one network per
  link, of type ``ipv4_dhcp`` (a flat DHCP network: the guest asks the network's
  DHCP server, which hands out the fixed IP the conductor chose).

Only ``latest`` is written (Nova also writes each dated version and ec2/): what
cloud-init and novalite's image read. Blocking (runs genisoimage).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from novalite.objects.records import GuestConfig
from novalite.virt.errors import ImageError

MKISOFS = "genisoimage"
VOLUME_LABEL = "config-2"
# Nova's dhcp_domain default: the hostname in the metadata is <name>.novalocal
DHCP_DOMAIN = "novalocal"


def sanitize_hostname(name: str) -> str:
    """Nova's utils.sanitize_hostname: lowercase letters, digits and '-', at most
    63 characters, never empty."""
    host = re.sub(r"[ _]", "-", name.lower())
    host = re.sub(r"[^a-z0-9.-]", "", host).strip(".-")[:63].strip(".-")
    return host or "server"


def meta_data(instance_id: str, name: str, guest: GuestConfig) -> dict[str, object]:
    """meta_data.json's content (Nova's _metadata_as_json, latest version)."""
    md: dict[str, object] = {"uuid": instance_id}
    if guest.metadata:
        md["meta"] = dict(guest.metadata)
    if guest.key_name and guest.key_data:
        md["public_keys"] = {guest.key_name: guest.key_data}
        md["keys"] = [{"name": guest.key_name, "type": "ssh", "data": guest.key_data}]
    if guest.admin_pass:
        md["admin_pass"] = guest.admin_pass
    md["hostname"] = f"{guest.hostname}.{DHCP_DOMAIN}"
    md["name"] = name
    md["launch_index"] = guest.launch_index
    md["availability_zone"] = guest.availability_zone
    md["random_seed"] = base64.b64encode(os.urandom(512)).decode()
    md["project_id"] = guest.project_id
    md["devices"] = []
    return md


def network_data(guest: GuestConfig) -> dict[str, object]:
    """network_data.json's content (Nova's netutils.get_network_metadata) for NICs
    on flat DHCP networks."""
    links, networks = [], []
    for i, vif in enumerate(guest.vifs):
        link = f"tap{vif.mac.replace(':', '')[-8:]}"
        links.append({"id": link, "vif_id": f"{vif.network_id}-{i}", "type": "bridge",
                      "mtu": None, "ethernet_mac_address": vif.mac})
        networks.append({"id": f"network{i}", "type": f"ipv{vif.version}_dhcp", "link": link,
                         "network_id": vif.network_id})
    return {"links": links, "networks": networks, "services": []}


def files(instance_id: str, name: str, guest: GuestConfig) -> dict[str, bytes]:
    """The config drive's files, by path."""
    # one line each: the image's init reads them with sed
    out = {
        "openstack/latest/meta_data.json": json.dumps(meta_data(instance_id, name, guest)).encode(),
        "openstack/latest/network_data.json": json.dumps(network_data(guest)).encode(),
    }
    if guest.user_data is not None:
        out["openstack/latest/user_data"] = guest.user_data
    return out


def make_config_drive(target: str | os.PathLike[str], contents: dict[str, bytes]) -> None:
    """Writes an ISO 9660 image (Joliet and Rock Ridge, labelled config-2) of
    ``contents`` to ``target``, with Nova's genisoimage options."""
    tool = shutil.which(MKISOFS)
    if tool is None:
        raise ImageError(f"{MKISOFS} not found: install genisoimage "
                         "(scripts/setup_network.sh does)")
    with tempfile.TemporaryDirectory(prefix="novalite-configdrive-") as tmp:
        for path, data in contents.items():
            file = Path(tmp, path)
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)
        proc = subprocess.run(
            [tool, "-o", str(target), "-ldots", "-allow-lowercase", "-allow-multidot", "-l",
             "-publisher", "novalite", "-quiet", "-J", "-r", "-V", VOLUME_LABEL, tmp],
            capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"{MKISOFS} failed: {(proc.stderr or proc.stdout).strip()}")
