"""How an option is declared: once, as a dataclass field with its default and its
help. The settings (novalite.settings) read the type from the annotation and the
environment variable from the name; `novalite config show` prints all four with the
value in force and where it came from."""

from __future__ import annotations

from dataclasses import MISSING, Field, field
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def option(default: Any = MISSING, *, help: str, factory: Callable[[], Any] | None = None) -> Any:
    """A field with ``default`` (or ``factory`` for a mutable one) and ``help``."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def help_of(f: Field[Any]) -> str:
    """The help an option was declared with ("" for a field that is not an option)."""
    return str(f.metadata.get("help", ""))
