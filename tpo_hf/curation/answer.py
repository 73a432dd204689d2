"""Stage 2 of the flow (curation): the contrasted answers, the heart of TPO's self-training pairs.

The same video-LMM, with the same decoding settings, answers each question twice: from the preferred view (the
segment, or dense frames) and from the dis-preferred one (the video without the segment, or sparse frames). Only
what the model sees differs. Empty or identical answers make no preference and drop the candidate, unless anchors
are wanted (`CurationConfig.anchor_ratio`): then identical answers make an anchor candidate for the judge. An answer
cut at `answer_max_new_tokens` (`Reply.truncated`) drops the candidate too (`truncated_answer`) under
`CurationConfig.cut_answers="drop"` (by default when its backend `drops_cut_answers`, as endpoints do): a pair must
not teach answers that stop mid-word. An answer that ended early for another reason (a content filter's partial text,
a refusal: `Reply.ended_early`) drops the candidate whatever `cut_answers` says (`answer_ended_early`). A reasoning
model's `<think>` block is removed from its answers (as from its judge and question replies, `prompts.final_reply`),
and answers that differ only in case, whitespace or final punctuation, only typographically (curly quotes, dashes,
full-width forms, zero-width characters), only in Markdown emphasis (`*red*`, `**red**`, `_red_`), a strikethrough
around the whole answer (`~~red~~`; struck text inside an answer is deleted text: `is ~~not~~ red` reads `is red`), a
list or quote marker (`- red`, `> red`, `- three`; not a sign or a comparison: `- .5`, `- $5`, `> half`), inline HTML
tags (`<b>red</b>`), LaTeX wrappers (`\\boxed{5}`, `$5$`), only in quotes around the whole answer or brackets around
one without digits or commas (`"red"`, `(red)`; not `(5)`, `[0, 1]`), in a leading answer label (`Answer: red`), in a
number's spelling (`three`, `3`) or in a leading article (`a red square`, `red square`; not `a few`, `few`), count as
identical (`same_answer`). An endpoint that does not skip special tokens returns their text (`red<|im_end|>`): a
trailing end-of-turn token text is removed from the answer (counted, one warning naming the endpoint and the token),
and an answer holding special-token text elsewhere drops its candidate (`special_token_answer`): a pair must not teach
the model to write its own control tokens as text.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import weakref
from collections import Counter
from typing import Any

from ..eval.answers import NUMBER_WORDS
from .backends import GenerationBackend, GenerationRequest, ended_early, is_truncated
from .candidate import SIDES, Candidate, DecodedViews
from .generate import generate
from .prompts import final_reply

logger = logging.getLogger(__name__)

# the drop reason of a candidate whose chosen or rejected answer was cut at `answer_max_new_tokens`
TRUNCATED_ANSWER = "truncated_answer"
ANSWER_ENDED_EARLY = "answer_ended_early"
# the stats key counting answers whose reasoning model's `<think>` block was removed before storing them
ANSWERS_THINKING_REMOVED = "answers_thinking_removed"
# the stats key counting answers stored without the end-of-turn token text they ended with (`strip_end_tokens`)
ANSWERS_END_TOKEN_REMOVED = "answers_end_token_removed"
# the drop reason of a candidate whose answer holds special-token text other than at its end
SPECIAL_TOKEN_ANSWER = "special_token_answer"

# The end-of-turn / end-of-text token texts of the supported video-LMM families and of common chat LLMs (Qwen, LLaVA,
# InternVL, VideoLLaMA3: ChatML; LLaVA-NeXT-Video, Mistral: `</s>`; Llama 3/4; Gemma; SmolVLM; Phi; GLM; DeepSeek;
# gpt-oss). An endpoint that does not skip special tokens (vLLM's `skip_special_tokens=false`) ends its replies with
# one; an endpoint has no tokenizer to ask, so these are known by name.
END_TOKEN_TEXTS = (
    "<|im_end|>",
    "<|endoftext|>",
    "</s>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|eot|>",
    "<end_of_turn>",
    "<eos>",
    "<end_of_utterance>",
    "<|end|>",
    "<|user|>",
    "<|observation|>",
    "<|return|>",
    "<|END_OF_TURN_TOKEN|>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>",
)
# other chat-template and media-slot token texts of those families: no answer holds one as text
OTHER_SPECIAL_TOKEN_TEXTS = (
    "<|im_start|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<start_of_turn>",
    "<|startoftext|>",
    "<|assistant|>",
    "<|system|>",
    "<|start|>",
    "<|message|>",
    "<|channel|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
)


def special_token_texts(backend: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The special-token texts to look for in `backend`'s replies: (the end-of-turn ones a reply may end with, all of
    them). The fixed lists (`END_TOKEN_TEXTS`, `OTHER_SPECIAL_TOKEN_TEXTS`), plus, for a local model
    (`TransformersBackend.tokenizer`), its tokenizer's special tokens, its end and padding tokens among the ends."""
    ends, others = set(END_TOKEN_TEXTS), set(OTHER_SPECIAL_TOKEN_TEXTS)
    try:
        tokenizer = getattr(backend, "tokenizer", None)
    except AttributeError:  # a backend whose processor has none
        tokenizer = None
    if tokenizer is not None:
        ends |= {getattr(tokenizer, "eos_token", None), getattr(tokenizer, "pad_token", None)} - {None}
        others |= set(getattr(tokenizer, "all_special_tokens", None) or ())
        for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
            if getattr(token, "special", False):
                others.add(str(token))
    # a blank or one-character "token" would match ordinary text
    ends = {token for token in ends if isinstance(token, str) and len(token.strip()) > 1}
    others = {token for token in others if isinstance(token, str) and len(token.strip()) > 1}
    return tuple(sorted(ends)), tuple(sorted(ends | others))


