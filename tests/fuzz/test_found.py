"""Inputs the fuzz targets found breaking a property, kept as regression cases.

Each failed before the commit that added it; the comment says what it did.
"""

from __future__ import annotations

from typing import Any

import pytest

from testbed.fuzz.targets import TARGETS

FOUND: list[tuple[str, Any]] = [
    # valid_name and valid_filename took a trailing newline ("$" matches before it).
    ("pypi_name", "requests\n"),
    ("pypi_name", "demo-1.0.tar.gz\n"),
    # IGNORECASE let non-ASCII letters match [A-Z]: valid, but normalised to an invalid name.
    ("pypi_name", "2\u0130"),
    ("pypi_name", "\u017fix"),
    # A non-string requires-python was kept and render_html crashed on it.
    ("pypi_page", (b'{"files":[{"filename":"a-1.tar.gz","url":"https://f.example/a-1.tar.gz",'
                   b'"hashes":{},"requires-python":[null]}]}', "application/json", "a")),
    # A JSON index whose "projects" was not a list raised TypeError (a 500 at /pypi/simple/).
    ("pypi_index", (b'{"projects":null}', "application/vnd.pypi.simple.v1+json")),
    ("pypi_index", (b'{"projects":7}', "application/vnd.pypi.simple.v1+json")),
    # valid_name and valid_version took a trailing newline.
    ("npm_name", "lodash\n"),
    ("npm_name", "1.0.0\n"),
    # A tarball URL urlsplit cannot read raised ValueError from render_body (a 500).
    ("packument", (b'{"name":"x","versions":{"1.0.0":{"dist":{"tarball":"http://["}}}}', "x",
                   frozenset(), False, "latest")),
    # 300 levels of nesting: orjson read it, then could not write it (TypeError in render).
    ("packument", (b'{"name":"x","versions":{},"x":' + b"[" * 300 + b"]" * 300 + b"}", "x",
                   frozenset(), False, "latest")),
    # A project-status nested 300 deep parsed, then render_json raised TypeError.
    ("pypi_page", (b'{"files":[],"project-status":{"status":"active","x":' + b"[" * 300
                   + b"]" * 300 + b"}}", "application/vnd.pypi.simple.v1+json", "x")),
    # An unknown encoding in the XML declaration raised LookupError (a 500 for metadata).
    ("maven_metadata", (b'<?xml version="1.0" encoding="bogus"?><metadata/>', frozenset())),
    # A path segment with a trailing newline was accepted ("$" matches before it).
    ("maven_path", "com\n/lib-core/1.0/lib-core-1.0.jar"),
    ("maven_path", "com/demo/1.0/demo-1.0.jar\n"),
    # policy.names.valid: a non-ASCII PyPI name, and a Maven part with a final newline.
    ("policy_name", "\u01300"),
    ("policy_name", "com.example:demo\n"),
    # A config file that is not UTF-8, or nests 1,100 levels, escaped as a traceback.
    ("config_file", (b"\x80", {})),
    ("config_file", (b"[" * 1100, {})),
    # The same two for the policy file (stockade check and the reloader saw tracebacks).
    ("policy_file", b"\xeaV\x04@"),
    ("policy_file", b"{a: " * 1100),
    # An upstream URL with a port that is not a number was accepted, and the
    # proxy then died at start-up in urlsplit(url).port.
    ("config_file", (b"pypi: {upstreams: [{name: p, url: 'http://a:b/'}]}", {})),
    ("config_file", (b"npm: {upstreams: [{name: n, url: 'http://host:99999/'}]}", {})),
    ("config_file", (b'maven: {upstreams: [{name: m, url: "http://a\\nb/"}]}', {})),
    # An environment value nested too deeply for PyYAML raised RecursionError.
    ("config_file", (b"", {"STOCKADE__SERVER__HOST": "[" * 1200})),
    # A cooldown longer than timedelta holds raised OverflowError, not a PolicyError.
    ("policy_file", b"rules: {cooldown: {min_age: 1180591620717411303424}}"),
    ("policy_file", b"rules: {cooldown: {min_age: 100000000000w}}"),
    ("policy_file", b"rules: {cooldown: {min_age: .inf}}"),
    # PyYAML's scalar constructors raise ValueError (impossible dates, !!int x).
    ("config_file", (b"server: {port: 2024-02-30}", {})),
    ("config_file", (b"server: {port: !!int x}", {})),
    ("config_file", (b"", {"STOCKADE__SERVER__HOST": "2024-02-30"})),
    ("policy_file", b"rules: {cooldown: {min_age: 2024-02-30}}"),
    ("policy_text", "rules: {lists: {allow: [{ecosystem: pypi, name: x, reason: r, "
                    "expires: 2024-01-01T25:00:00}]}}"),
    # "UTF--16" names a codec expat refuses with ValueError (multi-byte encodings).
    ("maven_metadata", (b'<?xml version="1.0" encoding="UTF--16"?><metadata/>', frozenset())),
    # HTMLParser refuses "<![:" with AssertionError, which parse_index let through.
    ("pypi_index", (b"<![:CDATA[\r\x81\x07", "text/html")),
    # A cut-off without a zone loaded, then every decision on a dated version
    # raised TypeError (naive against aware datetime): a 500 on each request.
    ("policy_file", b"rules: {cooldown: {cutoff: 2024-01-01}}"),
    ("policy_text", "rules: {cooldown: {cutoff: '2024-01-01 12:00:00'}}"),
    # Nesting made by bench.fuzz's mutations: PyYAML's pure scanner is quadratic
    # in depth and took more than 10 s on each (minutes on the deepest).
    ("policy_file", b"[" * 12000),
    ("policy_text", "{a: " * 6000),
    ("config_file", (b"- " * 8000, {})),
    # An empty "!!int" made PyYAML raise IndexError, a traceback instead of a
    # ConfigError; a backslash in an upstream's host passed validation, and the
    # proxy's URL parser refused it at start-up.
    ("config_file", (b"a: !!int", {})),
    ("config_file", (b"", {"STOCKADE__SERVER__HOST": "!!int"})),
    ("policy_file", b"a: !!int"),
    ("config_file", (b"pypi: {upstreams: [{name: p, url: 'https://pypi.exam\\ple/simple/'}]}",
                     {})),
    # An approval "until" a number or a list raised TypeError (in datetime.combine),
    # and PyYAML's own errors escaped: the policy that includes the file failed to
    # load with a traceback.
    ("approvals_file", b"approvals: [{ecosystem: pypi, name: x, until: 1180591620717411303424}]"),
    ("approvals_file", b"approvals: [{ecosystem: pypi, name: x, until: [1]}]"),
    ("approvals_file", b"a: !!int"),
    ("approvals_file", b"[" * 1100),
    # A token name, team or digest with a final newline was accepted ("$").
    ("tokens_file", (b'tokens: [{id: 0123abcd, name: "alice\\n", sha256: "' + b"0" * 64
                     + b'"}]', "")),
    ("tokens_file", (b'tokens: [{id: 0123abcd, name: a, sha256: "' + b"0" * 64 + b'\\n"}]',
                     "")),
    # Keys of mixed types (YAML reads 1 as a number) made sorting the unknown keys
    # raise TypeError in both files (found by bench.fuzz's mutations).
    ("tokens_file", (b"tokens: [{1: a, b: c}]", "")),
    ("approvals_file", b"approvals: [{1: a, b: c}]"),
    # From a trusted proxy, X-Forwarded-Host "[::1" raised ValueError (a 500), and
    # "a:b", "a b", "u@h" were written into served URLs.
    ("forwarded", ("127.0.0.1", None, "[::1", "h")),
    ("forwarded", ("127.0.0.1", "https", "a:b", "h")),
    ("forwarded", ("::1", None, "a b", "h")),
    ("forwarded", ("127.0.0.1", None, "u@h", "h")),
    # A peer address with a zone (::1%2f) matched the trusted ::1/128: ipaddress ignores
    # the zone in the comparison, and a zone names a link, which no setting can name.
    ("forwarded", ("::1%2f", None, "z0, 796.3.953.0", "0-")),
    ("forwarded", ("fe80::1%eth1", "https", "evil.example", "h")),
    # 600 lists of one-key maps: read, then refused by an enum (or a model) whose
    # error message took the value's repr, which exhausted the recursion limit.
    ("policy_file", b"mode: " + b"[e: " * 600 + b"]" * 600),
    ("policy_text", "[e: " * 600 + "]" * 600),
]


@pytest.mark.parametrize(("target", "value"), FOUND)
def test_found(target: str, value: Any) -> None:
    TARGETS[target].check(value)
