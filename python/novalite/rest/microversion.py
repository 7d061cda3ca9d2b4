"""Nova's API microversions: which one a request asks for
(``OpenStack-API-Version: compute 2.x`` or the legacy
``X-OpenStack-Nova-API-Version: 2.x``), and the version documents clients
discover them from.

novalite serves 2.1 to MAX_VERSION; what each microversion changes, and what of it
novalite has, is in docs/rest-api.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from novalite import errors

HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
SERVICE_TYPE = "compute"
_VERSION_RE = re.compile(r"^([1-9][0-9]*)\.(0|[1-9][0-9]*)$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> "Version":
        match = _VERSION_RE.match(text.strip())
        if match is None:
            raise errors.Invalid(HEADER, f"invalid API version {text[:32]!r}: expected "
                                         "MAJOR.MINOR, e.g. 2.1, or 'latest'")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, text: str) -> bool:
        return self >= Version.parse(text)


MIN_VERSION = Version(2, 1)
# The newest microversion served: 2.96 (pinned_availability_zone) would need the
# zone a server was asked for, which is not kept once it is placed.
MAX_VERSION = Version(2, 95)


class NotAcceptable(errors.NovaliteError):
    """A microversion outside what is served (Nova's 406)."""


def requested(headers: Mapping[str, str]) -> Version:
    """The microversion a request asks for; MIN_VERSION when it names none."""
    text = None
    value = headers.get(HEADER)
    if value is not None:
        for part in value.split(","):
            service, _, version = part.strip().partition(" ")
            if service.lower() == SERVICE_TYPE:
                text = version.strip()
    if text is None:
        text = headers.get(LEGACY_HEADER)
    if text is None:
        return MIN_VERSION
    if text.lower() == "latest":
        return MAX_VERSION
    asked = Version.parse(text)
    if not MIN_VERSION <= asked <= MAX_VERSION:
        raise NotAcceptable(f"Version {asked} is not supported by the API. Minimum is "
                            f"{MIN_VERSION} and maximum is {MAX_VERSION}.")
    return asked


def response_headers(version: Version) -> dict[str, str]:
    return {HEADER: f"{SERVICE_TYPE} {version}", LEGACY_HEADER: str(version),
            "Vary": f"{HEADER}, {LEGACY_HEADER}"}


# When the v2.1 API came, Nova's own documents say.
_UPDATED = "2013-07-23T11:33:21Z"


def version_document(base: str) -> dict[str, Any]:
    """GET /compute/v2.1: the one version and its range."""
    return {"version": _version(base, describe=True)}


def versions_document(base: str) -> dict[str, Any]:
    """GET /compute/: every version served (only v2.1)."""
    return {"versions": [_version(base, describe=False)]}


def _version(base: str, *, describe: bool) -> dict[str, Any]:
    links = [{"rel": "self", "href": f"{base}/v2.1/"}]
    out: dict[str, Any] = {"id": "v2.1", "status": "CURRENT", "version": str(MAX_VERSION),
                           "min_version": str(MIN_VERSION), "updated": _UPDATED, "links": links}
    if describe:
        links.append({"rel": "describedby", "type": "text/html",
                      "href": "https://docs.openstack.org/"})
        out["media-types"] = [{"base": "application/json",
                               "type": "application/vnd.openstack.compute+json;version=2.1"}]
    return out
