"""Stage 2 of the flow (curation): the prompts of every role, and robust parsing of the replies.

Roles follow the TPO paper (arXiv 2501.13919): a video-LMM captions a segment or the whole video; an LLM turns a
caption into a question about one task type (or answers "None" when the caption does not support one); the
video-LMM answers the question from two contrasted views; a judge LLM runs three checks on every pair. Replies from
real models are messy, so parsing accepts many shapes (plain lines, Markdown, JSON, numbered lists) and reports an
unparseable reply as a status, never as an exception: the pipeline counts it and moves on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

# The paper's task types, with the focus sentence each question prompt asks for.
TASK_TYPES: dict[str, str] = {
    "temporal": "the temporal order of events: what happens before, after or while something else happens",
    "action": "the actions being performed: who or what is doing what, and how",
    "causal_reasoning": "causal reasoning: why something happens or what it leads to",
    "information_extraction": "extracting a specific piece of information that is shown (text, numbers, names, counts)",
    "descriptive": "describing what is shown: the scene, its appearance and its details",
    "summarization": "summarizing the content as a whole",
    "object": "the objects present: their kinds, colours, shapes and attributes",
    "spatial_reasoning": "spatial relations: where things are relative to each other and how they move",
}
# Summaries need the whole video; the other types work for a segment too.
LOCALIZED_TASK_TYPES = [name for name in TASK_TYPES if name != "summarization"]
COMPREHENSIVE_TASK_TYPES = list(TASK_TYPES)

CAPTION_PROMPTS = {
    "localized": "Describe in detail what happens in this video clip: the scene, the objects, the actions and "
    "their order.",
    "comprehensive": "Describe in detail what happens in this video from beginning to end: the scenes, the objects, "
    "the actions and their order.",
}

QUESTION_PROMPT = (
    "Using the caption of a video, create a question-answer pair that focuses on {focus}. "
    "The question must be answerable from the caption alone and must not mention the caption. "
    "Output None if the caption is not suitable for such a question.\n\n"
    "Caption: {caption}\n\n"
    "Reply in exactly this format:\nQuestion: <question>\nAnswer: <answer>"
)

JUDGE_PROMPT = (
    "You are given the caption of a video, a question about it and two answers.\n\n"
    "Caption: {caption}\n\nQuestion: {question}\n\nAnswer 1: {chosen}\n\nAnswer 2: {rejected}\n\n"
    "Check the following and answer each with Yes or No:\n"
    "1. Is Answer 1 better than Answer 2?\n"
    "2. Does the question or Answer 1 contradict the caption, or is the question ambiguous?\n"
    "3. Is Answer 1 correct given the caption?\n\n"
    "Reply in exactly this format:\n1. Yes/No\n2. Yes/No\n3. Yes/No\nReason: <one sentence>"
)


def question_prompt(caption: str, task_type: str) -> str:
    """The LLM prompt that turns `caption` into a question about `task_type` (a key of `TASK_TYPES`)."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"Unknown task type {task_type!r}; choose from {sorted(TASK_TYPES)}.")
    return QUESTION_PROMPT.format(focus=TASK_TYPES[task_type], caption=caption.strip())


def judge_prompt(caption: str, question: str, chosen: str, rejected: str) -> str:
    """The judge prompt with the paper's three checks for one pair."""
    return JUDGE_PROMPT.format(
        caption=caption.strip(), question=question.strip(), chosen=chosen.strip(), rejected=rejected.strip()
    )


# --- parsing ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParsedQuestion:
    """An LLM question reply: `status` is "ok" (question set), "none" (the LLM declined) or "unparseable"."""

    status: str
    question: str | None = None
    answer: str | None = None


