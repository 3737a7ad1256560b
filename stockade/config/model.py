"""The typed, frozen settings model.

Owns the shape of the configuration and its defaults. Loading from YAML,
environment and flags is ``stockade.config.load``'s job; nothing here reads
files or the environment.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PositiveSeconds = Annotated[float, Field(gt=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(_Frozen):
    """Where the proxy listens and what it accepts from clients."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    client_max_size_bytes: int = Field(default=1024 * 1024, gt=0)
    access_log: bool = True
    shutdown_timeout_s: PositiveSeconds = 10.0
    # true: never contact an upstream. Cached metadata is served however old,
    # cached artifacts as usual; anything not cached fails at once with 404.
    offline: bool = False


class StorageSettings(_Frozen):
    """Where bytes rest and how many of them may."""

    path: Path = Path("./stockade-data")
    # Total size of artifact blobs; least recently used blobs are evicted past it.
    max_bytes: int | None = Field(default=None, gt=0)
    # Largest single artifact accepted from an upstream.
    max_artifact_bytes: int = Field(default=8 * 1024**3, gt=0)
    # Largest metadata document (index page, packument) held in memory to rewrite.
    max_metadata_bytes: int = Field(default=128 * 1024**2, gt=0)
    # Blobs up to this size are re-hashed each time they are served; one whose
    # bytes no longer match is deleted and fetched again (0: never).
    verify_on_read_max_bytes: int = Field(default=1024 * 1024, ge=0)


class UpstreamAuth(_Frozen):
    """Credentials for one upstream, read from the environment at start.

    Only the names of environment variables live in the config file, so the
    file can be reviewed and committed without secrets.
    """

    token_env: str | None = None
    username_env: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> UpstreamAuth:
        if self.token_env and (self.username_env or self.password_env):
            raise ValueError("use either token_env or username_env/password_env")
        if bool(self.username_env) != bool(self.password_env):
            raise ValueError("username_env and password_env go together")
        return self


_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, lower-case host, port


