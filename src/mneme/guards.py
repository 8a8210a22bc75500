"""Near-miss guards: refuse a Layer-2 candidate whose question differs from the new one
in a detail that changes the answer, however close their embeddings are.

Cosine similarity of sentence embeddings barely moves when one word changes: "increase"
and "decrease", "2019" and "2021", "Python" and "Java", "with" and "without" keep two
questions near 0.9. Each check here is a pure function of the two texts that looks at
one kind of detail:

* ``numbers``: numbers, dates, units and versions ("23kg" vs "32kg", "7am" vs "7pm",
  "Friday" vs "tomorrow", "3.11" vs "3.12"), when both questions have some;
* ``negation``: a word both questions share is negated in one only ("cancel" vs "don't
  cancel"), or one word is swapped for its opposite ("safe" / "unsafe", "open" /
  "closed", "opt in" / "opt out");
* ``entities``: each question names a proper noun the other does not ("Lloyds" vs
  "HSBC", "Oxford" vs "Leeds");
* ``code``: each question names a code identifier the other does not (``np.mean`` vs
  ``np.median``, ``--force`` vs ``--dry-run``);
* ``comparison``: the direction of a comparison or transfer differs ("under" vs "over",
  "faster" vs "slower", "from savings to current" vs "from current to savings").

A check errs toward serving: it refuses only when it finds the difference on both
sides (a detail swapped, not merely added or left out), so rewordings still hit. The
checks cost microseconds (``benchmarks/guards_speed.py``); features of a text are
cached, so a repeated question is parsed once.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from mneme import _guard_words as words

__all__ = ["CHECK_NAMES", "Features", "NearMissGuards", "features", "refusal"]

log = logging.getLogger("mneme")

CHECK_NAMES = ("numbers", "negation", "entities", "code", "comparison")
"""The built-in checks, in the order they run."""

CheckFn = Callable[[str, str], bool]
"""(query, cached query) -> True when the two differ in what the check watches."""


# -- one text's features ---------------------------------------------------------------

_BACKTICKED = re.compile(r"`([^`]+)`")
_CALL = re.compile(r"([A-Za-z_][\w.]*)\(")
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
_TOKEN = re.compile(r"(?:~|\.{1,2})?/[\w.-][\w./-]*|[£$€¥₹]?\w[\w'.,:/%+#°-]*")
_EDGE = ".,:;!?'\"()[]{}-"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})
_NUMBER = re.compile(
    r"^(?P<cur>[£$€¥₹])?(?P<num>\d+(?:[.:]\d+)*)(?P<ord>st|nd|rd|th)?"
    r"(?:-?(?P<unit>[a-z%°]+(?:-[a-z]+)*|[a-z.]+))?$"
)
_NUMBER_START = frozenset("0123456789£$€¥₹")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_CODE = re.compile(
    r"""^(?:
        [a-z_]\w*(?:\.[a-z_]\w*)+              # dotted.name
      | [a-z]+_[a-z0-9_]+                       # snake_case
      | [a-z]+[A-Z][A-Za-z0-9]*                 # camelCase
      | [A-Z][A-Z0-9]*_[A-Z0-9_]+               # CONST_NAME
      | (?:~|\.{1,2})?/[\w.-]+(?:/[\w.-]+)*    # /a/path
      | [\w.-]+/[\w.-]+/[\w./-]*               # a/b/c
      | [\w-]+\.(?:py|js|ts|rs|go|java|c|h|cpp|rb|sh|json|yaml|yml|toml|sql|md|txt|csv|html|css)
    )$""",
    re.X,
)

# What can start a quantity or a date (see _quantities and _date): a digit or currency
# symbol, a hyphenated word, or one of these words.
_DIGIT_OR_CURRENCY = re.compile(r"[0-9£$€¥₹]")
_DATE_STARTS = frozenset({*words.DATE_WORDS, *words.CAPITALISED_DATE_WORDS, *words.RELATIVE})
_QUANTITY_WORDS = _DATE_STARTS | frozenset(words.NUMBER_WORDS)
_PARTICLES = frozenset(words.PARTICLE_OPPOSITES)


@dataclass(frozen=True, slots=True)
class Features:
    """What the checks need from one text, computed once (see ``features``)."""

    words: tuple[str, ...]
    """Casefolded word tokens in order, punctuation stripped; contractions kept."""
    stems: frozenset[str]
    numbers: Counter[str]
    """Canonical quantities such as '7|pm', '300000|gbp', '3.11|'."""
    values: Counter[str]
    """The numbers' values alone ('7', '300000', '3.11')."""
    units: dict[str, frozenset[str]]
    """For each value, the units said with it (without the empty one)."""
    dates: Counter[str]
    negated: frozenset[str]
    """Stems of words a negation governs ("cancel" in "don't cancel")."""
    entities: frozenset[str]
    """Casefolded proper nouns and acronyms (found by capitalisation)."""
    identifiers: frozenset[str]
    particles: frozenset[tuple[str, str]]
    """(verb stem, particle) pairs such as ("opt", "in"), ("turn", "off")."""


