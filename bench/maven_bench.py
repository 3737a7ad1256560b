"""Maven proxy benchmark: `mvn compile` through stockade vs straight from the upstream.

A project with a small dependency tree and pinned build plugins is compiled with
an empty local repository each time, resolving its artifacts (plugins and their
dependencies from Debian's packaged Maven repository, /usr/share/maven-repo, which
.ci/setup-maven.sh installs, served by a static upstream with checksum
files). Prints, as ratios to the same run straight from the static upstream:
cold (stockade's cache empty) and warm (cache filled), median of 5 rounds
(each round: upstream, cold, warm; single runs move by 20% on a shared machine).

    python -m bench.maven_bench
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import Proc, _spawn, start_proxy
from testbed.maven_repo import M2, POM
from testbed.net import free_port

POM_TEXT = POM.replace("DEPENDENCY", "")
ROUNDS = 5


def _static(root: Path, log: Path) -> Proc:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.maven_static", "--root", str(root), "--port", str(port)]
    return Proc(_spawn(cmd, log), port).wait_ready("/_count", log)


def _project(work: Path, repo_url: str) -> Path:
    shutil.rmtree(work, ignore_errors=True)
    (work / "src" / "main" / "java" / "b").mkdir(parents=True)
    (work / "pom.xml").write_text(POM_TEXT)
    (work / "src" / "main" / "java" / "b" / "App.java").write_text(
        "package b; public class App {}\n")
    (work / "settings.xml").write_text(
        "<settings><mirrors><mirror><id>m</id><mirrorOf>*</mirrorOf>"
        f"<url>{repo_url}</url></mirror></mirrors></settings>")
    return work


def _compile(work: Path, local: Path) -> tuple[float, int]:
    shutil.rmtree(local, ignore_errors=True)
    started = time.perf_counter()
    out = subprocess.run(
        ["mvn", "-B", "-s", str(work / "settings.xml"), f"-Dmaven.repo.local={local}",
         "compile"], cwd=work, capture_output=True, text=True, timeout=900, check=True,
    ).stdout
    elapsed = time.perf_counter() - started
    return elapsed, out.count("Downloaded from")


def main() -> None:
    if shutil.which("mvn") is None or not M2.is_dir():
        print(f"skipped: needs mvn and Debian's build plugins in {M2} (.ci/setup-maven.sh "
              "installs both; the plugins are served from there)")
        return
    with tempfile.TemporaryDirectory(prefix="stockade-maven-bench-") as tmp:
        work = Path(tmp)
        static = _static(M2, work / "static.log")
        proxies: list[Proc] = []
        try:
            direct_url = static.url("/maven2/")
            direct, cold, warm = [], [], []
            artifacts = 0
            for i in range(ROUNDS):
                project = _project(work / f"direct{i}", direct_url)
                t, artifacts = _compile(project, work / "m2")
                direct.append(t)
                proxy = start_proxy(direct_url, work / f"proxy{i}", work / f"proxy{i}.log",
                                    ecosystem="maven")
                proxies.append(proxy)
                project = _project(work / f"cold{i}", proxy.url("/maven/"))
                cold.append(_compile(project, work / "m2")[0])
                project = _project(work / f"warm{i}", proxy.url("/maven/"))
                warm.append(_compile(project, work / "m2")[0])
            d, c, w = (statistics.median(x) for x in (direct, cold, warm))
            print(f"mvn compile resolving {artifacts} artifacts into an empty local "
                  f"repository, median of {ROUNDS}: upstream {d:.2f} s; stockade cold {c:.2f} s -> "
                  f"ratio {c / d:.2f}; stockade warm {w:.2f} s -> ratio {w / d:.3f} "
                  "(target <= 1.10)")
        finally:
            for proxy in proxies:
                proxy.stop()
            static.stop()


if __name__ == "__main__":
    main()
