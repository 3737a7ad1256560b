"""What a project is, read out of the metadata document the proxy already parses.

Owns reading ``ProjectFacts`` (first release, releases, owners, summary,
repository) once per parsed document: from an npm packument (``time.created``,
``versions``, ``maintainers``, ``description``, ``repository``) and from a PyPI
project page (PEP 700 ``upload-time`` and ``versions``; an HTML page gives no
times, so the age is unknown and the policy's ``on_missing`` decides), and from
``maven-metadata.xml`` (its ``versions``, the groupId as owner; the first release
is ``maven_facts``'s). The
ecosystem modules stamp the result on every version's facts; deciding on them is
``stockade.policy``'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from stockade.policy.model import ProjectFacts
from stockade.policy.times import timestamp

_MAX_TEXT = 500  # characters of a summary or repository URL kept: enough to compare


def _text(value: object) -> str | None:
    return value.strip()[:_MAX_TEXT] or None if isinstance(value, str) else None


def npm(data: Mapping[str, Any]) -> ProjectFacts:
    """The project facts of a full packument."""
    times: Mapping[str, Any] = data["time"] if isinstance(data.get("time"), dict) else {}
    versions: Mapping[str, Any] = data["versions"] \
        if isinstance(data.get("versions"), dict) else {}
    first = timestamp(times.get("created")) if times else None
    if first is None and times:
        first = _earliest(timestamp(t) for k, t in times.items() if k in versions)
    maintainers = data.get("maintainers")
    owners = tuple(str(m["name"]) for m in maintainers
                   if isinstance(m, dict) and isinstance(m.get("name"), str)) \
        if isinstance(maintainers, list) else ()
    repository = data.get("repository")
    if isinstance(repository, dict):
        repository = repository.get("url")
    return ProjectFacts(first_release=first, releases=len(versions), owners=owners,
                        summary=_text(data.get("description")), repository=_text(repository))


def pypi(upload_times: Iterable[str | None], versions: int) -> ProjectFacts:
    """The project facts of a project page: its files' upload times (None where the
    page gives none) and how many versions it lists."""
    times = list(upload_times)
    first = None if not times or any(t is None for t in times) else \
        _earliest(timestamp(t) for t in times)
    return ProjectFacts(first_release=first, releases=versions)


def maven(group: str, versions: int, first: datetime | None) -> ProjectFacts:
    """The project facts of ``maven-metadata.xml``: how many versions it lists, the
    groupId as the owner, and the first release where it is known (``maven_facts``)."""
    return ProjectFacts(first_release=first, releases=versions, owners=(group,))


_CODE_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org")
_REPOSITORY_KEYS = frozenset({"repository", "source", "sourcecode", "code", "github",
                              "gitlab", "homepage"})


def pypi_json(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(summary, repository) from the JSON API's ``info``: the repository is the first
    project URL on a code host (``Source``, ``Repository``, ``Homepage``...)."""
    info: Mapping[str, Any] = data["info"] if isinstance(data.get("info"), dict) else {}
    urls: Mapping[str, Any] = info["project_urls"] \
        if isinstance(info.get("project_urls"), dict) else {}
    # the repository's own keys first: "Bug Tracker" may name another repository
    ranked = sorted(urls.items(), key=lambda kv: 0 if str(kv[0]).lower().replace(" ", "")
                    in _REPOSITORY_KEYS else 1)
    candidates = [*(v for _, v in ranked), info.get("home_page")]
    repository = next((u for u in candidates if isinstance(u, str)
                       and any(f"//{h}/" in u or f"//www.{h}/" in u for h in _CODE_HOSTS)),
                      None)
    return _text(info.get("summary")), _text(repository)


def _earliest(times: Iterable[datetime | None]) -> datetime | None:
    return min((t for t in times if t is not None), default=None)