_NONE_REPLY = re.compile(r"^\W*(none|n/?a|no question)\W*$", re.IGNORECASE)
_QUESTION_LINE = re.compile(r"^\W*(?:question|q)\s*\d*\s*[:\-–]\s*(.*)$", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^\W*(?:answer|a)\s*\d*\s*[:\-–]\s*(.*)$", re.IGNORECASE)
# an answer written after the question mark on its line: "What colour is it? (Answer: red)", "...? Answer: red"
_INLINE_ANSWER = re.compile(r"(?<=\?)\s*[(\[]?\s*answer\s*[:\-–]\s*(.*?)\s*[)\]]?\s*$", re.IGNORECASE)


def _clean(text: str) -> str:
    # Markdown emphasis and code marks, not single underscores (they occur inside words)
    text = re.sub(r"\*\*|__|`+|^#+\s*", "", text).strip()
    return text.strip("\"'* \t").strip()


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)


def final_reply(reply: str | None) -> str:
    """`reply` less a reasoning model's thinking, so that only its final answer is parsed (a draft verdict inside
    `<think>` must not count): every `<think>...</think>` block goes, and so does everything before a lone
    `</think>` (servers whose chat template opens the block in the prompt) or after a lone `<think>` (a reply cut
    off while still thinking has no final answer). A final answer wrapped as `<answer>...</answer>` (GLM-4.1V-Thinking)
    is the text inside the last such block (or after a leading lone `<answer>`, a reply cut off in it)."""
    if not reply:
        return ""
    text = _THINK_BLOCK.sub("", reply)
    lowered = text.lower()
    if "</think>" in lowered:
        text = text[lowered.rindex("</think>") + len("</think>") :]
    elif "<think>" in lowered:
        text = text[: lowered.index("<think>")]
    if answers := _ANSWER_BLOCK.findall(text):
        text = answers[-1]
    elif text.lstrip().lower().startswith("<answer>"):  # not the prompt's "Answer: <answer>" echoed
        text = text.lstrip()[len("<answer>") :]
    return text.strip()


def _blocks(items: list, starts_block: Callable) -> list[list]:
    """`items` cut into runs, a new run at each item where `starts_block(run_so_far, item)`: a reply that drafts
    its answer, then gives it again, holds several answer blocks, and the last complete one is its final answer."""
    blocks: list[list] = []
    for item in items:
        if not blocks or starts_block(blocks[-1], item):
            blocks.append([])
        blocks[-1].append(item)
    return blocks


def _json_object(reply: str) -> dict | None:
    match = re.search(r"\{.*\}", reply, re.DOTALL)
    if not match:
        return None
    try:
        value = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def parse_question_reply(reply: str | None) -> ParsedQuestion:
    """Parses a question-generation reply ("Question: ...\\nAnswer: ...", JSON, Markdown, or "None")."""
    text = final_reply(reply)
    if not text:
        return ParsedQuestion("unparseable")
    if _NONE_REPLY.match(_clean(text)):
        return ParsedQuestion("none")
    data = _json_object(text)
    if data is not None:
        lowered = {str(k).lower(): v for k, v in data.items()}
        if "question" not in lowered:
            return ParsedQuestion("unparseable")
        question = lowered["question"]
        if question is None or (isinstance(question, str) and _NONE_REPLY.match(question)):
            return ParsedQuestion("none")
        if isinstance(question, str) and len(_clean(question)) >= 3:
            answer = lowered.get("answer")
            return ParsedQuestion("ok", _clean(question), _clean(answer) if isinstance(answer, str) else None)
        return ParsedQuestion("unparseable")
    question, answer = None, None
    lines = [line for line in text.splitlines() if line.strip()]
    # a new block at each "Question:" line; the last one is the reply's final question
    numbered = [(position, _clean(line)) for position, line in enumerate(lines)]
    blocks = _blocks(numbered, lambda _, item: bool(_QUESTION_LINE.match(item[1])))
    for position, cleaned in blocks[-1] if blocks else []:
        if question is None and (match := _QUESTION_LINE.match(cleaned)):
            following = _clean(lines[position + 1]) if position + 1 < len(lines) else ""
            # "Question:\nAnswer: red" has no question: the answer line is not one
            question = match.group(1).strip() or ("" if _ANSWER_LINE.match(following) else following)
            # "What colour is it? (Answer: red)": a question stating its answer would be asked (and trained on)
            if inline := _INLINE_ANSWER.search(question):
                question, answer = question[: inline.start()].strip(), _clean(inline.group(1)) or None
        elif question is not None and answer is None and (match := _ANSWER_LINE.match(cleaned)):
            answer = match.group(1).strip() or None
    if question is not None:
        if _NONE_REPLY.match(question):
            return ParsedQuestion("none")
        if len(question) < 3:
            return ParsedQuestion("unparseable")
        return ParsedQuestion("ok", question, answer)
    # A reply that is just one question sentence is usable as it is.
    if len(lines) == 1 and _clean(lines[0]).endswith("?") and len(_clean(lines[0])) > 3:
        return ParsedQuestion("ok", _clean(lines[0]), None)
    return ParsedQuestion("unparseable")


