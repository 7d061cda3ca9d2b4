"""Domain errors -> HTTP status and error body, the one place for it: Nova's fault
JSON (``{"badRequest": {"code": 400, "message": ...}}``), Keystone's
(``{"error": {"code": 401, "title": "Unauthorized", "message": ...}}``) and
Glance's (``{"code": "404 Not Found", "title": "Not Found", "message": ...}``).

An unexpected exception is a 500 whose message gives only the request id (the log
has the traceback under it).
"""

from __future__ import annotations

from typing import Any

from novalite import errors
from novalite.rest.microversion import NotAcceptable

# Nova's faults by status (nova/api/openstack/wsgi.py); any other is a computeFault.
_NOVA_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit",
               415: "badMediaType", 429: "overLimit", 501: "notImplemented",
               503: "serviceUnavailable"}
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict",
           413: "Request Entity Too Large", 415: "Unsupported Media Type",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


class HttpError(errors.NovaliteError):
    """An error only HTTP has (no route, a method a route does not take, a body
    that is not JSON): its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a domain error; None for an unexpected exception."""
    if isinstance(exc, HttpError):
        return exc.status
    if isinstance(exc, errors.Invalid):
        return 400
    if isinstance(exc, errors.Unauthenticated):
        return 401
    # Nova answers a quota exceeded with 403 Forbidden
    if isinstance(exc, (errors.Forbidden, errors.QuotaExceeded)):
        return 403
    if isinstance(exc, errors.NotFound):
        return 404
    if isinstance(exc, NotAcceptable):
        return 406
    if isinstance(exc, (errors.InvalidState, errors.Conflict)):
        return 409
    if isinstance(exc, errors.Unavailable):
        return 503
    return None


def message_of(exc: BaseException) -> str:
    if isinstance(exc, errors.Invalid):
        return f"Invalid input for field/attribute {exc.field}. {exc.message}"
    return str(exc)


def title(status: int) -> str:
    return _TITLES.get(status, "Error")


def nova(status: int, message: str) -> dict[str, Any]:
    return {_NOVA_NAMES.get(status, "computeFault"): {"code": status, "message": message}}


def keystone(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "title": title(status), "message": message}}


def glance(status: int, message: str) -> dict[str, Any]:
    return {"code": f"{status} {title(status)}", "title": title(status), "message": message}


BODIES = {"compute": nova, "identity": keystone, "image": glance}
