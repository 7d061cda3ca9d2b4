"""Domain errors of the control plane.

Plain Python: managers and the database raise these, and one server interceptor
maps them to gRPC status codes (docs/control-plane.md), so no module below the
servicers needs to know about grpc.
"""

from __future__ import annotations

from typing import Iterable


class NovaliteError(Exception):
    """Base of every domain error."""


class NotFound(NovaliteError):
    """The thing asked for does not exist (or the caller may not see it)."""


class Invalid(NovaliteError):
    """Bad input; ``field`` names the offending request field. Nothing was written."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.field, self.message))


class Forbidden(NovaliteError):
    """The caller is known but its roles do not allow this."""


class Unauthenticated(NovaliteError):
    """No credentials, or credentials that are expired, malformed or forged."""


class Conflict(NovaliteError):
    """The write lost a race or clashes with existing state; re-read and retry."""


class GenerationConflict(Conflict):
    """A resource provider's generation moved since the caller read it: another
    writer changed its inventory or allocations. Refresh that provider and retry."""

    def __init__(self, provider_uuid: str, expected: int | None = None) -> None:
        super().__init__(
            f"resource provider {provider_uuid} changed concurrently"
            + (f" (expected generation {expected})" if expected is not None else ""))
        self.provider_uuid = provider_uuid
        self.expected = expected

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.provider_uuid, self.expected))


class CapacityExceeded(Conflict):
    """An allocation does not fit: used + amount would exceed
    int((total - reserved) * allocation_ratio), the amount breaks min_unit,
    max_unit or step_size, or the provider has no inventory of that class."""

    def __init__(self, provider_uuid: str, resource_class: str, amount: int, reason: str) -> None:
        super().__init__(
            f"cannot allocate {amount} {resource_class} on resource provider "
            f"{provider_uuid}: {reason}")
        self.provider_uuid = provider_uuid
        self.resource_class = resource_class
        self.amount = amount
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.provider_uuid, self.resource_class, self.amount, self.reason))


class QuotaExceeded(NovaliteError):
    """The project's quota on ``resource`` leaves no room for ``requested`` more."""

    def __init__(self, resource: str, requested: int, limit: int, in_use: int) -> None:
        super().__init__(
            f"quota exceeded for {resource}: requested {requested}, "
            f"{in_use} of {limit} in use")
        self.resource = resource
        self.requested = requested
        self.limit = limit
        self.in_use = in_use

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.resource, self.requested, self.limit, self.in_use))


class InvalidState(NovaliteError):
    """The thing exists but is not in a state that allows this operation."""


class NoValidHost(NovaliteError):
    """The scheduler found no host for (all of) a request.

    ``rejections`` lists, in the order the checks ran, how many hosts each check
    removed: ``(check, hosts)`` with check a Nova filter name or "Placement".
    ``instance_index`` is the index of the instance that could not be placed.
    ``missing`` says, one sentence each, which required trait the hosts lack (or
    forbidden trait they have) when the trait checks removed hosts.
    """

    def __init__(self, reason: str, rejections: Iterable[tuple[str, int]] = (),
                 instance_index: int = 0, missing: Iterable[str] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rejections: list[tuple[str, int]] = [(str(c), int(n)) for c, n in rejections]
        self.instance_index = int(instance_index)
        self.missing: list[str] = [str(m) for m in missing]

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason, self.rejections, self.instance_index, self.missing))


class Unavailable(NovaliteError):
    """A service this request depends on cannot be reached now; retrying later may work."""


class BuildFailed(Exception):
    """A guest could not be built on the host tried; the message says why. Not a
    domain error of a request but an outcome the conductor acts on: it releases that
    host's allocation and tries the next alternate."""


class ComputeResourcesUnavailable(BuildFailed):
    """Nova's: the compute agent's local claim failed, the host has no room for the
    server (the scheduler's view was stale)."""


class GroupAffinityViolation(BuildFailed):
    """Nova's: the compute agent's late check found that building the server on
    this host would break its server group's policy (two builds raced past the
    scheduler). The conductor tries the next alternate, as Nova reschedules; it
    is not counted as the host's failed build."""
