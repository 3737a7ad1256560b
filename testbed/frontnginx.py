"""nginx in front of stockade's front-server mode (``server.accel_redirect``), as
the README's sample configures it: every request goes to stockade, which decides
it; where stockade answers with ``X-Accel-Redirect``, nginx sends the named file
from the internal location mapped onto the storage folder.

Shared by the end-to-end test and ``bench.serving``. Needs Debian's ``nginx``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from testbed.net import free_port

# The part the README shows, with {storage} and {stockade} filled in.
SERVER_BLOCK = """\
    upstream stockade {{ server {stockade}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://stockade;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffers 32 16k;  # large packuments stream through in fewer, larger reads
        }}
        # Only stockade's X-Accel-Redirect reaches this: clients cannot ask for it.
        location {prefix} {{
            internal;
            alias {storage}/;
            # nginx keeps only a few of stockade's headers across the redirect
            add_header X-Stockade-Cache $upstream_http_x_stockade_cache always;
            add_header X-Checksum-Sha1 $upstream_http_x_checksum_sha1 always;
            add_header X-Checksum-Md5 $upstream_http_x_checksum_md5 always;
            add_header X-Checksum-Sha256 $upstream_http_x_checksum_sha256 always;
            add_header X-Request-Id $upstream_http_x_request_id always;
            add_header Vary $upstream_http_vary always;
            # a rendered packument's gzip form lies beside it as <file>.gz
            gzip_static on;
            etag off;
            add_header ETag $upstream_http_etag always;
        }}
    }}
"""

_CONF = """\
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{server}}}
"""


@dataclass
class FrontNginx:
    """A running front nginx on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    port: int
    folder: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def available() -> bool:
    """True when Debian's nginx is installed."""
    return shutil.which("nginx") is not None


def start(folder: Path, *, stockade_port: int, storage: Path,
          prefix: str = "/_stockade_blobs/", workers: str = "auto") -> FrontNginx:
    """Start nginx in front of stockade on ``stockade_port``, serving redirects to
    ``prefix`` from ``storage`` (stockade's ``storage.path``); waits until it answers.

    Raises:
        RuntimeError: nginx exited or did not answer within a minute.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = SERVER_BLOCK.format(stockade=f"127.0.0.1:{stockade_port}", port=port,
                                 prefix=prefix, storage=storage.resolve())
    conf = folder / "nginx.conf"
    conf.write_text(_CONF.format(workers=workers, dir=folder, server=server))
    cmd = ["nginx", "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(conf)]
    if os.geteuid() == 0:  # as root nginx would keep a root master: drop to nobody
        shutil.chown(folder, "nobody")
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    log = folder / "nginx.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    front = FrontNginx(proc, port, folder)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text()}"
                               f"{(folder / 'error.log').read_text()}")
        try:
            with urllib.request.urlopen(front.url("/healthz"), timeout=2):  # noqa: S310
                return front
        except urllib.error.HTTPError as exc:
            exc.close()
            return front  # nginx answers; stockade's answer is the test's business
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    front.stop()
    raise RuntimeError("nginx did not answer within a minute")
