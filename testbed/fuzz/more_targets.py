"""Fuzz targets of the files and headers read beside the registry protocols: the
tokens file, the approvals file, ``Authorization`` and ``X-Forwarded-*``.

Registered in ``targets.TARGETS`` with the others (each check raises only on a
broken property, as there).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import yaml
from aiohttp.test_utils import make_mocked_request
from hypothesis import strategies as st
from yarl import URL

from stockade.config.model import ServerSettings
from stockade.policy import approvals
from stockade.policy.names import valid
from stockade.proxy import tokens as tk
from stockade.proxy.auth import presented_token
from stockade.proxy.origin import origin
from stockade.proxy.responses import host_problem
from testbed.fuzz import strategies as s


def _clean(text: str) -> bool:
    return all(c.isprintable() and not c.isspace() for c in text)


# --- the tokens file ---------------------------------------------------------------

_ids = s.near(st.from_regex(r"[0-9a-f]{8}", fullmatch=True))
_token_names = s.near(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,10}", fullmatch=True))
_token_docs = st.fixed_dictionaries({}, optional={"tokens": s.maybe(st.lists(
    st.fixed_dictionaries(
        {"id": s.maybe(_ids), "name": s.maybe(_token_names),
         "sha256": s.maybe(s.near(s.hex_digests))},
        optional={"team": s.maybe(_token_names),
                  "roles": s.maybe(st.lists(st.sampled_from(["client", "admin", "metrics",
                                                             "root", ""]), max_size=3)),
                  "created": s.maybe(st.sampled_from(["2024-01-01T00:00:00Z", ""]))}),
    max_size=3))})
_token_slots = st.sampled_from([
    "tokens: [{id: %s, name: a, sha256: " + "0" * 64 + "}]",
    "tokens: [{id: 0123abcd, name: %s, sha256: " + "0" * 64 + "}]",
    "tokens: [{id: 0123abcd, name: a, team: %s, sha256: " + "0" * 64 + "}]",
    "tokens: [{id: 0123abcd, name: a, sha256: %s}]",
    "tokens: [{id: 0123abcd, name: a, roles: %s, sha256: " + "0" * 64 + "}]",
])
tokens_files = st.tuples(s.yaml_files(_token_docs, _token_slots),
                         st.one_of(s.any_text, st.just("stk_0123abcd_" + "A" * 43)))
_ID = re.compile(r"[0-9a-f]{8}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_tokens_file(case: tuple[bytes, str]) -> None:
    from testbed.fuzz.targets import scratch

    data, presented = case
    path = scratch() / "tokens.yaml"
    path.write_bytes(data)
    try:
        tokens = tk.load_tokens(path)
    except tk.TokenFileError:
        return
    for entry in tokens.entries:
        assert _ID.fullmatch(entry.id) and _HEX64.fullmatch(entry.sha256), entry
        assert _clean(entry.name), f"a token name with odd characters: {entry.name!r}"
        assert entry.team is None or _clean(entry.team), f"odd team: {entry.team!r}"
        assert entry.roles
    written = yaml.safe_dump({"tokens": [e.as_yaml() for e in tokens.entries]},
                             sort_keys=False, default_flow_style=False)
    assert tk.parse_tokens(written, "again").entries == tokens.entries, "no round trip"
    found = tokens.check(presented)
    assert found is None or found in tokens.entries


# --- the approvals file ------------------------------------------------------------

_dates = st.sampled_from(["2030-01-01", "2024-02-30", "2030-01-01T12:00:00Z", "x", "0001-01-01",
                          "9999-12-31", "0001-01-01T00:00:00+01:00",
                          "9999-12-31T23:59:59-01:00", "2030-01-01 12:00:00"])
_approval_docs = st.fixed_dictionaries({}, optional={"approvals": s.maybe(st.lists(
    st.fixed_dictionaries(
        {"ecosystem": s.maybe(s.ecosystems), "name": s.maybe(s.pypi_names),
         "until": s.maybe(_dates)},
        optional={"reason": s.maybe(s.any_text), "by": s.maybe(s.any_text),
                  "at": s.maybe(_dates)}),
    max_size=3))})
_approval_slots = st.sampled_from([
    "approvals: [{ecosystem: pypi, name: x, until: %s}]",
    "approvals: [{ecosystem: npm, name: x, until: 2030-01-01, at: %s}]",
    "approvals: [{ecosystem: maven, name: 'com.x:y', until: 2030-01-01, reason: %s}]",
    "approvals: [{ecosystem: %s, name: x, until: 2030-01-01}]",
    "approvals: %s",
])
approvals_files = s.yaml_files(_approval_docs, _approval_slots)
_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def check_approvals_file(data: bytes) -> None:
    from testbed.fuzz.targets import scratch

    path = scratch() / "approvals.yaml"
    path.write_bytes(data)
    try:
        found = approvals.load(path)
    except approvals.ApprovalError:
        return
    for approval in found:
        assert valid(approval.ecosystem, approval.name)
        assert approval.until.tzinfo is not None
        approval.key, approval.in_force(_NOW), approval.describe()
    # What ``stockade approve`` writes back must read as the same approvals.
    again = approvals.parse(approvals._dump(found), "again")
    assert again == found, "the approvals file does not round-trip"


# --- Authorization ------------------------------------------------------------------

def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


authorizations = st.one_of(
    st.none(), s.any_text, s.special_text,
    s.any_text.map(lambda t: "Bearer " + t), s.special_text.map(_basic),
    st.tuples(s.any_text, s.any_text).map(lambda up: _basic(f"{up[0]}:{up[1]}")),
    st.sampled_from(["Basic ", "Basic ===", "Basic \u00e9", "bearer", "Bearer   x  ",
                     "Basic " + base64.b64encode(b"\xff:\xfe").decode()]))


def check_authorization(header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    token = presented_token(make_mocked_request("GET", "/", headers=headers))
    if header is None:
        assert token is None
        return
    assert isinstance(token, str), "a header that is present yields a credential"
    if header.strip().lower().startswith("bearer "):
        assert token == header.strip()[7:].strip()


# --- X-Forwarded-* ------------------------------------------------------------------

_SETTINGS = ServerSettings(trusted_proxies=("127.0.0.1/32", "::1/128"))
forwarded = st.tuples(
    st.sampled_from(["127.0.0.1", "::1", "10.0.0.5", "2001:db8::1"]),
    st.one_of(st.none(), s.near(st.sampled_from(["http", "https", "ftp", "HTTPS"]))),
    st.one_of(st.none(), s.hosts, st.tuples(s.hosts, s.hosts).map(", ".join)),
    s.hosts)


def _transport(remote: str) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = (
        lambda key, default=None: (remote, 40000) if key == "peername" else default)
    return transport


def _listed(remote: str) -> bool:
    """Whether ``remote`` is one of the two listed addresses, however it is spelled
    (``::01`` is ``::1``), and without a zone."""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return False
    return address in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def check_forwarded(case: tuple[str, str | None, str | None, str]) -> None:
    remote, proto, fwd_host, host = case
    if host_problem(host) is not None:
        return  # the middleware answers 400 before any handler asks
    headers = {"Host": host}
    if proto is not None:
        headers["X-Forwarded-Proto"] = proto
    if fwd_host is not None:
        headers["X-Forwarded-Host"] = fwd_host
    request = make_mocked_request("GET", "/", headers=headers, transport=_transport(remote))
    base = origin(request, _SETTINGS)
    assert _clean(base), f"an origin with odd characters: {base!r}"
    url = URL(base)
    url.origin()  # what handlers build URLs on: must parse, port and all
    assert url.scheme in ("http", "https") and url.host and url.port is not None, base
    assert url.user is None and url.path in ("", "/") and not url.query_string, base
    if not _listed(remote):
        assert base == str(request.url.origin()), "an untrusted client moved the origin"
