"""SSH public keys, as Nova's key pairs hold them: checking an imported one,
its fingerprint, and making a new pair (ssh-keygen). Blocking (ssh-keygen)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from novalite import errors

# Nova's keypair name rule: letters, digits, spaces, '_', '-', '.', '@'
NAME_RE = re.compile(r"^[A-Za-z0-9 _.@-]{1,255}$")
PUBLIC_KEY_MAX = 16384
KEY_TYPES = frozenset({"ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                       "ecdsa-sha2-nistp521", "ssh-dss"})
SSH_KEYGEN = "ssh-keygen"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name != name.strip():
        raise errors.Invalid("name", "a key pair's name is 1..255 letters, digits, spaces, "
                                     "'_', '-', '.' or '@', without leading or trailing spaces")
    return name


def check_public_key(text: str) -> tuple[str, str]:
    """An OpenSSH one-line public key ("TYPE BASE64 [COMMENT]"): the key as stored
    (one line, no trailing newline) and its fingerprint. Invalid naming public_key
    when it is not one."""
    def bad(why: str) -> errors.Invalid:
        return errors.Invalid("public_key", f"not an OpenSSH public key: {why}")
    if not isinstance(text, str) or len(text) > PUBLIC_KEY_MAX:
        raise bad(f"at most {PUBLIC_KEY_MAX} characters")
    key = text.strip()
    if "\n" in key or "\r" in key or "\x00" in key:
        raise bad("one line only")
    parts = key.split(None, 2)
    if len(parts) < 2:
        raise bad("expected 'TYPE BASE64 [COMMENT]'")
    kind, body = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise bad(f"unknown key type {kind[:32]!r}; one of {', '.join(sorted(KEY_TYPES))}")
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise bad("its key is not base64") from None
    # the blob starts with its own type, length-prefixed (RFC 4253)
    if len(blob) < 4:
        raise bad("its key is truncated")
    (n,) = struct.unpack(">I", blob[:4])
    if blob[4:4 + n] != kind.encode():
        raise bad(f"its key is not of type {kind}")
    return key, fingerprint(blob)


def fingerprint(blob: bytes) -> str:
    """Nova's fingerprint: MD5 of the key's blob, as colon-separated hex."""
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def generate(comment: str) -> tuple[str, str]:
    """A new ed25519 key pair: (private key in OpenSSH's format, public key)."""
    tool = shutil.which(SSH_KEYGEN)
    if tool is None:
        raise errors.Unavailable("ssh-keygen not found: install openssh-client "
                                 "(scripts/setup_network.sh does)")
    with tempfile.TemporaryDirectory(prefix="novalite-keypair-") as tmp:
        path = Path(tmp) / "key"
        proc = subprocess.run([tool, "-q", "-t", "ed25519", "-N", "", "-C", comment,
                               "-f", str(path)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise errors.Unavailable(f"ssh-keygen failed: {proc.stderr.strip()}")
        return path.read_text(), path.with_suffix(".pub").read_text().strip()
