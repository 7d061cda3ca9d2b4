#!/usr/bin/env bash
# Sets up what guests a user can use need on this machine, idempotently, in the
# style of Nova's flat DHCP network: for each network a Linux bridge with the host's
# address on it and a dnsmasq that answers DHCP on it (no systemd, no D-Bus here),
# plus the tools the guest image and the config drive are made with. On a fresh
# machine it does everything; a re-run only checks (about a second).
#
#   sudo scripts/setup_network.sh [--down]
#
# Each network is described in NETWORKS_PATH/<name>/network.json (default
# /var/lib/novalite/networks, novalite's option network.networks_path): its bridge,
# subnet and gateway, and the directory where compute agents write one DHCP host
# entry (MAC address, fixed IP) per guest for dnsmasq to read (--dhcp-hostsdir).
# The fixed IPs themselves are handed out by the conductor from the database.
#
# The networks stay on this machine: the bridges have no uplink, the host does not
# forward their traffic (forwarding is off on them) and dnsmasq announces no router,
# so guests reach each other and the host, nothing else.
#
# --down: stop the dnsmasqs and remove the bridges (guests on them lose their NICs).
set -euo pipefail

NETWORKS_PATH=${NETWORKS_PATH:-/var/lib/novalite/networks}
# name, bridge, subnet (the host takes the subnet's first address)
NETWORKS=("private novalite0 10.77.0.0/16" "second novalite1 10.78.0.0/16")
LEASE_TIME=12h
# dnsmasq-base: DHCP; dnsmasq-utils: dhcp_release (a deleted guest's lease is
# released at once, so its address can go to another); genisoimage: config drives;
# iputils-ping: the host reaches guests; openssh-client: ssh-keygen for CreateKeypair;
# e2fsprogs: the guest image's root disk
PACKAGES=(dnsmasq-base dnsmasq-utils iproute2 genisoimage iputils-ping openssh-client e2fsprogs)

say() { echo "setup_network: $*"; }
die() { echo "setup_network: error: $*" >&2; exit 1; }
start_ns=$(date +%s%N)
[ "$(id -u)" -eq 0 ] || die "must run as root (packages, bridges, dnsmasq); try: sudo $0"
DOWN=0
case "${1:-}" in
    "") ;;
    --down) DOWN=1 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
esac

