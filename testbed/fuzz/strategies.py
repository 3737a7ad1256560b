"""Hypothesis strategies for outside input: random text and bytes, and near-valid
documents (names, paths, pages, packuments, metadata, policy and config files)
that get past the first checks and reach the deeper code."""

from __future__ import annotations

import string
from typing import Any

import orjson
import yaml
from hypothesis import strategies as st

# Characters parsers treat specially somewhere: separators, escapes, controls,
# whitespace that str.strip() and regex ``$`` see, and letters that change length
# or meaning when lower-cased (dotted I, Kelvin sign).
SPECIAL = "-_.~@/\\%2fF:;,=+!$#?[]<>&\"' \t\n\r\x00\x0b\x0c\x1c\x7f\x85\xa0\u0130\u212a\u2028"
ASCII_NAME = string.ascii_letters + string.digits + "-_."

any_text = st.text(max_size=60)
special_text = st.text(alphabet=SPECIAL + "aZ09", max_size=30)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """``base`` with up to three characters inserted, replaced or deleted."""
    text = draw(base)
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(("insert", "replace", "delete")))
        char = draw(st.one_of(st.sampled_from(SPECIAL), st.characters()))
        if op == "insert":
            text = text[:pos] + char + text[pos:]
        elif op == "replace":
            text = text[:pos] + char + text[pos + 1:]
        else:
            text = text[:pos] + text[pos + 1:]
    return text


