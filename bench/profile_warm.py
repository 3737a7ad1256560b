"""Where a warm request's time goes: one stockade process under cProfile, served a warm
22 KB wheel (or another case of ``bench.serving``'s table) by ``wrk``.

    python -m bench.profile_warm [--duration S] [--case LABEL] [--keep]

Starts the static upstream over ``bench.serving_tree``'s tree and one stockade
(``server.workers: 1``, default settings otherwise) under ``python -m cProfile``,
warms the case (``--case``: ``"simple page"``, ``"packument, full"``, ``"27 KB npm
tarball"``...; the 22 KB wheel by default), runs ``wrk -t1 -c16`` on it, stops the
server and prints the cumulative time of the request's parts as shares of aiohttp's
``_handle_request`` and, for requests the connection's fast path answered, of
``FastPath.take`` (profiled times are inflated; read the shares), then the 25
functions with the most time of their own. Needs ``wrk`` on PATH.
"""

from __future__ import annotations

import argparse
import pstats
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

from bench.procs import Proc, start_static, work_folder
from bench.serving_tree import build
from testbed.net import free_port

# (label, file name ending, function name): cumulative, as called per request
PARTS = (
    ("the whole request (aiohttp's _handle_request)", "web_protocol.py", "_handle_request"),
    ("  the handler and middlewares (web_app._handle)", "web_app.py", "_handle"),
    ("    a warm-hit memo answer (warmmemo.WarmMemo.answer)", "warmmemo.py", "answer"),
    ("      the gate's decisions, memo or not (gate.Gate.decide)", "gate.py", "decide"),
    ("      a memo hit's decisions (gate.Gate.decide_allowed)", "gate.py", "decide_allowed"),
    ("      its blob's answer (pipeline.answer_stored)", "pipeline.py", "answer_stored"),
    ("    metadata look-up (pypi._project)", "pypi.py", "_project"),
    ("    version facts (admission.version_facts)", "admission.py", "version_facts"),
    ("    the decision (admission.admit_artifact)", "admission.py", "admit_artifact"),
    ("    the admitted record (pipeline.with_admitted)", "pipeline.py", "with_admitted"),
    ("    the blob's response (pipeline.serve)", "pipeline.py", "serve"),
    ("    a project page's handler (pypi.project)", "pypi.py", "project"),
    ("    a packument's handler (npm.packument)", "npm.py", "packument"),
    ("  finishing the response (web_protocol.finish_response)", "web_protocol.py",
     "finish_response"),
    ("    of which the access log (accesslog.JsonAccessLogger.log)", "accesslog.py", "log"),
    ("    of which a memo answer's head (prepared.PreparedResponse._start)", "prepared.py",
     "_start"),
)

# The same for a request the connection's fast path answered (``server.fast_path``), as
# shares of ``FastPath.take``.
FAST_PARTS = (
    ("the whole request (fastpath.FastPath.take)", "fastpath.py", "take"),
    ("  reading it (fastpath.Reader.read)", "fastpath.py", "read"),
    ("  aiohttp's Request made (web_app._make_request)", "web_app.py", "_make_request"),
    ("  the access check (auth.AccessCheck.admits)", "auth.py", "admits"),
    ("  the memo's answer (warmmemo.WarmMemo.answer_now)", "warmmemo.py", "answer_now"),
    ("    the blob held (pipeline.held_prepared)", "pipeline.py", "held_prepared"),
    ("    its blob's answer (pipeline.answer_stored)", "pipeline.py", "answer_stored"),
    ("  an anonymous artifact's answer (fastpath.FastPath._answer_plain)", "fastpath.py",
     "_answer_plain"),
    ("    the memo's answer (warmmemo.WarmMemo.answer_plain)", "warmmemo.py",
     "answer_plain"),
    ("      the blob held (pipeline.held_plain)", "pipeline.py", "held_plain"),
    ("      the decisions (warmmemo.WarmMemo._allowed_now)", "warmmemo.py", "_allowed_now"),
    ("      recorded and counted (pipeline.answer_plain)", "pipeline.py", "answer_plain"),
    ("  counted (responses.route_counter's count)", "responses.py", "count"),
    ("  the head (prepared.head_bytes)", "prepared.py", "head_bytes"),
    ("  the access line (accesslog.JsonAccessLogger.log_fields)", "accesslog.py",
     "log_fields"),
    ("  the write (transport.write)", "selector_events.py", "write"),
)


def _cumulative(stats: pstats.Stats, file_end: str, function: str) -> tuple[float, int]:
    found = [(value[3], value[1]) for (path, _, name), value in
             stats.stats.items()  # type: ignore[attr-defined]
             if path.endswith(file_end) and name == function]
    return max(found, default=(0.0, 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--case", default="22 KB wheel",
                        help="the case of bench.serving's table to profile")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    with work_folder("stockade-profile-", keep=args.keep) as work:
        upstream_port = free_port()
        cases = build(work / "up", f"http://127.0.0.1:{upstream_port}/", huge=False)
        found = [c for c in cases if c.label == args.case]
        if not found:
            sys.exit(f"no case {args.case!r}: one of {', '.join(c.label for c in cases)}")
        case = found[0]
        static = start_static(work / "up", work / "static.log", port=upstream_port)
        port, base = free_port(), f"http://127.0.0.1:{upstream_port}/"
        config = work / "stockade.yaml"
        config.write_text(yaml.safe_dump({
            "server": {"host": "127.0.0.1", "port": port, "workers": 1},
            "storage": {"path": str(work / "data")},
            "pypi": {"upstreams": [{"name": "static", "url": f"{base}simple/"}]},
            "npm": {"upstreams": [{"name": "static", "url": f"{base}npm/"}]},
            "maven": {"upstreams": [{"name": "static", "url": f"{base}maven2/"}]},
        }))
        profile = work / "stockade.prof"
        log = work / "stockade.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(profile), "-m",
             "stockade.proxy.cli", "serve", "--config", str(config)],
            stdout=log.open("wb"), stderr=subprocess.STDOUT)
        server = Proc(proc, port)
        try:
            server.wait_ready("/readyz", log)
            url = server.url(case.stockade_path)
            flags = [f for name, value in case.headers for f in ("-H", f"{name}: {value}")]
            for _ in range(20):
                warm = urllib.request.Request(url, headers=dict(case.headers))  # noqa: S310
                with urllib.request.urlopen(warm, timeout=30) as resp:  # noqa: S310
                    resp.read()
            out = subprocess.run(["wrk", "-t1", "-c16", f"-d{args.duration:g}s", *flags, url],
                                 capture_output=True, text=True, check=True).stdout
            print(next(line for line in out.splitlines() if "Requests/sec" in line))
        finally:
            proc.send_signal(signal.SIGTERM)  # a clean stop writes the profile
            proc.wait(timeout=120)
            static.stop()
        for _ in range(100):
            if profile.exists():
                break
            time.sleep(0.1)
        stats = pstats.Stats(str(profile))
        for parts in (PARTS, FAST_PARTS):
            whole, requests = _cumulative(stats, parts[0][1], parts[0][2])
            if not requests:
                continue
            print(f"\n{case.label}, {requests:,} requests profiled; cumulative time per part:")
            for label, file_end, function in parts:
                seconds, calls = _cumulative(stats, file_end, function)
                print(f"{label:60} {seconds / whole:6.1%}  ({calls:,} calls)")
        print()
        stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    try:
        main()
    except urllib.error.URLError as exc:
        sys.exit(f"stockade did not answer: {exc}")
