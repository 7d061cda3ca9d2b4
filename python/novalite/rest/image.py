"""Glance v2's read subset: the version document, images listed and shown with
their properties, so that clients resolve an image by name (``openstack server
create --image NAME``). Images are registered with ``novalite image create``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from novalite import errors
from novalite.api.manager import MAX_PAGE_SIZE
from novalite.rest import convert
from novalite.rest.app import Call, Routes, blocking, reply

routes = Routes("image")

_IMAGES = "/novalite.compute.v1.Images/"
# Glance's v2 releases up to the one whose reads this follows.
_RELEASES = ("2.9", "2.8", "2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0")


@routes.get("", None)
@routes.get("/", None)
async def versions(call: Call) -> web.StreamResponse:
    return reply({"versions": [
        {"id": f"v{v}", "status": "CURRENT" if i == 0 else "SUPPORTED",
         "links": [{"rel": "self", "href": f"{call.root}/image/v2/"}]}
        for i, v in enumerate(_RELEASES)]}, status=300)


@routes.get("/v2/images", _IMAGES + "ListImages")
async def list_images(call: Call) -> web.StreamResponse:
    q = call.query.only("limit", "marker", "name", "status", "visibility", "id", "sort_key",
                        "sort_dir", "member_status", "os_hidden", "tag", "owner")
    if q.get("sort_key") not in (None, "name") or q.get("sort_dir") not in (None, "asc"):
        raise errors.Invalid("sort_key", "novalite lists images by name only")
    # every image here is active, public, visible, untagged and owned by none
    if q.get("status") not in (None, "active") or q.get("visibility") not in (
            None, "public", "all") or q.get("member_status") not in (None, "accepted", "all") \
            or q.bool("os_hidden") or q.get("tag") is not None or q.get("owner") is not None:
        return reply({"images": [], "first": "/v2/images", "schema": "/v2/schemas/images"})
    limit = q.int("limit", minimum=1)
    names, ids = _one_of(q.get("name")), _one_of(q.get("id"))
    filtered = names is not None or ids is not None
    page = await blocking(call.managers.api.list_images, call.caller,
                          page_size=MAX_PAGE_SIZE if filtered else limit or MAX_PAGE_SIZE,
                          marker=q.get("marker"))
    items = [i for i in page.items if (names is None or i.name in names)
             and (ids is None or i.id in ids)]
    body: dict[str, Any] = {"images": [convert.image(i, admin=call.caller.is_admin)
                                       for i in items],
                            "first": "/v2/images", "schema": "/v2/schemas/images"}
    if page.next_page_token and items and not filtered:
        body["next"] = f"/v2/images?marker={items[-1].id}" + (f"&limit={limit}" if limit else "")
    return reply(body)


def _one_of(value: str | None) -> set[str] | None:
    """A filter's values: Glance's "in:a,b" operator, or one value."""
    if value is None:
        return None
    return set(value[3:].split(",")) if value.startswith("in:") else {value}


@routes.get("/v2/images/{image_id}", _IMAGES + "GetImage")
async def show_image(call: Call) -> web.StreamResponse:
    image = await blocking(call.managers.api.get_image, call.caller, call.param("image_id"))
    return reply(convert.image(image, admin=call.caller.is_admin))