def url_origin(url: str) -> Origin | None:
    """The (scheme, host, port) of an http(s) URL, the port made explicit; None when
    ``url`` is not http(s) or has no host or a bad port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def file_host_origins(entry: str, *, upstream_scheme: str) -> frozenset[Origin]:
    """The origins one ``file_hosts`` entry allows (see ``UpstreamSettings``).

    Raises:
        ValueError: the entry is neither a host nor an http(s) origin.
    """
    if "://" in entry:
        origin = url_origin(entry)
        parts = urlsplit(entry)
        if origin is None or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"a file host is a host or scheme://host[:port]: {entry!r}")
        return frozenset({origin})
    parts = urlsplit(f"//{entry}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1 or parts.path or parts.username:
        raise ValueError(f"a file host is a host or scheme://host[:port]: {entry!r}")
    host = parts.hostname.lower()
    schemes = ("https", "http") if upstream_scheme == "http" else ("https",)
    return frozenset((s, host, port or _DEFAULT_PORTS[s]) for s in schemes)


class UpstreamSettings(_Frozen):
    """One upstream registry of an ecosystem."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    url: str
    # Name patterns this upstream owns (fnmatch style: "acme-*", "@acme/*",
    # "com.acme.*"). A name matching one is served by this upstream only.
    namespaces: tuple[str, ...] = ()
    # Where besides the url's own scheme, host and port the files named in its
    # metadata may be fetched from. "scheme://host[:port]" allows exactly that
    # origin (the port defaults to the scheme's). A bare "host" (or "host:port")
    # allows https on that port (default 443), and also http (default 80) when the
    # url itself is plain http: a file host never downgrades an https upstream.
    # The url's own host on another port or scheme is not allowed unless listed.
    file_hosts: tuple[str, ...] = ()
    auth: UpstreamAuth | None = None
    connect_timeout_s: PositiveSeconds = 10.0
    read_timeout_s: PositiveSeconds = 60.0
    retries: int = Field(default=2, ge=0, le=10)
    max_connections: int = Field(default=32, gt=0)
    verify_tls: bool = True
    # true: never contact this upstream; serve what is cached from it (as
    # server.offline does for every upstream).
    offline: bool = False
    # After this upstream could not be reached at all (connection refused or timed
    # out, no such host), it is not asked again for this long: requests meanwhile
    # are answered from the cache (stale-if-error) or fail at once (0: always ask).
    unreachable_retry_s: float = Field(default=10.0, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {value!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"an upstream URL takes no query or fragment: {value!r}")
        return value if value.endswith("/") else value + "/"

    @field_validator("file_hosts")
    @classmethod
    def _file_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            file_host_origins(entry, upstream_scheme="https")  # raises on a bad entry
        return value

    @property
    def origins(self) -> frozenset[Origin]:
        """Every (scheme, host, port) this upstream's documents and files may come from."""
        own = url_origin(self.url)
        assert own is not None  # the url validator guarantees it
        scheme = own[0]
        return frozenset({own}).union(
            *(file_host_origins(h, upstream_scheme=scheme) for h in self.file_hosts))

    @property
    def internal(self) -> bool:
        """An upstream that owns namespaces is an internal one."""
        return bool(self.namespaces)

    def owns(self, name: str) -> bool:
        """True when ``name`` (already normalised) falls in one of its namespaces."""
        return any(fnmatch.fnmatchcase(name, pat.lower()) for pat in self.namespaces)


class CacheSettings(_Frozen):
    """How long metadata stays fresh and how long stale copies may stand in."""

    metadata_ttl_s: PositiveSeconds = 300.0
    # An index page older than the TTL is revalidated; if the upstream then
    # fails, a copy up to this old is served instead of an error.
    stale_if_error_s: PositiveSeconds = 7 * 24 * 3600.0
    # An upstream 404 (a missing checksum file, POM or npm package) is remembered
    # this long before it is asked again; while the upstream is down a remembered
    # 404 is served for up to stale_if_error_s.
    negative_ttl_s: PositiveSeconds = 300.0


class EcosystemSettings(_Frozen):
    """The upstreams of one ecosystem, in order."""

    upstreams: tuple[UpstreamSettings, ...] = ()
    cache: CacheSettings = CacheSettings()

    @model_validator(mode="after")
    def _unique(self) -> EcosystemSettings:
        names = [u.name for u in self.upstreams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"upstream names must be unique, repeated: {dupes}")
        return self


class MavenSettings(EcosystemSettings):
    """Maven upstreams, and what to do where Maven repositories differ in trust."""

    # An artifact whose upstream publishes no .sha512/.sha256/.sha1 beside it:
    # warn (serve it, log and count it) or block (refuse it with 502).
    missing_checksum: Literal["warn", "block"] = "warn"
    # SNAPSHOT versions change under the same name: refuse them, or proxy them
    # uncached for immutability (metadata and files revalidated each time).
    snapshots: Literal["refuse", "proxy"] = "refuse"


def _public(name: str, url: str, *file_hosts: str) -> tuple[UpstreamSettings, ...]:
    return (UpstreamSettings(name=name, url=url, file_hosts=file_hosts),)


class PolicySettings(_Frozen):
    """Where the reviewed policy file lives, and where decisions are recorded."""

    file: Path | None = None
    # Append-only, hash-chained record of every refusal and audit hit;
    # default: decisions.jsonl under storage.path.
    decision_log: Path | None = None
    # Seconds between checks of the policy file for changes (0: only on SIGHUP).
    reload_check_s: float = Field(default=5.0, ge=0)


class LoggingSettings(_Frozen):
    """Log level and format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_logs: bool = Field(default=True, alias="json")


class Settings(_Frozen):
    """Everything stockade is configured with; built once, passed down."""

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    pypi: EcosystemSettings = EcosystemSettings(
        upstreams=_public("pypi", "https://pypi.org/simple/", "files.pythonhosted.org")
    )
    npm: EcosystemSettings = EcosystemSettings(
        upstreams=_public("npmjs", "https://registry.npmjs.org/")
    )
    maven: MavenSettings = MavenSettings(
        upstreams=_public("central", "https://repo.maven.apache.org/maven2/")
    )
    policy: PolicySettings = PolicySettings()
    logging: LoggingSettings = LoggingSettings()
