"""Rendering the page's HTML, and the headers every answer of it carries.

Owns the Jinja environment (templates shipped in the package, autoescaping on
for every template, undefined names an error) and the security headers: a
Content-Security-Policy that allows no script at all and only the page's own
style sheet, no framing, no referrer to other sites, no caching.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:  # jinja2 is imported with the first page rendered, not at start
    import jinja2

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: under it a browser sends "Origin: null" with the page's own
    # forms, and the same-origin check could not tell them from a sandboxed frame's.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _when(value: object) -> str:
    """A time as the page shows it: UTC, to the second."""
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        return ""
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if at.tzinfo else "")


def _size(value: object) -> str:
    """A byte count for people."""
    if not isinstance(value, int):
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def environment() -> jinja2.Environment:
    """The page's templates, escaped by default."""
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("stockade.proxy.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["size"] = _size
    return env


class Templates:
    """The page's templates, built by ``environment`` on the first page rendered: a
    server whose page nobody opens never imports jinja2."""

    def __init__(self) -> None:
        self._env: jinja2.Environment | None = None

    @property
    def env(self) -> jinja2.Environment:
        if self._env is None:
            self._env = environment()
        return self._env


def html(templates: Templates, template: str, context: dict[str, Any], *,
         status: int = 200) -> web.Response:
    """``template`` rendered with ``context``, with the security headers."""
    body = templates.env.get_template(template).render(**context)
    return web.Response(status=status, text=body, content_type="text/html",
                        charset="utf-8", headers=SECURITY_HEADERS)
