"""The container image: hadolint-clean, and its steps replayed without a
container runtime (base images cannot be pulled here).

The replay follows the Dockerfile: the build context its .dockerignore admits,
the wheel built from it, a venv without pip with the wheel installed, the
image's config file, a data directory owned by a non-root uid and nothing else
writable by it, ``ENTRYPOINT`` + ``CMD`` run as that uid, and the
``HEALTHCHECK`` command asked until it passes. Two things differ, for tests
never reach an index: the wheel is built with this environment's setuptools
(``--no-build-isolation``), and its dependencies are this environment's
installed packages, put on the new venv's path with a ``.pth`` file, where the
image installs the wheels its build stage made. The uid is 65534 (nobody),
which exists here; the image's own uid is checked against the chart instead.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.ops.tools import (
    CHART,
    DOCKERFILE,
    REPO,
    SETUP,
    free_port,
    http_get,
    stop,
    tool,
    wait_until_ready,
)

UID = 65534
# The license = "Apache-2.0" string in pyproject.toml (PEP 639) needs this setuptools.
MIN_SETUPTOOLS = (77, 0)


@dataclass
class Stage:
    name: str
    image: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str:
        found = [args for kw, args in self.instructions if kw == keyword]
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
            stages.append(Stage(name.strip() or str(len(stages)), image))
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def runtime() -> Stage:
    return parse_dockerfile(DOCKERFILE.read_text())[1][-1]


def image_uid() -> int:
    user = runtime().last("USER")
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: a numeric uid"
    return int(user.split(":")[0])


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(  # noqa: S603
        [tool("hadolint"), "--failure-threshold", "style", "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_follows_the_contract() -> None:
    text = DOCKERFILE.read_text()
    _, stages = parse_dockerfile(text)
    assert len(stages) >= 2, "a build stage and a runtime stage"
    for stage in stages:
        repo, _, tag = stage.image.partition(":")
        assert tag and tag != "latest" and "@" not in repo, f"{stage.image}: pin a tag"
    final = stages[-1]
    assert "slim" in final.image
    assert image_uid() != 0
    assert "777" not in text, "never chmod 777"
    assert exec_form(final.last("ENTRYPOINT")) == ["stockade"]
    assert exec_form(final.last("CMD")) == ["serve", "--config", "/etc/stockade/config.yaml"]
    assert exec_form(final.last("VOLUME")) == ["/var/lib/stockade"]
    assert f"--owner={image_uid()}" in " ".join(final.all("RUN"))
    assert "/healthz" in final.last("HEALTHCHECK")
    assert any("pip wheel" in run for run in stages[0].all("RUN"))


def test_image_config_listens_everywhere_and_stores_on_the_volume() -> None:
    source, destination = runtime().last("COPY").split()
    assert destination == "/etc/stockade/config.yaml"
    config = yaml.safe_load((REPO / source).read_text())
    assert config["server"]["host"] == "0.0.0.0"  # noqa: S104
    assert config["storage"]["path"] == "/var/lib/stockade"


def test_chart_runs_as_the_image_uid() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    assert pod["runAsUser"] == pod["fsGroup"] == image_uid()


# --- the replay -------------------------------------------------------------------


def _as_uid(argv: list[str]) -> list[str]:
    return [tool("setpriv"), f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--", *argv]


def _runs_as_uid(argv: list[str]) -> bool:
    result = subprocess.run(_as_uid(argv), capture_output=True, timeout=60,  # noqa: S603
                            check=False, env={"PATH": "/usr/bin:/bin"})
    return result.returncode == 0


def _python_for_uid() -> str:
    """An interpreter of this minor version that uid 65534 may run."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    check = f"import sys; sys.exit(sys.version_info[:2] != ({version.replace('.', ', ')}))"
    own = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    for candidate in (own, f"/usr/bin/python{version}"):
        if Path(candidate).exists() and _runs_as_uid([candidate, "-c", check]):
            return candidate
    pytest.skip(f"no python{version} that uid {UID} may run")


