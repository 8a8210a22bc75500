"""Word lists for the near-miss guards (``mneme.guards``): general English vocabulary,
lower case. Opposite pairs are listed once; the guards make them symmetric."""

from __future__ import annotations


def _words(text: str) -> list[str]:
    return text.split()


# -- numbers, units, dates -----------------------------------------------------------

_CARDINALS = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
)
_TENS = _words("twenty thirty forty fifty sixty seventy eighty ninety")
# "first" and "second" are left out: "first-time buyer", "a second opinion".
_ORDINALS = _words(
    "third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
)

NUMBER_WORDS: dict[str, int] = {w: i for i, w in enumerate(_CARDINALS)}
NUMBER_WORDS.update({w: 20 + 10 * i for i, w in enumerate(_TENS)})
NUMBER_WORDS.update({w: 3 + i for i, w in enumerate(_ORDINALS)})
NUMBER_WORDS.update(
    {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 10**9, "dozen": 12}
)
NUMBER_WORDS.update({"twice": 2, "thrice": 3})
TENS = frozenset(_TENS)
UNITS_1_9 = frozenset(_CARDINALS[1:10])

CURRENCY_SYMBOLS = {"£": "gbp", "$": "usd", "€": "eur", "¥": "jpy", "₹": "inr"}

_UNIT_GROUPS = {
    "s": "s sec secs second seconds",
    "min": "min mins minute minutes",
    "hour": "h hr hrs hour hours",
    "day": "day days",
    "week": "wk wks week weeks",
    "month": "mo month months",
    "year": "y yr yrs year years",
    "am": "am a.m",
    "pm": "pm p.m",
    "p": "p pence",
    "gbp": "gbp pound pounds quid",
    "usd": "usd dollar dollars",
    "eur": "eur euro euros",
    "k": "k",
    "kg": "kg kgs kilo kilos kilogram kilograms",
    "g": "g gram grams",
    "mg": "mg milligram milligrams",
    "lb": "lb lbs",
    "oz": "oz ounce ounces",
    "km": "km kms kilometre kilometres kilometer kilometers",
    "m": "m metre metres meter meters",
    "cm": "cm centimetre centimetres",
    "mm": "mm millimetre millimetres",
    "mile": "mile miles mi",
    "ft": "ft foot feet",
    "inch": "inch inches",
    "l": "l litre litres liter liters",
    "ml": "ml millilitre millilitres",
    "pint": "pint pints",
    "gb": "gb gig gigs gigabyte gigabytes",
    "mb": "mb megabyte megabytes",
    "tb": "tb terabyte terabytes",
    "kb": "kb kilobyte kilobytes",
    "ghz": "ghz",
    "mhz": "mhz",
    "w": "w watt watts",
    "kw": "kw",
    "kwh": "kwh",
    "v": "v volt volts",
    "mph": "mph",
    "kph": "kph",
    "%": "% percent pc",
    "x": "x times",
    "c": "°c celsius",
    "f": "°f fahrenheit",
    "bedroom": "bed beds bedroom bedrooms",
    "person": "person people",
    "star": "star stars",
}
UNITS: dict[str, str] = {
    spelling: unit for unit, spellings in _UNIT_GROUPS.items() for spelling in spellings.split()
}
UNITS["old"] = "old"  # "17-year-old": the age in years

_MONTHS = _words(
    "january february april june july august september october november december "
    "jan feb apr jun jul aug sep sept oct nov dec"
)
_DAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
_DAY_ABBREVIATIONS = {
    "mon": "monday",
    "tue": "tuesday",
    "tues": "tuesday",
    "wed": "wednesday",
    "thu": "thursday",
    "thur": "thursday",
    "thurs": "thursday",
    "fri": "friday",
}
DATE_WORDS: dict[str, str] = {m: m[:3] for m in _MONTHS}
DATE_WORDS.update({d: d for d in _DAYS})
DATE_WORDS.update({d + "s": d for d in _DAYS})
DATE_WORDS.update(_DAY_ABBREVIATIONS)
DATE_WORDS.update(
    {
        "today": "today",
        "tonight": "tonight",
        "tomorrow": "tomorrow",
        "yesterday": "yesterday",
        "weekend": "weekend",
        "weekends": "weekend",
        "weekday": "weekday",
        "weekdays": "weekday",
        "spring": "spring",
        "summer": "summer",
        "autumn": "autumn",
        "winter": "winter",
        "morning": "morning",
        "mornings": "morning",
        "afternoon": "afternoon",
        "afternoons": "afternoon",
        "evening": "evening",
        "evenings": "evening",
        "midday": "midday",
        "noon": "midday",
        "midnight": "midnight",
        "overnight": "overnight",
        "christmas": "christmas",
        "easter": "easter",
    }
)
# Words that are dates only when capitalised inside a sentence ("in May", not "May I").
CAPITALISED_DATE_WORDS = {"may": "may", "march": "mar", "sat": "saturday", "sun": "sunday"}
RELATIVE = frozenset(_words("this next last previous coming following"))
PERIODS = frozenset(_words("week month year weekend term quarter season semester night"))
# Spans that mean a day-name range: "Monday to Friday" is "weekdays".
DAY_RANGES = {("monday", "friday"): "weekday", ("saturday", "sunday"): "weekend"}

