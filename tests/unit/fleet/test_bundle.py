"""The bundle archive: deterministic, complete, and refused when tampered with."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from stockade.fleet.bundle import BundleError, build_bundle, unpack
from stockade.policy.approvals import approve
from stockade.policy.approvals import load as load_approvals
from stockade.policy.file import load_policy
from stockade.policy.model import Ecosystem
from stockade.proxy.cli import main

OSV = Path(__file__).parents[2] / "fixtures" / "osv"


def _policy(tmp_path: Path) -> Path:
    shutil.copytree(OSV, tmp_path / "intel")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "internal_names: {npm: ['@acme/*']}\n"
        "rules:\n"
        "  typosquat: {protected: {pypi: [acme-billing]}}\n"
        "  osv: {paths: [intel/], min_severity: high}\n"
        "  lists:\n    deny:\n      - {ecosystem: npm, name: left-pad, reason: banned}\n")
    return policy


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    one = build_bundle(policy, tmp_path / "one.tar.gz", internal={Ecosystem.PYPI: ("acme-*",)})
    (tmp_path / "intel").touch()  # times do not enter the archive
    two = build_bundle(policy, tmp_path / "two.tar.gz", internal={Ecosystem.PYPI: ("acme-*",)})
    assert one.sha256 == two.sha256
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()


def test_the_unpacked_bundle_holds_the_policy_and_what_it_reads(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    built = build_bundle(policy, tmp_path / "b.tar.gz", internal={Ecosystem.PYPI: ("acme-*",)})
    dest = tmp_path / "unpacked"
    unpack(built.path, dest)
    doc = yaml.safe_load((dest / "policy.yaml").read_text())
    assert doc["rules"]["osv"]["paths"] == ["osv/0"]
    assert doc["internal_names"] == {"npm": ["@acme/*"], "pypi": ["acme-*"]}
    assert doc["rules"]["typosquat"]["protected"] == {"pypi": ["acme-billing"]}
    assert sorted(p.name for p in (dest / "osv" / "0").iterdir()) == sorted(
        p.name for p in OSV.glob("*.json"))
    # it loads as a replica loads it, with the same OSV records as the original
    original = load_policy(policy)
    bundled = load_policy(dest / "policy.yaml")
    assert original.osv is not None and bundled.osv is not None
    assert bundled.osv.revision != "empty"
    assert sorted(bundled.osv.records) == sorted(original.osv.records)


def test_the_approvals_file_travels_in_the_bundle(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {typosquat: {approvals: shared/approvals.yaml}}\n")
    path = tmp_path / "shared" / "approvals.yaml"
    approve(path, Ecosystem.NPM, "axios-2", until="2099-12-31", reason="vendored fork",
            by="alice")
    built = build_bundle(policy, tmp_path / "b.tar.gz")
    path.unlink()  # the replica reads the bundle's copy, not this file
    dest = tmp_path / "unpacked"
    unpack(built.path, dest)
    doc = yaml.safe_load((dest / "policy.yaml").read_text())
    assert doc["rules"]["typosquat"]["approvals"] == "files/approvals-approvals.yaml"
    bundled = load_policy(dest / "policy.yaml")
    assert bundled.approvals == dest / "files" / "approvals-approvals.yaml"
    (entry,) = load_approvals(bundled.approvals)
    assert (entry.ecosystem, entry.name, entry.by, entry.reason) == (
        Ecosystem.NPM, "axios-2", "alice", "vendored fork")
    # a bad approvals file is refused at build time, as any file the policy reads
    path.write_text("approvals: [{ecosystem: npm, name: x}]\n")
    with pytest.raises(BundleError, match="until: missing"):
        build_bundle(policy, tmp_path / "bad.tar.gz")
    # no approvals file yet: the bundle points inside itself and carries none
    path.unlink()
    dest2 = tmp_path / "unpacked2"
    unpack(build_bundle(policy, tmp_path / "none.tar.gz").path, dest2)
    empty = load_policy(dest2 / "policy.yaml")
    assert empty.approvals is not None and empty.approvals.is_relative_to(dest2)
    assert load_approvals(empty.approvals) == []


def test_a_policy_that_does_not_load_is_never_built(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {cooldown: {min_age: 3x}}\n")
    with pytest.raises(BundleError, match="does not load"):
        build_bundle(policy, tmp_path / "b.tar.gz")
    assert not (tmp_path / "b.tar.gz").exists()


def _rewrite(src: Path, dest: Path, extra: tuple[str, bytes] | None = None,
             change: str | None = None) -> None:
    buffer = io.BytesIO()
    with tarfile.open(src, "r:gz") as old, tarfile.open(fileobj=buffer, mode="w") as new:
        for info in old:
            data = old.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == change:
                data += b"\n# changed\n"
                info.size = len(data)
            new.addfile(info, io.BytesIO(data))
        if extra is not None:
            info = tarfile.TarInfo(extra[0])
            info.size = len(extra[1])
            new.addfile(info, io.BytesIO(extra[1]))
    dest.write_bytes(gzip.compress(buffer.getvalue()))


@pytest.mark.parametrize(("extra", "change", "message"), [
    (None, "policy.yaml", "do not match its manifest"),
    (("extra.txt", b"x"), None, "do not match its manifest"),
    (("../escape.txt", b"x"), None, "not a plain relative file"),
])
def test_a_tampered_bundle_is_refused(tmp_path: Path, extra: tuple[str, bytes] | None,
                                      change: str | None, message: str) -> None:
    built = build_bundle(_policy(tmp_path), tmp_path / "b.tar.gz")
    bad = tmp_path / "bad.tar.gz"
    _rewrite(built.path, bad, extra, change)
    with pytest.raises(BundleError, match=message):
        unpack(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_not_an_archive_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(BundleError, match="not a readable bundle"):
        unpack(bad, tmp_path / "out")


def test_the_commands_build_init_and_publish(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path)
    for role in ("root", "targets", "snapshot", "timestamp"):
        assert main(["bundle", "keygen", str(tmp_path / f"{role}.pem")]) == 0
    assert main(["bundle", "keygen", str(tmp_path / "root.pem")]) == 2  # never overwrites
    repo = str(tmp_path / "repo")
    assert main(["bundle", "init", "--repo", repo, "--root-key", str(tmp_path / "root.pem"),
                 *(a for r in ("targets", "snapshot", "timestamp")
                   for a in (f"--{r}-key", str(tmp_path / f"{r}.pem")))]) == 0
    assert main(["bundle", "build", "--policy", str(policy), "-o",
                 str(tmp_path / "b.tar.gz")]) == 0
    keys = [a for r in ("targets", "snapshot", "timestamp")
            for a in (f"--{r}-key", str(tmp_path / f"{r}.pem"))]
    # the root key cannot stand in for an online role's key
    assert main(["bundle", "publish", str(tmp_path / "b.tar.gz"), "--repo", repo,
                 *keys[:-1], str(tmp_path / "root.pem")]) == 2
    assert "is not a timestamp key" in capsys.readouterr().err
    assert main(["bundle", "publish", str(tmp_path / "b.tar.gz"), "--repo", repo, *keys]) == 0
    assert "version 1 published" in capsys.readouterr().out
    assert main(["bundle", "timestamp", "--repo", repo, "--timestamp-key",
                 str(tmp_path / "timestamp.pem")]) == 0
    assert (tmp_path / "repo" / "metadata" / "1.targets.json").is_file()
