"""Authentik's error answers (Django REST framework's): 400 `{"field": ["message"]}`, 403/404/405 `{"detail"}`."""

from __future__ import annotations

from ..base import HttpError, Response


def invalid(fields: dict) -> HttpError:
    """A 400 with DRF's ValidationError body (`fields` is the whole body)."""
    return HttpError(400, "validation error", {"body": fields})


def field(name: str, text: str) -> HttpError:
    return invalid({name: [text]})


def detail(status: int, text: str) -> HttpError:
    return HttpError(status, text, {"body": {"detail": text}})


def not_found(verbose: str) -> HttpError:
    """What Django's get_object_or_404 says, e.g. "No Group matches the given query."."""
    return detail(404, f"No {verbose} matches the given query.")


def not_authenticated() -> HttpError:
    return detail(403, "Authentication credentials were not provided.")


def bad_token() -> HttpError:
    return detail(403, "Token invalid/expired")


def response(error: HttpError) -> Response:
    body = (error.errors or {}).get("body")
    if body is None:
        if error.status == 501:  # the base's "known path, other method"
            error, body = HttpError(405, "not allowed"), {"detail": "Method not allowed."}
        else:
            body = {"detail": error.message}
    return Response.json(body, status=error.status, headers=dict(error.headers))
