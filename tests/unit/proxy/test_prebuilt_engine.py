"""The engine the supervisor builds before forking is the first workers' engine: a
worker of the first start does not read the policy (and its OSV data) again, unless a
file changed since; its reloads, and workers started later, always read anew."""

from __future__ import annotations

from pathlib import Path

from stockade.config.load import load_settings
from stockade.config.model import Settings
from stockade.proxy import cli
from stockade.proxy.gate import PolicyEngine

_RULES = ("rules: {typosquat: {enabled: false}, lists: {deny: "
          "[{ecosystem: pypi, name: NAME, reason: denied}]}}\n")


def _settings(tmp_path: Path, name: str = "evil") -> Settings:
    (tmp_path / "policy.yaml").write_text(_RULES.replace("NAME", name))
    (tmp_path / "stockade.yaml").write_text(
        f"storage: {{path: {tmp_path / 'data'}}}\npolicy: {{file: {tmp_path / 'policy.yaml'}}}\n")
    return load_settings(tmp_path / "stockade.yaml", environ={})


def _prebuilt(settings: Settings) -> tuple[cli._Prebuilt, PolicyEngine]:
    engine = cli._engine_and_verifiers(settings)
    return cli._Prebuilt(settings, engine, cli._stamps(settings, engine)), engine


def test_a_worker_takes_the_prebuilt_engine_at_start_and_reads_anew_on_reload(
        tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    prebuilt, engine = _prebuilt(settings)
    assert prebuilt.factory(settings) is engine
    again = prebuilt.factory(settings)  # a reload
    assert again is not engine
    assert again.revision == engine.revision


def test_a_policy_file_changed_since_is_read_anew(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    prebuilt, engine = _prebuilt(settings)
    _settings(tmp_path, "other-evil-name")
    taken = prebuilt.factory(settings)
    assert taken is not engine
    assert taken.revision != engine.revision


def test_once_dropped_or_for_other_settings_the_policy_is_read_anew(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    prebuilt, engine = _prebuilt(settings)
    prebuilt.drop()  # every worker of the first start listens: one started later reads
    assert prebuilt.factory(settings) is not engine
    prebuilt, engine = _prebuilt(settings)
    assert prebuilt.factory(settings.model_copy()) is not engine  # a bundle's policy file


def test_loading_records_the_files_as_they_were_read(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    prebuilt = cli._Prebuilt.load(settings)
    engine = prebuilt.factory(settings)
    assert prebuilt.factory(settings) is not engine
    assert cli._Prebuilt.load(settings).factory(settings).revision == engine.revision
