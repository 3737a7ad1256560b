"""Finding names that imitate protected ones: the matching core of the typosquat rules.

Owns the answer to "which protected name does this one imitate, and how", in a few
microseconds, over the ranked protected names of one ecosystem:

- ``forms``: what look-alikes share: the skeleton of a name (lower case, separators
  removed, look-alike characters folded to ASCII, npm scope joined in; ``rn`` read as
  ``m`` in a second look-up) and the keys the look-ups file names under;
- ``compare``: how two names differ once a look-up has paired them;
- ``index``: ``NameIndex``, the protected names and the order of the checks: the same
  skeleton, affixes, language markers and version digits, two names joined;
- ``edits``: one or two edits, scaled by length and rank, and swapped letters;
- ``slips``: slips that keep every consonant in place (doubled letters, dropped vowels,
  a plural), at any rank;
- ``limits``: how popular and how long a name must be for each likeness to count.

Pure; the corpus is passed in.
"""

from stockade.policy.typosquat.compare import Match
from stockade.policy.typosquat.forms import skeleton
from stockade.policy.typosquat.index import NameIndex
from stockade.policy.typosquat.limits import POPULAR_RANK

__all__ = ["POPULAR_RANK", "Match", "NameIndex", "skeleton"]