def strip_end_tokens(text: str, ends: tuple[str, ...]) -> tuple[str, list[str]]:
    """`text` less the end-of-turn token texts (`ends`) it ends with (several: `red<|im_end|><|endoftext|>`), and
    those removed."""
    removed: list[str] = []
    stripped = text.rstrip()
    while True:
        token = next((token for token in ends if stripped.endswith(token)), None)
        if token is None:
            return (text if not removed else stripped), removed
        removed.append(token)
        stripped = stripped[: -len(token)].rstrip()


def special_tokens_in(text: str, tokens: tuple[str, ...]) -> list[str]:
    """The special-token texts among `tokens` that `text` holds."""
    return [token for token in tokens if token in text]


def same_answer(first: str, second: str) -> bool:
    """Whether two answers say the same thing as far as a pair goes: equal once case, runs of whitespace, final
    punctuation and typography are set aside ('The square is red.' and 'the square is  red' teach no preference, nor
    do 'It's red' and 'It’s red', 'Red...' and 'Red…', full-width 'Ｒｅｄ' and 'Red', or a zero-width space), and
    Markdown emphasis and wrapping quotes or brackets are set aside too ('*red*', '**red**', '_red_', '"red"', '«red»'
    and '(red)' are 'red'; 'snake_case', '2*3', 'x**2' and '__init__' keep their signs, '10²' and 'H₂O' their
    superscripts and subscripts, '(5)' and '[0, 1]' their brackets), and so are the other marks of formatting:
    strikethrough around the whole answer ('~~red~~', '<del>red</del>'; struck text inside an answer is deleted, markup
    and all: 'is ~~not~~ red' is 'is red'), list or quote markers ('- red', '> red', '- three'; '- 3', '- .5', '- $5',
    '> 3' and '> half' keep their signs and comparisons), inline HTML tags ('<b>red</b>'; not '<sup>'/'<sub>') and
    LaTeX wrappers ('\\boxed{5}', '$5$', '\\text{red}'; '$5' stays). A leading answer label is no part of the answer
    ('Answer: red', 'The answer is red'; not 'A: red'). Number words are digits as eval's parser reads them ('three' is
    '3', 'Three' '3.'), and a leading article is no part of the answer ('a red square' is 'red square', 'the 3' is '3';
    'A' alone stays 'a', and so does an article that makes the meaning: 'a few' is no 'few', 'a second' no
    'second')."""
    return _normalised(first) == _normalised(second)


