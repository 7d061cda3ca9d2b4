"""The networks' queries: networks (Nova's flat DHCP kind) and the fixed IPs the
conductor hands out of them."""

from __future__ import annotations

import ipaddress
import random
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.db.engine import _INSTANCES, Transactions, _new_uuid
from novalite.db.validation import _name
from novalite.objects.records import Network, Vif

# Nova's base MAC address prefix (base_mac): the rest is random.
MAC_PREFIX = (0xFA, 0x16, 0x3E)
_random = random.SystemRandom()


class Networks(Transactions):
    """Networks and their fixed IPs. An address is in use while a row of
    fixed_ips holds it (its primary key): never given twice, free again when
    its server is deleted (delete_instance removes the rows)."""

    def register_network(self, *, name: str, cidr: str, gateway: str, bridge: str,
                         dhcp_server: str) -> Network:
        """Create the network, or bring its description up to date (a compute host
        reports the networks it has at every start). Invalid names the field."""
        name = _name("name", name)
        _name("bridge", bridge, max_len=15)
        try:
            subnet = ipaddress.ip_network(cidr, strict=True)
        except ValueError as e:
            raise errors.Invalid("cidr", str(e)) from None
        for field, value in (("gateway", gateway), ("dhcp_server", dhcp_server)):
            try:
                inside = ipaddress.ip_address(value) in subnet
            except ValueError as e:
                raise errors.Invalid(field, str(e)) from None
            if not inside:
                raise errors.Invalid(field, f"{value} is not in {cidr}")
        if subnet.num_addresses < 8:
            raise errors.Invalid("cidr", f"{cidr} is too small for guests")

        def work(s: Session) -> Network:
            row = s.scalars(sa.select(m.Network).where(m.Network.name == name)
                            .with_for_update()).one_or_none()
            if row is None:
                row = m.Network(id=_new_uuid(), name=name, created_at=self._clock())
                s.add(row)
            elif row.cidr != str(subnet) and s.scalar(
                    sa.select(sa.func.count()).select_from(m.FixedIp)
                    .where(m.FixedIp.network_id == row.id)):
                raise errors.Conflict(f"network {name} has fixed IPs in {row.cidr}; "
                                      f"it cannot become {cidr}")
            row.cidr, row.gateway, row.bridge, row.dhcp_server = (
                str(subnet), gateway, bridge, dhcp_server)
            s.flush()
            return _network(row)
        return self._write(work)

    def list_networks(self) -> list[Network]:
        """Every network, by name."""
        return self._read(lambda s: [_network(r) for r in s.scalars(
            sa.select(m.Network).order_by(m.Network.name))])

    def allocate_fixed_ips(self, instance_id: str) -> tuple[Vif, ...]:
        """A fixed IP and a MAC address on each network the live instance asked
        for (every network when it named none), recorded as its network info, in
        one transaction. A second call gives the same NICs. The address is chosen
        at random among the free ones (see docs/guests.md: several clouds may share
        one machine's networks). Conflict when a network has no free address;
        NotFound when the instance is gone."""
        def work(s: Session) -> tuple[Vif, ...]:
            inst = s.scalars(sa.select(m.Instance).where(
                m.Instance.id == instance_id, m.Instance.deleted_at.is_(None))
                .with_for_update()).one_or_none()
            if inst is None:
                raise errors.NotFound(f"instance {instance_id} not found")
            held = self._vifs(s, instance_id)
            if held:
                return held
            q = sa.select(m.Network).order_by(m.Network.name).with_for_update()
            if inst.requested_networks is not None:
                q = q.where(m.Network.id.in_(list(inst.requested_networks)))
            networks = list(s.scalars(q))
            if inst.requested_networks is not None:
                missing = set(inst.requested_networks) - {n.id for n in networks}
                if missing:
                    raise errors.NotFound(f"network {sorted(missing)[0]} not found")
            now = self._clock()
            for net in networks:
                address, mac = _free_address_and_mac(s, net)
                s.add(m.FixedIp(network_id=net.id, address=address, instance_id=instance_id,
                                mac=mac, created_at=now))
            s.flush()
            vifs = self._vifs(s, instance_id)
            s.execute(sa.update(_INSTANCES).where(_INSTANCES.c.id == instance_id).values(
                network_info=[v.as_dict() for v in vifs], updated_at=now))
            return vifs
        return self._write(work)

    def fixed_ips_of(self, instance_id: str) -> tuple[Vif, ...]:
        """The NICs an instance holds now (none once it is deleted)."""
        return self._read(lambda s: self._vifs(s, instance_id))

    @staticmethod
    def _vifs(s: Session, instance_id: str) -> tuple[Vif, ...]:
        f, n = m.FixedIp, m.Network
        rows = s.execute(sa.select(f, n).join(n, n.id == f.network_id)
                         .where(f.instance_id == instance_id).order_by(n.name, f.address))
        return tuple(Vif(network_id=net.id, network=net.name, bridge=net.bridge, mac=ip.mac,
                         address=ip.address, cidr=net.cidr, gateway=net.gateway,
                         dhcp_server=net.dhcp_server) for ip, net in rows)


def _free_address_and_mac(s: Session, net: m.Network) -> tuple[str, str]:
    rows = s.execute(sa.select(m.FixedIp.address, m.FixedIp.mac)
                     .where(m.FixedIp.network_id == net.id)).all()
    used = {r.address for r in rows} | {net.gateway, net.dhcp_server}
    macs = {r.mac for r in rows}
    subnet = ipaddress.ip_network(net.cidr)
    # the subnet's network and broadcast addresses are never given
    room = subnet.num_addresses - 2
    if len(used) >= room:
        raise errors.Conflict(f"network {net.name} ({net.cidr}) has no free address")
    while True:
        address = str(subnet.network_address + _random.randrange(1, room + 1))
        if address not in used:
            break
    while True:
        mac = ":".join(f"{b:02x}" for b in (*MAC_PREFIX, *_random.randbytes(3)))
        if mac not in macs:
            return address, mac


def _network(r: m.Network) -> Network:
    return Network(id=r.id, name=r.name, cidr=r.cidr, gateway=r.gateway, bridge=r.bridge,
                   dhcp_server=r.dhcp_server, created_at=r.created_at)


__all__: Sequence[str] = ["MAC_PREFIX", "Networks"]
