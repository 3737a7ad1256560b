"""The limits of the typosquat checks: how popular a name must be, and how long, for
each kind of likeness to count.

Every figure here trades squats caught against real names refused; ``bench/`` measures
both (``policy_bench`` and ``policy_ceiling``). Pure data.
"""

from __future__ import annotations

from stockade.policy.model import Ecosystem

AFFIX_RANK = 20000
# Affixes typosquats add to or drop from a popular name, and how popular the
# imitated name must be (by rank) for the affix alone to make a look-alike.
AFFIXES = {
    Ecosystem.PYPI: (("python3", 20000), ("python", 20000), ("py3", 5000), ("py", 2000),
                     ("lib", 2000), ("cli", 2000), ("dev", 2000), ("sdk", 2000),
                     # words that make a name read as part of Python or its installer
                     # (``sys-selenium``, ``install-pyyaml``: a 2024 campaign)
                     ("install", 1000), ("sys", 1000), ("os", 1000)),
    Ecosystem.NPM: (("node", AFFIX_RANK), ("js", AFFIX_RANK), ("lib", 2000), ("cli", 2000),
                    ("dev", 2000), ("sdk", 2000)),
    Ecosystem.MAVEN: (),
}
# The affixes by the letter a name starts (ends) with, to try only those that may fit.
AFFIX_HEADS = {eco: {ch: tuple(a for a in affixes if a[0][0] == ch)
                     for ch in {a[0][0] for a in affixes}}
               for eco, affixes in AFFIXES.items()}
AFFIX_TAILS = {eco: {ch: tuple(a for a in affixes if a[0][-1] == ch)
                     for ch in {a[0][-1] for a in affixes}}
               for eco, affixes in AFFIXES.items()}
# The most installed names of each ecosystem: never refused as look-alikes. The
# shipped lists go further down (npm); names there are protected as targets but
# are checked themselves against these.
POPULAR_RANK = 20_000
MIN_FUZZY = 5  # shorter names differ by one letter from too many real ones
ANY_EDIT = 7  # below this, only swapped and repeated letters count (real names collide)
# How popular (by rank) a name must be for an edit alone to make a look-alike of
# it: the popular PyPI and npm names (every PyPI name listed), but below the
# EDGE_RANK most installed only the edits of a typist's slip count; npm names listed
# further down take swaps and the slips below.
EDIT_MAX_RANK = {Ecosystem.PYPI: 20_000, Ecosystem.NPM: 20_000, Ecosystem.MAVEN: 10_000}
# The same for a separator change alone: real lesser-known names often sit one
# separator from a mid-ranked one, while typosquatters aim at the most installed.
SEPARATOR_MAX_RANK = 10_000
SCOPE_MAX_RANK = 5_000
TWO_EDITS = 10  # from this length two edits are still a look-alike
# Short names (five or six letters) of the most installed projects: one slip of
# the finger (a neighbouring key, a vowel for another) still makes a look-alike.
SHORT_SLIP_RANK = 1_000
# Names under SHORT_EDIT_LEN letters sit one edit from many real ones: an edit
# alone makes them a look-alike only of the SHORT_EDIT_RANK most installed.
SHORT_EDIT_LEN = 8
SHORT_EDIT_RANK = 3_000
# Swapped neighbours still make a look-alike where other edits no longer reach: any
# listed name of SWAP_MIN letters or more beyond the edits, short names below the
# SHORT_EDIT_RANK most installed among them (``pytroch``, ``ffmepg``). Real names
# rarely sit one swap from another.
SWAP_MIN = 6
# Below the EDGE_RANK most installed, an edit alone imitates a name only as a
# typist slips: one edit, the first letter kept and the last too where a letter is
# added or dropped (``eprogress``, ``tempfile2`` and ``prop-type`` are real variants;
# a plural is for the slips below), and, below SUBSTITUTE_RANK, a letter changed
# only for a neighbouring key or a vowel for a vowel (``qfactory`` is not
# ``kfactory``).
EDGE_RANK = 500
SUBSTITUTE_RANK = 1_000
# How popular a name must be for a variant that keeps its core and moves or
# changes its language marker (``python-openssl`` for ``pyopenssl``,
# ``nmap-python`` for ``python-nmap``) or drops its version digit (``urllib``
# for ``urllib3``) to count as a look-alike.
VARIANT_MAX_RANK = 10_000
MARKERS = {
    Ecosystem.PYPI: ("python3", "python", "py3", "py"),
    Ecosystem.NPM: ("node", "js"),
    Ecosystem.MAVEN: (),
}
MIN_CORE = 3
KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
NEIGHBOURS = {
    ch: {row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)}
    for row in KEYBOARD for i, ch in enumerate(row)
}
VOWELS = frozenset("aeiouy")
# The most installed PyPI and npm names, compared with every candidate of about their
# length that starts with the same letter: any one edit from TOP_ONE letters, any two
# (two substitutions included) from TOP_TWO. Squatters aim here first (``requesgt``,
# ``botoceor``, ``pyyal``).
TOP_RANK = 50
TOP_ONE = 5
TOP_TWO = 8
# Long names (TOP_LONG letters or more, with or without a trailing version
# digit) of the TOP_LONG_RANK most installed take two edits the same way
# (``BeaitifulSoop`` for ``beautifulsoup4``).
TOP_LONG = 10
TOP_LONG_RANK = 200
# Two names each among the COMBO_RANK most installed, joined by a separator,
# every part at least COMBO_PART letters (``pandas-numpy``; ``uuid-v4`` is not).
COMBO_RANK = 1_000
COMBO_PART = 4
# A name of DROPPED_MIN letters or more that is one of the DROPPED_RANK most
# installed without an affix (``yaml`` for ``pyyaml``, ``openssl`` for ``pyopenssl``).
DROPPED_RANK = 500
DROPPED_MIN = 4
DROPPABLE = {
    Ecosystem.PYPI: ("python3", "python", "py3", "py", "lib", "cli", "dev", "sdk"),
    Ecosystem.NPM: ("node", "js", "lib", "cli", "dev", "sdk"),
    Ecosystem.MAVEN: (),
}
# Slips of the finger that keep every consonant in place, looked up by key at any
# rank of the protected lists: doubled or undoubled letters (``pupeter`` for
# ``puppeteer``, ``mongose``), from SLIP_MIN letters once doubles are undone; up
# to VOWELS_MAX single vowels dropped (``solidity-covrage``, ``gnache-cli``), from
# VOWEL_KEY letters in the name's consonant key; a plural ``s`` added to or dropped
# from its words (``webpacks-dev-servers``), of the PLURAL_RANK most installed.
SLIP_MIN = 6
VOWEL_KEY = 6
VOWELS_MAX = 2
PLURAL_RANK = 5_000
# Doubled or undoubled letters in one word of a longer name, imitating one of the
# WORD_SLIP_RANK most installed one-word names.
WORD_SLIP_RANK = 3_000
