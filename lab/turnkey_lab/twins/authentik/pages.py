"""The twin's HTML pages: login, consent, errors, logged out. Plain forms with stable ids a browser driver
(and a test posting with requests) can find: #login-form with inputs uid_field/password and
#login-submit; #consent-form with #consent-accept. A stage page renders its stage again shortly after it
loads, as Authentik's flow executor (a single-page app) renders the stage it fetched: an element a browser
driver found before that is gone (stale), and what was typed into it is lost. Until then the stage is there but
hidden, as the executor's stage is while it loads: an element found that early cannot be typed into or clicked
("element not interactable")."""

from __future__ import annotations

from html import escape

from ..base import Response

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main id="flow" data-flow="{flow}"{hidden}><h1>{title}</h1>
{content}
</main>{script}</body></html>
"""

# The flow executor's second render, 150 ms after load: the same markup, new elements, typed values gone, and the
# stage shown (hidden while it loaded).
_RERENDER = """<script>setTimeout(function () {
  var stage = document.getElementById("flow"); stage.innerHTML = stage.innerHTML; stage.style.visibility = "visible";
}, 150);</script>"""


def page(title: str, content: str, flow: str = "", status: int = 200, headers: dict | None = None,
         stage: bool = False) -> Response:
    body = _PAGE.format(title=escape(title), content=content, flow=escape(flow),
                        hidden=' style="visibility: hidden"' if stage else "", script=_RERENDER if stage else "")
    return Response(status, body.encode(), "text/html; charset=utf-8", headers or {})


def login(pending: str, flow: str, message: str = "") -> Response:
    error = f'<p id="login-error" role="alert">{escape(message)}</p>' if message else ""
    content = f"""{error}<form id="login-form" method="post" action="/application/o/authorize/">
<input type="hidden" name="pending" value="{escape(pending)}">
<label for="uid_field">Username or Email</label>
<input id="uid_field" name="uid_field" type="text" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="login-submit" type="submit">Log in</button>
</form>"""
    return page("Welcome to authentik!", content, flow, stage=True)


def consent(pending: str, flow: str, app_name: str, permissions: list[str]) -> Response:
    items = "".join(f"<li>{escape(p)}</li>" for p in permissions)
    content = f"""<p id="consent-app">{escape(app_name)} would like to:</p><ul id="consent-permissions">{items}</ul>
<form id="consent-form" method="post" action="/application/o/authorize/">
<input type="hidden" name="pending" value="{escape(pending)}">
<input type="hidden" name="consent" value="yes">
<button id="consent-accept" type="submit">Continue</button>
</form>"""
    return page(f"Redirecting to {app_name}", content, flow, stage=True)


def error(title: str, message: str, status: int = 400) -> Response:
    return page(title, f'<p id="flow-error">{escape(message)}</p>', status=status)


def logged_out(app_name: str, headers: dict) -> Response:
    return page(f"You've logged out of {app_name}.", '<p id="logged-out">You have been logged out.</p>',
                "default-provider-invalidation-flow", headers=headers)