def near(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid-looking text, often exactly valid, sometimes one edit away, or anything."""
    trailing = st.tuples(base, st.sampled_from(SPECIAL)).map("".join)
    return st.one_of(base, mutated(base), trailing, special_text, any_text)


pypi_names = near(st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?", fullmatch=True))
npm_names = near(st.from_regex(r"(@[a-z0-9~][a-z0-9._~-]{0,8}/)?[A-Za-z0-9~][A-Za-z0-9._~-]{0,12}",
                               fullmatch=True))
versions = near(st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}(-[A-Za-z0-9.]{1,8})?"
                              r"(\+[A-Za-z0-9.]{1,6})?", fullmatch=True))
maven_names = near(st.from_regex(
    r"[a-z][a-z0-9]{0,6}(\.[a-z][a-z0-9]{0,6}){0,3}:[a-z][a-z0-9-]{0,10}", fullmatch=True))
hosts = near(st.from_regex(r"([a-z0-9-]{1,10}\.){0,3}[a-z0-9-]{1,10}(:[0-9]{1,6})?|"
                           r"\[[0-9a-f:]{2,20}\](:[0-9]{1,5})?|[0-9]{1,3}(\.[0-9]{1,3}){3}",
                           fullmatch=True))
accept_values = near(st.lists(
    st.tuples(st.sampled_from([
        "text/html", "application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.v1+html",
        "application/vnd.pypi.simple.latest+json", "application/json", "*/*", "text/*",
        "application/*", "application/vnd.npm.install-v1+json", "", "TEXT/HTML",
    ]), st.one_of(st.none(), st.from_regex(r"q=[0-9.]{0,5}", fullmatch=True),
                  st.sampled_from(["q=nan", "q=inf", "q=-1", "q=1e999", "q=", "q", "level=1"]))),
    max_size=5,
).map(lambda items: ", ".join(m if q is None else f"{m};{q}" for m, q in items)))

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), any_text)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=12,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually ``value``, sometimes any JSON value in its place."""
    return st.one_of(value, value, value, json_values)


DEEP = "\x00deep\x00"


def deep_json(doc: Any, depth: int) -> bytes:
    """``doc`` as JSON with the value ``DEEP`` replaced by ``depth`` nested arrays
    (orjson writes at most 254 levels, so such documents are built as text)."""
    return orjson.dumps(doc).replace(b'"\\u0000deep\\u0000"', b"[" * depth + b"]" * depth)


@st.composite
def json_body(draw: st.DrawFn, doc: st.SearchStrategy[Any]) -> bytes:
    """A JSON document from ``doc``, or one nested deeply, truncated, or random bytes."""
    kind = draw(st.sampled_from(("doc", "doc", "doc", "deep", "cut", "bytes")))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    value = draw(doc)
    if kind == "deep" and isinstance(value, dict):
        value = {**value, draw(st.sampled_from(
            ["extra", "versions", "files", "time", "project-status"])): DEEP}
        return deep_json(value, draw(st.integers(200, 1100)))
    body = orjson.dumps(value)
    if kind == "cut":
        return body[: draw(st.integers(0, len(body)))]
    return body


# --- PyPI simple pages -------------------------------------------------------------

hex_digests = st.binary(min_size=32, max_size=32).map(bytes.hex)  # from_regex is slower
file_names = st.builds(
    lambda n, v, ext: f"{n}-{v}{ext}",
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    st.from_regex(r"[0-9]{1,2}\.[0-9]{1,2}", fullmatch=True),
    st.sampled_from([".tar.gz", "-py3-none-any.whl", ".zip", "-cp311-cp311-linux_x86_64.whl"]),
)


@st.composite
def pep691_file(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(near(file_names))
    item: dict[str, Any] = {
        "filename": draw(maybe(st.just(name))),
        "url": draw(maybe(st.sampled_from([f"https://files.example/p/{name}", f"../../f/{name}",
                                           "", "http://[", f"/{name}#sha256=00"]))),
        "hashes": draw(maybe(st.dictionaries(st.sampled_from(["sha256", "SHA256", "md5", ""]),
                                             maybe(hex_digests), max_size=2))),
    }
    for key, value in (
        ("requires-python", maybe(st.sampled_from([">=3.8", "", '<4,>"3"']))),
        ("size", maybe(st.integers(-1, 2**40))),
        ("upload-time", maybe(st.just("2024-01-01T00:00:00Z"))),
        ("yanked", maybe(st.one_of(st.booleans(), any_text))),
        ("core-metadata", maybe(st.one_of(st.booleans(), st.dictionaries(
            st.sampled_from(["sha256"]), hex_digests, max_size=1)))),
        ("provenance", maybe(st.just("https://files.example/p.prov"))),
        ("gpg-sig", maybe(st.booleans())),
    ):
        if draw(st.booleans()):
            item[key] = draw(value)
    return item


pep691_pages = st.fixed_dictionaries(
    {"meta": maybe(st.just({"api-version": "1.1"})), "name": maybe(pypi_names),
     "files": maybe(st.lists(pep691_file(), max_size=5))},
    optional={"versions": maybe(st.lists(versions, max_size=4)),
              "project-status": maybe(st.fixed_dictionaries(
                  {"status": maybe(st.sampled_from(["active", "archived", "quarantined"]))},
                  optional={"reason": any_text}))},
)

html_attr_names = st.sampled_from([
    "href", "data-requires-python", "data-yanked", "data-core-metadata",
    "data-dist-info-metadata", "data-provenance", "data-gpg-sig", "name", "content", "HREF",
])


@st.composite
def html_pages(draw: st.DrawFn) -> bytes:
    """PEP 503 pages with odd attributes, entities, broken and unclosed markup."""
    parts = [draw(st.sampled_from(["", "<!DOCTYPE html>", "<html><head>", "<![CDATA[", "<?x"]))]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(("a", "a", "meta", "text", "junk")))
        if kind in ("a", "meta"):
            attrs = []
            for _ in range(draw(st.integers(0, 4))):
                value = draw(st.one_of(near(file_names), hex_digests.map(lambda h: "sha256=" + h),
                                       st.just("pypi:project-status"), any_text))
                quote = draw(st.sampled_from(['"', "'", ""]))
                attrs.append(f"{draw(html_attr_names)}={quote}{value}{quote}"
                             if draw(st.booleans()) else draw(html_attr_names))
            text = draw(near(file_names)) if kind == "a" else ""
            close = draw(st.sampled_from(["</a>", "", "</A>", "</a"])) if kind == "a" else ""
            parts.append(f"<{kind} {' '.join(attrs)}>{text}{close}")
        elif kind == "text":
            parts.append(draw(st.sampled_from(["&amp;", "&#0;", "&#x110000;", "&#99999999;",
                                               "&bogus", "<br/>", "</>", "<!--", "-->"])))
        else:
            parts.append(draw(any_text))
    page = "\n".join(parts).encode("utf-8", "surrogatepass")
    return draw(st.one_of(st.just(page), st.binary(max_size=100).map(lambda b: page + b)))


# --- npm packuments ----------------------------------------------------------------

tarball_urls = st.sampled_from([
    "https://registry.example/x/-/x-1.0.0.tgz", "http://registry.example/x.tgz",
    "https://elsewhere.example/x.tgz", "http://[", "http://[::1", "ftp://registry.example/x",
    "", "https://registry.example:99999/x.tgz", "https://registry.example:bad/x.tgz",
])


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    dist = draw(st.fixed_dictionaries(
        {"tarball": maybe(tarball_urls)},
        optional={"integrity": maybe(st.just("sha512-AAAA")), "shasum": maybe(st.just("ab" * 20)),
                  "attestations": maybe(st.fixed_dictionaries({"url": maybe(tarball_urls)})),
                  "signatures": json_values}))
    return draw(st.fixed_dictionaries(
        {"dist": maybe(st.just(dist))},
        optional={"name": maybe(npm_names), "version": maybe(versions),
                  "scripts": maybe(st.dictionaries(st.sampled_from(["install", "test"]),
                                                   any_text)),
                  "hasInstallScript": maybe(st.booleans()),
                  "license": maybe(st.one_of(any_text, st.fixed_dictionaries({"type": any_text}))),
                  "dependencies": json_values, "_hasShrinkwrap": json_values}))


@st.composite
def packuments(draw: st.DrawFn, name: str) -> dict[str, Any]:
    vers = draw(st.lists(versions, max_size=5, unique=True))
    doc: dict[str, Any] = {
        "name": draw(st.one_of(st.just(name), st.just(name), st.none(), json_values)),
        "versions": draw(maybe(st.fixed_dictionaries({v: maybe(manifests()) for v in vers}))),
    }
    if draw(st.booleans()):
        doc["dist-tags"] = draw(maybe(st.dictionaries(
            st.sampled_from(["latest", "next", "beta"]),
            maybe(st.sampled_from(vers) if vers else versions), max_size=3)))
    if draw(st.booleans()):
        doc["time"] = draw(maybe(st.dictionaries(
            st.one_of(st.sampled_from(vers) if vers else versions, st.just("modified")),
            maybe(st.sampled_from(["2024-01-01T00:00:00.000Z", "2024-13-45", "", "9999-12-31"])),
            max_size=4)))
    if draw(st.booleans()):
        doc[draw(any_text)] = draw(json_values)
    return doc


# --- maven-metadata.xml ------------------------------------------------------------

def _xml_text(value: str, escape: bool) -> str:
    if not escape:
        return value
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def maven_metadata(draw: st.DrawFn) -> bytes:
    """Documents at each level, with namespaces, DTDs, entities, odd encodings."""
    esc = draw(st.booleans())

    def text(s: st.SearchStrategy[str]) -> str:
        return _xml_text(draw(s), esc or draw(st.booleans()))

    children = []
    for tag, value in (("groupId", near(st.just("com.example"))),
                       ("artifactId", near(st.just("demo"))), ("version", versions)):
        if draw(st.booleans()):
            children.append(f"<{tag}>{text(value)}</{tag}>")
    versioning = []
    if draw(st.booleans()):
        listed = "".join(f"<version>{text(versions)}</version>"
                         for _ in range(draw(st.integers(0, 5))))
        versioning.append(f"<versions>{listed}</versions>")
    for tag in ("latest", "release", "lastUpdated"):
        if draw(st.booleans()):
            versioning.append(f"<{tag}>{text(versions)}</{tag}>")
    if draw(st.integers(0, 4)) == 0:
        versioning.append("<snapshot><timestamp>20240101.000000</timestamp>"
                          "<buildNumber>1</buildNumber></snapshot>")
    if draw(st.booleans()):
        children.append(f"<versioning>{''.join(versioning)}</versioning>")
    if draw(st.integers(0, 5)) == 0:
        children.append(draw(st.sampled_from(["<![CDATA[x]]>", "<!-- c -->", "<?pi x?>",
                                              "&ent;", "&#1;", "<plugins><plugin/></plugins>"])))
    root = draw(st.sampled_from(["metadata", "metadata", "project", 'metadata xmlns="urn:x"',
                                 'metadata modelVersion="1.1.0"']))
    body = f"<{root}>{''.join(children)}</{root.split()[0]}>"
    prolog = draw(st.sampled_from([
        "", '<?xml version="1.0" encoding="UTF-8"?>\n', '<?xml version="1.0" encoding="bogus"?>',
        '<?xml version="1.0" encoding="UTF-16"?>', '<?xml version="1.1"?>',
        '<!DOCTYPE metadata [<!ENTITY ent "x">]>',
        '<!DOCTYPE metadata SYSTEM "http://127.0.0.1:9/x.dtd">',
    ]))
    data = (prolog + body).encode("utf-8", "surrogatepass")
    return draw(st.one_of(st.just(data), st.just(data), st.binary(max_size=20).map(
        lambda b: data[: len(data) // 2] + b)))


# --- policy and config files -------------------------------------------------------

ecosystems = st.sampled_from(["pypi", "npm", "maven"])
durations = st.one_of(
    st.sampled_from(["3d", "72h", "1w", "90m", " 2 d ", "3x", "", "1e400d",
                     "99999999999999999999d", "0s"]),
    st.integers(-(2**70), 2**70), st.floats(), st.booleans())


def _entries(reason: bool) -> st.SearchStrategy[list[dict[str, Any]]]:
    fields: dict[str, st.SearchStrategy[Any]] = {"ecosystem": maybe(ecosystems),
                                                 "name": maybe(pypi_names)}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "versions": maybe(st.sampled_from(["*", ">=1,<2", "[1.0,2.0)", "^1.2", "1.0", "((",
                                           ">=1 || <", "==="]))}
    if reason:
        fields["reason"] = maybe(st.just("reviewed"))
        optional.update({"expires": maybe(st.sampled_from(["2024-01-01", "2024-02-30", "x"])),
                         "tags": maybe(st.lists(any_text, max_size=2))})
    return st.lists(st.fixed_dictionaries(fields, optional=optional), max_size=3)


policy_docs = st.fixed_dictionaries({}, optional={
    "mode": maybe(st.sampled_from(["enforce", "audit", "bogus"])),
    "internal_names": maybe(st.dictionaries(ecosystems, st.lists(maybe(pypi_names), max_size=3))),
    "rules": maybe(st.fixed_dictionaries({}, optional={
        "lists": maybe(st.fixed_dictionaries({}, optional={
            "allow": maybe(_entries(True)), "deny": maybe(_entries(True)),
            "allowlist_only": maybe(st.fixed_dictionaries({}, optional={
                "enabled": maybe(st.booleans()),
                "required_tags": maybe(st.lists(any_text, max_size=2))}))})),
        "typosquat": maybe(st.fixed_dictionaries({}, optional={
            "enabled": maybe(st.booleans()),
            "protected": maybe(st.dictionaries(ecosystems, st.lists(near(pypi_names),
                                                                    max_size=3)))})),
        "cooldown": maybe(st.fixed_dictionaries({}, optional={
            "min_age": durations, "allow_undated": maybe(st.booleans()),
            "cutoff": maybe(st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01", "x"])),
            "exempt": maybe(_entries(False))})),
        "osv": maybe(st.fixed_dictionaries({}, optional={
            # Relative names only: a fuzzed absolute path would walk the machine.
            "paths": maybe(st.lists(st.sampled_from(["osv", "missing/", "a\x00b", "."]),
                                    max_size=2)),
            "min_severity": maybe(st.sampled_from(["low", "critical", "x"]))})),
        "install_scripts": maybe(st.fixed_dictionaries({}, optional={
            "npm": maybe(st.sampled_from(["block", "warn", "allow", "hold"])),
            "allow": maybe(_entries(False))})),
        "licenses": maybe(st.fixed_dictionaries({}, optional={
            "deny": maybe(st.lists(st.sampled_from(["AGPL-3.0-only", "MIT OR", "(", ""]),
                                   max_size=2)),
            "unknown": maybe(st.sampled_from(["warn", "block", "x"]))})),
    })),
})

_upstream_urls = st.sampled_from([
    "https://pypi.example/simple/", "http://127.0.0.1:8080/", "http://a:b/", "http://[::1/",
    "http://host:99999/", "ftp://x/", "https://x/?q", "https://", "http://[::1]:8080/",
])
upstream_docs = st.fixed_dictionaries(
    {"name": maybe(st.sampled_from(["pypi", "internal", "bad name", ""])),
     "url": maybe(_upstream_urls)},
    optional={"namespaces": maybe(st.lists(any_text, max_size=2)),
              "file_hosts": maybe(st.lists(near(hosts), max_size=2)),
              "auth": maybe(st.fixed_dictionaries({}, optional={
                  "token_env": maybe(any_text), "username_env": maybe(any_text)})),
              "connect_timeout_s": maybe(st.floats()),
              "retries": maybe(st.integers(-5, 20))})
config_docs = st.fixed_dictionaries({}, optional={
    "server": maybe(st.fixed_dictionaries({}, optional={
        "host": maybe(near(hosts)), "port": maybe(st.integers(-1, 70000)),
        "shutdown_timeout_s": maybe(st.floats())})),
    "storage": maybe(st.fixed_dictionaries({}, optional={
        "path": maybe(st.sampled_from(["./data", "", "a\x00b"])),
        "max_bytes": maybe(st.integers(-1, 2**70))})),
    "pypi": maybe(st.fixed_dictionaries({}, optional={
        "upstreams": maybe(st.lists(upstream_docs, max_size=2)),
        "cache": maybe(st.fixed_dictionaries({}, optional={"metadata_ttl_s": maybe(st.floats())}))
    })),
    "maven": maybe(st.fixed_dictionaries({}, optional={
        "upstreams": maybe(st.lists(upstream_docs, max_size=2)),
        "missing_checksum": maybe(st.sampled_from(["warn", "block", "x"]))})),
    "policy": maybe(st.fixed_dictionaries({}, optional={
        "file": maybe(st.sampled_from(["policy.yaml", "/abs/p.yaml", "a\x00b"])),
        "reload_check_s": maybe(st.floats())})),
    "logging": maybe(st.fixed_dictionaries({}, optional={
        "level": maybe(st.sampled_from(["INFO", "debug"])), "json": maybe(st.booleans())})),
})


# YAML scalars that convert badly: past int64, infinite, not a number, odd dates.
tricky_scalars = st.sampled_from([
    str(2**70), "-" + str(2**70), ".inf", "-.inf", ".nan", "1e300", "99999999999999999999d",
    "100000000000w", "0x7fffffffffffffff", "2024-02-30", "9999-12-31T23:59:59Z", "~", "''",
    "[]", "{}", "!!binary AAAA", "0o777", "1_000", "-1", "!!int x", "2024-01-01T25:00:00",
    "2024-01-01", "2024-01-01 12:00:00",
])
# Paths into the policy and config files, each with a slot for one scalar.
policy_slots = st.sampled_from([
    "rules: {cooldown: {min_age: %s}}", "rules: {cooldown: {cutoff: %s}}",
    "rules: {lists: {allow: [{ecosystem: pypi, name: x, reason: r, expires: %s}]}}",
    "rules: {lists: {deny: [{ecosystem: npm, name: x, reason: r, versions: %s}]}}",
    "rules: {osv: {min_severity: %s}}", "mode: %s", "internal_names: {pypi: [%s]}",
    "rules: {typosquat: {protected: {maven: [%s]}}}", "rules: {licenses: {deny: [%s]}}",
])
config_slots = st.sampled_from([
    "server: {port: %s}", "server: {shutdown_timeout_s: %s}", "storage: {max_bytes: %s}",
    "pypi: {cache: {metadata_ttl_s: %s}}", "policy: {reload_check_s: %s}",
    "npm: {upstreams: [{name: n, url: 'http://x/', retries: %s}]}",
    "maven: {upstreams: [{name: m, url: 'http://x/', connect_timeout_s: %s}]}",
])


@st.composite
def yaml_files(draw: st.DrawFn, docs: st.SearchStrategy[Any],
               slots: st.SearchStrategy[str] | None = None) -> bytes:
    """A YAML file from ``docs``, or YAML-ish text, deep nesting, or undecodable bytes."""
    # "deep" is rare: PyYAML takes about a second to give up on 1,000 levels.
    kind = draw(st.sampled_from(("doc",) * 6 + ("text", "bytes", "slot", "slot", "slot", "deep")))
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    if kind == "slot" and slots is not None:
        return (draw(slots) % draw(tricky_scalars)).encode()
    if kind == "deep":
        depth = draw(st.integers(50, 1100))
        opener = draw(st.sampled_from(["[", "{a: ", "- "]))
        return (opener * depth).encode()
    if kind == "text":
        return draw(st.text(alphabet=SPECIAL + ":-{}[]|>!&*?#%@`\n aZ09", max_size=80)).encode(
            "utf-8", "surrogatepass")
    text: str = yaml.safe_dump(draw(docs), allow_unicode=True)
    return text.encode("utf-8", "surrogatepass")


env_names = st.sampled_from([
    "STOCKADE__SERVER__PORT", "STOCKADE__SERVER", "STOCKADE__STORAGE__MAX_BYTES",
    "STOCKADE__PYPI__UPSTREAMS", "STOCKADE____", "STOCKADE__", "STOCKADE__LOGGING__JSON",
    "STOCKADE__POLICY__FILE", "STOCKADE__X",
])
environs = st.dictionaries(env_names, st.one_of(special_text, st.sampled_from(
    ["1", "true", "[1, 2]", "{a: 1}", "!!python/object:os.system", "- [", "9" * 30, ".nan",
     "2024-02-30"])),
    max_size=3)