# -- negation and polarity -----------------------------------------------------------

NEGATIONS = frozenset(
    _words(
        "not no never none nothing nobody nowhere neither nor without cannot cant dont "
        "doesnt didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt havent hasnt "
        "hadnt mustnt neednt unable avoid prevent"
    )
)
NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non-", "non")
MIN_PREFIXED_ROOT = 3

POLARITY_PAIRS = [
    ("open", "closed"),
    ("open", "close"),
    ("open", "shut"),
    ("safe", "dangerous"),
    ("safe", "harmful"),
    ("allowed", "banned"),
    ("allowed", "forbidden"),
    ("allowed", "prohibited"),
    ("permitted", "banned"),
    ("permitted", "forbidden"),
    ("permitted", "prohibited"),
    ("allow", "ban"),
    ("allow", "forbid"),
    ("allow", "prohibit"),
    ("include", "exclude"),
    ("included", "excluded"),
    ("cover", "exclude"),
    ("covered", "excluded"),
    ("accept", "decline"),
    ("accept", "reject"),
    ("accept", "refuse"),
    ("approve", "reject"),
    ("approve", "decline"),
    ("approve", "deny"),
    ("approved", "rejected"),
    ("approved", "declined"),
    ("approved", "denied"),
    ("grant", "deny"),
    ("granted", "denied"),
    ("enable", "disable"),
    ("activate", "deactivate"),
    ("add", "remove"),
    ("add", "delete"),
    ("join", "leave"),
    ("join", "quit"),
    ("start", "stop"),
    ("start", "end"),
    ("start", "finish"),
    ("begin", "end"),
    ("begin", "finish"),
    ("arrive", "depart"),
    ("arrival", "departure"),
    ("arrivals", "departures"),
    ("buy", "sell"),
    ("win", "lose"),
    ("pass", "fail"),
    ("success", "failure"),
    ("true", "false"),
    ("legal", "illegal"),
    ("compulsory", "optional"),
    ("mandatory", "optional"),
    ("required", "optional"),
    ("public", "private"),
    ("free", "paid"),
    ("good", "bad"),
    ("benefit", "drawback"),
    ("benefit", "downside"),
    ("benefit", "disadvantage"),
    ("advantage", "disadvantage"),
    ("advantage", "drawback"),
    ("pro", "con"),
    ("upside", "downside"),
    ("positive", "negative"),
    ("busy", "quiet"),
    ("hot", "cold"),
    ("warm", "cold"),
    ("wet", "dry"),
    ("full", "empty"),
    ("full-time", "part-time"),
    ("upload", "download"),
    ("import", "export"),
    ("send", "receive"),
    ("deposit", "withdraw"),
    ("borrow", "lend"),
    ("credit", "debit"),
    ("inbound", "outbound"),
    ("incoming", "outgoing"),
    ("input", "output"),
    ("encrypt", "decrypt"),
    ("show", "hide"),
    ("visible", "hidden"),
    ("spicy", "mild"),
    ("sweet", "sour"),
    ("alive", "dead"),
    ("present", "absent"),
    ("guilty", "innocent"),
    ("win", "loss"),
    ("profit", "loss"),
    ("gain", "loss"),
    ("remember", "forget"),
    ("love", "hate"),
    ("always", "never"),
    ("everyone", "no-one"),
    ("all", "none"),
    ("approve", "refuse"),
    ("eat", "avoid"),
    ("keep", "cancel"),
    ("keep", "lose"),
    ("lock", "unlock"),
    ("mute", "unmute"),
    ("pause", "resume"),
    ("connect", "disconnect"),
    ("subscribe", "unsubscribe"),
    ("install", "uninstall"),
    ("follow", "unfollow"),
    ("block", "unblock"),
    ("freeze", "unfreeze"),
    ("archive", "unarchive"),
    ("pin", "unpin"),
    ("working", "broken"),
    ("employed", "unemployed"),
]