# typographic quotes and dashes that NFKC leaves as they are, as their ASCII forms
_TYPOGRAPHIC = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),  # ‘ ’ ‚ ‛ ′
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"'),  # “ ” „ ‟ ″
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),  # hyphens, dashes, minus sign
    }
)
# Markdown bold (`**red**`, `__dark red__`) around a word or phrase: the marker opens after no word character or `*`
# (so `x**2` is no emphasis) and before no space, and closes after no space and before no word character
_STRONG = re.compile(r"(?<![\w*])(\*\*|__)(?!\s)(.+?)(?<!\s)\1(?![\w*])")
# single-`*`/`_` Markdown emphasis around a word or phrase: the marker opens after no word character (so `2*3` and
# `snake_case` are no emphasis) and before no space, and closes after no space and before no word character
_EMPHASIS = re.compile(r"(?<![\w*])([*_])(?![\s*_])(.+?)(?<![\s*_])\1(?![\w*])")
# the quotes and brackets that may wrap a whole answer (curly quotes are straight already: `_TYPOGRAPHIC`)
_WRAPPERS = {'"': '"', "'": "'", "\u00ab": "\u00bb", "\u00bb": "\u00ab", "\u2039": "\u203a", "\u300c": "\u300d"}
_WRAPPERS |= {"\u300e": "\u300f", "(": ")", "[": "]", "{": "}"}
_FINAL_PUNCTUATION = ".!?;:,。！？ "
# the brackets among them: a bracketed number may carry meaning (an interval `[0, 1]` is no `(0, 1)`, an accounting
# negative `(5)` no `5`), so they wrap an answer only around content without a digit or a comma
_BRACKETS = "([{"
# Markdown strikethrough around a word or phrase (`~~red~~`), marked as bold is (`_STRONG`)
_STRIKE = re.compile(r"(?<![\w~])~~(?!\s)(.+?)(?<!\s)~~(?![\w~])")
# HTML strikethrough, the innermost first (not `<s>`: a Llama token's text)
_STRIKE_TAG = re.compile(r"<(del|strike)>((?:(?!<(?:del|strike)>).)*?)</\1>", re.DOTALL)
# inline HTML tags without attributes around a word or phrase (`<b>red</b>`); not `<sup>`/`<sub>` (`10<sup>2</sup>`
# is no `102`) nor `<s>` (a Llama token's text); strikethrough is `_STRIKE_TAG`'s
_HTML_TAG = re.compile(r"<(b|strong|i|em|u|ins|mark|code|tt|kbd|samp|span|p)>(.*?)</\1>", re.DOTALL)
# LaTeX math delimiters around a formula: `$$5$$`, `\(5\)`, `\[5\]`, and `$5$` by pandoc's rule (the opening `$`
# before no space, the closing one after no space and before no digit), so prices ('$5 and $10', '$5-$10') stay
_MATH = (
    re.compile(r"\$\$(.+?)\$\$", re.DOTALL),
    re.compile(r"\\\((.+?)\\\)", re.DOTALL),
    re.compile(r"\\\[(.+?)\\\]", re.DOTALL),
    re.compile(r"(?<![\\$])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$(?![\d$])"),
)
# LaTeX commands that only frame or style their argument (a reasoning model's `\boxed{5}`)
_LATEX_WRAPPER = re.compile(r"\\(?:boxed|fbox|mbox|text|textbf|textit|textrm|emph|mathrm|mathbf|mathit)\s*\{")
# words after which an article is part of the meaning: 'a few' is some, 'few' hardly any ('a little'/'little', 'a
# lot'/'lot', 'a bit'/'bit'), 'the most' is no 'most'
_ARTICLE_KEPT_BEFORE = ("few", "little", "lot", "lots", "bit", "most", "least")
# words after which 'a'/'an' is the number one: 'a second' is a time, 'second' an ordinal; 'a third' a fraction;
# 'a minute' a time, 'minute' tiny; 'an hour' a duration, 'hour' a unit
_ONE_KEPT_BEFORE = ("second", "minute", "hour", "day", "week", "month", "year")
_ONE_KEPT_BEFORE += tuple("third fourth fifth sixth seventh eighth ninth tenth".split())
# the words that make a quantity: a `>` before one is a comparison ('> half', '> a few', '> three'), no quote marker
_QUANTITY_WORDS = (*NUMBER_WORDS, *"thirty forty fifty sixty seventy eighty ninety hundred thousand million".split())
_QUANTITY_WORDS += (*"billion dozen half halves quarter quarters thirds twice thrice double triple".split(),)
_QUANTITY_WORDS += (*"fewer many much more less several all once".split(), *_ARTICLE_KEPT_BEFORE, *_ONE_KEPT_BEFORE)
# the start of a number written in figures: a digit, a decimal point, a currency sign ('- .5', '- $5')
_FIGURES = r"(?:\.?\d|[$\u20ac\u00a3\u00a5\u20b9\u00a2\u20a9\u20bd])"
# a Markdown list or quote marker at the start of a line (`- red`, `* red`, `> red`, `> - red`). `*` and `•` are
# always bullets; `-` and `+` before figures are a sign ('- 3', '- .5', '- $5'), but a bullet before a word ('- three':
# nobody writes minus three in words); `>` before figures or a quantity word is a comparison ('> 5', '> half')
_LINE_MARKER = re.compile(
    r"^[ \t]*(?:[*\u2022]"
    rf"|[-+](?![ \t]*{_FIGURES})"
    rf"|>(?![ \t]*(?:[-+]?{_FIGURES}|(?:an?[ \t]+)?(?:{'|'.join(_QUANTITY_WORDS)})\b))"
    r")[ \t]+",
    re.MULTILINE,
)
# a number word as eval's parser reads it (`NUMBER_WORDS`: 'three' is '3'), a whole word ('twenty-one' stays)
_NUMBER_WORD = re.compile(r"(?<![\w'-])(" + "|".join(NUMBER_WORDS) + r")(?![\w'-])")
# a leading article (eval's `ARTICLES`) before a word: 'the 3' is '3', 'a red square' 'red square'; 'a' alone stays,
# and so does an article that makes the meaning ('a few', 'a second': `_ARTICLE_KEPT_BEFORE`, `_ONE_KEPT_BEFORE`)
_LEADING_ARTICLE = re.compile(
    rf"^(?:an? (?!(?:{'|'.join(_ONE_KEPT_BEFORE)})\b)|the )(?!(?:{'|'.join(_ARTICLE_KEPT_BEFORE)})\b)(?=\w)"
)
# a leading answer label ('Answer: red', 'Final answer: red', 'The answer is red') before the answer itself. Not the
# question writer's `prompts._ANSWER_LINE`: it also takes 'A:' and 'a -' for labels, and 'a - b' is an answer
_ANSWER_LABEL = re.compile(r"^(?:the )?(?:final )?answer(?: is\b:?|:) ?(?=\S)")


