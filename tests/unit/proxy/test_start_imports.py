"""What a server's start imports: the verifiers' libraries (sigstore, cryptography,
pypi-attestations), the web page's templates (jinja2), the SBOM writer (cyclonedx), TUF,
the version orderings (univers), the SPDX expressions' parser (license-expression) and
the confusable characters' tables (read only for a name with a character that does not
fold to ASCII otherwise), OpenPGP (pysequoia, for Maven signatures only) and the
process pool's modules (multiprocessing, for large documents only) wait for their
first use, so a server that never uses them never pays for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LAZY = {"sigstore", "sigstore_models", "cryptography", "pypi_attestations", "jinja2",
        "cyclonedx", "tuf", "securesystemslib", "univers", "confusable_homoglyphs",
        "license_expression", "boolean", "pysequoia", "multiprocessing"}

_SERVE = """
import asyncio, json, sys, urllib.request
from pathlib import Path
from aiohttp import web
from stockade.config.load import load_settings
from stockade.proxy.app import make_app

settings = load_settings(Path(sys.argv[1]), environ={}, overrides={})

async def main():
    runner = web.AppRunner(make_app(settings, environ={}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
            return resp.status
    status = await asyncio.to_thread(get, "/healthz")
    loaded = sorted({m.split(".")[0] for m in sys.modules})
    page = await asyncio.to_thread(get, "/_stockade/ui/")
    after_page = sorted({m.split(".")[0] for m in sys.modules})
    await runner.cleanup()
    print(json.dumps({"status": status, "loaded": loaded, "page": page,
                      "after_page": after_page}))

asyncio.run(main())
"""


def _loaded_by(code: str, *args: str, tmp_path: Path) -> dict[str, object]:
    env = {**os.environ, "STOCKADE_INDEX_CACHE": str(tmp_path / "index")}
    env.pop("STOCKADE_CONFIG", None)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,  # noqa: S603
                         text=True, env=env, cwd=tmp_path, check=True, timeout=120).stdout
    found: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return found


def test_importing_the_command_line_loads_none_of_the_lazy_libraries(tmp_path: Path) -> None:
    found = _loaded_by("import json, sys, stockade.proxy.cli\n"
                       "print(json.dumps({'loaded': sorted({m.split('.')[0] "
                       "for m in sys.modules})}))", tmp_path=tmp_path)
    loaded = set(found["loaded"])  # type: ignore[arg-type]
    assert "stockade" in loaded and "aiohttp" in loaded
    assert not loaded & LAZY


def test_a_started_server_answers_before_loading_them_and_its_page_loads_jinja2(
        tmp_path: Path) -> None:
    config = _policy(tmp_path, "rules: {typosquat: {enabled: false}}\n")
    found = _loaded_by(_SERVE, config, tmp_path=tmp_path)
    assert found["status"] == 200
    assert not set(found["loaded"]) & LAZY  # type: ignore[arg-type]
    assert found["page"] == 200  # the page still renders: its templates load on first use
    assert "jinja2" in set(found["after_page"])  # type: ignore[arg-type]


_PRELOAD = """
import json, sys
from pathlib import Path
from stockade.config.load import load_settings
from stockade.proxy.app import load_engine
from stockade.proxy.provenance.checker import import_verifiers

imported = import_verifiers(load_engine(load_settings(Path(sys.argv[1]), environ={})))
print(json.dumps({"imported": imported,
                  "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _policy(tmp_path: Path, rules: str) -> str:
    (tmp_path / "policy.yaml").write_text(rules)
    (tmp_path / "stockade.yaml").write_text(
        f"storage: {{path: {tmp_path / 'data'}}}\npolicy: {{file: {tmp_path / 'policy.yaml'}}}\n")
    return str(tmp_path / "stockade.yaml")


def test_a_policy_with_provenance_has_its_verifiers_imported_before_the_fork(
        tmp_path: Path) -> None:
    config = _policy(tmp_path, "rules: {typosquat: {enabled: false}, provenance: {}}\n")
    found = _loaded_by(_PRELOAD, config, tmp_path=tmp_path)
    assert found["imported"] is True
    loaded = set(found["loaded"])  # type: ignore[arg-type]
    assert {"sigstore", "pypi_attestations", "cryptography"} <= loaded


def test_a_policy_without_provenance_imports_none_of_them(tmp_path: Path) -> None:
    config = _policy(tmp_path, "rules: {typosquat: {enabled: false}}\n")
    found = _loaded_by(_PRELOAD, config, tmp_path=tmp_path)
    assert found["imported"] is False
    assert not set(found["loaded"]) & LAZY  # type: ignore[arg-type]


_FOLD = """
import json, sys
from stockade.policy.model import Ecosystem, Facts, PackageRef
from stockade.policy.rules.typosquat import TyposquatRule

rule = TyposquatRule(popular={Ecosystem.PYPI: ["requests", "numpy"]})
ascii_verdict = rule.evaluate(PackageRef(Ecosystem.PYPI, "reqeusts"), Facts(upstream="public"))
after_ascii = "confusable_homoglyphs" in sys.modules
# a Cyrillic small ie: no ASCII letter under it, only the confusables' tables fold it
folded = rule.evaluate(PackageRef(Ecosystem.PYPI, "r\\u0435quests"), Facts(upstream="public"))
print(json.dumps({"ascii": ascii_verdict is not None and ascii_verdict.blocks,
                  "after_ascii": after_ascii,
                  "folded": folded is not None and folded.blocks,
                  "target": folded.target if folded is not None else None,
                  "after_fold": "confusable_homoglyphs" in sys.modules}))
"""


def test_the_confusables_tables_are_read_for_the_first_name_that_needs_them(
        tmp_path: Path) -> None:
    found = _loaded_by(_FOLD, tmp_path=tmp_path)
    assert found == {"ascii": True, "after_ascii": False, "folded": True,
                     "target": "requests", "after_fold": True}


_LICENCES = """
import json, sys
from pathlib import Path
from stockade.config.load import load_settings
from stockade.policy.model import Ecosystem, Facts, PackageRef
from stockade.proxy.app import load_engine

engine = load_engine(load_settings(Path(sys.argv[1]), environ={}))
loaded = "license_expression" in sys.modules
ref = PackageRef(Ecosystem.PYPI, "demo", "1.0")
verdict = engine.decide(ref, Facts(upstream="public", license="MIT AND GPL-3.0-only"))
print(json.dumps({"at_load": loaded, "decision": verdict.decision.value,
                  "rule": verdict.rule, "after": "license_expression" in sys.modules}))
"""


def test_a_licences_policy_reads_its_parser_with_the_first_licence(tmp_path: Path) -> None:
    config = _policy(tmp_path, "rules: {typosquat: {enabled: false}, "
                               "licenses: {deny: [GPL-3.0-only]}}\n")
    found = _loaded_by(_LICENCES, config, tmp_path=tmp_path)
    assert found == {"at_load": False, "decision": "block", "rule": "licenses",
                     "after": True}


_COLLECTIONS = """
import gc, json
gc.collect()  # counts from zero: the packages above the command make few objects
before = [g["collections"] for g in gc.get_stats()]
import stockade.proxy.cli
after = [g["collections"] for g in gc.get_stats()]
print(json.dumps({"passes": [a - b for a, b in zip(after, before)],
                  "enabled": gc.isenabled()}))
"""


def test_the_command_imports_its_modules_without_collector_passes(tmp_path: Path) -> None:
    """Its imports make no garbage; the collector runs again once they are in. (A
    young pass or two may come before the command's module runs: finding it.)"""
    found = _loaded_by(_COLLECTIONS, tmp_path=tmp_path)
    passes = found["passes"]
    assert isinstance(passes, list)
    young, middle, old = passes
    assert (young <= 2, middle, old, found["enabled"]) == (True, 0, 0, True), found


_SERVE_COMMAND = """
import json, sys
from stockade.proxy.cli import main

code = main(["serve", "--config", sys.argv[1]])  # a file that is not there: 2, at once
serving = sorted(m for m in sys.modules if m.endswith("_cli"))
try:
    main(["token", "--help"])
except SystemExit:
    pass
print(json.dumps({"code": code, "serving": serving,
                  "after": sorted(m for m in sys.modules if m.endswith("_cli"))}))
"""


def test_serve_imports_none_of_the_maintenance_commands(tmp_path: Path) -> None:
    found = _loaded_by(_SERVE_COMMAND, str(tmp_path / "absent.yaml"), tmp_path=tmp_path)
    assert found["code"] == 2
    assert found["serving"] == []  # each worker would hold them for nothing
    assert "stockade.proxy.token_cli" in found["after"]  # another command has them
