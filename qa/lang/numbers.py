"""Finding and normalising quantities so "£1bn", "£1 billion" and "1 billion pounds" compare equal."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from qa.lang.text import fold_same_length

_SCALES = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mn": 1e6,
    "million": 1e6,
    "millions": 1e6,
    "bn": 1e9,
    "b": 1e9,
    "billion": 1e9,
    "billions": 1e9,
    "tn": 1e12,
    "trillion": 1e12,
}
_CURRENCY_SYMBOLS = {"£": "GBP", "$": "USD", "us$": "USD", "€": "EUR"}
_CURRENCY_WORDS = {
    "pound": "GBP",
    "pounds": "GBP",
    "sterling": "GBP",
    "dollar": "USD",
    "dollars": "USD",
    "euro": "EUR",
    "euros": "EUR",
    "gbp": "GBP",
    "usd": "USD",
    "eur": "EUR",
}
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "twenty": 20,
    "hundred": 100,
    "half": 0.5,
    "third": 1 / 3,
    "quarter": 0.25,
}

# Matched against normalize()d text, so quotes are ASCII, case is folded and NBSP is a space.
_QUANTITY_RE = re.compile(
    r"(?<![\w.])"
    r"(?P<cur>us\$|[£$€])?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|"
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|a hundred|a third|a quarter|half)(?=\s(?:billion|million|thousand|trillion|per|of|[a-z]+s\b)))"
    r"(?:(?P<glued>bn|mn|m|k|tn|b)\b|\s?(?P<scale>thousand|millions?|billions?|trillion|bn|mn|tn)\b)?"
    r"(?:\s?(?P<curword>pounds?|sterling|dollars?|euros?|gbp|usd|eur)\b)?"
    r"(?:\s?(?P<pct>%|per\s?cent|percent))?"
)


@dataclass(frozen=True)
class Quantity:
    """A number with its scale applied, an optional currency and a percent flag.

    ``start``/``end`` index the original text (matching runs on a length-preserving fold of it).
    """

    value: float
    currency: str | None
    percent: bool
    text: str
    start: int
    end: int

    @property
    def is_year(self) -> bool:
        return (
            self.currency is None
            and not self.percent
            and self.value.is_integer()
            and 1900 <= self.value <= 2100
            and "," not in self.text
        )


def _to_float(num: str) -> float:
    if num in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[num])
    if num.startswith("a "):
        return float(_NUMBER_WORDS[num[2:]])
    return float(num.replace(",", ""))


def find_quantities(text: str) -> list[Quantity]:
    """All quantities in ``text``, in order.

    Examples: "£1bn" -> value 1e9 GBP; "1 billion pounds" -> 1e9 GBP; "4,400 GP" -> 4400;
    "£600m" -> 6e8 GBP; "20 per cent" -> 20 percent.
    """
    norm = fold_same_length(text)
    out = []
    for m in _QUANTITY_RE.finditer(norm):
        num = m.group("num")
        if not num:
            continue
        value = _to_float(num)
        scale_word = m.group("glued") or m.group("scale")
        if m.group("glued") in ("m", "b", "k") and not (m.group("cur") or m.group("curword")):
            # "5m" without a currency could be metres; only money takes the bare letter scales.
            if m.group("glued") == "m":
                scale_word = None
        if scale_word:
            value *= _SCALES[scale_word]
        currency = None
        if m.group("cur"):
            currency = _CURRENCY_SYMBOLS[m.group("cur")]
        elif m.group("curword"):
            currency = _CURRENCY_WORDS[m.group("curword")]
        out.append(Quantity(value, currency, bool(m.group("pct")), m.group(0).strip(), m.start(), m.end()))
    return out


def same_quantity(claim: Quantity, evidence: Quantity) -> bool:
    """True when ``evidence`` states the quantity ``claim`` states.

    A claim without a currency matches evidence with one ("1 billion" vs "£1bn"), but two different
    currencies never match, and a percentage only matches a percentage.
    Example: same_quantity(q("£1 billion"), q("£1bn")) -> True; same_quantity(q("$1bn"), q("£1bn")) -> False
    """
    if not math.isclose(claim.value, evidence.value, rel_tol=1e-6):
        return False
    if claim.currency and evidence.currency and claim.currency != evidence.currency:
        return False
    if claim.currency and not evidence.currency:
        return False
    return claim.percent == evidence.percent or not claim.percent


def unsupported_quantities(claim_text: str, evidence_texts: list[str]) -> list[str]:
    """The quantities stated in ``claim_text`` that no evidence text states.

    Example: unsupported_quantities("£1.1 billion", ["around £1 billion savings"]) -> ["£1.1 billion"]
    """
    evidence = [q for text in evidence_texts for q in find_quantities(text)]
    return [c.text for c in find_quantities(claim_text) if not any(same_quantity(c, e) for e in evidence)]