# what `parse_question_reply` reads, for the error that quotes a question reply it could not read
QUESTION_REPLY_FORMATS = (
    "the lines 'Question: <question>' and 'Answer: <answer>' in English (Markdown marks, and a `<think>` block "
    "before them, are skipped), JSON with the keys question/answer, one line that is a question ending in '?', or "
    "None to decline"
)


@dataclass(frozen=True)
class JudgeVerdict:
    """The judge's three checks for one pair (`None` where the reply did not say)."""

    better: bool | None = None  # check 1: is answer 1 (chosen) better than answer 2 (rejected)?
    contradiction: bool | None = (
        None  # check 2: does the question/answer 1 contradict the caption, or is it ambiguous?
    )
    correct: bool | None = None  # check 3: is answer 1 correct given the caption?
    reason: str | None = None
    empty: bool = False  # the reply held no final answer: empty, or a reasoning model's thinking only

    @property
    def parsed(self) -> bool:
        return None not in (self.better, self.contradiction, self.correct)

    @property
    def passed(self) -> bool:
        """The pair is kept when answer 1 is better, nothing contradicts the caption, and answer 1 is correct."""
        return self.better is True and self.contradiction is False and self.correct is True

    def drop_reason(self) -> str | None:
        """Why the judge drops the pair (`None` when it passes)."""
        if not self.parsed:
            return "judge_empty" if self.empty else "judge_unparseable"
        if self.better is not True:
            return "judge_not_better"
        if self.contradiction is not False:
            return "judge_contradiction_or_ambiguous"
        if self.correct is not True:
            return "judge_incorrect"
        return None


# what `parse_judge_reply` reads, for the error that quotes a judge reply it could not read
JUDGE_REPLY_FORMATS = (
    "numbered lines '1. Yes/No', '2. Yes/No', '3. Yes/No' with the English words Yes and No (a `<think>` block "
    "before them is skipped, an `<answer>` wrapper read), lines naming the checks ('Better: Yes', 'Contradiction: "
    "No', 'Correct: Yes'), JSON with the keys better/contradiction/correct (Yes/No, true/false or 1/0), or three "
    "bare Yes/No words; a verdict qualified by 'but', 'however', 'partly', 'except', 'if', 'mostly', 'minor errors' "
    "and the like is not read, nor one a later line revises ('Wait, 1. No')"
)

