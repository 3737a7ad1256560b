"""Licences: SPDX expressions checked against allow and deny lists.

Owns the ``licenses`` rule. Expressions are parsed with ``license-expression``;
``MIT OR GPL-3.0-only`` passes an allow list of ``[MIT]`` because the choice
exists, ``MIT AND GPL-3.0-only`` does not. An absent or unparseable licence is
handled by ``unknown``.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stockade.policy.model import Decision, Facts, Mode, PackageRef, Verdict
from stockade.policy.rules.base import finding

if TYPE_CHECKING:
    from license_expression import Licensing


@functools.cache
def _licensing() -> Licensing:
    # imported with the first licence checked, not at every start (importing it took
    # 15 to 25 ms of CPU), as only a policy with a licences section uses it
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def _key(symbol: Any) -> str:
    inner = getattr(symbol, "license_symbol", symbol)
    return str(getattr(inner, "key", inner)).lower()


def satisfiable(expression: Any, ok: Collection[str] | None, bad: Collection[str]) -> bool:
    """True when some choice in ``expression`` uses only allowed, never denied, licences."""
    licensing = _licensing()
    allowed = {k.lower() for k in ok} if ok else None
    denied = {k.lower() for k in bad}
    table = {}
    for symbol in expression.symbols:
        key = _key(symbol)
        good = key not in denied and (allowed is None or key in allowed)
        table[symbol] = licensing.TRUE if good else licensing.FALSE
    return bool(expression.subs(table).simplify() == licensing.TRUE)


@dataclass
class LicenseRule:
    """The ``licenses`` rule (applies to versions)."""

    allow: Collection[str] = ()
    deny: Collection[str] = ()
    unknown: Decision = Decision.WARN
    mode: Mode = Mode.ENFORCE
    name: str = "licenses"

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        if ref.version is None:
            return None
        text = (facts.license or "").strip()
        licensing = _licensing()
        from license_expression import ExpressionError  # imported by _licensing

        try:
            expression = licensing.parse(text, validate=True) if text else None
        except ExpressionError:
            expression = None
        if expression is None:
            if self.unknown is Decision.ALLOW:
                return None
            what = f"an unknown licence ({text!r})" if text else "no licence"
            return finding(self.name, self.mode, self.unknown,
                           f"{ref.display()} declares {what}")
        if satisfiable(expression, self.allow or None, self.deny):
            return None
        return finding(self.name, self.mode, Decision.BLOCK,
                       f"{ref.display()} is licensed {text}, which the licence policy "
                       "does not admit")
