#!/usr/bin/env bash
# Installs and starts what real QEMU guests under libvirt need on this machine
# (Debian 12, root, no systemd, no D-Bus), idempotently: on a fresh machine it does
# everything; on a re-run it only checks (about a second) and says so.
#
#   sudo PYTHON=.venv/bin/python scripts/setup_libvirt.sh
#
# Steps (see ../shared/reference/libvirt-here.md, where each one was verified):
#   1. Debian packages, only those missing (apt-get update first if any is).
#   2. The libvirt-qemu user and group: the QEMU driver refuses to start without them
#      (they normally come with libvirt-daemon-system, which we do not install).
#   3. /etc/libvirt/qemu.conf: user/group root, security_driver none,
#      dynamic_ownership 0 (no SELinux/AppArmor, no chown of our disks).
#   4. Runtime directories, then virtlogd and libvirtd as daemons (no systemd here);
#      wait until qemu:///system answers.
#   5. libvirt-python into $PYTHON (default python3) if `import libvirt` fails; it
#      builds from source against libvirt-dev (there is no wheel).
# It must run as root: CI starts from zero with nothing installed or running.
set -euo pipefail

PYTHON=${PYTHON:-python3}
QEMU_CONF=/etc/libvirt/qemu.conf
URI=qemu:///system
PACKAGES=(libvirt-dev pkg-config libvirt-daemon libvirt-daemon-driver-qemu
          libvirt-clients qemu-system-x86 qemu-utils)

say() { echo "setup_libvirt: $*"; }
die() { echo "setup_libvirt: error: $*" >&2; exit 1; }
start_ns=$(date +%s%N)

[ "$(id -u)" -eq 0 ] || die "must run as root (packages, users, daemons); try: sudo PYTHON=$PYTHON $0"

# 1. packages ---------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # no recommends: dnsmasq, bridges, AppArmor profiles... are not used here
    # all of them, not only the missing ones: installing qemu-system-x86 may replace
    # a qemu-utils of another release (it breaks newer ones), and apt must see both
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    say "packages installed"
else
    say "packages already installed"
fi

# 2. the libvirt-qemu user and group ------------------------------------------------
if ! getent group libvirt-qemu >/dev/null; then
    groupadd -r libvirt-qemu
    say "created group libvirt-qemu"
fi
if ! getent passwd libvirt-qemu >/dev/null; then
    useradd -r -g libvirt-qemu -s /usr/sbin/nologin -d /var/lib/libvirt libvirt-qemu
    say "created user libvirt-qemu"
fi

# 3. qemu.conf --------------------------------------------------------------------
conf_changed=0
if [ ! -f "$QEMU_CONF" ]; then
    # Debian 12 ships qemu.conf in libvirt-daemon-system (systemd units, polkit...),
    # which we do not install; libvirtd takes its defaults for every key not set here.
    mkdir -p "$(dirname "$QEMU_CONF")"
    echo "# written by novalite's scripts/setup_libvirt.sh" > "$QEMU_CONF"
    conf_changed=1
    say "created $QEMU_CONF"
fi
# set_conf KEY VALUE: one active `KEY = VALUE` line; comments and other keys untouched.
set_conf() {
    local key=$1 value=$2 line="$1 = $2"
    if grep -qxF "$line" "$QEMU_CONF" \
        && [ "$(grep -cE "^[[:space:]]*${key}[[:space:]]*=" "$QEMU_CONF")" -eq 1 ]; then
        return 0
    fi
    # drop every active setting of the key, then append ours
    sed -i -E "/^[[:space:]]*${key}[[:space:]]*=/d" "$QEMU_CONF"
    echo "$line" >> "$QEMU_CONF"
    conf_changed=1
    say "qemu.conf: $line"
}
set_conf user '"root"'
set_conf group '"root"'
set_conf security_driver '"none"'
set_conf dynamic_ownership 0
[ "$conf_changed" -eq 1 ] || say "qemu.conf already configured"

# 4. directories and daemons --------------------------------------------------------
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/qemu
running() { pgrep -x "$1" >/dev/null 2>&1; }
if ! running virtlogd; then
    virtlogd -d
    say "started virtlogd"
else
    say "virtlogd already running"
fi
if running libvirtd && [ "$conf_changed" -eq 1 ]; then
    # a running daemon read the old qemu.conf: restart it so the settings apply
    say "restarting libvirtd (qemu.conf changed)"
    pid=$(pgrep -xo libvirtd)
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
# libvirtd daemonizes its QEMU processes, so a guest that exits is reaped by PID 1. On
# machines whose PID 1 is not a real init (containers, micro-VMs: here it reaps about
# once a second), libvirt waits for that reaping on every destroy, shutdown and save:
# about 1.2 s each. A tiny subreaper (prctl PR_SET_CHILD_SUBREAPER) above libvirtd
# adopts those processes instead and reaps them at once; it exits with its last child.
REAPER='import ctypes, os, subprocess, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
rc = subprocess.call(["libvirtd", "-d"])
if rc:
    sys.exit(rc)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
'
start_libvirtd() {
    local reaper_py
    reaper_py=$(command -v python3 || true)
    if [ -n "$reaper_py" ]; then
        setsid "$reaper_py" -c "$REAPER" </dev/null >>/var/log/libvirt/novalite-reaper.log 2>&1 &
        for _ in $(seq 1 100); do running libvirtd && break; sleep 0.1; done
    else
        libvirtd -d
    fi
    say "started libvirtd"
}
if running libvirtd; then
    say "libvirtd already running"
fi
# wait until qemu:///system answers; (re)start libvirtd whenever it is not running
# (not started yet, or a previous one still shutting down when we looked)
ok=0
for _ in $(seq 1 150); do      # up to 30 s
    running libvirtd || start_libvirtd
    if virsh -c "$URI" version >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
done
[ "$ok" -eq 1 ] || die "libvirtd does not answer on $URI (see /var/log/libvirt/libvirtd.log)"
say "$URI answers ($(virsh -c "$URI" version 2>/dev/null | grep -i 'running hypervisor' | sed 's/.*: //'))"

# 5. libvirt-python -----------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON not found"
if "$PYTHON" -c "import libvirt" 2>/dev/null; then
    say "libvirt-python already importable from $PYTHON"
else
    say "building libvirt-python for $PYTHON (from source, against libvirt-dev)"
    # the binding must not be newer than the C library it builds against
    libver=$(pkg-config --modversion libvirt)
    "$PYTHON" -m pip install --disable-pip-version-check -q "libvirt-python<=${libver}"
    "$PYTHON" -c "import libvirt" || die "libvirt-python installed but does not import"
    say "libvirt-python installed"
fi

elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
say "ready in $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000))) s"
