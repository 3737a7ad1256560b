"""The typed, frozen settings model.

Owns the shape of the configuration and its defaults. Loading from YAML,
environment and flags is ``stockade.config.load``'s job; nothing here reads
files or the environment.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PositiveSeconds = Annotated[float, Field(gt=0)]



def _http_url(value: str) -> SplitResult:
    """``value`` split, if it is an http or https URL with a host.

    Raises:
        ValueError: it is not.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {value!r}")
    return parts

class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemoryBlobSettings(_Frozen):
    """Small stored blobs kept in memory, once verified, and served from there.

    A blob is taken in when it is first served warm (its bytes hashed as they are
    read); each later request checks the file's identity (inode, size, mtime,
    ctime) with one ``stat``, so a blob changed on disk is still caught. Once
    dropped, a blob is read for each answer without a hash, and not held, while
    that identity holds (within ``storage.verify_on_read_trust_s``).
    """

    # Bytes of blobs held in memory per process, least recently used dropped first
    # (0: none: every blob is served from its file).
    max_bytes: int = Field(default=32 * 1024**2, ge=0)
    # Larger blobs are always served from their file (sendfile).
    max_blob_bytes: int = Field(default=1024**2, ge=0)


class AccelRedirectSettings(_Frozen):
    """Front-server mode: a stored artifact is answered with ``X-Accel-Redirect``
    naming its file under ``prefix``, and the front server (nginx) sends the bytes.

    stockade still decides every request (policy, verification); only the sending
    of a verified file it found moves. The front server maps ``prefix`` onto
    ``storage.path`` as an internal location (see README).
    """

    prefix: str = Field(default="/_stockade_blobs/", pattern=r"^/([A-Za-z0-9._~-]+/)+$")


class TlsSettings(_Frozen):
    """TLS on the listening side: TLS 1.2 and later only, files reloaded when changed."""

    cert: Path | None = None  # PEM certificate chain
    key: Path | None = None  # PEM private key
    # PEM bundle of CAs whose client certificates are accepted; set: a client must
    # present one (mutual TLS), unset: none is asked for.
    client_ca: Path | None = None
    # Seconds between checks of the three files for changes.
    reload_check_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together")
        if self.client_ca is not None and self.cert is None:
            raise ValueError("tls.client_ca needs tls.cert and tls.key")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert is not None


