"""Hetzner's error envelope `{"error": {"code", "message", "details"}}` and the status of each code."""

from __future__ import annotations

from ..base import HttpError, Response

# The document's "Error Codes" table (the twin follows the official document, invalid_input = 422).
STATUS = {
    "json_error": 400, "invalid_input": 422, "unauthorized": 401, "forbidden": 403,
    "resource_limit_exceeded": 403, "not_found": 404, "method_not_allowed": 405, "uniqueness_error": 409,
    "conflict": 409, "resource_unavailable": 412, "service_error": 422, "unsupported_error": 422,
    "locked": 423, "protected": 423, "rate_limit_exceeded": 429, "server_error": 500, "bad_gateway": 502,
    "unavailable": 503, "timeout": 504,
}
# A bare status (e.g. an injected 5xx) gets the code Hetzner uses for it.
CODE_OF_STATUS = {500: "server_error", 502: "bad_gateway", 503: "unavailable", 504: "timeout",
                  404: "not_found", 405: "method_not_allowed", 501: "server_error", 400: "json_error"}


def api_error(code: str, message: str, details: dict | None = None, status: int | None = None,
              headers: dict | None = None) -> HttpError:
    """Raise-able error; operation-specific codes (`server_not_stopped`...) are 422 unless told."""
    return HttpError(status or STATUS.get(code, 422), message, {"code": code, "details": details},
                     headers=headers)


def invalid_input(fields: dict[str, list[str]]) -> HttpError:
    first = next(iter(fields), "input")
    message = f"invalid input in field '{first}': {'; '.join(fields.get(first, []))}"
    return api_error("invalid_input", message,
                     {"fields": [{"name": name, "messages": msgs} for name, msgs in fields.items()]})


def not_found(kind: str, ident: object) -> HttpError:
    return api_error("not_found", f"{kind} with ID '{ident}' not found")


def response(error: HttpError) -> Response:
    info = error.errors or {}
    code = info.get("code") or CODE_OF_STATUS.get(error.status, "server_error")
    body = {"error": {"code": code, "message": error.message, "details": info.get("details")}}
    return Response.json(body, status=error.status, headers=dict(error.headers))
