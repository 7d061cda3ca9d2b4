#!/usr/bin/env bash
# Installs what novalite needs, idempotently: a virtualenv in .venv with the
# package (the Rust core built by maturin, release mode) and its test tools; and,
# as root, the system parts: libvirt + QEMU (real guests) and a private PostgreSQL
# server for the tests. Re-running it only rebuilds or restarts what changed.
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
# quiet, but keep errors
pipq() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
stamp="$VENV/.deps-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python dependencies"
    pipq --upgrade pip
    pipq "maturin>=1.5,<2"
    # the project's own dependencies and test extras, without building it yet
    "$VENV/bin/python" - <<'PY' > "$VENV/requirements.txt"
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = p["dependencies"] + [d for extra in p.get("optional-dependencies", {}).values() for d in extra]
print("\n".join(deps))
PY
    pipq -r "$VENV/requirements.txt"
    touch "$stamp"
fi
echo "setup: building the placement core (cargo, release)"
# maturin develop installs the package editable into the venv; cargo only rebuilds on change
VIRTUAL_ENV="$PWD/$VENV" PATH="$PWD/$VENV/bin:$PATH" maturin develop --release --quiet
"$VENV/bin/python" -c "import novalite._placement" || { echo "setup: the placement core did not build" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then
    PYTHON="$VENV/bin/python" scripts/setup_libvirt.sh
    VENV="$VENV" scripts/setup_postgres.sh
else
    echo "setup: not root: skipping libvirt/QEMU and PostgreSQL (run 'sudo make setup' for them;" \
         "the tests that need them fail without them unless NOVALITE_SKIP_QEMU=1)" >&2
fi
echo "setup: ready ($VENV)"
