"""A facts line (``stockade check`` input, the explain API's ``?facts=``) read or
refused with a sentence, whatever it holds."""

from __future__ import annotations

import pytest

from stockade.proxy.facts_lines import FactsLineError, parse_line


def test_a_line_is_read() -> None:
    name, version, facts = parse_line(
        '{"name": "reqeusts", "version": "1.0", "first_release": "2026-12-01T00:00:00Z", '
        '"releases": 1, "owners": ["mallory"]}')
    assert (name, version, facts.releases, facts.owners) == ("reqeusts", "1.0", 1, ("mallory",))


@pytest.mark.parametrize(("line", "says"), [
    # the decoder recursed past the limit: RecursionError, a 500 from the explain API
    ('{"name": "a", "owners": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    # shown in the error with a repr that recursed as deep
    ('{"name": "a", "owners": ' + "[" * 900 + "]" * 900 + "}", "owners: expected a list"),
    ('{"name": "a", "first_release": ' + "[" * 900 + "]" * 900 + "}",
     "is not an ISO 8601 time"),
    ('{"name": "a", "releases": "many"}', "releases: expected a count, got 'many'"),
])
def test_a_bad_line_is_a_sentence(line: str, says: str) -> None:
    with pytest.raises(FactsLineError, match=says) as refused:
        parse_line(line)
    assert len(str(refused.value)) < 300
