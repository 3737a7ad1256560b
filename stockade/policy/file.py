"""The policy file: one reviewed YAML document, validated, turned into rules.

Owns the file format and its errors, which name the key path and the bad value
(``policy.yaml: rules.cooldown.min_age: "3x" is not a duration``). A section
that is absent is off, except ``typosquat`` and ``dependency_confusion``, which
are on unless ``enabled: false``. A complete commented example is
``stockade/policy/examples/policy.yaml``.

```yaml
mode: enforce                  # or audit: record what would be refused, refuse nothing
internal_names: {pypi: [acme-billing], npm: ["@acme/*"], maven: ["com.acme:*"]}
rules:
  lists: {allowlist_only: {enabled: false, required_tags: [reviewed]}, allow: [...], deny: [...]}
  typosquat: {protected: {pypi: [acme-billing]}, approvals: approvals.yaml,
              loose: {young: 30d, max_releases: 3, on_missing: allow},
              strong: {on_missing: refuse}}
  dependency_confusion: {}
  cooldown: {min_age: 3d, allow_undated: false, exempt_internal: true, cutoff: null, exempt: []}
  osv: {paths: [osv/], min_severity: critical, block_ids: [], ignore_ids: []}
  install_scripts: {npm: block, pypi_sdist_only: warn, hide_sdist_where_wheel: false, allow: []}
  licenses: {allow: [], deny: [AGPL-3.0-only], unknown: warn}
  provenance: {mode: enforce, signatures: verify, attestations: verify, require_for: [],
               identities: [], downgrade: refuse, trusted_root: null, npm_keys: null,
               pgp_keys: []}
  republished: {mode: enforce}  # always on
teams:                         # stockade.policy.teams: added to the global rules, never looser
  payments: {required_tags: [pci-reviewed], allow: [...], deny: [...],
             rules: {cooldown: {min_age: 14d}, licenses: {...}, install_scripts: {...},
                     provenance: {require_for: [...]}}}
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from stockade.config.load import ConfigError, load_yaml, shown
from stockade.policy.approvals import ApprovalError
from stockade.policy.approvals import load as load_approvals
from stockade.policy.model import Decision, Ecosystem, Mode, Publisher, Rule
from stockade.policy.names import normalize
from stockade.policy.osv import OsvDatabase, OsvError
from stockade.policy.rules.age import CooldownRule
from stockade.policy.rules.base import Entry
from stockade.policy.rules.install import InstallScriptsRule
from stockade.policy.rules.licenses import LicenseRule
from stockade.policy.rules.lists import AllowlistOnly, ListEntry, ListsRule
from stockade.policy.rules.provenance import (
    DowngradeAction,
    IdentityEntry,
    NamePattern,
    PgpGroup,
    ProvenanceRule,
    Requirement,
)
from stockade.policy.rules.republished import RepublishedRule
from stockade.policy.rules.typosquat import DependencyConfusionRule, TyposquatRule
from stockade.policy.rules.vulns import OsvRule
from stockade.policy.teams import (
    TeamScoped,
    check_team_name,
    stricter_severity,
    stricter_tiers,
    team_lists,
)
from stockade.policy.typosquat.tiers import Tiers
from stockade.policy.versions import VersionRangeError, parse_range

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PolicyError(ConfigError):
    """The policy file cannot be used; the message names the key and the value."""


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a duration (use e.g. 72h, 3d, 90m, 1w)")
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    except OverflowError as exc:  # pydantic reports ValueError, not OverflowError, by key
        raise ValueError(f"{value!r} is longer than any duration Python can hold") from exc


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _off(value: Any) -> Any:
    # YAML 1.1 reads a bare `off` as false: it means the setting "off" here
    return "off" if value is False else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Switch = Annotated[Requirement, BeforeValidator(_off)]
Downgrade = Annotated[DowngradeAction, BeforeValidator(_off)]


def _utc(value: datetime) -> datetime:
    # A cut-off written without a zone (``cutoff: 2024-01-01``) means UTC, as the
    # refusal says; left naive it cannot be compared with publish times.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntryModel(_Model):
    ecosystem: Ecosystem
    name: str = Field(min_length=1)
    versions: str | None = None


class ListEntryModel(EntryModel):
    reason: str = Field(min_length=1)
    owner: str = ""
    expires: date | None = None
    tags: list[str] = []


class AllowlistOnlyModel(_Model):
    enabled: bool = False
    required_tags: list[str] = []
    ecosystems: list[Ecosystem] = list(Ecosystem)


class ListsModel(_Model):
    mode: Mode | None = None
    allowlist_only: AllowlistOnlyModel = AllowlistOnlyModel()
    allow: list[ListEntryModel] = []
    deny: list[ListEntryModel] = []


OnMissing = Literal["allow", "hold", "refuse"]
_ON_MISSING = {"allow": Decision.ALLOW, "hold": Decision.HOLD, "refuse": Decision.BLOCK}


class LooseTierModel(_Model):
    young: Duration = timedelta(days=30)  # a project first released within this is young
    max_releases: int = Field(default=3, ge=0)  # ...and has at most this many releases
    on_missing: OnMissing = "allow"  # its age unknown: allow (and record), hold, refuse


class StrongTierModel(_Model):
    on_missing: OnMissing = "refuse"


class TyposquatModel(_Model):
    enabled: bool = True
    mode: Mode | None = None
    protected: dict[Ecosystem, list[str]] = {}
    loose: LooseTierModel = LooseTierModel()
    strong: StrongTierModel = StrongTierModel()
    approvals: Path | None = None  # the approvals file, relative to the policy file


class ConfusionModel(_Model):
    enabled: bool = True
    mode: Mode | None = None


class CooldownModel(_Model):
    mode: Mode | None = None
    min_age: Duration | None = None
    cutoff: UtcDatetime | None = None
    allow_undated: bool | None = None  # unset: intel.on_missing (default: held back)
    exempt_internal: bool = True
    exempt: list[EntryModel] = []


class OsvModel(_Model):
    mode: Mode | None = None
    paths: list[Path] = []
    min_severity: Literal["low", "moderate", "high", "critical"] | None = "critical"
    block_ids: list[str] = []
    ignore_ids: list[str] = []


class InstallModel(_Model):
    mode: Mode | None = None
    npm: Decision = Decision.BLOCK
    pypi_sdist_only: Decision = Decision.WARN
    hide_sdist_where_wheel: bool = False
    allow: list[EntryModel] = []


class LicensesModel(_Model):
    mode: Mode | None = None
    allow: list[str] = []
    deny: list[str] = []
    unknown: Decision | None = None  # unset: intel.on_missing (default: warn)


class IntelModel(_Model):
    """What a decision does where intel is missing or stale, beside each rule's own
    switch (which wins where it is set)."""

    osv_max_age: Duration | None = None  # OSV data older than this (newest record) is stale
    on_stale: Decision = Decision.WARN   # what a version gets while the OSV data is stale
    on_missing: Decision | None = None   # a rule's missing fact: undated version, unknown licence


class IdentityModel(_Model):
    ecosystem: Ecosystem
    name: str = Field(min_length=1)
    repository: str = Field(min_length=1)
    workflow: str | None = Field(default=None, min_length=1)
    publisher: Annotated[Publisher, BeforeValidator(_lower)] | None = None


class PgpKeysModel(_Model):
    group: str = Field(min_length=1)
    keys: list[Path] = Field(min_length=1)


class ProvenanceModel(_Model):
    mode: Mode | None = None
    signatures: Switch = Requirement.VERIFY
    attestations: Switch = Requirement.VERIFY
    require_for: list[str] = []
    identities: list[IdentityModel] = []
    downgrade: Downgrade = DowngradeAction.REFUSE
    trusted_root: Path | None = None
    npm_keys: Path | None = None
    pgp_keys: list[PgpKeysModel] = []


class RepublishedModel(_Model):
    mode: Mode | None = None


class RulesModel(_Model):
    lists: ListsModel | None = None
    typosquat: TyposquatModel = TyposquatModel()
    dependency_confusion: ConfusionModel = ConfusionModel()
    cooldown: CooldownModel | None = None
    osv: OsvModel | None = None
    install_scripts: InstallModel | None = None
    licenses: LicensesModel | None = None
    provenance: ProvenanceModel | None = None
    republished: RepublishedModel = RepublishedModel()


class TeamLooseTierModel(_Model):
    young: Duration | None = None  # unset: the global value; set: only longer
    max_releases: int | None = Field(default=None, ge=0)
    on_missing: OnMissing | None = None


class TeamStrongTierModel(_Model):
    on_missing: OnMissing | None = None


class TeamTyposquatModel(_Model):
    mode: Mode | None = None
    loose: TeamLooseTierModel = TeamLooseTierModel()
    strong: TeamStrongTierModel = TeamStrongTierModel()


class TeamOsvModel(_Model):  # decides on the global section's OSV data
    mode: Mode | None = None
    min_severity: Literal["low", "moderate", "high", "critical"] | None = None
    block_ids: list[str] = []


class TeamRulesModel(_Model):
    """The rule settings a team may make stricter (added to the global rules)."""

    osv: TeamOsvModel | None = None
    typosquat: TeamTyposquatModel | None = None

    cooldown: CooldownModel | None = None
    install_scripts: InstallModel | None = None
    licenses: LicensesModel | None = None
    # its requirements (require_for, identities, downgrade) are added; files are
    # verified where the global provenance section asks (see stockade.policy.teams)
    provenance: ProvenanceModel | None = None


class TeamModel(_Model):
    required_tags: list[str] = []
    allow: list[ListEntryModel] = []
    deny: list[ListEntryModel] = []
    rules: TeamRulesModel = TeamRulesModel()


class PolicyModel(_Model):
    mode: Mode = Mode.ENFORCE
    internal_names: dict[Ecosystem, list[str]] = {}
    intel: IntelModel = IntelModel()
    rules: RulesModel = RulesModel()
    teams: dict[str, TeamModel] = {}


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy: its rules, its revision and what it warns about."""

    rules: tuple[Rule, ...]
    mode: Mode
    revision: str
    internal_names: dict[Ecosystem, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    osv: OsvDatabase | None = None
    osv_paths: tuple[Path, ...] = ()  # where the OSV records were read (watched for changes)
    provenance: ProvenanceRule | None = None  # its trust material is the proxy's to load
    # the rules each team adds to the global ones (``stockade.policy.teams``)
    teams: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    approvals: Path | None = None  # rules.typosquat.approvals, resolved (watched too)


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _entry(model: EntryModel, where: str) -> Entry:
    versions = None
    if model.versions is not None:
        try:
            versions = parse_range(model.ecosystem, model.versions)
        except VersionRangeError as exc:
            raise PolicyError(f"{where}.versions: {exc}") from exc
    return Entry(model.ecosystem, normalize(model.ecosystem, model.name), versions)


def _list_entry(model: ListEntryModel, where: str) -> ListEntry:
    return ListEntry(_entry(model, where), model.reason, model.owner, model.expires,
                     frozenset(model.tags))


def parse_policy(
    text: str, *, base_dir: Path, source: str = "policy",
    internal: dict[Ecosystem, tuple[str, ...]] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Policy:
    """The policy ``text`` describes (``base_dir`` resolves relative OSV paths).

    Raises:
        PolicyError: invalid YAML, an unknown key, a bad value, an unreadable OSV path.
    """
    try:
        raw = load_yaml(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    except ValueError as exc:  # PyYAML's scalar constructors: 2024-02-30, !!int x
        raise PolicyError(f"{source}: a value YAML cannot convert: {exc}") from exc
    except RecursionError as exc:  # PyYAML composes nested collections recursively
        raise PolicyError(f"{source}: collections nested too deeply to read") from exc
    try:
        model = PolicyModel.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        value = first.get("input")
        raise PolicyError(
            f"{source}: {_where(first['loc'])}: {first['msg']} (got {shown(value)})"
        ) from exc
    try:
        return _build(model, text, base_dir, source, internal or {}, now)
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from exc


def _load_osv(paths: list[Path], warnings: list[str]) -> OsvDatabase:
    """The OSV records at ``paths``; records that cannot be read are counted in
    ``warnings``.

    Raises:
        PolicyError: a path cannot be read, naming the key.
    """
    try:
        database = OsvDatabase.load(paths)
    except (OsvError, OSError) as exc:
        raise PolicyError(f"rules.osv.paths: {exc}") from exc
    if database.skipped:
        warnings.append(f"{database.skipped} OSV records could not be read and were skipped")
    return database


def _build(model: PolicyModel, text: str, base_dir: Path, source: str,
           internal: dict[Ecosystem, tuple[str, ...]], now: Callable[[], datetime]) -> Policy:
    def mode(section_mode: Mode | None) -> Mode:
        return Mode.AUDIT if model.mode is Mode.AUDIT else (section_mode or Mode.ENFORCE)

    r = model.rules
    intel = model.intel
    names = {eco: tuple(v) for eco, v in model.internal_names.items()}
    patterns = {eco: (*internal.get(eco, ()), *names.get(eco, ())) for eco in Ecosystem}
    rules: list[Rule] = []
    warnings: list[str] = []
    allowed: dict[Ecosystem, list[str]] = {}
    if r.lists is not None:
        lists = ListsRule(
            allow=[_list_entry(e, f"rules.lists.allow.{i}") for i, e in enumerate(r.lists.allow)],
            deny=[_list_entry(e, f"rules.lists.deny.{i}") for i, e in enumerate(r.lists.deny)],
            allowlist_only=AllowlistOnly(r.lists.allowlist_only.enabled,
                                         frozenset(r.lists.allowlist_only.required_tags),
                                         frozenset(r.lists.allowlist_only.ecosystems)),
            mode=mode(r.lists.mode), now=now,
        )
        rules.append(lists)
        allowed = lists.allowed_names()
        warnings += [f"expired list entry ({e.describe()}, expired {e.expires}): no longer "
                     "applied" for e in lists.expired()]
    approvals_path = None if r.typosquat.approvals is None else \
        r.typosquat.approvals if r.typosquat.approvals.is_absolute() else \
        base_dir / r.typosquat.approvals
    if r.typosquat.enabled:
        rules.append(_typosquat(r.typosquat, mode(r.typosquat.mode), allowed, patterns,
                                approvals_path, now))
    if r.dependency_confusion.enabled:
        rules.append(DependencyConfusionRule(internal=patterns, allowed=allowed,
                                             mode=mode(r.dependency_confusion.mode)))
    if (c := r.cooldown) is not None:
        rules.append(_cooldown(c, intel, mode(c.mode), now, "rules.cooldown"))
    database = None
    paths: list[Path] = []
    if (o := r.osv) is not None:
        paths = [p if p.is_absolute() else base_dir / p for p in o.paths]
        database = _load_osv(paths, warnings)
        db = database
        rules.append(OsvRule(lambda: db, o.min_severity, frozenset(o.block_ids),
                             frozenset(o.ignore_ids), mode(o.mode), max_age=intel.osv_max_age,
                             on_stale=intel.on_stale, now=now))
    if (s := r.install_scripts) is not None:
        rules.append(_install(s, mode(s.mode), "rules.install_scripts"))
    if (lic := r.licenses) is not None:
        rules.append(_licenses(lic, intel, mode(lic.mode)))
    provenance = None
    if r.provenance is not None:
        provenance = _provenance(r.provenance, base_dir, mode(r.provenance.mode))
        rules.append(provenance)
    rules.append(RepublishedRule(mode(r.republished.mode)))
    material = text.encode() + repr(sorted((e.value, v) for e, v in patterns.items())).encode()
    if database is not None:
        material += database.revision.encode()
    if provenance is not None:  # a changed trust file is a new revision
        material += repr(sorted((str(k), v) for k, v in provenance.trust_digests.items())
                         ).encode()
    if approvals_path is not None and approvals_path.is_file():
        material += approvals_path.read_bytes()
    global_allow = next((rule.allow for rule in rules if isinstance(rule, ListsRule)), ())
    base = _TeamBase(
        global_allow, intel,
        next((rule for rule in rules if isinstance(rule, OsvRule)), None),
        next((rule for rule in rules if isinstance(rule, TyposquatRule)), None) or (
            _typosquat(r.typosquat, Mode.ENFORCE, allowed, patterns, approvals_path, now)
            if any(t.rules.typosquat is not None for t in model.teams.values()) else None),
        r.typosquat.enabled)
    teams = {team: _team(team, t, base, mode, now, base_dir)
             for team, t in model.teams.items()}
    return Policy(tuple(rules), model.mode, hashlib.sha256(material).hexdigest()[:12],
                  names, tuple(warnings), database, tuple(paths), provenance, teams,
                  approvals_path)


def _cooldown(c: CooldownModel, intel: IntelModel, mode: Mode, now: Callable[[], datetime],
              where: str) -> CooldownRule:
    undated = Decision.ALLOW if c.allow_undated else \
        Decision.BLOCK if c.allow_undated is False else intel.on_missing or Decision.BLOCK
    return CooldownRule(
        min_age=c.min_age, cutoff=c.cutoff, undated=undated,
        exempt_internal=c.exempt_internal,
        exempt=[_entry(e, f"{where}.exempt.{i}") for i, e in enumerate(c.exempt)],
        mode=mode, now=now,
    )


def _install(s: InstallModel, mode: Mode, where: str) -> InstallScriptsRule:
    return InstallScriptsRule(
        s.npm, s.pypi_sdist_only, s.hide_sdist_where_wheel,
        [_entry(e, f"{where}.allow.{i}") for i, e in enumerate(s.allow)], mode)


def _licenses(lic: LicensesModel, intel: IntelModel, mode: Mode) -> LicenseRule:
    return LicenseRule(lic.allow, lic.deny, lic.unknown or intel.on_missing or Decision.WARN,
                       mode)


@dataclass(frozen=True, slots=True)
class _TeamBase:
    """What a team's rules build on: the global allow entries and rules."""

    allow: Sequence[ListEntry]
    intel: IntelModel
    osv: OsvRule | None
    typosquat: TyposquatRule | None  # the global one, or one of its settings when off
    typosquat_enabled: bool


def _team(team: str, t: TeamModel, base: _TeamBase, mode: Callable[[Mode | None], Mode],
          now: Callable[[], datetime], base_dir: Path) -> tuple[Rule, ...]:
    """The rules team ``team`` adds to the global ones, each saying whose they are.

    Raises:
        PolicyError: a bad team name, list entry or rule setting, naming the key.
    """
    where = f"teams.{team}"
    try:
        check_team_name(team)
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from exc
    rules: list[Rule] = []
    lists = team_lists(
        team, required_tags=t.required_tags,
        allow=[_list_entry(e, f"{where}.allow.{i}") for i, e in enumerate(t.allow)],
        deny=[_list_entry(e, f"{where}.deny.{i}") for i, e in enumerate(t.deny)],
        global_allow=base.allow, mode=mode(None), now=now)
    if lists is not None:
        rules.append(lists)
    r = t.rules
    intel = base.intel
    if (c := r.cooldown) is not None:
        rules.append(TeamScoped(_cooldown(c, intel, mode(c.mode), now,
                                          f"{where}.rules.cooldown"), team))
    if (s := r.install_scripts) is not None:
        rules.append(TeamScoped(_install(s, mode(s.mode), f"{where}.rules.install_scripts"),
                                team))
    if (lic := r.licenses) is not None:
        rules.append(TeamScoped(_licenses(lic, intel, mode(lic.mode)), team))
    if (p := r.provenance) is not None:
        try:
            rule = _provenance(p, base_dir, mode(p.mode))
        except PolicyError as exc:
            raise PolicyError(f"{where}.{exc}") from exc
        rules.append(TeamScoped(rule, team))
    rules += _team_intel(team, r, base, mode)
    return tuple(rules)


def _team_intel(team: str, r: TeamRulesModel, base: _TeamBase,
                mode: Callable[[Mode | None], Mode]) -> list[Rule]:
    """A team's ``osv`` and ``typosquat`` rules, on the global ones' data.

    Raises:
        PolicyError: a setting looser than the global one, or an ``osv`` section
            without the global one's data, naming the key.
    """
    where = f"teams.{team}.rules"
    rules: list[Rule] = []
    try:
        if (o := r.osv) is not None:
            if base.osv is None:
                raise ValueError("needs the global rules.osv section, whose OSV data it "
                                 "decides on")
            rules.append(TeamScoped(dataclasses.replace(
                base.osv, min_severity=stricter_severity(base.osv.min_severity,
                                                         o.min_severity),
                block_ids=frozenset(o.block_ids), ignore_ids=frozenset(),
                mode=mode(o.mode)), team))
    except ValueError as exc:
        raise PolicyError(f"{where}.osv: {exc}") from exc
    try:
        if (ts := r.typosquat) is not None and base.typosquat is not None:
            tiers = stricter_tiers(  # off globally: any setting is stricter
                base.typosquat.tiers, young=ts.loose.young,
                max_releases=ts.loose.max_releases,
                loose_on_missing=_missing(ts.loose.on_missing),
                strong_on_missing=_missing(ts.strong.on_missing),
                check=base.typosquat_enabled)
            rules.append(TeamScoped(dataclasses.replace(
                base.typosquat, tiers=tiers, mode=mode(ts.mode)), team))
    except ValueError as exc:
        raise PolicyError(f"{where}.typosquat.{exc}") from exc
    return rules


def _missing(value: str | None) -> Decision | None:
    return None if value is None else _ON_MISSING[value]


def _typosquat(t: TyposquatModel, mode: Mode, allowed: dict[Ecosystem, list[str]],
               internal: dict[Ecosystem, tuple[str, ...]], approvals_path: Path | None,
               now: Callable[[], datetime]) -> TyposquatRule:
    """The ``typosquat`` rule of its section, with its tiers and approvals.

    Raises:
        PolicyError: the approvals file cannot be read, naming the key.
    """
    try:
        approved = () if approvals_path is None else tuple(load_approvals(approvals_path))
    except ApprovalError as exc:
        raise PolicyError(f"rules.typosquat.approvals: {exc}") from exc
    tiers = Tiers(young=t.loose.young, max_releases=t.loose.max_releases,
                  loose_on_missing=_ON_MISSING[t.loose.on_missing],
                  strong_on_missing=_ON_MISSING[t.strong.on_missing])
    return TyposquatRule(mode=mode, protected=t.protected, allowed=allowed, internal=internal,
                         tiers=tiers, approvals=approved, now=now)


def _file(path: Path, base_dir: Path, where: str) -> Path:
    """``path`` resolved against the policy's folder; it must be a readable file.

    Raises:
        PolicyError: no such file, naming the key.
    """
    resolved = path if path.is_absolute() else base_dir / path
    if not resolved.is_file():
        raise PolicyError(f"{where}: {path}: no such file")
    return resolved


def _provenance(p: ProvenanceModel, base_dir: Path, mode: Mode) -> ProvenanceRule:
    """The ``provenance`` rule of its section.

    Raises:
        PolicyError: a bad pattern or repository, a key or root file that is missing.
    """
    where = "rules.provenance"
    patterns = []
    for i, text in enumerate(p.require_for):
        try:
            patterns.append(NamePattern.parse(text))
        except ValueError as exc:
            raise PolicyError(f"{where}.require_for.{i}: {exc}") from exc
    identities = []
    for i, e in enumerate(p.identities):
        try:
            identities.append(IdentityEntry(e.ecosystem, e.name, e.repository, e.workflow,
                                            e.publisher))
        except ValueError as exc:
            raise PolicyError(f"{where}.identities.{i}.repository: {exc}") from exc
    groups = [PgpGroup(g.group.strip(), tuple(_file(k, base_dir, f"{where}.pgp_keys.{i}.keys.{j}")
                                              for j, k in enumerate(g.keys)))
              for i, g in enumerate(p.pgp_keys)]
    rule = ProvenanceRule(
        signatures=p.signatures, attestations=p.attestations, require_for=tuple(patterns),
        identities=tuple(identities), downgrade=p.downgrade, pgp_keys=tuple(groups),
        trusted_root=None if p.trusted_root is None else
        _file(p.trusted_root, base_dir, f"{where}.trusted_root"),
        npm_keys=None if p.npm_keys is None else _file(p.npm_keys, base_dir, f"{where}.npm_keys"),
        mode=mode)
    rule.trust_digests = {path: _digest(path, where) for path in rule.trust_files}
    return rule


def _digest(path: Path, where: str) -> str:
    """A trust file's content digest (sha256, 16 hex characters).

    Raises:
        PolicyError: the file cannot be read.
    """
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise PolicyError(f"{where}: {path}: {exc.strerror}") from exc


def load_policy(path: Path, *, internal: dict[Ecosystem, tuple[str, ...]] | None = None,
                now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Policy:
    """Read and validate the policy file at ``path``.

    Raises:
        PolicyError: the file is missing, unreadable or invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    return parse_policy(text, base_dir=path.parent, source=str(path), internal=internal, now=now)


def default_policy(internal: dict[Ecosystem, tuple[str, ...]] | None = None) -> Policy:
    """The policy in force without a policy file: typosquat and dependency confusion."""
    return parse_policy("", base_dir=Path("."), source="built-in policy", internal=internal)
