"""Recording approvals in the decision log when a running server puts them in force.

Owns finding the approvals a new engine has that the one before it had not
(``stockade approve`` and the web page write the file; the reloader sees it
change), and the record each gets: an ``allow`` of the ``typosquat`` rule naming
who approved it, until when and why. The server writes these records itself, so
the log's chain has one writer.
"""

from __future__ import annotations

import logging

from stockade.policy.approvals import Approval
from stockade.policy.model import Decision, PackageRef, Verdict
from stockade.proxy.gate import Gate, PolicyEngine

logger = logging.getLogger(__name__)

APPROVER = "stockade approve"  # the client the records name


def approvals_of(engine: PolicyEngine | None) -> dict[tuple[object, ...], Approval]:
    """The approvals in force in ``engine``'s typosquat rules, by what they say."""
    found: dict[tuple[object, ...], Approval] = {}
    for rule in getattr(engine, "rules", ()) if engine is not None else ():
        current = getattr(rule, "approvals_in_force", None)
        if callable(current):
            for approval in current():
                found[(approval.key, approval.until, approval.reason, approval.by)] = approval
    return found


async def record_new(gate: Gate, before: PolicyEngine | None, after: PolicyEngine) -> int:
    """Record the approvals ``after`` has in force that ``before`` had not; how many."""
    old = approvals_of(before)
    new = [a for key, a in approvals_of(after).items() if key not in old]
    for approval in new:
        verdict = Verdict(Decision.ALLOW, "typosquat",
                          f'"{approval.name}" {approval.describe()}')
        logger.info("approval in force: %s %s", approval.ecosystem, verdict.reason)
        await gate.note(verdict, PackageRef(approval.ecosystem, approval.name),
                        client=APPROVER)
    return len(new)
