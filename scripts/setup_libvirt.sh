#!/usr/bin/env bash
# Installs and starts what real QEMU guests under libvirt need on this machine
# (Debian 12, root, no systemd, no D-Bus), idempotently: on a fresh machine it does
# everything; on a re-run it only checks (about a second) and says so.
#
#   sudo PYTHON=.venv/bin/python scripts/setup_libvirt.sh [--dry-run]
#
# --dry-run: print what step 1 would install, downgrade or remove (apt's own plan,
# `apt-get -s`) and change nothing. DPKG_ADMINDIR (dpkg's own variable) points dpkg
# and apt at another package database: the tests use it to replay a fresh image.
#
# Steps (see ../shared/reference/libvirt-here.md, where each one was verified):
#   1. Debian packages, only those missing (apt-get update first if any is), every
#      package of QEMU at one release: qemu-system-x86's (see QEMU's release below).
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
DRY_RUN=0
case "${1:-}" in
    "") ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup_libvirt: error: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

say() { echo "setup_libvirt: $*"; }
die() { echo "setup_libvirt: error: $*" >&2; exit 1; }
start_ns=$(date +%s%N)

[ "$(id -u)" -eq 0 ] || die "must run as root (packages, users, daemons); try: sudo PYTHON=$PYTHON $0"

# 1. packages ---------------------------------------------------------------------
# QEMU's release. Every package built from QEMU's source must be of one release:
# qemu-utils newer than 8.0 Breaks the qemu-system-common that Debian 12's
# qemu-system-x86 7.2 needs, and today's image ships qemu-utils 10 from
# bookworm-backports, so a plain `apt-get install qemu-system-x86 qemu-utils` ends in
# "held broken packages". We bring every QEMU package to the release of the
# qemu-system-x86 that the machine's own apt sources give (Debian 12's 7.2), with a
# downgrade where needed, rather than take qemu-system-x86 from backports: libvirt 9.0,
# the one Debian 12 has, is built and tested against QEMU 7.2, every guest recipe of
# libvirt-here.md was verified on 7.2, and bookworm-backports is not among the image's
# apt sources (its qemu-utils came from a .deb): adding a source would change the
# machine's apt configuration for everything else it installs.
APT_OPTS=()
if [ -n "${DPKG_ADMINDIR:-}" ]; then
    [ -f "$DPKG_ADMINDIR/status" ] || die "DPKG_ADMINDIR=$DPKG_ADMINDIR has no status file"
    APT_OPTS=(-o "Dir::State::status=$DPKG_ADMINDIR/status")
fi
installed_version() {  # the installed version of package $1, or nothing
    dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null | awk '$1 == "installed" {print $2}' || true
}
candidate_version() {  # what `apt-get install $1` would install, or nothing
    apt-cache "${APT_OPTS[@]}" policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}' || true
}
release() {  # a version without its binNMU suffix: qemu-system-data (all) is 7.2-7+deb12u18
    echo "${1%+b[0-9]*}"       # while qemu-system-x86 (amd64), of the same build, is ...u18+b2
}
version_at_release() {  # the version of package $1 the apt sources have at release $2
    apt-cache "${APT_OPTS[@]}" madison "$1" 2>/dev/null | awk -F' [|] ' '{print $2}' \
        | while read -r v; do [ "$(release "$v")" = "$2" ] && { echo "$v"; break; }; done || true
}
apt_log=$(mktemp /tmp/novalite-setup-apt.XXXXXX)
trap 'rm -f "$apt_log"' EXIT
apt_run() {  # apt-get with our options; on failure, its last lines and the command
    if ! DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" "$@" >"$apt_log" 2>&1; then
        tail -n 15 "$apt_log" | sed 's/^/    /' >&2
        die "'apt-get $*' failed (above: apt's last lines)"
    fi
}

# plan: sets target (QEMU's release: qemu-system-x86's installed version, else the one
# apt would install), missing (packages not installed), mismatched (QEMU packages
# installed of another release) and wanted (what to hand apt-get install: every
# package, the QEMU ones pinned to the target, the mismatched ones too)
plan() {
    target=$(installed_version qemu-system-x86)
    [ -n "$target" ] || target=$(candidate_version qemu-system-x86)
    [ -n "$target" ] || return 0
    wanted=() missing=() mismatched=()
    local p pkg version source status
    for p in "${PACKAGES[@]}"; do
        case "$p" in qemu-*) wanted+=("$p=$target") ;; *) wanted+=("$p") ;; esac
        [ -n "$(installed_version "$p")" ] || missing+=("$p")
    done
    while read -r pkg version source status; do
        [ "$source" = qemu ] && [ "$status" = installed ] || continue
        [ "$(release "$version")" != "$(release "$target")" ] || continue
        mismatched+=("$pkg $version")
    done < <(dpkg-query -W -f='${Package} ${Version} ${source:Package} ${db:Status-Status}\n' 2>/dev/null)
}
check_mismatched() {  # each mismatched package must exist at the target release
    local m v
    for m in "${mismatched[@]}"; do
        set -- $m
        v=$(version_at_release "$1" "$(release "$target")")
        [ -n "$v" ] \
            || die "$1 $2 is installed, and the apt sources have no $1 of QEMU $target to match" \
                   "qemu-system-x86; remove it ('apt-get remove $1') or make $1 of that release" \
                   "available, then run this again"
        say "$1 $2 is of another QEMU release than qemu-system-x86 $target: it goes to $v"
        case " ${PACKAGES[*]} " in *" $1 "*) ;; *) wanted+=("$1=$v") ;; esac
    done
}
target="" wanted=() missing=() mismatched=()
plan
updated=0
if [ -z "$target" ]; then
    say "apt knows no qemu-system-x86: updating the package lists (apt-get update)"
    apt_run update
    updated=1
    plan
    [ -n "$target" ] || die "no qemu-system-x86 in the apt sources (see 'apt-cache policy qemu-system-x86');" \
                            "Debian 12's (bookworm main) has it"
fi
if [ ${#missing[@]} -eq 0 ] && [ ${#mismatched[@]} -eq 0 ]; then
    say "packages already installed (QEMU $target)"
    [ "$DRY_RUN" -eq 0 ] || { say "dry run: nothing to install; the later steps are not simulated"; exit 0; }
else
    if [ "$updated" -eq 0 ] && [ "$DRY_RUN" -eq 0 ]; then
        # a fresh image's lists are months old: their versions may be gone from the mirror
        say "updating the package lists (apt-get update)"
        apt_run update
        plan
    fi
    check_mismatched
    [ ${#missing[@]} -eq 0 ] || say "installing ${missing[*]} (QEMU $target)"
    # all the packages, not only the missing ones, so that apt resolves the whole set;
    # no recommends: dnsmasq, bridges, AppArmor profiles... are not used here
    if [ "$DRY_RUN" -eq 1 ]; then
        apt_run install -s --no-install-recommends --allow-downgrades "${wanted[@]}"
        say "apt-get install --no-install-recommends --allow-downgrades ${wanted[*]} would:"
        grep -E '^(Inst|Remv) ' "$apt_log" | sed 's/^/    /' || true
        say "dry run: nothing changed"
        exit 0
    fi
    apt_run install -y --no-install-recommends --allow-downgrades "${wanted[@]}"
    plan
    [ ${#missing[@]} -eq 0 ] && [ ${#mismatched[@]} -eq 0 ] \
        || die "after apt-get install, still missing: ${missing[*]:-none}; of another QEMU release: ${mismatched[*]:-none}"
    say "packages installed (QEMU $target)"
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
