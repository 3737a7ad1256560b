"""Provenance through the proxy: warm tarball requests with provenance on vs off.

Two stockade apps in one process, in front of one fake npm registry on loopback
that signs every tarball with a registry key made here (``dist.signatures`` as
npm writes them, the key served at ``/-/npm/v1/keys``). Versions list no
attestations (sigstore bundles cannot be made here): the attestation check finds
them missing; with ``--unverifiable`` each lists one sigstore cannot load (as npm's
2023 format), "unverifiable", served with a warning recorded once per artifact. The
cold cost of a sigstore verification itself is ``bench.provenance_bench``'s. One
app's policy has ``provenance: {signatures: verify, attestations: verify}``, the
other none.

Prints:
  - cold, per artifact: the first request of each tarball (fetch, verify the
    signature, fetch and check the attestations, store the result) with
    provenance on, against the same first request with provenance off;
  - warm: the median and p90 of requests for tarballs already stored, in passes
    alternating between the two apps, and the ratio on/off: what a warm request
    pays for provenance once its results are kept.

    python -m bench.provenance_proxy [--packages N] [--rounds N] [--unverifiable]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.provenance.npm_signatures import keyid_of
from testbed.fakes.npm_upstream import FakeNpm, integrity


def _registry(packages: int, *, unverifiable: bool) -> FakeNpm:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    keyid = keyid_of(public)
    fake = FakeNpm(keys_doc={"keys": [{
        "expires": None, "keyid": keyid, "keytype": "ecdsa-sha2-nistp256",
        "scheme": "ecdsa-sha2-nistp256",
        "key": base64.b64encode(public.public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()}]})
    for i in range(packages):
        name = f"bench-prov-{i}"
        pub = fake.publish(name, "1.0.0", payload_bytes=64 * 1024)
        sri = integrity(pub.data)
        sig = key.sign(f"{name}@1.0.0:{sri}".encode(), ec.ECDSA(hashes.SHA256()))
        fake.dist_overrides[(name, "1.0.0")] = {
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}]}
        if not unverifiable:
            fake.dist_overrides[(name, "1.0.0")]["attestations"] = None
        # else: the fake's attestations, a bundle sigstore cannot load (as npm's 2023
        # format): "unverifiable", served with a warning under attestations: verify
    return fake


def _policy(root: Path, provenance: bool) -> Path:
    root.mkdir(parents=True)
    policy = root / "policy.yaml"
    rules = "  typosquat: {enabled: false}\n"
    if provenance:
        rules += "  provenance: {signatures: verify, attestations: verify}\n"
    policy.write_text("rules:\n" + rules)
    return policy


async def _app(root: Path, upstream: str, provenance: bool) -> tuple[web.AppRunner, str]:
    policy = await asyncio.to_thread(_policy, root, provenance)
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(root / "data")},
        "npm": {"upstreams": [{"name": "npmjs", "url": upstream}]},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "policy": {"file": str(policy)},
    })
    runner = web.AppRunner(make_app(settings, environ={}), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/npm/"


async def _get(session: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    async with session.get(url) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status} {resp.reason}")
    return time.perf_counter() - start


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(len(ordered) * 0.9) - 1] * 1e3


async def run(packages: int, rounds: int, *, unverifiable: bool = False) -> None:
    registry = _registry(packages, unverifiable=unverifiable)
    await registry.start()
    with tempfile.TemporaryDirectory() as tmp:
        on, on_url = await _app(Path(tmp) / "on", registry.url, True)
        off, off_url = await _app(Path(tmp) / "off", registry.url, False)
        urls = [f"bench-prov-{i}/-/bench-prov-{i}-1.0.0.tgz" for i in range(packages)]
        try:
            async with aiohttp.ClientSession() as session:
                await _get(session, on_url + "bench-prov-0")  # imports, first packument
                await _get(session, off_url + "bench-prov-0")
                cold_on, cold_off = [], []
                for url in urls:
                    cold_off.append(await _get(session, off_url + url))
                    cold_on.append(await _get(session, on_url + url))
                warm_on: list[float] = []
                warm_off: list[float] = []
                for _ in range(rounds):
                    for url in urls:
                        warm_off.append(await _get(session, off_url + url))
                        warm_on.append(await _get(session, on_url + url))
        finally:
            await on.cleanup()
            await off.cleanup()
            await registry.stop()
    (c_on, c_on90), (c_off, c_off90) = _ms(cold_on), _ms(cold_off)
    (w_on, w_on90), (w_off, w_off90) = _ms(warm_on), _ms(warm_off)
    what = "an attestation it cannot load" if unverifiable else "no attestations"
    print(f"npm tarballs (64 KiB) through stockade, {packages} packages with {what}, "
          "median / p90:")
    print(f"  cold, provenance off   {c_off:8.2f} ms {c_off90:8.2f} ms")
    print(f"  cold, provenance on    {c_on:8.2f} ms {c_on90:8.2f} ms   "
          f"(+{c_on - c_off:.2f} ms per artifact: signature checked off the loop, "
          f"result stored)")
    print(f"  warm, provenance off   {w_off:8.2f} ms {w_off90:8.2f} ms   "
          f"({rounds} rounds alternating)")
    print(f"  warm, provenance on    {w_on:8.2f} ms {w_on90:8.2f} ms   "
          f"x{w_on / w_off:.2f} of off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--unverifiable", action="store_true",
                        help="every version lists an attestation sigstore cannot load")
    args = parser.parse_args()
    asyncio.run(run(args.packages, args.rounds, unverifiable=args.unverifiable))


if __name__ == "__main__":
    main()
