"""The proxy's error tree; each error carries the sentence a client is shown.

ProxyError
 ├── RefusedError               the policy refuses it (403, the contract's refusal)
 ├── BadRequestError            malformed name or path (400)
 ├── NotFoundError              no such package or file (404)
 │    └── NotCachedError        offline, and never cached (404)
 └── UpstreamError              the upstream failed us (502 unless said)
      ├── UpstreamUnavailableError   cannot connect (502)
      │    └── UpstreamTLSError      the certificate did not verify (502)
      ├── UpstreamTimeoutError       no answer in time (504)
      ├── UpstreamStatusError        an unexpected HTTP status (502, 404 kept)
      ├── UpstreamRedirectError      too many redirects (502)
      ├── UpstreamBodyError          truncated or reset body (502)
      └── HostNotAllowedError        a URL outside the configured upstream (502)

Storage errors (``stockade.storage.errors``) and integrity failures are
rendered by the same middleware in ``responses``.
"""

from __future__ import annotations

from stockade.policy.model import Verdict


class ProxyError(Exception):
    """A request failed; ``status`` is the HTTP status the client gets."""

    status = 500

    def diagnostics(self) -> str:
        """The sentence shown to the client and the log."""
        return str(self)


class RefusedError(ProxyError):
    """The policy refuses the request; the verdict is the data, this ends the request.

    Raised by the admission path only, so no handler writes a refusal itself:
    ``responses`` turns it into the 403 that the route's clients print.
    """

    status = 403

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.refusal_phrase())
        self.verdict = verdict


class BadRequestError(ProxyError):
    """The client asked for something malformed."""

    status = 400


class NotFoundError(ProxyError):
    """The package or file does not exist."""

    status = 404


class NotCachedError(NotFoundError):
    """Offline, and the document or file was never cached."""


class UpstreamError(ProxyError):
    """The upstream could not give us what we need."""

    status = 502

    def __init__(self, message: str, *, upstream: str = "") -> None:
        super().__init__(message)
        self.upstream = upstream


class UpstreamUnavailableError(UpstreamError):
    """Connecting to the upstream failed (refused, DNS, TLS)."""


class UpstreamTLSError(UpstreamUnavailableError):
    """The upstream's certificate did not verify."""


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


class UpstreamRedirectError(UpstreamError):
    """The upstream redirected more often than any registry needs."""


class UpstreamBodyError(UpstreamError):
    """The upstream's body ended early or the connection was reset."""


class HostNotAllowedError(UpstreamError):
    """A URL points to a host that belongs to no configured upstream."""


class IntegrityError(ProxyError):
    """The upstream's bytes do not match what its metadata promised."""

    status = 502