# The one rule for reading a check's verdict: it starts with a Yes or No word ("No - consistent with the caption",
# "Not at all", "None"), and nothing after it qualifies it. "No contradiction, but the question is ambiguous" answers
# check 2 both ways: which half rules is not for a parser to guess, so the verdict is unread (the pair is dropped as
# `judge_unparseable`), never read as its first word.
_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0"}
_LEADING_VERDICT = re.compile(r"^\W*(yes|y|true|no|n|false|none|not at all)\b(.*)$", re.IGNORECASE | re.DOTALL)
# Words that hedge or bound a verdict ("Yes, largely", "Yes (not entirely)", "Yes, apart from the timing", "Yes, if we
# ignore the timing", "Yes, with minor errors"): a hedged Yes is not a Yes. An explanation that agrees ("Yes, because
# answer 1 names the colour", "No - consistent with the caption", "Yes, no errors") has none of them.
_QUALIFIER = re.compile(
    r"\b(but|however|although|though|except|exception|unless|if|provided|assuming|apart from|aside from|other than|"
    r"save for|partly|partially|in part|somewhat|mostly|largely|mainly|broadly|generally|essentially|basically|"
    r"roughly|nearly|almost|more or less|to (?:some|a certain|a) (?:extent|degree)|slightly|minor|"
    r"not (?:entirely|fully|completely|quite|totally|wholly|always|exactly|really|necessarily|sure)|unsure|"
    r"(?<!no )(?<!without )(?<!any )(?:errors?|mistakes?|inaccurac(?:y|ies)|inaccurate)|"
    r"(?<!nothing )(?<!nothing is )(?<!not )(?:wrong|incorrect(?:ly)?)|"
    r"unclear|uncertain|maybe|perhaps|possibly|probably|likely|arguably|debatable|sort of|kind of)\b"
    r"|^\s*(/|or\b|and\b|idea\b)",
    re.IGNORECASE,
)
# checks named by words instead of numbers (JSON keys, "Answer 1 is better: Yes"): a name that matches one check only
_CHECK_NAMES = {1: re.compile(r"better"), 2: re.compile(r"contradict|ambigu"), 3: re.compile(r"(?<!in)correct")}
_JUDGE_KEYS = {  # exact JSON keys, before names
    1: ("better", "check1", "1", "q1", "isbetter"),
    2: ("contradiction", "contradicts", "check2", "2", "q2", "ambiguous"),
    3: ("correct", "check3", "3", "q3", "iscorrect"),
}


def _yes_no(value) -> bool | None:
    """A check's verdict: a JSON boolean or 1/0, or text that starts with a Yes/No word and does not qualify it."""
    if value is None or isinstance(value, bool):  # JSON null says nothing, even though "None" reads as No
        return value
    if isinstance(value, (int, float)):
        return {1: True, 0: False}.get(value)
    text = str(value).strip()
    if text.lower() in _YES | _NO:
        return text.lower() in _YES
    match = _LEADING_VERDICT.match(text)
    if match is None or _QUALIFIER.search(match.group(2)):
        return None
    return match.group(1).lower() in ("yes", "y", "true")


def _says_verdict(text: str) -> bool:
    """Whether `text` gives a verdict, read or qualified: it starts with a Yes or No word."""
    return text.strip().lower() in _YES | _NO or _LEADING_VERDICT.match(text.strip()) is not None


def _named_check(name: str) -> int | None:
    """The check a JSON key or a line's label names ("answer_1_better", "Contradicts caption"), or `None` when it
    names none, several, or negates one ("not better"); a name of more than 6 words is a sentence, not a label."""
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower()
    if len(words.split()) > 6 or re.search(r"\bnot\b|\bworse\b|\breason", words):
        return None
    found = [check for check, pattern in _CHECK_NAMES.items() if pattern.search(words)]
    return found[0] if len(found) == 1 else None


def _line_verdict(text: str) -> bool | None:
    """The verdict of a numbered line's text, also when a label sits before it ("3. Correct: Yes")."""
    verdict = _yes_no(text)
    if verdict is None and (match := re.match(r"^[^:]{1,60}:\s*(.+)$", text)):
        verdict = _yes_no(match.group(1))
    return verdict