dnsmasq_pid() {  # the pid of the dnsmasq serving network directory $1, if it runs
    local pid
    pid=$(cat "$1/dnsmasq.pid" 2>/dev/null || true)
    [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -q -- "--dhcp-hostsdir=$1/hosts" \
        && echo "$pid"
    return 0
}

if [ "$DOWN" -eq 1 ]; then
    for spec in "${NETWORKS[@]}"; do
        read -r name bridge _ <<< "$spec"
        pid=$(dnsmasq_pid "$NETWORKS_PATH/$name")
        [ -z "$pid" ] || { kill "$pid"; say "stopped dnsmasq of $name (pid $pid)"; }
        ! ip link show "$bridge" >/dev/null 2>&1 || { ip link del "$bridge"; say "removed bridge $bridge"; }
    done
    exit 0
fi

# 1. packages ---------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt-get update first)"
    log=$(mktemp /tmp/novalite-setup-network.XXXXXX)
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
           >"$log" 2>&1; then
        tail -n 15 "$log" | sed 's/^/    /' >&2
        rm -f "$log"
        die "'apt-get install ${missing[*]}' failed (above: apt's last lines)"
    fi
    rm -f "$log"
    say "packages installed"
else
    say "packages already installed (${PACKAGES[*]})"
fi

# 2. a bridge and a dnsmasq per network ----------------------------------------------
first_address() {  # the first host address of an IPv4 subnet a.b.c.d/n
    local ip=${1%/*} a b c d
    IFS=. read -r a b c d <<< "$ip"
    echo "$a.$b.$c.$((d + 1))"
}
netmask() {  # the dotted netmask of a prefix length
    local bits=$1 mask="" i n
    for i in 1 2 3 4; do
        n=$(( bits >= 8 ? 255 : (bits > 0 ? 256 - (1 << (8 - bits)) : 0) ))
        bits=$(( bits >= 8 ? bits - 8 : 0 ))
        mask+="${mask:+.}$n"
    done
    echo "$mask"
}
for spec in "${NETWORKS[@]}"; do
    read -r name bridge cidr <<< "$spec"
    dir="$NETWORKS_PATH/$name"
    gateway=$(first_address "$cidr")
    prefix=${cidr#*/}
    mkdir -p "$dir/hosts"
    chmod 755 "$NETWORKS_PATH" "$dir" "$dir/hosts"
    changed=0
    if ! ip link show "$bridge" >/dev/null 2>&1; then
        ip link add "$bridge" type bridge stp_state 0 forward_delay 0
        changed=1
    fi
    # no forwarding off the bridge, no IPv6 chatter: the network stays on this machine
    sysctl -q -w "net.ipv4.conf.$bridge.forwarding=0" "net.ipv6.conf.$bridge.disable_ipv6=1" >/dev/null
    if ! ip -4 addr show dev "$bridge" | grep -q "inet $gateway/$prefix "; then
        ip addr flush dev "$bridge"
        ip addr add "$gateway/$prefix" dev "$bridge"
        changed=1
    fi
    ip link show "$bridge" | grep -q "state UP\|,UP" || { ip link set "$bridge" up; changed=1; }
    description=$(printf '{"name": "%s", "bridge": "%s", "cidr": "%s", "gateway": "%s", "dhcp_server": "%s", "hosts_dir": "%s", "pid_file": "%s"}\n' \
        "$name" "$bridge" "$cidr" "$gateway" "$gateway" "$dir/hosts" "$dir/dnsmasq.pid")
    if [ "$(cat "$dir/network.json" 2>/dev/null)" != "$description" ]; then
        echo "$description" > "$dir/network.json.tmp"
        mv "$dir/network.json.tmp" "$dir/network.json"
        changed=1
    fi
    pid=$(dnsmasq_pid "$dir")
    if [ -z "$pid" ]; then
        # static: only the guests a compute agent wrote a host entry for get an
        # address (the one the conductor chose); no DNS (port 0), no router, no
        # default configuration file
        dnsmasq --conf-file=/dev/null --port=0 --strict-order --bind-interfaces \
            --interface="$bridge" --except-interface=lo --listen-address="$gateway" \
            --pid-file="$dir/dnsmasq.pid" --dhcp-leasefile="$dir/leases" \
            --dhcp-range="set:$name,${cidr%/*},static,$(netmask "$prefix"),$LEASE_TIME" \
            --dhcp-hostsdir="$dir/hosts" --dhcp-option=3 --dhcp-option=6 \
            --dhcp-authoritative --dhcp-no-override --log-dhcp --log-facility="$dir/dnsmasq.log" \
            || die "dnsmasq for $name did not start (see $dir/dnsmasq.log)"
        for _ in $(seq 1 50); do [ -n "$(dnsmasq_pid "$dir")" ] && break; sleep 0.1; done
        pid=$(dnsmasq_pid "$dir")
        [ -n "$pid" ] || die "dnsmasq for $name exited at once (see $dir/dnsmasq.log)"
        changed=1
    elif [ "$changed" -eq 1 ]; then
        kill -HUP "$pid"  # re-read its host entries for the changed bridge
    fi
    if [ "$changed" -eq 1 ]; then
        say "network $name: bridge $bridge $gateway/$prefix, dnsmasq pid $pid ($dir)"
    else
        say "network $name already set up (bridge $bridge $gateway/$prefix, dnsmasq pid $pid)"
    fi
done

elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
say "ready in $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000))) s"
