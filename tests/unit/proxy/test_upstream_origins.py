"""Which URLs an upstream may be fetched from: exactly its own origin and its file hosts'."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stockade.config.model import UpstreamSettings
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream


def upstream(url: str, *file_hosts: str) -> Upstream:
    return Upstream(UpstreamSettings(name="u", url=url, file_hosts=file_hosts),
                    metrics=Metrics(), environ={})


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://pypi.org/simple/x/", True),
    ("https://PYPI.org:443/simple/x/", True),
    ("http://pypi.org/simple/x/", False),          # another scheme
    ("https://pypi.org:8443/simple/x/", False),    # another port
    ("https://files.pythonhosted.org/packages/a.whl", True),
    ("https://files.pythonhosted.org:443/packages/a.whl", True),
    ("http://files.pythonhosted.org/packages/a.whl", False),  # never a downgrade
    ("https://files.pythonhosted.org:8443/a.whl", False),
    ("https://evil.example/a.whl", False),
    ("ftp://pypi.org/simple/", False),
    ("https://pypi.org:notaport/x", False),
])
def test_https_upstream(url: str, allowed: bool) -> None:
    assert upstream("https://pypi.org/simple/", "files.pythonhosted.org").allows(url) is allowed


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://127.0.0.1:8081/simple/", True),
    ("http://127.0.0.1:8082/simple/", False),
    ("https://127.0.0.1:8081/simple/", False),
    ("http://files.internal/a.whl", True),         # a bare host on a plain-http upstream
    ("https://files.internal/a.whl", True),
    ("http://files.internal:8080/a.whl", False),
    ("http://127.0.0.1:9000/a.whl", True),         # given as an origin
    ("https://127.0.0.1:9000/a.whl", False),
    ("https://cdn.internal:8443/a.whl", True),     # a bare host with a port
])
def test_plain_http_upstream(url: str, allowed: bool) -> None:
    u = upstream("http://127.0.0.1:8081/simple/", "files.internal", "http://127.0.0.1:9000",
                 "cdn.internal:8443")
    assert u.allows(url) is allowed


def test_links_resolve_only_to_allowed_origins() -> None:
    u = upstream("http://127.0.0.1:8081/simple/")
    assert u.resolve("../files/a.whl", "http://127.0.0.1:8081/simple/x/") == \
        "http://127.0.0.1:8081/simple/files/a.whl"
    assert u.resolve("//127.0.0.1:8082/a.whl", "http://127.0.0.1:8081/simple/x/") is None


@pytest.mark.parametrize("entry", ["http://h/path", "ftp://h", "h:port", "", "https://",
                                   "user@h"])
def test_bad_file_host_names_the_key(entry: str) -> None:
    with pytest.raises(ValidationError, match="file_hosts"):
        UpstreamSettings(name="u", url="https://pypi.org/simple/", file_hosts=(entry,))
