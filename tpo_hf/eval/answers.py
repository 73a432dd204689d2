"""Stage 5 of the flow (evaluation): read the chosen option letter out of a free-form model reply.

Video-LMMs asked to "respond with only the letter" still answer "(B)", "B. A red square", "The answer is B",
"answer: b) ...", the option text itself, or a letter followed by an explanation. lmms-eval's Video-MME / MLVU
parsers take the first capital A-D anywhere in the reply, which turns "A dog runs" into "A" and "I think B or C" into
"B". Here a reply counts as an answer only when it names exactly one option; anything else is `UNPARSEABLE` and is
counted (as wrong) instead of being guessed.

The rules, tried in order (the first that decides wins):
1. The whole reply is one letter, optionally bracketed or followed by ".", ")" or ":" ("B", "(b)", "C.").
2. An explicit answer phrase: "answer is B", "Answer: (C)", "best option: D", "option B". Two different letters in
   such phrases make the reply unparseable.
3. A letter at the start of the reply marked as an option ("B)", "(B)", "B.", "B:", "B - ...", "B because ...").
   "A" followed by a lower-case word is the article, not option A. A list of letters ("A or B", "A, C") is
   unparseable.
4. The option text: the reply contains exactly one option's text (after lower-casing and dropping punctuation).
5. Exactly one distinct stand-alone capital option letter anywhere in the reply ("I think it's B"). Letters inside
   words ("Because", "CAT") never count.
"""

from __future__ import annotations

import re
import string

UNPARSEABLE = "unparseable"
OPTION_LETTERS = string.ascii_uppercase

_OPTION_PREFIX = re.compile(r"^\s*[\(\[]?([A-Za-z])[\)\]\.:]\s+")
_ANSWER_PHRASE = re.compile(
    r"(?:answer|option|choice)(?:\s+is|\s+would\s+be|\s+should\s+be)?\s*[:\-=]?\s*(?:option\s+|choice\s+)?"
    r"(?P<open>[\(\[]?)(?P<letter>[A-Za-z])(?P<close>[\)\]\.:,]?)(?P<rest>.?)",
    re.IGNORECASE,
)
_LEADING_LETTER = re.compile(r"^(?P<open>[\(\[]?)(?P<letter>[A-Za-z])(?P<close>[\)\]\.:,]?)(?P<rest>(?:\s*\S)?)")
_LETTER_LIST = re.compile(r"^[\(\[]?[A-Z][\)\]]?\s*(?:,|/|&|\bor\b|\band\b)\s*[\(\[]?[A-Z][\)\]\.]?(?![\w'])")
_STANDALONE = re.compile(r"(?<![\w'])[\(\[]?([A-Z])[\)\]]?(?![\w'])")


def option_letters(num_options: int) -> str:
    """The letters of `num_options` options: "ABCD" for four."""
    if not 1 <= num_options <= len(OPTION_LETTERS):
        raise ValueError(f"A multiple-choice question needs 1 to {len(OPTION_LETTERS)} options, got {num_options}.")
    return OPTION_LETTERS[:num_options]


def strip_option_prefix(option: str) -> str:
    """'A. a red square' -> 'a red square'; the benchmarks store options with or without their letter."""
    return _OPTION_PREFIX.sub("", option, count=1).strip()


def _normalise(text: str) -> str:
    text = text.lower().translate(str.maketrans(string.punctuation, " " * len(string.punctuation)))
    return " ".join(text.split())


def _is_article(letter: str, opened: str, closed: str, rest: str, text_after: str) -> bool:
    """'A red square': a capital A followed by a lower-case word is the English article, not option A."""
    return letter == "A" and not opened and not closed and bool(re.match(r"\s+[a-z]", text_after))


def _letter_from_match(match: re.Match, valid: str, text: str) -> str | None:
    """The option letter a phrase/leading match names, or None when the letter is not used as an option."""
    letter, opened, closed, rest = match["letter"], match["open"], match["close"], match["rest"]
    text_after = text[match.end("close") :]
    if rest and (rest.isalnum() or rest == "'") and not closed:
        return None  # the letter starts a word: "answer is Because", "Answer: a dog"
    if letter.islower():
        # "a"/"b" in running text are words; lower-case letters count only when marked as an option
        marked = opened or closed in (")", "]", ".", ":") or not text_after.strip()
        if not marked:
            return None
        letter = letter.upper()
    if _is_article(letter, opened, closed, rest, text_after):
        return None
    return letter if letter in valid else None


def _option_text_match(text: str, options: list[str], valid: str) -> str | None:
    reply = f" {_normalise(text)} "
    found = {}
    for letter, option in zip(valid, options):
        option_text = _normalise(strip_option_prefix(option))
        if option_text and f" {option_text} " in reply:
            found[letter] = option_text
    # "red square" also contains option "red": keep only the options not contained in another found option
    maximal = [
        letter
        for letter, option_text in found.items()
        if not any(option_text != other and f" {option_text} " in f" {other} " for other in found.values())
    ]
    return maximal[0] if len(maximal) == 1 else None


def extract_answer_letter(reply: str | None, options: list[str] | None = None, num_options: int | None = None) -> str:
    """The option letter a model's reply chooses, or `UNPARSEABLE`.

    Args:
        reply: the generated text.
        options: the option texts (with or without "A. " prefixes); enables matching the option text itself and
            restricts letters to the options that exist.
        num_options: number of options when `options` is not given (default 4, "ABCD").

    Returns:
        An upper-case letter, or `UNPARSEABLE` ("unparseable") for empty replies, several letters, or no answer.

    Example:
        >>> extract_answer_letter("The answer is (C) because the square turns blue.")
        'C'
        >>> extract_answer_letter("A or B")
        'unparseable'
    """
    if reply is None:
        return UNPARSEABLE
    text = reply.replace("*", "").replace("`", "").strip().strip("\"'").strip()
    if not text:
        return UNPARSEABLE
    valid = option_letters(len(options) if options is not None else (num_options or 4))

    # 1. the whole reply is a letter
    whole = re.fullmatch(r"[\(\[]?([A-Za-z])[\)\]\.:]?", text)
    if whole:
        letter = whole.group(1).upper()
        return letter if letter in valid else UNPARSEABLE

    # 2. explicit answer phrases
    phrased = {
        letter
        for match in _ANSWER_PHRASE.finditer(text)
        if (letter := _letter_from_match(match, valid, text)) is not None
    }
    if len(phrased) == 1:
        return phrased.pop()
    if len(phrased) > 1:
        return UNPARSEABLE

    # 3. a letter at the start, marked as an option
    if _LETTER_LIST.match(text):
        return UNPARSEABLE
    leading = _LEADING_LETTER.match(text)
    if leading:
        letter = _letter_from_match(leading, valid, text)
        if letter is not None and (leading["open"] or leading["close"] or letter.isupper()):
            return letter

    # 4. the option text itself
    if options:
        letter = _option_text_match(text, options, valid)
        if letter is not None:
            return letter

    # 5. one distinct stand-alone capital letter anywhere
    letters = set()
    for match in _STANDALONE.finditer(text):
        letter = match.group(1)
        opened = text[match.start()] in "(["
        closed = match.group(0)[-1] in ")]"
        if letter in valid and not _is_article(
            letter, "(" if opened else "", ")" if closed else "", "", text[match.end() :]
        ):
            letters.add(letter)
    return letters.pop() if len(letters) == 1 else UNPARSEABLE
