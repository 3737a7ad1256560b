"""The proxy's error tree; each error carries the sentence a client is shown.

ProxyError
 ├── BadRequestError            malformed name or path (400)
 ├── NotFoundError              no such package or file (404)
 └── UpstreamError              the upstream failed us (502 unless said)
      ├── UpstreamUnavailableError   cannot connect, TLS failure (502)
      ├── UpstreamTimeoutError       no answer in time (504)
      ├── UpstreamStatusError        an unexpected HTTP status (502, 404 kept)
      ├── UpstreamBodyError          truncated or reset body (502)
      └── HostNotAllowedError        a URL outside the configured upstream (502)

Storage errors (``stockade.storage.errors``) and integrity failures are
rendered by the same middleware in ``responses``.
"""

from __future__ import annotations


class ProxyError(Exception):
    """A request failed; ``status`` is the HTTP status the client gets."""

    status = 500

    def diagnostics(self) -> str:
        """The sentence shown to the client and the log."""
        return str(self)


class BadRequestError(ProxyError):
    """The client asked for something malformed."""

    status = 400


class NotFoundError(ProxyError):
    """The package or file does not exist."""

    status = 404


class UpstreamError(ProxyError):
    """The upstream could not give us what we need."""

    status = 502

    def __init__(self, message: str, *, upstream: str = "") -> None:
        super().__init__(message)
        self.upstream = upstream


class UpstreamUnavailableError(UpstreamError):
    """Connecting to the upstream failed (refused, DNS, TLS)."""


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer in time."""

    status = 504


class UpstreamStatusError(UpstreamError):
    """The upstream answered with a status we cannot use."""

    def __init__(self, message: str, *, upstream: str = "", upstream_status: int) -> None:
        super().__init__(message, upstream=upstream)
        self.upstream_status = upstream_status
        if upstream_status in (404, 410):
            self.status = 404


class UpstreamBodyError(UpstreamError):
    """The upstream's body ended early or the connection was reset."""


class HostNotAllowedError(UpstreamError):
    """A URL points to a host that belongs to no configured upstream."""


class IntegrityError(ProxyError):
    """The upstream's bytes do not match what its metadata promised."""

    status = 502