@lru_cache(maxsize=4096)
def features(text: str) -> Features:
    """Parse one text for the checks; pure and cached.

    Most questions hold no code, number, negation or particle: each part of the parse
    first asks, with one substring or set test, whether the text can hold what it looks
    for, which halves the cost of a question parsed for the first time."""
    text = text.translate(_APOSTROPHES)
    identifiers: set[str] = set()
    if "`" in text:
        identifiers.update(m.strip() for m in _BACKTICKED.findall(text))
    if "(" in text:
        identifiers.update(_CALL.findall(text))
    hyphen = "-" in text
    if hyphen:
        identifiers.update(_FLAG.findall(text))
    plain = _THOUSANDS.sub("", text) if "," in text else text
    raw = [t for t in (t.strip(_EDGE) for t in _TOKEN.findall(plain)) if t]
    title_case = _title_case(raw)
    entities: set[str] = set()
    tokens: list[str] = []
    for i, tok in enumerate(raw):
        if tok.isalpha() and tok.islower():  # most words: no code, no proper noun
            tokens.append(tok)
            continue
        low = tok.casefold()
        if _CODE.match(tok) and low not in words.NOT_CODE and not _NUMBER.match(low):
            identifiers.add(tok)
        core = _entity(tok, i, raw, title_case)
        if core:
            entities.add(core)
        tokens.append(low)
    if hyphen or _DIGIT_OR_CURRENCY.search(text) or not _QUANTITY_WORDS.isdisjoint(tokens):
        numbers, dates = _quantities(tokens, raw)
    else:
        numbers, dates = Counter(), Counter()
    values: Counter[str] = Counter()
    units: dict[str, set[str]] = {}
    for q, n in numbers.items():
        value, _, unit = q.partition("|")
        values[value] += n
        if unit:
            units.setdefault(value, set()).add(unit)
    lowered = text.casefold()
    negations = "n't" in lowered or "non-" in lowered or not words.NEGATIONS.isdisjoint(tokens)
    particles = hyphen or not _PARTICLES.isdisjoint(tokens)
    return Features(
        words=tuple(tokens),
        stems=frozenset(map(_stem, tokens)),
        numbers=numbers,
        values=values,
        units={v: frozenset(u) for v, u in units.items()},
        dates=dates,
        negated=_negated(tokens) if negations else frozenset(),
        entities=frozenset(entities),
        identifiers=frozenset(identifiers),
        particles=_particles(tokens) if particles else frozenset(),
    )


def _title_case(raw: list[str]) -> bool:
    """Most small words inside the text are capitalised: "Do You Accept Apple Pay"."""
    small = [t for t in raw[1:] if t.casefold() in words.FUNCTION_WORDS and t.casefold() != "i"]
    return bool(small) and 2 * sum(t[:1].isupper() for t in small) >= len(small)


def _entity(tok: str, i: int, raw: list[str], title_case: bool) -> str:
    """The casefolded proper noun ``tok`` is, or ''."""
    core = tok.split("'")[0]
    if len(core) < 2 or not core[0].isupper() or core.casefold() in words.NOT_ENTITIES:
        return ""
    if any(c.isdigit() for c in core):
        return core.casefold()  # Jet2, A380 (a number with a unit starts with a digit)
    if core.isupper() or any(c.isupper() for c in core[1:]):
        return core.casefold()  # HSBC, UCAS, PayPal
    # A capital at the start of a sentence, or in Title Case Text, says nothing.
    if title_case or i == 0 or raw[i - 1].endswith((".", "!", "?", ":")):
        return ""
    return core.casefold()


