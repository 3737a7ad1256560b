"""The tokens file: hashed secrets, checking, creating and revoking."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.proxy.auth import presented_token
from stockade.proxy.cli import main
from stockade.proxy.tokens import (
    Role,
    TokenFileError,
    Tokens,
    create_token,
    load_tokens,
    parse_tokens,
    revoke_token,
)


def test_the_file_keeps_no_secret_and_checks_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    token, entry = create_token(path, "ci", team="payments", roles=[Role.CLIENT])
    secret = token.rsplit("_", 1)[1]
    text = path.read_text()
    assert secret not in text
    assert token not in text
    assert path.stat().st_mode & 0o077 == 0
    tokens = load_tokens(path)
    assert tokens.check(token) == entry
    assert tokens.check(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.check(f"stk_{entry.id}_{'A' * 43}") is None
    assert tokens.check("stk_ffffffff_" + secret) is None  # the secret under another id
    assert tokens.check("") is None
    assert tokens.check(secret) is None


def test_revoke_by_id_or_name(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    a, ea = create_token(path, "a", team=None, roles=[Role.ADMIN])
    b, _ = create_token(path, "b", team=None, roles=[])
    assert load_tokens(path).check(b) is not None
    assert load_tokens(path).check(b).roles == {Role.CLIENT}  # type: ignore[union-attr]
    assert [e.name for e in revoke_token(path, ea.id)] == ["a"]
    assert revoke_token(path, "a") == []
    assert [e.name for e in revoke_token(path, "b")] == ["b"]
    assert load_tokens(path).check(a) is None
    assert load_tokens(path).entries == ()


@pytest.mark.parametrize(("text", "where"), [
    ("tokens: 3", "tokens: expected a list"),
    ("tokens: [{id: '12345678', name: x, sha256: abc}]", "tokens.0.sha256"),
    ("tokens: [{id: xyz, name: x, sha256: " + "a" * 64 + "}]", "tokens.0.id"),
    ("tokens: [{id: '12345678', name: x, roles: [root], sha256: " + "a" * 64 + "}]",
     "tokens.0.roles"),
    ("tokens: [{id: '12345678', name: x, secret: s, sha256: " + "a" * 64 + "}]",
     "unknown key 'secret'"),
    ("other: 1", "one key"),
])
def test_bad_files_name_the_entry(text: str, where: str) -> None:
    with pytest.raises(TokenFileError, match=where):
        parse_tokens(text, "tokens.yaml")


class _Req:
    def __init__(self, header: str | None) -> None:
        self.headers = {} if header is None else {"Authorization": header}


@pytest.mark.parametrize(("header", "token"), [
    (None, None),
    ("Bearer stk_x", "stk_x"),
    ("bearer  stk_x ", "stk_x"),
    ("Basic " + base64.b64encode(b"__token__:stk_x").decode(), "stk_x"),
    ("Basic " + base64.b64encode(b"stk_x:").decode(), "stk_x"),  # token as the user
    ("Basic " + base64.b64encode(b"nocolon").decode(), ""),
    ("Basic !!!", ""),
    ("Basic \u00e9t\u00e9", ""),  # not ASCII: as a latin-1 header can carry it
    ("Basic " + base64.b64encode("\u00fc:x".encode()).decode(), "x"),  # UTF-8 user
    ("Basic " + base64.b64encode(b"u:\xff").decode(), ""),  # not UTF-8
    ("Bearer", ""),
    ("Digest abc", ""),
])
def test_credentials_as_clients_send_them(header: str | None, token: str | None) -> None:
    assert presented_token(_Req(header)) == token  # type: ignore[arg-type]


def test_token_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "t.yaml")
    assert main(["token", "create", "alice", "--team", "payments", "--role", "client",
                 "--file", path]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("stk_")
    assert "shown only this once" in out.err
    assert main(["token", "list", "--json", "--file", path]) == 0
    listed = capsys.readouterr().out
    assert '"name": "alice"' in listed
    assert '"team": "payments"' in listed
    assert token.split("_", 2)[2] not in listed  # the secret (which may hold "_" itself)
    assert main(["token", "revoke", "alice", "--file", path]) == 0
    assert main(["token", "revoke", "alice", "--file", path]) == 1
    assert main(["token", "create", "bad name", "--file", path]) == 2


@given(header=st.text(max_size=80), scheme=st.sampled_from(["Basic ", "Bearer ", "", "basic "]))
def test_any_authorization_value_is_read_without_error(header: str, scheme: str) -> None:
    token = presented_token(_Req(scheme + header))  # type: ignore[arg-type]
    assert token is not None
    assert Tokens().check(token) is None
