"""CheckList-style perturbations of a text, deterministic under a seed.

    from llm_lab.bench import perturb
    perturb.apply("Anna bought 3 big mugs", "name", perturb.rng_for(0, 17, "name"))   # "Maria bought 3 big mugs"
    perturb.Template.from_spec({"find": "good", "replace": "great"}).apply("good value")  # "great value"

Built-in kinds (`KINDS`): typo (swap or drop adjacent letters), casing, punctuation, synonym (from `SYNONYMS`),
name (from `NAMES`), number, irrelevant (a sentence from `IRRELEVANT` added). Each returns the new text, or None
when it does not apply to that text (no name to swap, no number, ...). User templates replace a literal string
(`find`) or a regular expression (`regex`), or add text (`append` / `prepend`, used by directional tests).

Every (seed, example id, kind) has its own random generator (`rng_for`), so adding a kind or a row never changes
another's perturbation.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ..errors import LabError

KINDS = ("typo", "casing", "punctuation", "synonym", "name", "number", "irrelevant")

# Pairs of words that mean the same in everyday text (both directions are used). Chosen not to carry sentiment,
# so a classifier's label should not move when one replaces the other.
SYNONYM_PAIRS = (
    ("big", "large"), ("small", "little"), ("fast", "quick"), ("buy", "purchase"), ("start", "begin"),
    ("finish", "complete"), ("help", "assist"), ("show", "display"), ("choose", "pick"), ("get", "obtain"),
    ("need", "require"), ("try", "attempt"), ("often", "frequently"), ("maybe", "perhaps"), ("movie", "film"),
    ("product", "item"), ("shop", "store"), ("car", "automobile"), ("kid", "child"), ("kids", "children"),
    ("gift", "present"), ("quickly", "rapidly"), ("mostly", "largely"), ("bought", "purchased"),
    ("shipping", "delivery"), ("price", "cost"), ("cheap", "inexpensive"), ("simple", "easy"),
    ("hard", "difficult"), ("answer", "reply"), ("close", "shut"), ("fix", "repair"), ("almost", "nearly"),
    ("whole", "entire"), ("mistake", "error"), ("box", "package"), ("arrived", "came"), ("week", "seven days"),
    ("photo", "picture"), ("job", "task"), ("talk", "speak"), ("street", "road"),
)
SYNONYMS = {**{a: b for a, b in SYNONYM_PAIRS}, **{b: a for a, b in SYNONYM_PAIRS if " " not in b}}

NAMES = ("Anna", "Maria", "John", "James", "Mohammed", "Wei", "Priya", "Carlos", "Fatima", "Olga", "Kenji", "Amara",
         "David", "Sarah", "Lucas", "Emma", "Ahmed", "Sofia", "Ivan", "Mei", "Peter", "Laura", "Omar", "Chloe")

IRRELEVANT = ("I read this on a Tuesday.", "My neighbour has a cat.", "The weather was cloudy that day.",
              "I am writing this from the kitchen.", "This is my third review this month.",
              "My cousin lives in another city.", "I had coffee before writing this.",
              "The bus was late this morning.")

_WORD = re.compile(r"[A-Za-z]+")
_NAME_RE = re.compile(r"\b(" + "|".join(NAMES) + r")\b")
_NUMBER_RE = re.compile(r"\b\d+\b")
_END_PUNCT = re.compile(r"[.!?;,:]+$")
MAX_PATTERN = 200  # characters of a user's regular expression (Python's re has no timeout: keep them short)


class PerturbError(LabError):
    pass


def rng_for(seed: int, example_id: int, kind: str) -> random.Random:
    """The generator of one (seed, example, kind): a str seed is hashed with SHA-512, so it is the same in
    every process (unlike hash())."""
    return random.Random(f"{int(seed)}:{int(example_id)}:{kind}")


def _keep_case(original: str, new: str) -> str:
    if original.isupper() and len(original) > 1:
        return new.upper()
    if original[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def typo(text: str, rng: random.Random) -> str | None:
    """Swap two adjacent, different letters inside a word, or drop one letter of a word of 3+ letters."""
    swaps = [m.start() + i for m in _WORD.finditer(text) for i in range(len(m.group()) - 1)
             if m.group()[i].lower() != m.group()[i + 1].lower()]
    drops = [m.start() + i for m in _WORD.finditer(text) if len(m.group()) >= 3 for i in range(len(m.group()))]
    choices = [("swap", p) for p in swaps] + [("drop", p) for p in drops]
    if not choices:
        return None
    how, p = rng.choice(choices)
    if how == "swap":
        return text[:p] + text[p + 1] + text[p] + text[p + 2:]
    return text[:p] + text[p + 1:]


def casing(text: str, rng: random.Random) -> str | None:
    """All lower case, all upper case, or the first letter's case flipped: whichever changes the text."""
    options = [t for t in (text.lower(), text.upper(), text[:1].swapcase() + text[1:]) if t != text]
    return rng.choice(options) if options else None


