"""Where the page's approve form writes: the approvals file the policy reads.

Owns finding that file for a running server, as ``stockade approve`` does: the
``rules.typosquat.approvals`` entry of the configured policy file, relative to
that file. Reading and writing the file is ``stockade.policy.approvals``'s job;
the page calls its ``approve`` and ``load`` directly. A server whose policy names
no approvals file (or that takes its policy from a signed bundle) has nowhere
the policy would read an approval, and the form says so instead of writing one.
Blocking file work: callers run it off the event loop.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from stockade.config.load import load_yaml
from stockade.config.model import Settings
from stockade.policy.file import PolicyModel


class NoApprovalsFile(Exception):
    """The policy in use reads no approvals file the page could write; the message
    says why and what to change."""


def approvals_file(settings: Settings) -> Path:
    """The approvals file the configured policy reads.

    Only the policy's keys are read (its rules are not built), so this is cheap
    and still answers while a rule's data (an OSV folder, a trust file) is broken.

    Raises:
        NoApprovalsFile: no policy file, a policy from a signed bundle, a policy
            file that cannot be read, or one without ``rules.typosquat.approvals``.
    """
    if settings.policy.bundle is not None:
        raise NoApprovalsFile(
            "this server takes its policy from a signed bundle (policy.bundle): approve "
            "where the bundle is built (stockade approve), then build and publish it again")
    policy = settings.policy.file
    if policy is None:
        raise NoApprovalsFile(
            "no policy file is configured (policy.file), and approvals live in a file the "
            "policy names (rules.typosquat.approvals): nothing would read an approval made "
            "here")
    try:
        raw = load_yaml(policy.read_text(encoding="utf-8")) or {}
        model = PolicyModel.model_validate(raw)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, ValidationError) as exc:
        raise NoApprovalsFile(f"the policy file {policy} cannot be read, so the approvals "
                              f"file it names is unknown: {exc}") from exc
    named = model.rules.typosquat.approvals
    if named is None:
        raise NoApprovalsFile(
            f"the policy file {policy} names no approvals file, so nothing would read an "
            "approval made here: add `approvals: approvals.yaml` under rules.typosquat")
    return named if named.is_absolute() else policy.parent / named