def _quantities(tokens: list[str], raw: list[str]) -> tuple[Counter[str], Counter[str]]:
    numbers: Counter[str] = Counter()
    dates: Counter[str] = Counter()
    n = len(tokens)
    i = 0
    while i < n:
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < n else ""
        m = _NUMBER.match(tok) if tok[0] in _NUMBER_START else None
        if m:
            unit = m.group("unit") or (nxt if nxt in words.UNITS else "")
            numbers[_quantity(m.group("num"), m.group("cur") or "", unit)] += 1
        elif tok in words.NUMBER_WORDS:
            value = words.NUMBER_WORDS[tok]
            if tok in words.TENS and nxt in words.UNITS_1_9:
                value += words.NUMBER_WORDS[nxt]
                i += 1
                nxt = tokens[i + 1] if i + 1 < n else ""
            numbers[_quantity(str(value), "", nxt if nxt in words.UNITS else "")] += 1
        elif "-" in tok and tok.split("-")[0] in words.NUMBER_WORDS:
            head, _, rest = tok.partition("-")
            value = words.NUMBER_WORDS[head]
            tail, _, rest2 = rest.partition("-")
            if head in words.TENS and tail in words.UNITS_1_9:  # twenty-five(-year-old)
                value, rest = value + words.NUMBER_WORDS[tail], rest2
            numbers[_quantity(str(value), "", rest)] += 1
        date = _date(tokens, raw, i) if tok in _DATE_STARTS else ""
        if date:
            dates[date] += 1
        i += 1
    for (first, last), span in words.DAY_RANGES.items():
        if dates[first] and dates[last]:
            dates[first] -= 1
            dates[last] -= 1
            dates[span] += 1
    return numbers, +dates


def _quantity(num: str, currency: str, unit: str) -> str:
    """A canonical form: '7|pm', '300000|gbp', '3.11|', '17|year'."""
    parts = [words.UNITS.get(part, part) for part in unit.split("-") if part]
    unit = "-".join(p for p in parts if p != "old")
    if unit == "k" and re.fullmatch(r"\d+(\.\d+)?", num):
        num, unit = f"{float(num) * 1000:g}", ""
    if not unit:
        unit = words.CURRENCY_SYMBOLS.get(currency, "")
    if re.fullmatch(r"\d+\.0+", num):
        num = num.split(".")[0]
    return f"{num.lstrip('0') or '0'}|{unit}"


def _date(tokens: list[str], raw: list[str], i: int) -> str:
    tok = tokens[i]
    if tok in words.DATE_WORDS:
        return words.DATE_WORDS[tok]
    if tok in words.CAPITALISED_DATE_WORDS and i > 0 and raw[i][:1].isupper():
        return words.CAPITALISED_DATE_WORDS[tok]
    if tok in words.RELATIVE and i + 1 < len(tokens):
        period = _stem(tokens[i + 1].split("'")[0])
        if period in words.PERIODS:
            return f"{tok} {period}"
    return ""


def _negated(tokens: list[str]) -> frozenset[str]:
    """For each negation, the first content word after it in its clause."""
    out: set[str] = set()
    for i, tok in enumerate(tokens):
        if tok.startswith("non-") and len(tok) > 4:
            out.add(_stem(tok[4:]))
            continue
        if not _is_negation(tok):
            continue
        for nxt in tokens[i + 1 : i + 6]:
            if nxt in words.CLAUSE_BREAKS:
                break
            if nxt not in words.FUNCTION_WORDS and not _is_negation(nxt):
                out.add(_stem(nxt))
                break
    return frozenset(out)


def _is_negation(tok: str) -> bool:
    return tok in words.NEGATIONS or tok.endswith("n't")