_NUMBERED = re.compile(r"^\W*(?:check|question|q)?\s*([123])\s*[.):\-]\s*(?:[^:]*\?\s*[:\-]?\s*)?(.*)$", re.IGNORECASE)
# the checks of one line, "1) Yes 2) No 3) Yes", cut apart at their numbers
_INLINE_NUMBER = re.compile(r"(?<=\S)\s+(?=[23]\s*[.)]\s+\S)")
# a line naming its check: "Answer 1 is better: Yes", "Contradiction = No"
_LABELLED = re.compile(r"^\W*([a-z][^:=]{0,60}?)\s*[:=]\s*(.+)$", re.IGNORECASE)
# a line after the verdict that overrules the three checks ("Overall: No, I would reject this pair", "Verdict:
# reject") or qualifies them ("However, the question is ambiguous")
_OVERRULING = re.compile(
    r"^\W*(?:(?:overall|verdict|final(?: verdict| decision| answer)?|decision|conclusion|recommendation)\s*[:\-]"
    r"(?!\s*(?:yes|accept|keep|pass)\b)|(?:however|but|although|though|that said|except)\b)",
    re.IGNORECASE,
)
# a check named inside a sentence, as a judge revises one after its verdict: "Wait, 1. No", "check 1 should be No"
_MENTIONED_CHECK = re.compile(
    r"(?<!answer )(?<!answer)\b([123])\s*(?:[.):=\-]|->|should be|is)\s*(.+)$", re.IGNORECASE
)


def _json_verdicts(data: dict) -> dict[int, bool | None]:
    """The checks a JSON reply answers: exact keys first, then keys that name one check (each named once)."""
    keys = {re.sub(r"[^a-z0-9]", "", str(k).lower()): v for k, v in data.items()}
    values: dict[int, bool | None] = {}
    for check, names in _JUDGE_KEYS.items():
        for name in names:
            if name in keys:
                values[check] = _yes_no(keys[name])
                break
    named: dict[int, list] = {}
    for key, value in data.items():
        check = _named_check(re.sub(r"[^A-Za-z]+", " ", str(key)))
        if check is not None and check not in values:
            named.setdefault(check, []).append(value)
    values.update({check: _yes_no(found[0]) for check, found in named.items() if len(found) == 1})
    return values


