from __future__ import annotations

from pathlib import Path

import pytest

from stockade.config.load import ConfigError, load_settings


def test_defaults_match_the_contract() -> None:
    settings = load_settings(None, environ={})
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.storage.path == Path("./stockade-data")
    assert [u.url for u in settings.pypi.upstreams] == ["https://pypi.org/simple/"]
    assert settings.pypi.upstreams[0].file_hosts == ("files.pythonhosted.org",)
    assert [u.url for u in settings.npm.upstreams] == ["https://registry.npmjs.org/"]
    assert [u.url for u in settings.maven.upstreams] == ["https://repo.maven.apache.org/maven2/"]
    # a worker's caches together: one worker stays within 100 MiB RSS (README)
    assert settings.server.memory_budget_bytes == 8 * 1024**2


def test_yaml_env_and_flags_in_that_order(tmp_path: Path) -> None:
    cfg = tmp_path / "stockade.yaml"
    cfg.write_text("server: {host: 0.0.0.0, port: 9000}\nstorage: {path: /var/x}\n"
                   "policy: {file: policy.yaml}\n")
    settings = load_settings(
        cfg, environ={"STOCKADE__SERVER__PORT": "9100", "STOCKADE__STORAGE__MAX_BYTES": "1000"},
        overrides={"server": {"port": 9200}},
    )
    assert settings.server.host == "0.0.0.0"  # noqa: S104
    assert settings.server.port == 9200
    assert settings.storage.max_bytes == 1000
    assert settings.policy.file == tmp_path / "policy.yaml"


def test_example_config_is_valid() -> None:
    example = Path(__file__).parents[3] / "stockade" / "config" / "examples" / "stockade.yaml"
    settings = load_settings(example, environ={})
    internal, public = settings.pypi.upstreams
    assert internal.owns("acme-tools") and not public.internal


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server: {port: 70000}", r"server\.port: .*less than or equal to 65535 \(got 70000\)"),
        ("storage: {nope: 1}", r"storage\.nope: Extra inputs are not permitted"),
        ("pypi: {upstreams: [{name: a, url: 'ftp://x/'}]}", r"pypi\.upstreams\.0\.url: .*ftp://x/"),
        ("pypi: {upstreams: [{name: a, url: 'https://a/'}, {name: a, url: 'https://b/'}]}",
         r"upstream names must be unique"),
        ("[1, 2]", r"top level must be a mapping"),
        ("server: {port: [", r"not valid YAML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, environ={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", environ={})
