"""One pagination for every list of the API.

Two modes, one response shape:

- **cursor** (the default): the list is ordered by time, newest first
  (``-created_at, -id`` unless the view sets ``pagination_ordering``), and
  ``next`` / ``previous`` are links carrying an opaque ``cursor``. Stable while
  rows are added, and cheap at any depth: no count, no offset.
- **page** (when ``page`` is given, as the old system's lists took it):
  ``?page=2&pageSize=50`` in the same order, with the exact ``count``. A page
  past the end is an empty ``results`` with ``next: null``.

Parameters: ``cursor``; ``page`` (1..1,000,000); ``page_size`` or the old
``pageSize`` (1..1000, default 50). A value out of bounds, not a number, both
``page`` and ``cursor``, ``pageSize`` and ``page_size`` together, or a cursor
this list did not give is a 400 naming the parameter, never a silent clamp.

Response::

    {"mode": "cursor" | "page", "next": url | null, "previous": url | null,
     "count": int | null, "page": int | null, "page_size": int, "results": [...]}

``count`` and ``page`` are null in cursor mode. Use it with
``pagination_class = ApiPagination``; a list whose rows are not ordered by time
sets ``pagination_ordering = ("ticker", "id")`` (any unique ordering).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from etl.api.request_policy import PolicyValidationError, snake_name

MAX_PAGE = 1_000_000
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
# Every name a list's query string may use for paging (in our casing; the old camelCase is read too).
QUERY_PARAMS = ("cursor", "page", "page_size")


def _bounded(request, names: Sequence[str], *, low: int, high: int) -> tuple[str, int] | None:
    """(name as given, value) of the one parameter among `names` (any casing), or None."""
    given = [key for key in request.query_params if snake_name(key) in names]
    if len(given) > 1:
        raise PolicyValidationError(
            {
                given[1]: [
                    gettext("'%(first)s' and '%(second)s' are the same parameter given twice: give it once")
                    % {"first": given[0], "second": given[1]}
                ]
            },
            api_code="given_twice",
        )
    if not given:
        return None
    name = given[0]
    raw = request.query_params.get(name, "").strip()
    # isascii: "¹60".isdigit() is true, and int() refuses it (schemathesis found the 500)
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        message = gettext("%(name)s: must be a whole number from %(low)s to %(high)s, got %(raw)s") % {
            "name": name,
            "low": low,
            "high": high,
            "raw": repr(raw),
        }
        raise PolicyValidationError({name: [message]})
    return name, int(raw)


class ApiPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = DEFAULT_PAGE_SIZE
    max_page_size = MAX_PAGE_SIZE
    page_size_query_param = "page_size"
    page_query_param = "page"

    def paginate_queryset(self, queryset, request, view=None):
        self.mode = "cursor"
        self.page_number: int | None = None
        self.count: int | None = None
        page = _bounded(request, ("page",), low=1, high=MAX_PAGE)
        if page is not None and request.query_params.get(self.cursor_query_param):
            raise PolicyValidationError(
                {page[0]: [gettext("%(name)s: give either page or cursor, not both") % {"name": page[0]}]},
                api_code="given_twice",
            )
        if page is None:
            return super().paginate_queryset(queryset, request, view)
        return self._page_slice(queryset, request, view, page[1])

    def _page_slice(self, queryset, request, view, number: int) -> list[Any]:
        self.mode = "page"
        self.request = request
        self.page_number = number
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        self.count = queryset.count()
        start = (number - 1) * self.page_size
        self.page = list(queryset.order_by(*self.ordering)[start : start + self.page_size])
        return self.page

    def decode_cursor(self, request):
        """DRF answers a cursor it cannot read with a 404; it is bad input in a query parameter: a 400 naming it."""
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise PolicyValidationError(
                {
                    self.cursor_query_param: [
                        gettext("cursor: not a cursor this list gave (use a next or previous link)")
                    ]
                }
            ) from None

    def get_page_size(self, request) -> int:
        given = _bounded(request, ("page_size",), low=1, high=self.max_page_size)
        return given[1] if given else self.page_size

    def get_ordering(self, request, queryset, view) -> tuple[str, ...]:
        ordering = getattr(view, "pagination_ordering", None) or self.ordering
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)

    def get_next_link(self) -> str | None:
        if self.mode == "cursor":
            return super().get_next_link()
        if self.page_number * self.page_size >= self.count:
            return None
        return replace_query_param(self.base_url, self.page_query_param, self.page_number + 1)

    def get_previous_link(self) -> str | None:
        if self.mode == "cursor":
            return super().get_previous_link()
        if self.page_number <= 1:
            return None
        last = max(1, -(-self.count // self.page_size))  # a page past the end points back to the last one
        return replace_query_param(self.base_url, self.page_query_param, min(self.page_number - 1, last))

    def get_paginated_response(self, data) -> Response:
        return Response(
            {
                "mode": self.mode,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "count": self.count,
                "page": self.page_number,
                "page_size": self.page_size,
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["mode", "next", "previous", "count", "page", "page_size", "results"],
            "properties": {
                "mode": {"type": "string", "enum": ["cursor", "page"], "description": "page when `page` was given"},
                "next": {**link, "description": "the following page; null on the last"},
                "previous": {**link, "description": "the page before; null on the first"},
                "count": {"type": "integer", "nullable": True, "description": "every row (page mode only)"},
                "page": {"type": "integer", "nullable": True, "description": "this page's number (page mode only)"},
                "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        size = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE}
        return [
            {
                "name": self.cursor_query_param,
                "in": "query",
                "required": False,
                "description": "Opaque position from a `next` or `previous` link (cursor mode, the default).",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_query_param,
                "in": "query",
                "required": False,
                "description": "Page number, as the old system took it: switches to page mode (with `count`).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
            },
            {
                "name": "page_size",
                "in": "query",
                "required": False,
                "description": "Rows per page.",
                "schema": size,
            },
            {
                "name": "pageSize",
                "in": "query",
                "required": False,
                "description": "The old system's name for `page_size` (give one of the two).",
                "schema": size,
            },
        ]