def punctuation(text: str, rng: random.Random) -> str | None:
    """Drop the final punctuation, or add a full stop or exclamation mark where there is none."""
    stripped = text.rstrip()
    if not stripped:
        return None
    if _END_PUNCT.search(stripped):
        return _END_PUNCT.sub("", stripped)
    return stripped + rng.choice((".", "!"))


def synonym(text: str, rng: random.Random) -> str | None:
    """One word with an entry in SYNONYMS replaced by its partner (case kept)."""
    spots = [m for m in _WORD.finditer(text) if m.group().lower() in SYNONYMS]
    if not spots:
        return None
    m = rng.choice(spots)
    return text[:m.start()] + _keep_case(m.group(), SYNONYMS[m.group().lower()]) + text[m.end():]


def name(text: str, rng: random.Random) -> str | None:
    """One first name from NAMES replaced by another from the list."""
    spots = list(_NAME_RE.finditer(text))
    if not spots:
        return None
    m = rng.choice(spots)
    other = rng.choice([n for n in NAMES if n != m.group()])
    return text[:m.start()] + other + text[m.end():]


def number(text: str, rng: random.Random) -> str | None:
    """One whole number replaced by another of similar size (never the same)."""
    spots = list(_NUMBER_RE.finditer(text))
    if not spots:
        return None
    m = rng.choice(spots)
    old = int(m.group())
    new = old
    while new == old:
        new = rng.randint(max(0, old // 2), old * 2 + 5)
    return text[:m.start()] + str(new) + text[m.end():]


def irrelevant(text: str, rng: random.Random) -> str | None:
    """A sentence that says nothing about the label, added before or after the text."""
    stripped = text.strip()
    if not stripped:
        return None
    sentence = rng.choice(IRRELEVANT)
    if rng.random() < 0.5:
        return f"{sentence} {stripped}"
    joiner = " " if _END_PUNCT.search(stripped) else ". "
    return f"{stripped}{joiner}{sentence}"


_BUILTIN = {"typo": typo, "casing": casing, "punctuation": punctuation, "synonym": synonym, "name": name,
            "number": number, "irrelevant": irrelevant}


def apply(text: str, kind: str, rng: random.Random) -> str | None:
    """Built-in perturbation `kind` of `text`, or None when it does not apply (or changes nothing)."""
    out = _BUILTIN[kind](str(text), rng)
    return out if out is not None and out != text else None


@dataclass(frozen=True)
class Template:
    """A user's edit: `find`/`replace` (literal, whole words where it starts/ends with a letter or digit),
    `regex`/`replace` (Python regular expression, \\1 back-references), or `append`/`prepend` text."""

    name: str
    find: str | None = None
    regex: str | None = None
    replace: str = ""
    append: str | None = None
    prepend: str | None = None

    @classmethod
    def from_spec(cls, spec: dict, index: int = 0) -> "Template":
        """A template from a suite's mapping; PerturbError says what is wrong (`check_spec` has the rules)."""
        check_spec(spec)
        if spec.get("find") is not None:
            default = f"replace {spec['find']!r}"
        elif spec.get("regex") is not None:
            default = f"regex {spec['regex']!r}"
        elif spec.get("append") is not None:
            default = f"append {spec['append']!r}"
        else:
            default = f"prepend {spec['prepend']!r}"
        return cls(name=str(spec.get("name") or default), find=spec.get("find"), regex=spec.get("regex"),
                   replace=str(spec.get("replace", "")), append=spec.get("append"), prepend=spec.get("prepend"))

    def pattern(self) -> re.Pattern | None:
        if self.regex is not None:
            return re.compile(self.regex)
        if self.find is not None:
            left = r"(?<!\w)" if re.match(r"\w", self.find) else ""
            right = r"(?!\w)" if re.search(r"\w$", self.find) else ""
            return re.compile(left + re.escape(self.find) + right)
        return None

    def apply(self, text: str) -> str | None:
        """The edited text, or None when the template does not match (or changes nothing)."""
        text = str(text)
        if self.append is not None:
            out = text + self.append
        elif self.prepend is not None:
            out = self.prepend + text
        else:
            literal = self.replace  # a `find` template's replacement is plain text, never a \\1 reference
            out = self.pattern().sub(self.replace if self.regex is not None else (lambda m: literal), text)
        return out if out != text else None


TEMPLATE_KEYS = {"name", "find", "regex", "replace", "append", "prepend"}


def check_spec(spec, extra_keys: set = frozenset()) -> None:
    """Raise PerturbError when a template mapping is malformed: exactly one of find/regex/append/prepend,
    `replace` with find or regex, text values, a regular expression that compiles."""
    if not isinstance(spec, dict):
        raise PerturbError("a template is a mapping such as {find: good, replace: great}.")
    unknown = set(spec) - TEMPLATE_KEYS - set(extra_keys)
    if unknown:
        raise PerturbError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}; a template has "
                           f"{', '.join(sorted(TEMPLATE_KEYS | set(extra_keys)))}.")
    how = [k for k in ("find", "regex", "append", "prepend") if spec.get(k) is not None]
    if len(how) != 1:
        raise PerturbError("give exactly one of `find`, `regex`, `append` or `prepend`.")
    for key in TEMPLATE_KEYS & set(spec):
        if spec[key] is not None and not isinstance(spec[key], str):
            raise PerturbError(f"`{key}` must be text.")
    if how[0] in ("find", "regex") and "replace" not in spec:
        raise PerturbError(f"`{how[0]}` needs a `replace` (the text to put in its place; '' to delete).")
    if how[0] in ("append", "prepend") and "replace" in spec:
        raise PerturbError(f"`replace` goes with `find` or `regex`, not with `{how[0]}`.")
    if not spec[how[0]]:
        raise PerturbError(f"`{how[0]}` is empty.")
    if how[0] == "regex":
        if len(spec["regex"]) > MAX_PATTERN:
            raise PerturbError(f"the regular expression is longer than {MAX_PATTERN} characters.")
        try:
            compiled = re.compile(spec["regex"])
            compiled.sub(spec.get("replace", ""), "")  # a bad back-reference (\3 of one group) fails here
        except re.error as exc:
            raise PerturbError(f"`regex` is not a valid regular expression: {exc}.") from exc


def perturbations(text: str, example_id: int, seed: int, kinds, templates) -> list[tuple[str, str]]:
    """Every perturbation that applies to `text`: [(kind or template name, new text)], built-in kinds first."""
    out = []
    for kind in kinds:
        new = apply(text, kind, rng_for(seed, example_id, kind))
        if new is not None:
            out.append((kind, new))
    for template in templates:
        new = template.apply(text)
        if new is not None:
            out.append((template.name, new))
    return out