def _particles(tokens: list[str]) -> frozenset[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for i, tok in enumerate(tokens):
        if "-" in tok:
            head, _, tail = tok.partition("-")
            if tail in words.PARTICLE_OPPOSITES:
                pairs.add((_stem(head), tail))
        if i + 1 < len(tokens) and tokens[i + 1] in words.PARTICLE_OPPOSITES:
            pairs.add((_stem(tok), tokens[i + 1]))
    return frozenset(pairs)


@lru_cache(maxsize=16384)
def _stem(word: str) -> str:
    """A crude stem so that plurals and simple inflections compare equal:
    increase, increases, increased, increasing -> increas."""
    for suffix in ("ies", "es", "s", "ed", "ing"):
        if suffix == "s" and word.endswith("ss"):
            break
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "ies":
                return word[:-3] + "y"
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _opposite_table(pairs: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    for x, y in pairs:
        sx, sy = _stem(x), _stem(y)
        table.setdefault(sx, set()).add(sy)
        table.setdefault(sy, set()).add(sx)
    return {k: frozenset(v) for k, v in table.items()}


_POLARITY = _opposite_table(words.POLARITY_PAIRS)
_DIRECTION = _opposite_table(words.DIRECTION_PAIRS)


# -- the checks --------------------------------------------------------------------


def _swapped(a: Iterable[str], b: Iterable[str]) -> bool:
    """Each side has an item the other lacks."""
    sa, sb = set(a), set(b)
    return bool(sa - sb) and bool(sb - sa)


def _in_text(item: str, f: Features) -> bool:
    """The item (one or more words) occurs in the text, case aside."""
    parts = item.split()
    if len(parts) == 1:
        return item in f.words or any(w.split("'")[0] == item for w in f.words)
    n = len(parts)
    return any(list(f.words[i : i + n]) == parts for i in range(len(f.words) - n + 1))


def check_numbers(a: Features, b: Features) -> bool:
    if a.values and b.values:
        if a.values != b.values:
            return True
        # One value with a different unit on each side ("7am" and "7pm"); a unit said
        # on one side only ("18-year-old" and "at 18") is no difference.
        for value, ua in a.units.items():
            ub = b.units.get(value)
            if ub and not ua & ub:
                return True
    return _swapped(a.dates, b.dates)


def check_negation(a: Features, b: Features) -> bool:
    if a.negated != b.negated and (a.negated ^ b.negated) & a.stems & b.stems:
        return True
    only_a, only_b = a.stems - b.stems, b.stems - a.stems
    if not only_a or not only_b:
        return _particle_flip(a, b)
    if _opposites(only_a, only_b, _POLARITY):
        return True
    if _prefixed_opposite(only_a, only_b, a.negated) or _prefixed_opposite(
        only_b, only_a, b.negated
    ):
        return True
    return _particle_flip(a, b)


def check_entities(a: Features, b: Features) -> bool:
    missing_in_b = [e for e in a.entities if not _in_text(e, b)]
    missing_in_a = [e for e in b.entities if not _in_text(e, a)]
    return bool(missing_in_b) and bool(missing_in_a)


def check_code(a: Features, b: Features) -> bool:
    return _swapped(a.identifiers, b.identifiers)


def check_comparison(a: Features, b: Features) -> bool:
    only_a, only_b = a.stems - b.stems, b.stems - a.stems
    if only_a and only_b and _opposites(only_a, only_b, _DIRECTION):
        return True
    return _order_flipped(a.words, b.words)


def _opposites(
    only_a: frozenset[str], only_b: frozenset[str], table: Mapping[str, frozenset[str]]
) -> bool:
    return any(table.get(w, frozenset()) & only_b for w in only_a)


def _prefixed_opposite(
    only_a: frozenset[str], only_b: frozenset[str], negated_a: frozenset[str]
) -> bool:
    """'safe' on one side only and 'unsafe' (un-, in-, im-, il-, ir-, dis-, non-) on the
    other only; "not a member" on the first side matches "non-member"."""
    for w in only_b:
        if not w.startswith(words.NEGATING_PREFIXES):
            continue
        for prefix in words.NEGATING_PREFIXES:
            root = w[len(prefix) :].lstrip("-")
            if (
                w.startswith(prefix)
                and len(root) >= words.MIN_PREFIXED_ROOT
                and root in only_a
                and root not in negated_a
            ):
                return True
    return False


def _particle_flip(a: Features, b: Features) -> bool:
    for verb, particle in a.particles:
        opposite = words.PARTICLE_OPPOSITES[particle]
        if (verb, opposite) in b.particles and (verb, particle) not in b.particles:
            return True
    return False


def _order_flipped(wa: tuple[str, ...], wb: tuple[str, ...]) -> bool:
    """Two words both texts share swap places across a directional word ("to", "than",
    "into", "vs" ...) that stands between them in both texts."""
    if words.DIRECTIONAL.isdisjoint(wa) or words.DIRECTIONAL.isdisjoint(wb):
        return False
    pos_a, pos_b = _unique_positions(wa), _unique_positions(wb)
    shared = sorted((i, pos_b[w]) for w, i in pos_a.items() if w in pos_b)
    for x, (ia, ib) in enumerate(shared):
        for ja, jb in shared[x + 1 :]:
            if ib > jb and _direction_between(wa, ia, ja) and _direction_between(wb, jb, ib):
                return True
    return False


def _unique_positions(tokens: tuple[str, ...]) -> dict[str, int]:
    """Content words that occur once, with their position."""
    counts = Counter(tokens)
    return {
        w: i
        for i, w in enumerate(tokens)
        if counts[w] == 1 and w not in words.FUNCTION_WORDS and w not in words.DIRECTIONAL
    }


def _direction_between(tokens: tuple[str, ...], start: int, end: int) -> bool:
    return any(t in words.DIRECTIONAL for t in tokens[start + 1 : end])


_BUILT_IN: dict[str, Callable[[Features, Features], bool]] = {
    "numbers": check_numbers,
    "negation": check_negation,
    "entities": check_entities,
    "code": check_code,
    "comparison": check_comparison,
}


# -- the guard set the cache holds -------------------------------------------------------


class NearMissGuards:
    """The checks a cache runs on each Layer-2 candidate above the threshold.

    ``checks`` names built-in checks (default: all of ``CHECK_NAMES``); ``extra`` adds
    your own as ``{name: fn(query, cached_query) -> bool}``, True meaning "these differ:
    refuse". A check that raises refuses (a miss is the safe answer) and is logged.
    """

    __slots__ = ("_built_in", "_extra", "names")

    def __init__(
        self, checks: Iterable[str] = CHECK_NAMES, *, extra: Mapping[str, CheckFn] | None = None
    ) -> None:
        if isinstance(checks, str):
            raise TypeError("checks must be a sequence of check names, not one string")
        chosen = list(dict.fromkeys(checks))
        unknown = [c for c in chosen if c not in _BUILT_IN]
        if unknown:
            raise ValueError(f"unknown near-miss check(s) {unknown}; known: {list(CHECK_NAMES)}")
        extra = dict(extra or {})
        for name, fn in extra.items():
            if not isinstance(name, str) or not name or name in _BUILT_IN:
                raise ValueError(f"extra check name {name!r} must be a new non-empty string")
            if not callable(fn):
                raise TypeError(f"extra check {name!r} must be callable(query, cached_query)")
        self._built_in = tuple((c, _BUILT_IN[c]) for c in CHECK_NAMES if c in chosen)
        self._extra = tuple(extra.items())
        self.names: tuple[str, ...] = tuple(c for c, _ in self._built_in) + tuple(extra)

    def refusal(self, query: str, cached_query: str) -> str | None:
        """The name of the first check that refuses the pair, or None when all pass."""
        if query == cached_query:
            return None
        if self._built_in:
            fa, fb = features(query), features(cached_query)
            for name, fn in self._built_in:
                if fn(fa, fb):
                    return name
        for name, custom in self._extra:
            try:
                if custom(query, cached_query):
                    return name
            except Exception:
                log.exception("mneme: near-miss check %r raised; refusing the candidate", name)
                return name
        return None

    def explain(self, query: str, cached_query: str) -> dict[str, bool]:
        """Every check's verdict on the pair: {name: refuses}."""
        fa, fb = features(query), features(cached_query)
        out = {name: fn(fa, fb) for name, fn in self._built_in}
        for name, custom in self._extra:
            out[name] = bool(custom(query, cached_query))
        return out

    def __repr__(self) -> str:
        return f"NearMissGuards({list(self.names)})"


def refusal(query: str, cached_query: str, checks: Iterable[str] = CHECK_NAMES) -> str | None:
    """The first of ``checks`` that refuses serving ``cached_query``'s answer to
    ``query``, or None."""
    return NearMissGuards(checks).refusal(query, cached_query)
