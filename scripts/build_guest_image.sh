#!/usr/bin/env bash
# Builds novalite's guest image from Debian's own packages, idempotently: a Linux
# kernel (linux-image-cloud-amd64), an initramfs with busybox (busybox-static), the
# kernel modules a guest needs (virtio net and block, ISO 9660 for the config drive,
# the ACPI power button) and our /init (scripts/guest/init), and a small qcow2 root
# disk (ext4). Nothing is downloaded but Debian's packages.
#
#   scripts/build_guest_image.sh [OUT_DIR]      (default: .venv/guest)
#
# OUT_DIR/current/ gets vmlinuz, initrd.img, disk.qcow2 and manifest.json (what was
# built from which packages, each file's size and md5: Glance's checksum). A re-run
# with the same inputs (this script, the init, the packages apt would choose) only
# checks (about a second). Changed inputs are built into a directory of their own
# (OUT_DIR/<inputs>/) that `current` then points at: images registered from an
# older build keep their files, and the guests' disks their backing file.
#
# Register it through the API (`novalite image create-guest OUT_DIR`), then boot
# servers from it: they run under QEMU's software emulation (TCG).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-${VENV:-.venv}/guest}
INIT=scripts/guest/init
DISK_MB=64
say() { echo "build_guest_image: $*"; }
die() { echo "build_guest_image: error: $*" >&2; exit 1; }
start_ns=$(date +%s%N)

# tools, from packages the setup installs (scripts/setup_network.sh lists them)
for tool in dpkg-deb apt-get gzip mkfs.ext4 qemu-img md5sum sha256sum; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "'$tool' is missing (packages: dpkg, apt, gzip, e2fsprogs, qemu-utils); run scripts/setup.sh as root"
done

# The quick check: the same script and init, and apt's package lists unchanged since
# the last build or check (their directory changes at every apt-get update), cannot
# choose other packages.
sources=$(sha256sum "$0" "$INIT" | awk '{print $1}' | tr '\n' ' ')
quick="$sources$(stat -c %Y /var/lib/apt/lists 2>/dev/null || echo none)"
if [ -f "$OUT/current/manifest.json" ] && [ "$(cat "$OUT/current/.checked" 2>/dev/null)" = "$quick" ]; then
    say "up to date in $OUT/current (same sources, same package lists)"
    exit 0
fi

# which packages: the kernel is linux-image-cloud-amd64's dependency (the versioned
# package holds the files)
candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}'; }
kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
             | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
if [ -z "$kernel_pkg" ]; then
    say "apt knows no linux-image-cloud-amd64: updating the package lists (apt-get update)"
    apt-get update -qq >/dev/null || die "'apt-get update' failed"
    kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
                 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$kernel_pkg" ] || die "no linux-image-cloud-amd64 in the apt sources (Debian 12's bookworm main has it)"
kernel_version=$(candidate "$kernel_pkg")
busybox_version=$(candidate busybox-static)
[ -n "$kernel_version" ] && [ -n "$busybox_version" ] \
    || die "apt has no candidate for $kernel_pkg or busybox-static ('apt-cache policy $kernel_pkg busybox-static')"

inputs=$(printf '%s\n' "$kernel_pkg=$kernel_version" "busybox-static=$busybox_version" \
             "$(sha256sum "$0" "$INIT" | awk '{print $1}')" | sha256sum | cut -c1-16)
if [ -f "$OUT/$inputs/manifest.json" ] && [ "$(readlink "$OUT/current")" = "$inputs" ]; then
    echo "$quick" > "$OUT/current/.checked"
    say "up to date in $OUT/current ($kernel_pkg $kernel_version, busybox $busybox_version)"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/novalite-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
say "downloading $kernel_pkg $kernel_version and busybox-static $busybox_version (apt-get download)"
# apt's sandbox user cannot write to our temporary directory: download as root there
(cd "$work" && apt-get download -q -o APT::Sandbox::User=root \
     "$kernel_pkg=$kernel_version" "busybox-static=$busybox_version" >/dev/null 2>"$work/apt.log") \
    || { cat "$work/apt.log" >&2; die "'apt-get download $kernel_pkg busybox-static' failed"; }
mkdir -p "$work/kernel" "$work/busybox"
dpkg-deb -x "$work/${kernel_pkg}"_*.deb "$work/kernel"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"
kver=${kernel_pkg#linux-image-}
modules="$work/kernel/lib/modules/$kver/kernel"
[ -d "$modules" ] || die "$kernel_pkg has no lib/modules/$kver"

# the initramfs: busybox, our init, the modules and the order to load them in
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,root,mnt,lib/modules}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
cp "$INIT" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"
depends() {  # a module's dependencies, from its .modinfo section (no kmod needed)
    tr '\0' '\n' < "$1" | sed -n 's/^depends=//p' | tr ',' ' '
}
declare -A placed=()
order=()
add_module() {  # add_module NAME: its dependencies first, then itself
    local name=$1 file dep
    [ -z "${placed[$name]:-}" ] || return 0
    file=$(find "$modules" -name "$name.ko" -print -quit)
    [ -n "$file" ] || die "module $name not found in $kernel_pkg"
    placed[$name]=1
    for dep in $(depends "$file"); do add_module "$dep"; done
    cp "$file" "$root/lib/modules/$name.ko"
    order+=("$name.ko")
}
for m in virtio_pci virtio_net virtio_blk isofs button evdev; do add_module "$m"; done
printf '%s\n' "${order[@]}" > "$root/lib/modules/load-order"
(cd "$root" && find . | "$work/busybox/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -9) \
    > "$work/initrd.img"

# the root disk: a small ext4 file system (the init counts its boots there)
mkdir -p "$work/disk"
echo "novalite guest disk: the init appends a line to 'boots' at every boot" > "$work/disk/README"
truncate -s "${DISK_MB}M" "$work/disk.raw"
mkfs.ext4 -q -L novalite-root -d "$work/disk" "$work/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"

new="$OUT/$inputs"
rm -rf "$new"
mkdir -p "$new"
cp "$work/kernel/boot/vmlinuz-$kver" "$new/vmlinuz"
cp "$work/initrd.img" "$work/disk.qcow2" "$new/"
entry() { printf '"%s": {"size": %d, "md5": "%s"}' "$1" "$(stat -c %s "$new/$1")" \
              "$(md5sum "$new/$1" | cut -d' ' -f1)"; }
cat > "$new/manifest.json" <<EOF
{"inputs": "$inputs", "kernel_package": "$kernel_pkg", "kernel_version": "$kernel_version",
 "busybox_version": "$busybox_version", "modules": "$(echo "${order[*]}")",
 "files": {$(entry vmlinuz), $(entry initrd.img), $(entry disk.qcow2)}}
EOF
# point `current` at it in one step (a symlink renamed over the old one)
ln -sfn "$inputs" "$OUT/current.new"
mv -T "$OUT/current.new" "$OUT/current"
echo "$quick" > "$OUT/current/.checked"
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
say "built in $OUT/current in $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000))) s" \
    "($kernel_pkg $kernel_version, busybox $busybox_version; modules: ${order[*]})"
