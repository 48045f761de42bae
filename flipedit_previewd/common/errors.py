"""Errors that know their HTTP status, and the domain's own errors mapped to one.

HTTP handlers raise ``HTTPError``s; the domain (timeline validation, media paths) raises
``DomainError``s that know nothing of HTTP. The single boundary (``app.routes.Routes.handle``) turns both
into responses through ``as_http``, so status codes are decided in one place and never by
ad-hoc string matching.
"""

from __future__ import annotations

from typing import Any, overload


class HTTPError(Exception):
    """Each kind names its status and reason in its class line: ``class NotFound(HTTPError, status=404, "
    "reason=...)``."""

    status = 500
    reason = "internal error"

    def __init_subclass__(cls, status: int = 0, reason: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = status or cls.status
        cls.reason = reason or cls.reason

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, "detail": self.detail, **self.extra}


class BadRequest(HTTPError, status=400, reason="bad request"): ...


class Unauthorized(HTTPError, status=401, reason="unauthorized"): ...


class Forbidden(HTTPError, status=403, reason="forbidden"): ...


class NotFound(HTTPError, status=404, reason="not found"): ...


class MethodNotAllowed(HTTPError, status=405, reason="method not allowed"):
    def __init__(self, detail: str = "", allow: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.allow = allow  # sent as the Allow header (RFC 9110 15.5.6), not in the body


class RequestTimeout(HTTPError, status=408, reason="request timeout"): ...


class Misdirected(HTTPError, status=421, reason="misdirected request"): ...


class PayloadTooLarge(HTTPError, status=413, reason="payload too large"): ...


class URITooLong(HTTPError, status=414, reason="uri too long"): ...


class Unprocessable(HTTPError, status=422, reason="unprocessable content"): ...


class HeaderFieldsTooLarge(HTTPError, status=431, reason="request header fields too large"): ...


class RenderFailed(HTTPError, status=500, reason="render failed"): ...


class Overloaded(HTTPError, status=503, reason="overloaded"):
    """Admission refused: which limit, and when to come back."""

    def __init__(self, limit: str, retry_after: int, detail: str = "") -> None:
        super().__init__(detail or f"{limit} limit reached", limit=limit, retry_after=retry_after)
        self.limit = limit
        self.retry_after = retry_after


class VersionNotSupported(HTTPError, status=505, reason="http version not supported"): ...


class GatewayTimeout(HTTPError, status=504, reason="render timed out"): ...


# --- the domain's errors: no HTTP here; ``as_http`` maps them at the boundary ------------


class DomainError(Exception):
    """A rule of the domain was broken; ``extra`` (e.g. ``field``) says where."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class TimelineInvalid(DomainError):
    """A JSON timeline is malformed or out of range (the client's mistake: 400)."""


class PathRefused(DomainError):
    """A media path is outside the allowed roots (refused: 403)."""


class ProjectRefused(DomainError):
    """A project database a request names (not the one served) cannot be used: not a regular file, a symlink,
    not a FlipEdit database, over a limit, rows that break the rules (the request's mistake: 422)."""


_STATUS_OF: tuple[tuple[type[DomainError], type[HTTPError]], ...] = (
    (TimelineInvalid, BadRequest),
    (PathRefused, Forbidden),
    (ProjectRefused, Unprocessable),
)


@overload
def as_http(exc: HTTPError | DomainError) -> HTTPError: ...
@overload
def as_http(exc: BaseException) -> HTTPError | None: ...
def as_http(exc: BaseException) -> HTTPError | None:
    """The HTTP error to answer ``exc`` with; None when it is neither an HTTP nor a domain error."""
    if isinstance(exc, HTTPError):
        return exc
    for domain, http in _STATUS_OF:
        if isinstance(exc, domain):
            return http(exc.detail, **exc.extra)
    if isinstance(exc, DomainError):
        return BadRequest(exc.detail, **exc.extra)
    return None