def _unwrapped(text: str) -> str:
    """`text` less the quotes or brackets that wrap all of it ('"red"', '(red)', '«red»'), when they are one pair:
    not '"a" or "b"' nor '(1, 2) and (3, 4)'. Brackets around a digit or a comma stay ('(5)', '[0, 1]', '(x, y)')."""
    close = _WRAPPERS.get(text[:1])
    if len(text) < 3 or close is None or not text.endswith(close):
        return text
    inner, opening = text[1:-1], text[0]
    if opening in _BRACKETS and any(c.isdigit() or c == "," for c in inner):
        return text
    if opening == close:
        # a same-sign quote inside may only be an apostrophe (between letters: "'it's red'"), not a closing quote
        if any(
            c == close and not (0 < i < len(inner) - 1 and inner[i - 1].isalnum() and inner[i + 1].isalnum())
            for i, c in enumerate(inner)
        ):
            return text
        return inner
    depth = 0
    for c in inner:
        depth += (c == opening) - (c == close)
        if depth < 0:  # the first sign closes before the end: two bracketed parts, no wrapper
            return text
    return inner if depth == 0 else text


def _unbold(match: re.Match) -> str:
    # `__init__` is a Python name, not bold `init`: `__` around a single word stays
    if match[1] == "__" and re.fullmatch(r"\w+", match[2]):
        return match[0]
    return match[2]


def _unstruck(text: str) -> str:
    """`text` less its struck text (`~~not~~`, `<del>3</del>`: text the writer deleted), markup and all ('the square is
    ~~not~~ red' reads 'the square is red'); a strikethrough around all that the answer says is only its form
    ('~~red~~.' is 'red.')."""
    kept = _STRIKE.sub("", text)
    while (deleted := _STRIKE_TAG.sub("", kept)) != kept:  # nested too, the innermost first
        kept = deleted
    if any(c.isalnum() for c in kept):
        return kept
    text = _STRIKE.sub(r"\1", text)
    while (unstruck := _STRIKE_TAG.sub(r"\2", text)) != text:
        text = unstruck
    return text


