"""The second wave's storage keys: storage.backend, storage.s3.*, server.replica."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade.config.load import ConfigError, load_settings
from stockade.proxy.app import decision_log_path, replica_name


def test_defaults_match_the_contract() -> None:
    settings = load_settings(None, environ={})
    assert settings.storage.backend == "filesystem"
    s3 = settings.storage.s3
    assert (s3.bucket, s3.prefix, s3.endpoint_url, s3.addressing_style, s3.region) == (
        "stockade", "", None, "path", None)
    assert (s3.access_key_id_env, s3.secret_access_key_env) == (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    assert s3.cache_max_bytes is None
    assert settings.server.replica is None
    assert replica_name(settings)  # the host name
    assert decision_log_path(settings) == Path("./stockade-data/decisions.jsonl")


def test_yaml_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "stockade.yaml"
    cfg.write_text(
        "server: {replica: eu-1}\n"
        "storage:\n  backend: s3\n  path: /cache\n"
        "  s3: {bucket: mirror, prefix: team/a, endpoint_url: 'http://minio:9000',\n"
        "       access_key_id_env: null, secret_access_key_env: null}\n")
    settings = load_settings(cfg, environ={"STOCKADE__STORAGE__S3__CACHE_MAX_BYTES": "1000"})
    s3 = settings.storage.s3
    assert (settings.storage.backend, s3.bucket, s3.prefix) == ("s3", "mirror", "team/a/")
    assert s3.cache_max_bytes == 1000 and s3.access_key_id_env is None
    assert decision_log_path(settings) == Path("/cache/decisions-eu-1.jsonl")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("storage: {backend: gcs}", r"storage\.backend: .*'filesystem' or 's3'"),
        ("storage: {s3: {addressing_style: dns}}", r"storage\.s3\.addressing_style"),
        ("storage: {s3: {endpoint_url: 'minio:9000'}}", r"storage\.s3\.endpoint_url"),
        ("storage: {s3: {bucket: Bad_Name}}", r"storage\.s3\.bucket"),
        ("storage: {s3: {cache_max_bytes: 0}}", r"storage\.s3\.cache_max_bytes"),
        ("server: {replica: 'a/b'}", r"server\.replica"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, environ={})
