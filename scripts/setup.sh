#!/usr/bin/env bash
# Installs what novalite needs, idempotently: a virtualenv in .venv with the
# package (the Rust core built by maturin, release mode) and its test tools; and,
# as root, the system parts: libvirt + QEMU (real guests, with libvirt-python, the
# package's `libvirt` extra, built against them) and a private PostgreSQL server for
# the tests; the guests' networks (scripts/setup_network.sh: a bridge and a dnsmasq
# each) and the bootable guest image built from Debian's packages
# (scripts/build_guest_image.sh, into $VENV/guest); whether KVM works here
# (novalite.virt.accel: a guest booted once under it). Re-running it only rebuilds or
# restarts what changed, in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required but not installed" >&2; exit 1; }; }
need "$PYTHON"
need cargo

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
root=0
[ "$(id -u)" -ne 0 ] || root=1
if [ "$root" -eq 1 ]; then
    # first the system packages: libvirt-python (the `libvirt` extra) builds against them
    PYTHON="$VENV/bin/python" scripts/setup_libvirt.sh
    scripts/setup_network.sh
    scripts/build_guest_image.sh "$VENV/guest"
fi
# quiet, but keep errors
pipq() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
stamp="$VENV/.deps-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python dependencies into $VENV (a minute or two the first time)"
    pipq --upgrade pip
    pipq "maturin>=1.5,<2"
    # the project's own dependencies and test extras, without building it yet
    "$VENV/bin/python" - <<'PY' > "$VENV/requirements.txt"
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
# every extra but libvirt, which scripts/setup_libvirt.sh installs at the version of the C library
extras = {k: v for k, v in p.get("optional-dependencies", {}).items() if k != "libvirt"}
deps = p["dependencies"] + [d for extra in extras.values() for d in extra]
print("\n".join(deps))
PY
    pipq -r "$VENV/requirements.txt"
    touch "$stamp"
fi
echo "setup: building the placement core (cargo, release: about a minute the first time, seconds after)"
# maturin develop installs the package editable into the venv; cargo only rebuilds on
# change. Its chatter (pip's "Requirement already satisfied"...) goes to a log.
if ! VIRTUAL_ENV="$PWD/$VENV" PATH="$PWD/$VENV/bin:$PATH" maturin develop --release --quiet \
        >"$VENV/build.log" 2>&1; then
    tail -n 30 "$VENV/build.log" >&2
    echo "setup: error: building the placement core failed (the whole log: $VENV/build.log)" >&2
    exit 1
fi
"$VENV/bin/python" -c "import novalite._placement" || { echo "setup: the placement core did not build" >&2; exit 1; }
if [ "$root" -eq 1 ]; then
    # whether real guests may use KVM here (compute.virt_type auto): the guest image
    # booted once under KVM, ~12 s where it hangs; kept, and a re-run reads it back
    "$VENV/bin/python" -m novalite.virt.accel probe "$VENV/guest/current"
    VENV="$VENV" scripts/setup_postgres.sh
else
    echo "setup: not root: skipping libvirt/QEMU and PostgreSQL (run 'sudo make setup' for them;" \
         "the tests that need them fail without them unless NOVALITE_SKIP_QEMU=1)" >&2
fi
echo "setup: ready ($VENV)"