def _unlatexed(text: str) -> str:
    """`text` less LaTeX math delimiters (`$5$`, `\\(5\\)`) and the commands that only frame their argument
    (`\\boxed{5}`, `\\text{red}`), their arguments kept whole (`\\boxed{\\frac{1}{2}}` is `\\frac{1}{2}`)."""
    for pattern in _MATH:
        text = pattern.sub(r"\1", text)
    start = 0
    while match := _LATEX_WRAPPER.search(text, start):
        depth = 1
        for close in range(match.end(), len(text)):
            depth += (text[close] == "{") - (text[close] == "}")
            if depth == 0:
                text = text[: match.start()] + text[match.end() : close] + text[close + 1 :]
                start = match.start()
                break
        else:  # an unclosed brace: left as it is
            start = match.end()
    return text


def _compatibility_folded(text: str) -> str:
    """`text` as NFKC writes it, but for its superscript and subscript characters: '10²' is not '102', nor 'H₂O'
    'H2O'."""
    parts, start = [], 0
    for i, c in enumerate(text):
        if unicodedata.decomposition(c).startswith(("<super>", "<sub>")):
            parts += [unicodedata.normalize("NFKC", text[start:i]), c]
            start = i + 1
    return "".join(parts) + unicodedata.normalize("NFKC", text[start:])