class ServerSettings(_Frozen):
    """Where the proxy listens and what it accepts from clients."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    client_max_size_bytes: int = Field(default=1024 * 1024, gt=0)
    access_log: bool = True
    shutdown_timeout_s: PositiveSeconds = 10.0
    # A new connection must send its first request's headers within this time.
    header_timeout_s: PositiveSeconds = 20.0
    # An idle keep-alive connection (or one slowly sending a later request's
    # headers) is closed after this; keep it above a load balancer's idle timeout.
    keepalive_timeout_s: PositiveSeconds = 75.0
    # A client that takes none of its response for this long is cut off.
    send_timeout_s: PositiveSeconds = 60.0
    # Open connections from one address; more are answered 503 and closed.
    # null: no limit (behind a load balancer every connection has its address).
    max_connections_per_client: int | None = Field(default=128, gt=0)
    # The base of the absolute URLs stockade writes into metadata (npm tarballs,
    # the PyPI JSON API), e.g. https://stockade.example.com/. Unset: each request's
    # own Host (or, from a trusted proxy, its X-Forwarded-Host).
    public_url: str | None = None
    # TLS on the listening socket (see TlsSettings); unset: plain HTTP.
    tls: TlsSettings = TlsSettings()
    # Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-Proto and
    # X-Forwarded-Host are believed; anyone else's are ignored.
    trusted_proxies: tuple[str, ...] = ()

    # This replica's name in shared storage and logs; None: the host name.
    # Two processes on one host sharing a bucket must set different names.
    replica: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    # Worker processes serving the same port; None: one per CPU core, 1: a single
    # process (no supervisor).
    workers: int | None = Field(default=None, ge=1, le=256)
    # Documents of 4 MiB and more parsed or rendered at once by the whole server
    # (every worker process): memory grows with this, not with the documents asked.
    render_slots: int = Field(default=1, ge=1, le=64)
    # true: never contact an upstream. Cached metadata is served however old,
    # cached artifacts as usual; anything not cached fails at once with 404.
    offline: bool = False
    # Verified small blobs served from memory (see MemoryBlobSettings).
    memory_blobs: MemoryBlobSettings = MemoryBlobSettings()
    # Bytes each worker process's in-memory caches hold together (metadata documents,
    # rendered documents, small blobs, the warm memo, parsed documents, estimated);
    # past it the cache holding the most for its own bound drops its least recently
    # used entries. Each cache's own bound still applies (0: nothing held in memory).
    # A worker holds some 70 MiB of its own (code, the policy's name indexes) besides;
    # under a wide load, what the interpreter's allocator keeps after the churn adds
    # more than this (README: "One memory budget per worker"). 8 MiB keeps one worker
    # within 100 MiB under a load of many different small files.
    memory_budget_bytes: int = Field(default=8 * 1024**2, ge=0)
    # Seconds a warm artifact request's outcome (its decisions' facts, the metadata
    # versions, the stored blob) is reused by identical requests; each is still
    # decided by the policy in force and its blob checked (0: off; README).
    warm_memo_s: float = Field(default=1.0, ge=0, le=60)
    # A warm memo's hit on an idle kept-alive connection answered below aiohttp's
    # request handling, with the same answer, log line and metrics (README).
    fast_path: bool = True
    # Opt-in: let a front server (nginx) send stored artifacts' bytes; null: off.
    accel_redirect: AccelRedirectSettings | None = None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = _http_url(value)
        if parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError(f"public_url is scheme://host[:port]/ only: {value!r}")
        return value.rstrip("/") + "/"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an address or network: {entry!r}") from exc
        return value


class S3Settings(_Frozen):
    """An S3-compatible bucket holding blobs and the records replicas share.

    Credentials are read at start from the environment variables named here;
    where they are not set, the standard AWS chain (``AWS_*`` variables, the
    shared credentials and config files, instance or pod roles) is used.
    """

    bucket: str = Field(default="stockade", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    # Prepended to every key; a trailing "/" is added when missing.
    prefix: str = ""
    endpoint_url: str | None = None  # None: AWS; else e.g. http://127.0.0.1:9000
    addressing_style: Literal["path", "virtual"] = "path"
    region: str | None = None
    access_key_id_env: str | None = "AWS_ACCESS_KEY_ID"
    secret_access_key_env: str | None = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 (a name)
    # Bound of the local hot cache of blobs under storage.path; None: unbounded.
    cache_max_bytes: int | None = Field(default=None, gt=0)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.lstrip("/")
        return value if not value or value.endswith("/") else value + "/"

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            _http_url(value)
        return value


class StorageSettings(_Frozen):
    """Where bytes rest and how many of them may."""

    # filesystem: blobs and records under path. s3: blobs and shared records
    # in the bucket; path holds the local hot cache, spool files and the
    # per-replica metadata cache.
    backend: Literal["filesystem", "s3"] = "filesystem"
    path: Path = Path("./stockade-data")
    s3: S3Settings = S3Settings()
    # Total size of artifact blobs; least recently used blobs are evicted past it.
    max_bytes: int | None = Field(default=None, gt=0)
    # Largest single artifact accepted from an upstream.
    max_artifact_bytes: int = Field(default=8 * 1024**3, gt=0)
    # Largest metadata document (index page, packument) held in memory to rewrite.
    max_metadata_bytes: int = Field(default=128 * 1024**2, gt=0)
    # Below this many free bytes on the file system under ``path``, /readyz
    # answers 503 so traffic moves to a replica with room (0: no minimum).
    min_free_bytes: int = Field(default=1024**3, ge=0)
    # Blobs up to this size are re-hashed each time they are served; one whose
    # bytes no longer match is deleted and fetched again (0: never).
    verify_on_read_max_bytes: int = Field(default=1024 * 1024, ge=0)
    # A blob hashed right on read is trusted, without hashing, while its file is
    # unchanged (size, mtime, ctime, inode), for at most this long (0: hash every read).
    verify_on_read_trust_s: float = Field(default=3600.0, ge=0)
    # Blobs larger than verify_on_read_max_bytes are re-hashed in the background,
    # one at a time, each this often (0: never); one that fails is removed, so the
    # next request fetches it again.
    rehash_interval_s: float = Field(default=86400.0, ge=0)
    # The background re-hash reads at most this many bytes a second.
    rehash_max_bytes_per_s: int = Field(default=32 * 1024**2, gt=0)


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
    # After this upstream (one origin of it: its url or a file host) could not be
    # reached at all (connection refused or timed out, no such host), that origin is
    # not asked again for this long: requests meanwhile are answered from the cache
    # (stale-if-error) or fail at once (0: always ask). A refused connection is not
    # retried; any answer from the origin ends the window.
    unreachable_retry_s: float = Field(default=10.0, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = _http_url(value)
        if any(c.isspace() or not c.isprintable() or c == "\\" for c in value):
            raise ValueError("an upstream URL has no spaces, backslashes or control "
                             f"characters: {value!r}")
        _ = parts.port  # raises ValueError for a port that is not a number in 0-65535
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


class BundleSettings(_Frozen):
    """A signed policy bundle pulled from a TUF repository (``stockade bundle``).

    ``url`` is the repository's base: its ``metadata/`` and ``targets/`` are
    under it. ``trusted_root`` is the repository's first root metadata
    (``1.root.json``), given to the replica out of band.
    """

    url: str
    interval: PositiveSeconds = 300.0  # seconds between checks for a new bundle
    trusted_root: Path
    target: str = Field(default="bundle.tar.gz", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith("file:"):
            _http_url(value)
        return value if value.endswith("/") else value + "/"


class PolicySettings(_Frozen):
    """Where the reviewed policy file lives, and where decisions are recorded."""

    file: Path | None = None
    # Append-only, hash-chained record of every refusal and audit hit;
    # default: decisions.jsonl under storage.path.
    decision_log: Path | None = None
    # Name of an environment variable holding a key: the decision log's
    # checkpoint (its head record count and hash) is then signed with HMAC-SHA256,
    # so whoever can rewrite the log cannot also forge its anchor.
    decision_log_key_env: str | None = None
    # Seconds between checks of the policy file for changes (0: only on SIGHUP).
    reload_check_s: float = Field(default=5.0, ge=0)
    # Pull the policy as a signed bundle; it replaces ``file`` once one is applied.
    bundle: BundleSettings | None = None


class OsvSyncSettings(_Frozen):
    """Where ``stockade osv sync`` (and the server, with ``interval``) fetches OSV data.

    ``url`` is laid out as osv.dev's bucket: ``<url>/<Ecosystem>/all.zip``.
    """

    url: str = "https://osv-vulnerabilities.storage.googleapis.com/"
    ecosystems: tuple[Literal["PyPI", "npm", "Maven"], ...] = ("PyPI", "npm", "Maven")
    # The folder the exports are written to; None: the first folder of the
    # policy's rules.osv.paths (which must then list one).
    path: Path | None = None
    # Seconds between syncs by the running server; None: only `stockade osv sync`.
    interval: PositiveSeconds | None = None
    max_bytes: int = Field(default=4 * 1024**3, gt=0)  # largest export accepted
    read_timeout_s: PositiveSeconds = 300.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _http_url(value)
        return value if value.endswith("/") else value + "/"


class WebhookSettings(_Frozen):
    """Where notifications of newly refused artifacts are POSTed (JSON).

    Each body is signed with HMAC-SHA256 under the secret read from the
    environment variable ``secret_env``: the header
    ``X-Stockade-Signature: sha256=<hex>``.
    """

    url: str
    secret_env: str | None = None
    # Fetches this far back are named in a notification (seconds; default 30 days).
    window: PositiveSeconds = 30 * 86400.0
    max_attempts: int = Field(default=6, ge=1, le=50)
    retry_base_s: PositiveSeconds = 1.0  # back-off doubles from this, up to retry_max_s
    retry_max_s: PositiveSeconds = 300.0
    max_queue: int = Field(default=10_000, gt=0)  # notifications waiting; more are dropped
    timeout_s: PositiveSeconds = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _http_url(value)
        return value


class ServedSettings(_Frozen):
    """The record of which artifact versions were served to whom (``inventory``)."""

    # Days of the record kept; older day files are deleted (at start and daily).
    retention_days: int = Field(default=400, gt=0)


class NotifySettings(_Frozen):
    """Who is told when intel or policy newly refuses what was already served."""

    webhook: WebhookSettings | None = None
    # Distinct artifact versions re-decided per change (the most recently served first).
    max_artifacts: int = Field(default=50_000, gt=0)


class UiSettings(_Frozen):
    """The web page for platform teams at ``/_stockade/ui/``."""

    enabled: bool = True
    # Name of an environment variable holding the key that signs the page's
    # anti-CSRF tokens; unset: a random key per process (a form must then be
    # sent back to the replica that served it).
    csrf_key_env: str | None = None
    # Rows per page of the refusals and cache lists.
    page_size: int = Field(default=50, gt=0, le=1000)


class AnonymousAccess(_Frozen):
    """Which route groups answer a request that carries no credential."""

    pypi: bool = True
    npm: bool = True
    maven: bool = True
    explain: bool = True  # the explain API under /_stockade/explain/
    metrics: bool = True  # /metrics
    ui: bool = True  # viewing /_stockade/ui/ (its actions always need an admin token)
    admin: bool = False  # the admin API (reload, purge, approvals): never anonymous by default


class AuthSettings(_Frozen):
    """Client and admin tokens (see the README's "Access" section)."""

    # The file of hashed tokens that ``stockade token create`` writes; None: no
    # tokens, every request is anonymous (and allowed where ``anonymous`` says).
    tokens: Path | None = None
    anonymous: AnonymousAccess = AnonymousAccess()
    # Seconds between checks of the tokens file for changes.
    reload_check_s: float = Field(default=2.0, gt=0)


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
    osv: OsvSyncSettings = OsvSyncSettings()
    notify: NotifySettings = NotifySettings()
    served: ServedSettings = ServedSettings()
    logging: LoggingSettings = LoggingSettings()
    ui: UiSettings = UiSettings()
    auth: AuthSettings = AuthSettings()
