"""Which approvals file the page's approve form writes: the one the policy reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stockade.config.load import load_settings
from stockade.config.model import Settings
from stockade.proxy.ui.approvals import NoApprovalsFile, approvals_file


def settings(tmp_path: Path, **policy: Any) -> Settings:
    return load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")}, "policy": policy})


def policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "policy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_file_the_policy_names_relative_to_the_policy(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, "rules: {typosquat: {approvals: held/approvals.yaml}}\n")
    assert approvals_file(settings(tmp_path, file=str(policy))) == \
        tmp_path / "conf" / "held" / "approvals.yaml"
    absolute = tmp_path / "elsewhere.yaml"
    policy.write_text(f"rules: {{typosquat: {{approvals: '{absolute}'}}}}\n")
    assert approvals_file(settings(tmp_path, file=str(policy))) == absolute


def test_rules_that_cannot_be_built_still_name_the_file(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, "rules: {typosquat: {approvals: a.yaml}, "
                                   "osv: {paths: [no-such-folder/]}}\n")
    assert approvals_file(settings(tmp_path, file=str(policy))) == policy.parent / "a.yaml"


@pytest.mark.parametrize(("text", "why"), [
    (None, "no policy file is configured"),
    ("rules: {typosquat: {protected: {pypi: [acme-billing]}}}\n", "names no approvals file"),
    ("rules: [not, a, mapping\n", "cannot be read"),
    ("rules: {typosquat: {approvals: a.yaml, colour: red}}\n", "cannot be read"),
])
def test_no_file_the_policy_reads_is_said_so(tmp_path: Path, text: str | None,
                                             why: str) -> None:
    extra = {} if text is None else {"file": str(policy_file(tmp_path, text))}
    with pytest.raises(NoApprovalsFile, match=why):
        approvals_file(settings(tmp_path, **extra))


def test_a_policy_from_a_bundle_is_approved_where_it_is_built(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, "rules: {typosquat: {approvals: a.yaml}}\n")
    bundled = settings(tmp_path, file=str(policy), bundle={
        "url": "https://policy.example/", "trusted_root": str(tmp_path / "1.root.json")})
    with pytest.raises(NoApprovalsFile, match="signed bundle"):
        approvals_file(bundled)