def _normalised(text: str) -> str:
    # a pair must not teach typography alone: compatibility forms (full-width letters, '…', NBSP) as NFKC writes
    # them (superscripts and subscripts kept: they change the meaning), invisible format characters (zero-width
    # space, soft hyphen, BOM: category Cf) dropped, curly quotes and dashes as ASCII
    text = _compatibility_folded(text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").translate(_TYPOGRAPHIC)
    text = re.sub(r"`+", "", text.casefold())  # inline code marks ('`red`' is 'red')
    while (untagged := _HTML_TAG.sub(r"\2", text)) != text:  # inline HTML, nested too ('<b><i>red</i></b>')
        text = untagged
    text = _unlatexed(text)  # a reasoning model's '\\boxed{5}', '$5$'
    text = _STRONG.sub(_unbold, text)  # Markdown bold ('**Red**' is 'Red'; 'x**2' and '__init__' stay)
    text = _EMPHASIS.sub(r"\2", text)  # and single-sign emphasis ('*Red*', '_Red_')
    # list and quote markers, nested too ('> - red'), decided on the words as written: '- three' is a bullet, '- 3' a
    # sign
    while (unmarked := _LINE_MARKER.sub("", text)) != text:
        text = unmarked
    text = _unstruck(text)  # Markdown and HTML strikethrough ('~~red~~'; 'is ~~not~~ red' is 'is red')
    text = re.sub(r"\s+", " ", text).strip()
    while True:  # a label and quotes or brackets around the whole answer, inside or outside its final punctuation
        unwrapped = _unwrapped(_ANSWER_LABEL.sub("", text.rstrip(_FINAL_PUNCTUATION).strip(), count=1))
        if unwrapped == text:
            break
        text = unwrapped.strip()
    text = _LEADING_ARTICLE.sub("", text, count=1)
    return _NUMBER_WORD.sub(lambda match: NUMBER_WORDS[match[1]], text)  # 'three' is '3', as eval reads it


def _answer_text(reply: str, stats: Counter, ends: tuple[str, ...], removed: Counter) -> str:
    # a reasoning model's thinking is no part of its answer: a pair must not teach (or compare) the draft
    text = final_reply(reply) if "think>" in reply.lower() else reply
    if text != reply:
        stats[ANSWERS_THINKING_REMOVED] += 1
    # nor is the end-of-turn token text an endpoint that does not skip special tokens leaves at its end
    text, tokens = strip_end_tokens(text, ends)
    if tokens:
        stats[ANSWERS_END_TOKEN_REMOVED] += 1
        removed.update(tokens)
    return text


# the backends already warned about the end-of-turn token texts of their answers: one warning per run
_WARNED_END_TOKENS: weakref.WeakSet = weakref.WeakSet()


def _warn_end_tokens(backend: Any, stripped: int, removed: Counter, dropped: int, answers: int) -> None:
    """One warning per run (then info lines) naming the video model's endpoint and the special-token texts found in
    `answers` answers: `stripped` of them ended with `removed`, `dropped` candidates were dropped."""
    where = f"{getattr(backend, 'model_id', 'unknown')}" + (
        f" at {backend.base_url}" if getattr(backend, "base_url", None) else ""
    )
    what = (
        f"{stripped} of {answers} answer(s) ended with special-token text "
        f"({', '.join(f'{token!r} x{n}' for token, n in removed.most_common())}): removed from the stored answers"
        if removed
        else ""
    )
    if dropped:
        what += ("; " if what else "") + (
            f"{dropped} candidate(s) had an answer holding special-token text elsewhere and were dropped "
            f"({SPECIAL_TOKEN_ANSWER})"
        )
    try:
        first = backend not in _WARNED_END_TOKENS
        _WARNED_END_TOKENS.add(backend)
    except TypeError:  # a backend that takes no weak reference: warn each time
        first = True
    message = (
        f"The video model {where} returns the text of its special tokens in its replies (in this shard: {what}). "
        "Its server does not skip special tokens when it decodes (vLLM: skip_special_tokens); set it to skip them."
    )
    if first:
        logger.warning("%s Later shards are handled alike and logged at info level.", message)
    else:
        logger.info("%s", message)


def answer(
    candidates: list[Candidate],
    views: DecodedViews,
    backend: GenerationBackend,
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
    anchors: bool = False,
    drop_cut: bool | None = None,
) -> None:
    """Sets `chosen` and `rejected` on every live candidate. With `anchors`, a candidate whose two answers are the
    same stays alive as an anchor candidate; one whose views are the same frames is answered once, for both sides.
    `drop_cut` (None: the backend's `drops_cut_answers`) drops a candidate with a cut answer."""
    answerable = [candidate for candidate in candidates if candidate.alive]
    requests = [
        GenerationRequest(c.question, c.view(views, side), candidate=c)
        for c in answerable
        for side in (SIDES[:1] if c.anchor_origin == "identical_views" else SIDES)
    ]
    replies = iter(generate(backend, requests, max_new_tokens=max_new_tokens, seed=seed, stats=stats, stage="answer"))
    drops_cut = drop_cut
    if drops_cut is None:
        drops_cut = getattr(backend, "drops_cut_answers", True)  # a backend not built on GenerationBackend
    thinking_before, stripped_before = stats[ANSWERS_THINKING_REMOVED], stats[ANSWERS_END_TOKEN_REMOVED]
    ends, specials = special_token_texts(backend)
    removed: Counter = Counter()  # end-of-turn token texts removed from this call's answers
    dropped_special = 0
    for candidate in answerable:
        chosen = next(replies)
        rejected = chosen if candidate.anchor_origin == "identical_views" else next(replies)
        candidate.chosen = _answer_text(str(chosen), stats, ends, removed)
        candidate.rejected = (
            candidate.chosen
            if candidate.anchor_origin == "identical_views"
            else _answer_text(str(rejected), stats, ends, removed)
        )
        if ended_early(chosen) is not None or ended_early(rejected) is not None:
            candidate.drop_reason = ANSWER_ENDED_EARLY
        elif drops_cut and (is_truncated(chosen) or is_truncated(rejected)):
            candidate.drop_reason = TRUNCATED_ANSWER
        elif not candidate.chosen.strip() or not candidate.rejected.strip():
            candidate.drop_reason = "empty_answer"
        elif special_tokens_in(candidate.chosen + "\n" + candidate.rejected, specials):
            # a chat-template marker or a second turn inside an answer (`red<|im_end|>\n<|im_start|>user`) is no
            # answer to train on
            candidate.drop_reason = SPECIAL_TOKEN_ANSWER
            dropped_special += 1
        elif candidate.anchor_origin is None and same_answer(candidate.chosen, candidate.rejected):
            candidate.cannot_pair("identical_answers", anchors)
    if removed or dropped_special:
        stripped = stats[ANSWERS_END_TOKEN_REMOVED] - stripped_before
        _warn_end_tokens(backend, stripped, removed, dropped_special, len(requests))
    if stats[ANSWERS_THINKING_REMOVED] > thinking_before:
        logger.info(
            "Removed a reasoning model's <think> block from %d answer(s): only the final answer is stored.",
            stats[ANSWERS_THINKING_REMOVED] - thinking_before,
        )