def parse_judge_reply(reply: str | None) -> JudgeVerdict:
    """Parses a judge reply: numbered Yes/No lines, lines naming the checks, JSON with the check names, or three bare
    Yes/No words (`JUDGE_REPLY_FORMATS`); a verdict qualified by "but" and the like is unread (`_yes_no`).

    Only the final answer counts: a reasoning model's `<think>` block is dropped (`final_reply`), and of several
    numbered verdict blocks (a draft, then the verdict) the last complete one is taken; a check that a line after it
    gives another verdict ("Wait, 1. No") is unread."""
    text = final_reply(reply)
    if not text:
        return JudgeVerdict(empty=True)
    reasons = list(re.finditer(r"reason\s*[:\-]\s*(.+)", text, re.IGNORECASE))
    reason_match = reasons[0] if reasons else None
    reason = _clean(reasons[-1].group(1)) if reasons else None
    data = _json_object(text)
    if data is not None:
        values = _json_verdicts(data)
        lowered = {str(k).lower(): v for k, v in data.items()}
        if isinstance(lowered.get("reason"), str):
            reason = lowered["reason"]
        return JudgeVerdict(values.get(1), values.get(2), values.get(3), reason)
    numbered = []  # (check, verdict, whether it says one: a verdict, or a Yes/No word qualified) of each line
    mentioned = []  # (numbered lines before it, check, verdict, says one) of each check named inside a sentence
    overruled = []  # numbered lines before each line that overrules or qualifies the checks ("Overall: reject")
    for item in (_clean(part) for line in text.splitlines() for part in _INLINE_NUMBER.split(line)):
        if match := _NUMBERED.match(item):
            verdict = _line_verdict(match.group(2))
            numbered.append((int(match.group(1)), verdict, verdict is not None or _says_verdict(match.group(2))))
        elif (match := _LABELLED.match(item)) and (check := _named_check(match.group(1))) is not None:
            verdict = _yes_no(match.group(2))
            numbered.append((check, verdict, verdict is not None or _says_verdict(match.group(2))))
        elif not re.match(r"\W*reason", item, re.IGNORECASE) and (match := _MENTIONED_CHECK.search(item)):
            verdict = _yes_no(match.group(2))
            mentioned.append((len(numbered), int(match.group(1)), verdict, _says_verdict(match.group(2))))
        elif _OVERRULING.match(item):
            overruled.append(len(numbered))
    # a block ends where the numbering starts again; the last block that answers all three checks is the verdict
    blocks = _blocks(list(enumerate(numbered)), lambda run, item: item[1][0] <= run[-1][1][0])
    complete = [block for block in blocks if len(block) == 3 and all(item[1][1] is not None for item in block)]
    values: dict[int, bool | None] = {}
    if complete:
        values = {check: verdict for _, (check, verdict, _) in complete[-1]}
        # a line after it that gives a check another verdict ("Wait, 1. No: answer 2 is better") revises it: which
        # one rules is not for a parser to guess, so that check is unread (as a qualified verdict is)
        end = complete[-1][-1][0] + 1
        later = numbered[end:] + [item[1:] for item in mentioned if item[0] >= end]
        for check, verdict, says in later:
            if says and verdict != values[check]:
                values[check] = None
        if any(position >= end for position in overruled):
            values = {}  # "Overall: No, I would reject this pair", "However, the question is ambiguous": unread
    elif blocks:
        values = {check: verdict for _, (check, verdict, _) in blocks[0]}
    if not numbered:
        # "Yes, No, Yes" or "Yes\nNo\nYes": exactly three verdict words in order, none qualified (words in numbered
        # or named lines are read by their number or name, never by their order)
        body = text[: reason_match.start()] if reason_match else text
        words = [w for w in re.findall(r"[a-z]+", body.lower()) if w in _YES | _NO]
        if len(words) == 3 and len(re.findall(r"[a-z]+", body.lower())) <= 6 and not _QUALIFIER.search(body):
            values = {i + 1: words[i] in _YES for i in range(3)}
    return JudgeVerdict(values.get(1), values.get(2), values.get(3), reason)


# Questions written without an LLM (`question_backend: template`): generic per task type, so they need no caption.
# Localized templates name the segment's time window, which the dis-preferred view has cut out.
TEMPLATE_QUESTIONS: dict[str, list[str]] = {
    "temporal": [
        "What happens between {start:.1f} s and {end:.1f} s, and in what order?",
        "In what order do the events of the video happen?",
    ],
    "action": [
        "What action takes place between {start:.1f} s and {end:.1f} s?",
        "What actions are performed in the video?",
    ],
    "causal_reasoning": [
        "Why does the change between {start:.1f} s and {end:.1f} s happen?",
        "What causes the main change in the video?",
    ],
    "information_extraction": [
        "What colour is the moving object between {start:.1f} s and {end:.1f} s?",
        "What colours appear in the video?",
    ],
    "descriptive": ["Describe what is shown between {start:.1f} s and {end:.1f} s.", "Describe the video."],
    "summarization": ["Summarize the video.", "Summarize the video."],
    "object": ["What object is visible between {start:.1f} s and {end:.1f} s?", "What objects appear in the video?"],
    "spatial_reasoning": [
        "Where does the object move between {start:.1f} s and {end:.1f} s?",
        "How do the objects move across the frame during the video?",
    ],
}


def template_question(task_type: str, segment: tuple[float, float] | None) -> str:
    """A question about `task_type` without an LLM: about `segment` when given, else about the whole video."""
    localized, comprehensive = TEMPLATE_QUESTIONS[task_type]
    if segment is None:
        return comprehensive
    return localized.format(start=segment[0], end=segment[1])
