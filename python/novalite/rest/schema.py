"""Request bodies and query strings, read field by field: each accessor checks
the type and bounds of one field and raises errors.Invalid naming its path
("server.flavorRef", "auth.identity.password.user.name"), so a malformed request
gets a 400 that says what to fix, before anything is written."""

from __future__ import annotations

import builtins
from typing import Any, Iterable, Mapping, NoReturn

from novalite import errors

_MISSING = object()


class Body:
    """A JSON object of a request, at ``path`` ("" for the top)."""

    def __init__(self, value: object, path: str = "") -> None:
        if not isinstance(value, dict):
            self._fail(path or "body", "must be a JSON object")
        self.value: dict[str, Any] = value
        self.path = path

    @staticmethod
    def _fail(field: str, message: str) -> NoReturn:
        raise errors.Invalid(field, message)

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def __contains__(self, key: str) -> bool:
        return key in self.value

    def keys(self) -> Iterable[str]:
        return self.value.keys()

    def only(self, *allowed: str) -> "Body":
        """Refuse keys other than ``allowed`` (Nova's additionalProperties: false)."""
        extra = sorted(set(self.value) - set(allowed))
        if extra:
            self._fail(self.at(extra[0]), "is not a known field here (additional properties "
                                          "are not allowed)")
        return self

    def raw(self, key: str, *, required: bool = False) -> Any:
        value = self.value.get(key, _MISSING)
        if value is _MISSING:
            if required:
                self._fail(self.at(key), "is required")
            return None
        return value

    def obj(self, key: str, *, required: bool = False) -> "Body | None":
        value = self.raw(key, required=required)
        return None if value is None and not required else Body(value, self.at(key))

    def str(self, key: str, *, required: bool = False, max_len: int = 255, min_len: int = 1,
            nullable: bool = False) -> builtins.str | None:
        value = self.raw(key, required=required)
        if value is None and (key not in self.value or nullable):
            return None
        if not isinstance(value, str):
            self._fail(self.at(key), f"must be a string, got {_kind(value)}")
        if not min_len <= len(value) <= max_len:
            self._fail(self.at(key), f"must be {min_len} to {max_len} characters, got {len(value)}")
        return value

    def int(self, key: builtins.str, *, required: builtins.bool = False,
            minimum: builtins.int | None = None, maximum: builtins.int | None = None,
            text: builtins.bool = True) -> builtins.int | None:
        """An integer; as Nova's schemas, a string of digits too when ``text``."""
        value = self.raw(key, required=required)
        if value is None and key not in self.value:
            return None
        return as_int(self.at(key), value, minimum=minimum, maximum=maximum, text=text)

    def bool(self, key: builtins.str, *, required: builtins.bool = False) -> builtins.bool | None:
        value = self.raw(key, required=required)
        if value is None and key not in self.value:
            return None
        return as_bool(self.at(key), value)

    def str_map(self, key: builtins.str, *,
                max_items: builtins.int = 128) -> dict[builtins.str, builtins.str] | None:
        """An object of strings to strings (metadata, extra specs, properties)."""
        value = self.raw(key)
        if value is None and key not in self.value:
            return None
        if not isinstance(value, dict):
            self._fail(self.at(key), f"must be an object, got {_kind(value)}")
        if len(value) > max_items:
            self._fail(self.at(key), f"at most {max_items} entries, got {len(value)}")
        for k, v in value.items():
            if not isinstance(v, str):
                self._fail(f"{self.at(key)}.{k}", f"must be a string, got {_kind(v)}")
        return dict(value)


def as_int(field: str, value: object, *, minimum: int | None = None,
           maximum: int | None = None, text: bool = True) -> int:
    if isinstance(value, str) and text and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.Invalid(field, f"must be an integer, got {_kind(value)}")
    if minimum is not None and value < minimum:
        raise errors.Invalid(field, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise errors.Invalid(field, f"must be <= {maximum}, got {value}")
    return value


_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def as_bool(field: str, value: object) -> bool:
    """A boolean, or its spelling in a string (oslo's strict bool_from_string)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise errors.Invalid(field, f"must be a boolean, got {_kind(value)}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


class Query:
    """A request's query string: each parameter once, every one known."""

    def __init__(self, params: Mapping[str, str], multi: Mapping[str, list[str]]) -> None:
        self.params = dict(params)
        self.multi = multi

    def only(self, *allowed: str) -> "Query":
        extra = sorted(set(self.params) - set(allowed))
        if extra:
            raise errors.Invalid(extra[0], "is not a query parameter novalite knows here")
        return self

    def get(self, key: str) -> str | None:
        return self.params.get(key)

    def int(self, key: str, *, minimum: int | None = None,
            maximum: int | None = None) -> int | None:
        value = self.params.get(key)
        return None if value is None else as_int(key, value, minimum=minimum, maximum=maximum)

    def bool(self, key: str) -> bool | None:
        value = self.params.get(key)
        return None if value is None else as_bool(key, value)
