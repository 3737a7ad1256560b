"""What the ecosystem modules share when reading upstream documents."""

from __future__ import annotations

from typing import Any

import orjson

from stockade.proxy.errors import UpstreamError


def json_object(body: bytes, upstream: str, what: str) -> dict[str, Any]:
    """The JSON object an upstream sent as ``what``.

    Raises:
        UpstreamError: the body is not JSON, or not an object.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"upstream {upstream} sent invalid JSON for {what}",
                            upstream=upstream) from exc
    if not isinstance(data, dict):
        raise UpstreamError(f"upstream {upstream} sent unexpected JSON for {what}",
                            upstream=upstream)
    return data