def _context_entries() -> list[str]:
    """What .dockerignore lets into the build context (its '!' lines)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines, ".dockerignore starts from nothing"
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory uid 65534 may enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="stockade-image-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _build_wheel(context: Path, wheels: Path) -> Path:
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    if tuple(int(p) for p in version.split(".")[:2]) < MIN_SETUPTOOLS:
        pytest.skip(f"setuptools {version} cannot build the wheel offline ({SETUP})")
    for entry in _context_entries():
        source = REPO / entry
        if source.is_dir():
            shutil.copytree(source, context / entry,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
        else:
            shutil.copy2(source, context / entry)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "wheel", "--isolated", "--no-deps",
         "--no-build-isolation", "--wheel-dir", str(wheels), str(context)],
        capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = wheels.glob("stockade-*.whl")
    return wheel


def _install(python: str, venv: Path, wheel: Path) -> Path:
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)],  # noqa: S603
                   check=True, timeout=120)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--isolated", "--no-index", "--no-deps", "--no-cache-dir", str(wheel)],
        capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # The dependencies: this environment's packages, after the venv's own.
    (purelib,) = venv.glob("lib/python*/site-packages")
    (purelib / "_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv / "bin"


def _prebuilt_indexes(final: Stage, bin_dir: Path, root: Path) -> Path:
    """The runtime stage's ``stockade index build --into DIR`` replayed into
    ``root``/DIR, the folder its ``ENV`` names, left root's and read-only to the uid.

    The image builds them as root; here the build runs as the uid, then the folder
    is handed to root: this machine's root and the uid find different interpreters
    behind the venv's ``python`` (root's own is not the uid's to run), and an index
    file is written for one interpreter."""
    env = dict(item.split("=", 1) for line in final.all("ENV") for item in line.split())
    (build,) = [run for run in final.all("RUN") if "stockade index build" in run]
    into = build.split("--into", 1)[1].split()[0]
    assert env.get("STOCKADE_INDEX_PREBUILT") == into, "ENV names the folder it builds"
    folder = root / into.lstrip("/")
    folder.mkdir(parents=True)
    os.chown(folder, UID, UID)
    result = subprocess.run(  # noqa: S603
        _as_uid([str(bin_dir / "stockade"), "index", "build", "--into", str(folder)]),
        capture_output=True, text=True, timeout=600, check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/nonexistent"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(folder.glob("*.packed")) == sorted(map(Path, result.stdout.split()))
    for path in (folder, *folder.iterdir()):
        os.chown(path, 0, 0)
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


CHECK_INSTALL = """
import importlib.metadata as md, sys
from packaging.requirements import Requirement
import stockade
assert stockade.__file__.startswith(sys.prefix), stockade.__file__
for line in md.requires("stockade") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    assert req.specifier.contains(md.version(req.name), prereleases=True), line
"""


@pytest.mark.timeout(300)
def test_dockerfile_steps_replayed_as_a_non_root_uid(public_dir: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root")
    python = _python_for_uid()
    if not _runs_as_uid([python, "-c", f"import os; os.listdir({site.getsitepackages()[0]!r})"]):
        pytest.skip(f"this environment's packages are not readable by uid {UID}")
    final = runtime()

    # Build stage: the context, then the wheel.
    context, wheels = tmp_path / "context", tmp_path / "wheels"
    context.mkdir()
    wheel = _build_wheel(context, wheels)
    if shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]):
        # the build stage has a compiler: the packed tables' C look-ups are in the wheel
        assert any(n.startswith("stockade/policy/typosquat/_probe.") and n.endswith(".so")
                   for n in zipfile.ZipFile(wheel).namelist())

    # Runtime stage: the venv (root-owned, read-only to the uid), the config, the volume.
    bin_dir = _install(python, public_dir / "opt" / "stockade", wheel)
    prebuilt = _prebuilt_indexes(final, bin_dir, public_dir)
    config_dir = public_dir / "etc" / "stockade"
    config_dir.mkdir(parents=True)
    source, destination = final.last("COPY").split()
    config = config_dir / Path(destination).name
    shutil.copy2(REPO / source, config)
    config.chmod(0o644)
    data = public_dir / "data"
    data.mkdir(mode=0o750)
    os.chown(data, UID, UID)

    port = free_port()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/nonexistent",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
        # What `docker run -e` would set: loopback and a free port for the test,
        # the data directory where the image has its VOLUME.
        "STOCKADE__SERVER__HOST": "127.0.0.1", "STOCKADE__SERVER__PORT": str(port),
        "STOCKADE__STORAGE__PATH": str(data),
        "STOCKADE_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz",
        # the image's own ENV: its index files, built above
        "STOCKADE_INDEX_PREBUILT": str(prebuilt),
    }
    checked = subprocess.run(_as_uid([str(bin_dir / "python"), "-c", CHECK_INSTALL]),  # noqa: S603
                             capture_output=True, text=True, env=env, cwd=data, timeout=120,
                             check=False)
    assert checked.returncode == 0, checked.stderr[-3000:]

    command = [*exec_form(final.last("ENTRYPOINT")), *exec_form(final.last("CMD"))]
    command = [str(config) if arg == destination else arg for arg in command]
    command[0] = str(bin_dir / command[0])
    healthcheck = exec_form(final.last("HEALTHCHECK").split(" CMD ", 1)[1])

    log = tmp_path / "stockade.log"
    with log.open("wb") as out:
        server = subprocess.Popen(_as_uid(command), cwd=data, env=env,  # noqa: S603
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        # Wait on /healthz directly (cheap), then ask the HEALTHCHECK command itself.
        wait_until_ready(f"http://127.0.0.1:{port}/healthz", server, log, timeout_s=240)
        health = subprocess.run(_as_uid(healthcheck), env=env, cwd=data,  # noqa: S603
                                capture_output=True, timeout=60, check=False)
        assert health.returncode == 0, health.stderr.decode()[-1500:]

        status = Path(f"/proc/{server.pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uids.split()[1:] == [str(UID)] * 4, uids
        assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200  # storage writable
        # The first start mapped the index files the image built, and built none.
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        assert {p.name for p in prebuilt.glob("*.packed")} == {
            Path(line.split()[-1]).name for line in maps.splitlines()
            if line.split()[-1].startswith(str(prebuilt))}
        assert "built by process" not in log.read_text()
        written = list(data.iterdir())
        assert written, "stockade wrote nothing to its data directory"
        assert all(p.stat().st_uid == UID for p in written)
        # Nothing else was writable to it: the install stayed root's.
        assert not any(p.stat().st_mode & stat.S_IWOTH for p in bin_dir.parent.rglob("*")
                       if not p.is_symlink())
    finally:
        code = stop(server)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    after = subprocess.run(_as_uid(healthcheck), env=env, cwd=data,  # noqa: S603
                           capture_output=True, timeout=30, check=False)
    assert after.returncode != 0, "the HEALTHCHECK passes with nothing listening"