# "opt in" / "opt out", "turn on" / "turn off", "check-in" / "check-out".
PARTICLE_OPPOSITES = {
    "in": "out",
    "out": "in",
    "on": "off",
    "off": "on",
    "up": "down",
    "down": "up",
}

# -- comparison and direction --------------------------------------------------------

DIRECTION_PAIRS = [
    ("more", "less"),
    ("more", "fewer"),
    ("most", "least"),
    ("higher", "lower"),
    ("high", "low"),
    ("highest", "lowest"),
    ("increase", "decrease"),
    ("increase", "reduce"),
    ("increase", "cut"),
    ("raise", "lower"),
    ("raise", "reduce"),
    ("rise", "fall"),
    ("rise", "drop"),
    ("over", "under"),
    ("above", "below"),
    ("before", "after"),
    ("within", "after"),
    ("within", "outside"),
    ("inside", "outside"),
    ("earlier", "later"),
    ("earliest", "latest"),
    ("early", "late"),
    ("faster", "slower"),
    ("fast", "slow"),
    ("quicker", "slower"),
    ("quickest", "slowest"),
    ("fastest", "slowest"),
    ("bigger", "smaller"),
    ("larger", "smaller"),
    ("big", "small"),
    ("large", "small"),
    ("largest", "smallest"),
    ("biggest", "smallest"),
    ("longer", "shorter"),
    ("longest", "shortest"),
    ("long", "short"),
    ("older", "newer"),
    ("older", "younger"),
    ("oldest", "newest"),
    ("oldest", "youngest"),
    ("old", "new"),
    ("old", "young"),
    ("cheaper", "dearer"),
    ("cheaper", "pricier"),
    ("cheapest", "dearest"),
    ("cheapest", "priciest"),
    ("cheapest", "expensive"),
    ("cheap", "expensive"),
    ("better", "worse"),
    ("best", "worst"),
    ("maximum", "minimum"),
    ("max", "min"),
    ("top", "bottom"),
    ("first", "last"),
    ("upper", "lower"),
    ("overpay", "underpay"),
    ("overpaid", "underpaid"),
    ("overcharge", "undercharge"),
    ("overcharged", "undercharged"),
    ("overestimate", "underestimate"),
    ("surplus", "deficit"),
    ("north", "south"),
    ("east", "west"),
    ("left", "right"),
    ("forward", "backward"),
    ("forwards", "backwards"),
    ("ascending", "descending"),
    ("upgrade", "downgrade"),
    ("upstream", "downstream"),
    ("heavier", "lighter"),
    ("stronger", "weaker"),
    ("warmer", "colder"),
    ("hotter", "colder"),
    ("harder", "easier"),
    ("hardest", "easiest"),
    ("safer", "riskier"),
    ("safest", "riskiest"),
    ("gain", "lose"),
    ("win", "lose"),
]

# Words across which a swap of two shared words reverses the meaning.
DIRECTIONAL = frozenset(_words("to than into onto from vs versus instead rather towards toward"))

# -- sentence structure --------------------------------------------------------------

FUNCTION_WORDS = frozenset(
    _words(
        """a an the i me my mine myself we us our ours you your yours he him his she her hers
    it its they them their theirs this that these those is am are was were be been being
    do does did doing have has had having will would shall should can could may might
    must to of in on at for from by with about as into onto over under up down out off
    than then so if or and but what which who whom whose when where why how there here
    any some all each every just also still even yet ever really very quite too only
    please get got getting go going make made let lets i'm i've i'd i'll it's that's
    what's there's one ones way"""
    )
)
CLAUSE_BREAKS = frozenset(
    _words("and but or so because although though while if when unless whereas")
)

# Capitalised words that are no proper noun.
NOT_ENTITIES = frozenset(
    _words("""i i'm i've i'd i'll hi hello hey hiya dear please thanks thank ok okay mr mrs ms dr
    sir madam yes no um er sorry morning evening afternoon cheers""")
    + _DAYS
    + _MONTHS
    + ["may", "march"]
)
NOT_CODE = frozenset(_words("e.g i.e etc a.m p.m vs n.b"))
