"""Stage 5 of the flow (evaluation): read the chosen option letter out of a free-form model reply.

Video-LMMs asked to "respond with only the letter" still answer "(B)", "B. A red square", "The answer is B",
"answer: b) ...", "B because ...", the option text itself ("Dog" for "a dog"), another language ("答案是C"), or a
hedge ("could be A or D"). lmms-eval's parsers take the first or the best-ranked capital letter anywhere in the
reply, which turns "A dog runs" into "A" and "I think B or C" into "B" or "C". Here a reply counts as an answer only
when it chooses exactly one option; anything else is `UNPARSEABLE` and is counted (as wrong, and reported as a rate)
instead of being guessed.

How a reply is read:
- The text is normalised (Unicode NFKC, so full-width "Ｂ" and "（B）" read as "B" and "(B)"; markdown emphasis and
  `<think>` blocks dropped).
- Every *letter mention* is found: a valid option letter standing alone (capital, or lower-case when marked as an
  option: "(b)", "b)", "option b", or the whole reply). A capital "A" (or "I") followed by an ordinary word is the
  English article (pronoun), not an option ("A dog runs"), unless the word cannot follow an article ("A because",
  "A is correct", "A the square").
- A mention is *negated* when it is ruled out: "not A", "rather than A", "A is wrong", "排除A", "不是A", or marked
  wrong by a verdict after it or after its option's text ("A: no", "A ✗", "A - incorrect", "A: red? No.").
- Then, the first rule that decides wins:
  0. A check of the options one by one, two letters or more with a verdict ("A: no. B: yes.", "A ✗ B ✓ C ✗ D ✗",
     "A (incorrect), B (correct)", "A) No\\nB) Yes", "A. No\\nB. Yes", "A = 0, B = 1"; the last two forms only in such
     a check, as "A. No" alone may be the answer A whose text is "No"): the one letter marked right is the answer,
     never the first letter named; several marked right, or an answer phrase naming another letter, is unparseable.
     None marked right: the rules below decide among the letters not ruled out ("A: no, B: no, so C").
  1. Answer phrases ("the answer is B", "Answer: (C)", "I'd go with D", "答案是C", "选C", "La respuesta es B"):
     exactly one letter named in them is the answer; two different ones ("the answer is B. No wait, the answer is
     C") are unparseable.
  2. A letter opening the reply ("B", "(B) ...", "B. ...", "B because ...") is the answer unless a list follows it
     ("A or B", "B, C"), another letter is picked as well, the options are labelled one by one ("A: ... B: ..."),
     or the reply corrects itself ("..., wait, ...").
  3. The option text: the reply contains exactly one option's text, compared without case, punctuation or articles
     ("Dog" for "a dog", "CAT" for "Cat"), or the whole short reply is a part of exactly one option ("blue" for "a
     blue circle"). A word written apart or hyphenated is that word ("counter-clockwise" is "counterclockwise", and
     an option "clockwise" that is only part of it does not count); a sign is part of its number ("-4" is no "4",
     "−4" is "-4") and ".5" is "0.5". Options ruled out ("not red, blue") do not count.
  4. Anywhere: exactly one distinct letter that is not ruled out ("I think it's B", "not A, it is C"). Several
     ("could be A or D", "Both A and C") are unparseable.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass

UNPARSEABLE = "unparseable"
OPTION_LETTERS = string.ascii_uppercase

# "A. red", "(B) blue", "C: green"; also without the space ("A.red", "B)blue"), but not an abbreviation ("A.M.", "a.m")
_OPTION_PREFIX = re.compile(r"^\s*[\(\[]?([A-Za-z])(?:[\)\]\.:]\s+|[\)\]\.](?=[^\W_])(?![A-Za-z](?![A-Za-z0-9])))")
# an option line of a multiple-choice prompt: "B. the red shape"
_OPTION_LINE = re.compile(r"^([A-Z])\.\s+(.*)$")

# A capital "A" followed by one of these words is the option letter, not the article ("A because ...").
_NOT_AFTER_ARTICLE = frozenset(
    "because since as is was are were it its it's the this that these those he she they there we i you from in on at "
    "of to for with by seems seem fits fit would should could can will and or but so which who looks appears matches "
    "best correct right wrong incorrect option choice answer an a".split()
)
# Ruled out when written just before the letter ...
_NEGATION_BEFORE = re.compile(
    r"(?:\bnot|n't|\bno|\bnever|(?:\bnot|n't)\s+(?:choose|pick|select|go\s+with|be)|\brather\s+than|\binstead\s+of|\bexcept(?:\s+for)?|\bexcluding|\bother\s+than|"
    r"\beliminat\w*|\brul(?:e|ed|ing)\s+out|\bbesides|\bnor|\bno\s+es|\bpas|\bnicht|\bnão|\bnon|\bне|"
    r"不是|不选|不選|而非|并非|並非|排除|除了|而不是)"
    r"\s*(?:(?:the|option|choice|answer|letter|选项|選項)\s*)?[\(\[]?$",
    re.IGNORECASE,
)
# ... or just after it.
_NEGATION_AFTER = re.compile(
    r"^\s*[\)\]]?\s*(?:is|was|seems|looks|would\s+be|are)?\s*(?:definitely\s+|clearly\s+|also\s+)?"
    r"(?:wrong|incorrect|false|not\b|isn't|can't|cannot|unlikely|ruled\s+out|eliminated|excluded|"
    r"错|錯|不对|不對|不正确|不正確|是错|是錯|排除)",
    re.IGNORECASE,
)
# Phrases that name the answer (English, Chinese, Japanese, Korean, Spanish, French, German, Portuguese, Italian,
# Russian), then an optional connecting verb, article or "option".
_ANSWER_PHRASE = re.compile(
    r"(?:\banswer|\boption|\bchoice|\bpick|\bchoose|\bselect|\bgo\s+with|\bgoing\s+with|\bguess|\bi'?d\s+say|"
    r"\bcorrect\s+one|\bright\s+one|\bbest\s+one|"
    r"答案|选项|選項|选择|選擇|选|選|正确的是|正確的是|正确答案|答え|正解|정답|답|"
    r"\brespuesta|\bopción|\bréponse|\bantwort|\bresposta|\bopção|\balternativa|\brisposta|\bopzione|"
    r"\bответ|\bвариант)"
    r"[^\S\n]*(?:(?:is|was|would\s+be|should\s+be|will\s+be|must\s+be|seems\s+to\s+be|has\s+to\s+be|here\s+is|"
    r"then|therefore|thus|es|est|ist|é|è|sería|serait|wäre|lautet|la|le|l'|el|die|der|o|a|de|"
    r"option|choice|letter|opción|opção|opzione|是|为|為|应该是|應該是|应是|的是|は|은|는|:|-|—|=|,)[^\S\n]*)*"
    r"[\(\[]?$",
    re.IGNORECASE,
)
_LIST_AFTER = re.compile(
    r"^[\)\]\.]?\s*(?:,|/|&|\+|\bor\b|\band\b|\bvs\.?|\bversus\b|和|或者|或|还是|還是|与|與|跟|\by\b|\bo\b|\bet\b|\bou\b|"
    r"\bund\b|\boder\b|\bи\b|\bили\b)\s*(?:maybe|perhaps|possibly|probably|even|also|option|choice)?\s*[\(\[]?"
    r"(?P<letter>[A-Z])(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_CORRECTION = re.compile(
    r"\b(?:wait|actually|sorry|correction|i\s+mean|on\s+second\s+thought|no,)|不对|不對|等等", re.IGNORECASE
)
_ALSO_AFTER = re.compile(
    r"^[\)\]]?\s*(?:is|seems|looks|would\s+be|could\s+be|might\s+be)?\s*(?:also|equally|possibly|too)\b"
    r"|^[\)\]]?\s*(?:could|might)\b",
    re.IGNORECASE,
)
_HEDGE_BEFORE = re.compile(
    r"(?:\balso|\bpossibly|\bmaybe|\bperhaps|\bprobably|\bor|\bmight\s+be|\bcould\s+be|或|或者|也可能是?)"
    r"\s*(?:option\s+|choice\s+)?[\(\[]?$",
    re.IGNORECASE,
)
# A verdict on the option just named: "A: no", "B) Yes", "C - wrong", "D is correct", "A ✗", "B: ✓", "C：错". Words
# need a separator (":", ")", "-", "=", "is"), and "yes" / "no" punctuation or the line's end after them ("D: No
# movement" is an option's text); a mark may follow the letter directly.
_VERDICT_MARKS = dict.fromkeys("✓✔✅☑", True) | dict.fromkeys("✗✘❌❎×", False)
_YES_NO_END = r"[^\S\n]*(?:[^\w\s]|\n|$)"


def _verdict_word(yes_no_end: str) -> str:
    return (
        r"(?P<word>not[^\S\n]+(?:correct|right|true)|incorrect|wrong|false|correct|right|true|"
        rf"(?:no|yes)(?={yes_no_end})|不对|不對|不正确|不正確|错|錯|对|對|正确|正確)(?![A-Za-z])"
    )


_VERDICT_WORD = _verdict_word(_YES_NO_END)
_VERDICT_MARK = r"(?P<mark>[" + "".join(_VERDICT_MARKS) + r"])"
_VERDICT_AFTER = re.compile(
    r"^(?:[\)\]]?[^\S\n]*(?:[:=\-–—→]|->|\bis\b|\bwas\b)|[\)\]]|[^\S\n]*(?P<open>[\(\[]))[^\S\n]*"
    + _VERDICT_WORD
    + r"(?(open)[^\S\n]*[\)\]])"  # in brackets: "A (incorrect), B (correct)"
    + r"|^[\)\]]?[^\S\n]*(?:[:=\-–—→.]|->)?[^\S\n]*"
    + _VERDICT_MARK,
    re.IGNORECASE,
)
# Weaker verdicts, read only in a check of two letters or more ("A. No\nB. Yes", "A. no B. yes", "A = 0, B = 1"):
# after a period the word may start a sentence ("It's B. Wrong answers: A, C"), and 0 / 1 may be a count.
_VERDICT_AFTER_PERIOD = re.compile(
    r"^\.[^\S\n]*" + _verdict_word(_YES_NO_END + r"|[^\S\n]+[A-Z][.):](?:\s|$)"), re.IGNORECASE
)
_VERDICT_DIGIT = re.compile(
    r"^(?:[\)\]]?[^\S\n]*(?:[:=\-–—→.]|->|\bis\b)|[\)\]])[^\S\n]*"
    r"(?P<word>[01])(?=[,;.!]?[^\S\n]*(?:\n|$)|[,;.!][^\S\n])"  # "0, B", "1." at the end; not "0.5", "1 square"
)
# ... or after the option's text: "A: red? No.", "B) blue - yes"
_ITEM_TEXT = re.compile(r"^[\)\]]?[^\S\n]*[:\-–—=.]?[^\S\n]*([^?.,;:!\n–—]+?)[^\S\n]*(?:[?.,;:!–—]|\s-)")
_VERDICT_NEXT = re.compile(r"^[^\S\n]*(?:" + _VERDICT_WORD + "|" + _VERDICT_MARK + ")", re.IGNORECASE)
_VERDICT_YES = frozenset({"yes", "correct", "right", "true", "1", "对", "對", "正确", "正確"})
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_CJK_PUNCTUATION = str.maketrans(
    {"。": ".", "，": ",", "、": ",", "；": ";", "！": "!", "？": "?", "“": '"', "”": '"'}
)

ARTICLES = frozenset({"a", "an", "the"})
NUMBER_WORDS = {
    word: str(number)
    for number, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_PUNCTUATION_TO_SPACE = dict.fromkeys(string.punctuation + "\u2010", " ")  # and the hyphen U+2010
# a minus sign: "-" before a number ("-4", "-.5"), not inside a word or range ("counter-clockwise", "3-4")
_SIGN = re.compile(r"-(?=\.?\d)")
# what may stand between the parts of a word written apart: "counter-clockwise", "counter clockwise"
_JOINABLE_GAP = re.compile(r"[\s\-\u2010]*")
_MAX_JOINED = 3
_LINK_WORDS = frozenset("with of in on to at by and holding wearing".split())
_FILLER_WORDS = frozenset(
    "it is it's its was are i think believe the answer would be should must probably likely definitely option choice "
    "correct right best one that this which who".split()
)


def option_letters(num_options: int) -> str:
    """The letters of `num_options` options: "ABCD" for four."""
    if not 1 <= num_options <= len(OPTION_LETTERS):
        raise ValueError(f"A multiple-choice question needs 1 to {len(OPTION_LETTERS)} options, got {num_options}.")
    return OPTION_LETTERS[:num_options]


def split_mcq_prompt(prompt: str) -> tuple[str, list[str]]:
    """(question, option texts) of a multiple-choice prompt laid out as its first line, then one "A. text" line per
    option (the world's questions and the lmms-eval-style prompts); no option lines gives an empty list.

    Example:
        >>> split_mcq_prompt("Which comes first?\\nA. the red shape\\nB. the blue shape\\nAnswer with the option's text.")
        ('Which comes first?', ['the red shape', 'the blue shape'])
    """
    lines = [line.strip() for line in prompt.strip().splitlines() if line.strip()]
    options = [m.group(2) for line in lines if (m := _OPTION_LINE.match(line))]
    return (lines[0] if lines else ""), options


def strip_option_prefix(option: str) -> str:
    """'A. a red square' -> 'a red square'; the benchmarks store options with or without their letter. One option
    alone cannot tell a letter from an initial ("B. Obama"): for a question's options use `strip_option_letters`."""
    return _OPTION_PREFIX.sub("", option, count=1).strip()


def option_prefix_letter(option: str) -> str | None:
    """The letter an option starts with, written as an option letter ("A. ", "(b) ", "C) "), upper-cased; `None`."""
    match = _OPTION_PREFIX.match(option)
    return match.group(1).upper() if match else None


def options_lettered(options: list[str]) -> bool:
    """The options carry their own letters: their prefixes are A, B, C, ... in order ("A. red", "B. blue").
    Options that merely start with a capital and a period ("B. Obama", "D. Trump", or "A. Lincoln", "G. Washington")
    are texts with an initial, not lettered options."""
    if not 1 <= len(options) <= len(OPTION_LETTERS):
        return False
    return all(
        isinstance(option, str) and option_prefix_letter(option) == letter
        for letter, option in zip(OPTION_LETTERS, options)
    )


def strip_option_letters(options: list[str]) -> list[str]:
    """The texts of a question's options: their letters dropped when they carry them in order (`options_lettered`),
    else the options as they are, so an initial ("B. Obama") stays part of the text."""
    if options_lettered(options):
        return [strip_option_prefix(option) for option in options]
    return [option.strip() for option in options]


def _normalise_text(reply: str) -> str:
    text = unicodedata.normalize("NFKC", _THINK.sub(" ", reply)).translate(_CJK_PUNCTUATION)
    for mark in ("**", "__", "*", "`", "#"):
        text = text.replace(mark, "")
    text = re.sub(r"(?<![A-Za-z])[Nn]/[Aa](?![A-Za-z])", " ", text)  # "N/A" names no option
    return text.strip().strip("\"'").strip()


def _stem(token: str) -> str:
    """A light stem, the same on both sides: "opens", "opened", "opening" -> "open"; "three" -> "3"."""
    token = NUMBER_WORDS.get(token, token)
    for ending in ("ing", "ed", "s"):
        if len(token) > len(ending) + 2 and token.endswith(ending) and not token.endswith("ss"):
            return token[: -len(ending)]
    return token


def _folded(text: str) -> str:
    """NFKC, lower case, the minus sign (U+2212, as exported numbers carry it) written "-"."""
    return unicodedata.normalize("NFKC", text).lower().replace("\u2212", "-")


def _token_spans(text: str) -> list[tuple[str, int, int]]:
    """(token, start, end) of `_tokens`, the offsets in `_folded(text)`. A sign stays part of its number ("-4" is no
    "4") and a leading-dot decimal reads as its "0." form (".5" as "0.5", which, like every "." and other punctuation,
    splits into the words "0 5")."""
    folded = _folded(text)
    chars, origin = [], []
    for position, char in enumerate(folded):
        # not after a word, a number or another period: "3-4", "x.5", "wait...5" keep their punctuation
        starts = not re.match(r"[\w.]", folded[position - 1 : position] or " ")
        if char == "." and starts and folded[position + 1 : position + 2].isdigit():
            chars += ["0", " "]
            origin += [position, position]
            continue
        sign = char == "-" and starts and _SIGN.match(folded, position)
        chars.append(char if sign else _PUNCTUATION_TO_SPACE.get(char, char))
        origin.append(position)
    spaced = "".join(chars)
    spans = []
    for match in re.finditer(r"\S+", spaced):
        token = match.group()
        if token in ARTICLES:
            continue
        token, start, end = _stem(token), origin[match.start()], origin[match.end() - 1] + 1
        if spans and folded[spans[-1][1] : spans[-1][2]] in ("minus", "negative") and re.fullmatch(r"\d+", token):
            token, start = "-" + token, spans.pop()[1]  # "minus 4" is "-4"
        spans.append((token, start, end))
    return spans


def _joinable(text: str, spans: list[tuple[str, int, int]], start: int, end: int) -> bool:
    """Only spaces or hyphens stand between the tokens `start` to `end` of `text` (folded): one word written apart."""
    return all(_JOINABLE_GAP.fullmatch(text[spans[i - 1][2] : spans[i][1]]) for i in range(start + 1, end))


def _joined(option: str) -> str | None:
    """The option written as one word ("counterclockwise" for "counter-clockwise"); None where other punctuation
    stands between its words ("1,000", "10:30")."""
    spans = _token_spans(option)
    if not spans or not _joinable(_folded(option), spans, 0, len(spans)):
        return None
    return "".join(token for token, _, _ in spans)


def _tokens(text: str) -> list[str]:
    """Lower-case words without punctuation, articles, plural "s"; number words as digits; signed numbers whole."""
    return [token for token, _, _ in _token_spans(text)]


def _contains(haystack: list[str], needle: list[str]) -> int:
    """Start of the first occurrence of the word sequence `needle` in `haystack`, or -1."""
    n = len(needle)
    for start in range(len(haystack) - n + 1):
        if haystack[start : start + n] == needle:
            return start
    return -1


@dataclass
class _Mention:
    letter: str
    start: int
    end: int
    negated: bool
    phrased: bool


def _mentions(text: str, valid: str) -> list[_Mention]:
    """Every stand-alone use of a valid option letter in `text`."""
    found = []
    for match in re.finditer(r"(?<![A-Za-z0-9'’])([A-Za-z])(?![A-Za-z0-9]|['’][a-z])", text):
        raw, start, end = match.group(1), match.start(1), match.end(1)
        letter = raw.upper()
        if letter not in valid:
            continue
        before, after = text[:start], text[end:]
        bracketed = before.endswith(("(", "[")) or after.startswith((")", "]"))
        punctuated = re.match(r"[\.:](?:\s|$)", after) is not None
        phrased = _ANSWER_PHRASE.search(before[-60:]) is not None
        next_word = re.match(r"[^\S\n]+([A-Za-z'’]+)", after)
        article_like = next_word is not None and next_word.group(1).lower() not in _NOT_AFTER_ARTICLE
        if raw.islower():
            # lower-case letters are words ("a", "vitamin c"): they count only when marked as options
            at_start = start == 0 and (raw != "a" or not next_word)
            if not (bracketed or (phrased and not article_like) or (at_start and (punctuated or raw != "a"))):
                continue
        elif letter == "I" and not (bracketed or punctuated or phrased):
            continue  # "I think ..."
        elif letter == "A" and not bracketed and not punctuated and article_like:
            continue  # "A dog runs": the article
        negated = _NEGATION_BEFORE.search(before[-30:]) is not None or _NEGATION_AFTER.match(after) is not None
        found.append(_Mention(letter, start, end, negated, phrased))
    # "not A or B", "neither A nor B": the negation covers the whole list
    for previous, mention in zip(found, found[1:]):
        between = text[previous.end : mention.start]
        linked = re.fullmatch(r"[\)\]]?\s*,?\s*(?:or|and|nor|或|和)\s*[\(\[]?", between, re.IGNORECASE)
        # "not A, B or C" (a comma inside a list that goes on with "or") but not "not A, C"
        listed = between.strip() == "," and re.match(r"[\)\]]?\s*,?\s*(?:or|nor|and)\b", text[mention.end :])
        if previous.negated and (linked or listed):
            mention.negated = True
    return found


def _verdicts(text: str, mentions: list[_Mention], options: list[str] | None) -> dict[int, bool]:
    """Mention index -> the verdict written right after it, or after its option's text (True: chosen, "B: yes",
    "B) blue - yes"; False: ruled out, "A: no", "A: red? No."). A verdict word that is an option's own text ("A: yes"
    for the options yes / no, "B: right" for left / right, "A. 1" for counts) is that option, not a verdict. A verdict
    after a period or a 0 / 1 ("A. No", "A = 0") counts only when two letters or more have verdicts: alone, "A. No"
    may be the answer A whose text is "No" (options not given) or a sentence's end."""
    option_words = dict(zip(OPTION_LETTERS, (_tokens(option) for option in strip_option_letters(options or []))))
    texts = {" ".join(words) for words in option_words.values()}

    def verdict(match: re.Match | None) -> bool | None:
        if match is None or (match["word"] and " ".join(_tokens(match["word"])) in texts):
            return None
        mark = match.groupdict().get("mark")
        return _VERDICT_MARKS[mark] if mark else match["word"].lower() in _VERDICT_YES

    found, weak = {}, {}
    for position, mention in enumerate(mentions):
        after = text[mention.end :]
        chosen = verdict(_VERDICT_AFTER.match(after))
        item = _ITEM_TEXT.match(after) if chosen is None else None
        if item and option_words.get(mention.letter) and _tokens(item.group(1)) == option_words[mention.letter]:
            chosen = verdict(_VERDICT_NEXT.match(after[item.end() :]))
        if chosen is not None:
            found[position] = chosen
            continue
        chosen = verdict(_VERDICT_AFTER_PERIOD.match(after) or _VERDICT_DIGIT.match(after))
        if chosen is not None:
            weak[position] = chosen
    if len({mentions[position].letter for position in found | weak}) >= 2:
        found |= weak
    return found


def _single(letters: set[str]) -> str:
    return next(iter(letters)) if len(letters) == 1 else UNPARSEABLE


def _option_text_choice(text: str, options: list[str], valid: str) -> str | None:
    """The one option whose text the reply gives (or gives part of); None when none or several."""
    text = re.sub(r"\b(?:the|that|this)\s+one\b", " ", text, flags=re.IGNORECASE)
    spans = _token_spans(text)
    reply = [token for token, _, _ in spans]
    if not reply:
        return None
    raw = _folded(text)
    option_texts = dict(zip(valid, strip_option_letters(options)))
    texts = {letter: _tokens(option) for letter, option in option_texts.items()}
    # where the reply gives each option: as its words, or as one word written apart or together ("counter-clockwise"
    # and "Counter clockwise" are "counterclockwise", and the other way round)
    found = {}
    for letter, words in texts.items():
        places = [
            (start, start + len(words))
            for start in range(len(reply))
            if words and reply[start : start + len(words)] == words
        ]
        joined = _joined(option_texts[letter])
        for start in range(len(reply) if joined else 0):
            for end in range(start + 1, min(start + _MAX_JOINED, len(reply)) + 1):
                if not _joinable(raw, spans, start, end):
                    break
                if "".join(reply[start:end]) == joined and (start, end) not in places:
                    places.append((start, end))
        if places:
            found[letter] = (words, sorted(places))

    def covered(letter: str) -> bool:
        """The option is part of a longer one the reply gives: "red" of "red square", "clockwise" of
        "counter-clockwise" where "counterclockwise" is an option too."""
        words, places = found[letter]
        if any(len(other) > len(words) and _contains(other, words) >= 0 for other, _ in found.values()):
            return True
        longer = [place for other in found if other != letter for place in found[other][1]]
        return all(any(start <= a and b <= end and end - start > b - a for start, end in longer) for a, b in places)

    # maximal matches only: "red square" beats "red" when both are options
    maximal = {letter for letter in found if not covered(letter)}
    ruled_out = set()
    for letter in maximal:
        before = raw[: spans[found[letter][1][0][0]][1]]
        if re.search(r"(?:\bnot|n't|\brather than|\binstead of|\bexcept)\s+(?:the\s+|a\s+|an\s+)?$", before):
            ruled_out.add(letter)
    chosen = maximal - ruled_out
    if chosen:
        return _single(chosen) if len(chosen) == 1 else UNPARSEABLE
    if maximal:
        return None
    # a short reply whose words (less filler) all belong to exactly one option: "blue" for "a blue circle",
    # "woman with umbrella" for "The woman holding an umbrella"
    core = {token for token in reply if token not in _FILLER_WORDS and token not in _LINK_WORDS}
    if not core or len(core) > 4:
        return None
    partial = {letter for letter, words in texts.items() if core <= set(words)}
    return _single(partial) if len(partial) == 1 else None


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
        >>> extract_answer_letter("It could be A or D.")
        'unparseable'
        >>> extract_answer_letter("Dog", ["a dog", "a cat"])
        'A'
    """
    if reply is None:
        return UNPARSEABLE
    text = _normalise_text(reply)
    if not text:
        return UNPARSEABLE
    valid = option_letters(len(options) if options is not None else (num_options or 4))

    # the whole reply is one letter, perhaps marked: "B", "(b)", "C.", "Option D", "选项B", "B选项"
    whole = re.fullmatch(
        r"(?:option|choice|answer|选项|選項|答案)?\s*[:：]?\s*[\(\[]?([A-Za-z])[\)\]\.:]?\s*(?:option|选项|選項|项)?\.?",
        text,
        re.IGNORECASE,
    )
    if whole:
        letter = whole.group(1).upper()
        return letter if letter in valid else UNPARSEABLE

    mentions = _mentions(text, valid)
    # 0. verdicts: a letter marked wrong ("A: no", "A ✗") is ruled out. A check of the options one by one ("A: no.
    # B: yes.", "A ✗ B ✓ C ✗"), two letters or more with a verdict, chooses the one marked right, not its first
    # letter; several marked right (or an answer phrase naming another letter) is no single choice.
    verdicts = _verdicts(text, mentions, options)
    for position, chosen in verdicts.items():
        mentions[position].negated = mentions[position].negated or not chosen
    if len({mentions[position].letter for position in verdicts}) >= 2:
        right = {mentions[position].letter for position, chosen in verdicts.items() if chosen}
        if right:
            named = {
                mention.letter
                for position, mention in enumerate(mentions)
                if mention.phrased and not mention.negated and position not in verdicts
            }
            return _single(right | named)
    kept = [mention for mention in mentions if not mention.negated]

    def listed(mention: _Mention) -> bool:
        follow = _LIST_AFTER.match(text[mention.end :])
        return follow is not None and follow["letter"].upper() in valid and follow["letter"].upper() != mention.letter

    # 1. answer phrases
    phrased = [mention for mention in kept if mention.phrased]
    if phrased:
        if any(listed(mention) for mention in phrased):
            return UNPARSEABLE
        return _single({mention.letter for mention in phrased})

    # 2. a letter opening the reply
    if kept and kept[0].start <= 1 and re.match(r"^[\(\[]?$", text[: kept[0].start]):
        first = kept[0]
        if listed(first):
            return UNPARSEABLE
        others = [mention for mention in kept[1:] if mention.letter != first.letter]
        if not others:
            return first.letter
        # "A. Wait, it's C", "B (C is also possible)", or the options listed back: no single choice
        also = any(
            _ALSO_AFTER.match(text[mention.end :])
            or _HEDGE_BEFORE.search(text[max(0, mention.start - 20) : mention.start])
            for mention in others
        )
        also = also or text[first.end :].lstrip(")]").startswith("?")
        # ... or each option labelled as in a check of them one by one ("A: not it. B: that's it.")
        relisted = any(
            re.search(r"(?:^|\n)\s*[\(\[]?$", text[: mention.start])
            or re.match(r"[\)\]]?[^\S\n]*:", text[mention.end :])
            for mention in others
        )
        if _CORRECTION.search(text[first.end :]) or also or relisted:
            return UNPARSEABLE
        return first.letter

    # 3. the option text
    if options:
        letter = _option_text_choice(text, options, valid)
        if letter is not None:
            return letter

    # 4. one letter anywhere that is not ruled out
    return _single({mention.letter for mention in kept})
