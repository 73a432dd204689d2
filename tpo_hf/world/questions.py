"""Questions about world videos, answered from the timeline (never from pixels), as multiple choice.

Three families, as in the TPO paper's evaluation:

- localized: about one moment, which the question names by content, the way the paper's questions do ("What colour
  is the shape right after the red shape?", "... right before the red shape?");
- comprehensive: about the whole video (the first or last shape, which of two shapes comes first);
- needle: one frame of a big shape hidden in the video (the V-NIAH question of `tpo_hf.eval.vniah`).

Every question is an `MCQSample` (the evaluation loop's shape) with its prompt worded like the lmms-eval
multiple-choice tasks, so pretraining, curation and evaluation all see the same text.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

from ..eval.answers import option_letters
from ..eval.benchmarks import MCQSample
from ..eval.vniah import NEEDLE_QUESTION
from .timeline import COLOURS, NEEDLE_SHAPE, WorldScene, WorldVideo

# The world model answers with the option's text ("blue"), which `extract_answer_letter` maps to its letter: for a
# model this small, naming the thing it saw is learnable long before the extra hop to a letter is.
POST_PROMPT = "Answer with the option's text."
# lmms-eval's wording (used by V-NIAH and the benchmarks); the world model is pretrained on both and answers with the
# option's text either way
LETTER_POST_PROMPT = "Answer with the option's letter from the given choices directly."

TEMPLATES = {
    "after": "What colour is the shape right after the {name}?",
    "before": "What colour is the shape right before the {name}?",
    "first": "What colour is the first shape in the video?",
    "last": "What colour is the last shape in the video?",
    "order": "Which comes first, the {a} or the {b}?",
    "needle": NEEDLE_QUESTION,
}
ALL_TEMPLATES = [
    t.format(name="red shape", a="red shape", b="blue shape", shape=NEEDLE_SHAPE) for t in TEMPLATES.values()
]
LOCALIZED_KINDS = ("after", "before")
COMPREHENSIVE_KINDS = ("first", "last", "order")
KIND_GRANULARITY = {
    **{k: "localized" for k in LOCALIZED_KINDS},
    **{k: "comprehensive" for k in COMPREHENSIVE_KINDS},
    "needle": "needle",
}


@dataclass(frozen=True)
class WorldQuestion:
    """A question with its options and the correct option; `scenes` are the scene indices it is about."""

    kind: str
    question: str
    options: tuple[str, ...]
    answer: str  # the correct option text
    scenes: tuple[int, ...] = ()

    @property
    def letter(self) -> str:
        return option_letters(len(self.options))[self.options.index(self.answer)]

    @property
    def prompt(self) -> str:
        letters = option_letters(len(self.options))
        listed = "\n".join(f"{letter}. {option}" for letter, option in zip(letters, self.options))
        return f"{self.question}\n{listed}\n{POST_PROMPT}"

    def to_sample(self, sample_id: str, video: str, num_frames: int | None = None, **breakdowns: str) -> MCQSample:
        return MCQSample(
            sample_id=sample_id,
            video=video,
            question=self.question,
            options=list(self.options),
            answer=self.letter,
            prompt=self.prompt,
            breakdowns={"type": KIND_GRANULARITY[self.kind], "kind": self.kind, **breakdowns},
            num_frames=num_frames,
        )


def _options(answer: str, pool: list[str], preferred: list[str], rng: random.Random, count: int = 4) -> tuple:
    """`answer` plus distractors, taken first from `preferred` (things the video shows), shuffled."""
    distractors = [x for x in dict.fromkeys(preferred) if x != answer]
    rng.shuffle(distractors)
    rest = [x for x in pool if x != answer and x not in distractors]
    rng.shuffle(rest)
    options = [answer, *(distractors + rest)[: count - 1]]
    rng.shuffle(options)
    return tuple(options)


def ask(video: WorldVideo, kind: str, rng: random.Random, target: int | None = None) -> WorldQuestion | None:
    """A question of `kind` about `video` (about event `target`, an index into `video.events`, when it applies);
    `None` when the video cannot support that kind (e.g. "after" the last scene)."""
    events = video.events
    colours_shown = [e.colour for e in events]
    if kind in LOCALIZED_KINDS:
        valid = {"after": range(len(events) - 1), "before": range(1, len(events))}[kind]
        if not valid:
            return None
        index = target if target is not None else rng.choice(list(valid))
        if index not in valid:
            return None
        question = TEMPLATES[kind].format(name=events[index].name)
        other = index + 1 if kind == "after" else index - 1
        answer = events[other].colour
        return WorldQuestion(
            kind, question, _options(answer, list(COLOURS), colours_shown, rng), answer, tuple(sorted((index, other)))
        )
    if kind in ("first", "last"):
        if not events:
            return None
        index = 0 if kind == "first" else len(events) - 1
        answer = events[index].colour
        return WorldQuestion(
            kind, TEMPLATES[kind], _options(answer, list(COLOURS), colours_shown, rng), answer, (index,)
        )
    if kind == "order":
        if len(events) < 2:
            return None
        a, b = sorted(rng.sample(range(len(events)), 2)) if target is None else (target, target + 1)
        if b >= len(events):
            return None
        pair = [events[a].name, events[b].name]
        rng.shuffle(pair)
        options = tuple(f"the {x}" for x in pair)
        return WorldQuestion(
            kind, TEMPLATES[kind].format(a=pair[0], b=pair[1]), options, f"the {events[a].name}", (a, b)
        )
    if kind == "needle":
        needles = [s for s in video.scenes if s.needle]
        if len(needles) != 1:
            return None
        needle = needles[0]
        return WorldQuestion(
            kind,
            TEMPLATES[kind].format(shape=NEEDLE_SHAPE),
            _options(needle.colour, list(COLOURS), colours_shown, rng),
            needle.colour,
            (video.scenes.index(needle),),
        )
    raise ValueError(f"Unknown question kind {kind!r}; the world asks {sorted(TEMPLATES)}.")


# --- captions: the world's descriptions, what the video model learns to say and the question backend reads --------
def describe(scene: WorldScene) -> str:
    if scene.needle:
        return f"A big {scene.colour} {NEEDLE_SHAPE} flashes."
    return f"A {scene.colour} square."


def caption(scenes: list[WorldScene] | tuple[WorldScene, ...]) -> str:
    """The true caption of a run of scenes: one sentence per scene, in order."""
    return " ".join(describe(scene) for scene in scenes)


_SENTENCE = re.compile(r"A (?:big (\w+) " + NEEDLE_SHAPE + r" flashes|(\w+) square)\.")


def parse_caption(text: str) -> list[WorldScene]:
    """Scenes named by a caption in the world's wording (what a question writer can rely on); unknown words skip."""
    scenes = []
    for match in _SENTENCE.finditer(text or ""):
        needle_colour, colour = match.groups()
        if needle_colour in COLOURS:
            scenes.append(WorldScene(needle_colour, needle=True))
        elif colour in COLOURS:
            scenes.append(WorldScene(colour))
    return scenes


# --- the truth a judge checks against ---------------------------------------------------------------------------
def _pattern(template: str) -> re.Pattern:
    """A template as a regex: each field a named group the first time, a back-reference after that."""
    pattern, seen = "^", set()
    for literal, field, _, _ in string.Formatter().parse(template):
        pattern += re.escape(literal)
        if field:
            words = r"\w+" if field == "shape" else r"\w+ \w+"
            pattern += f"(?P={field})" if field in seen else f"(?P<{field}>{words})"
            seen.add(field)
    return re.compile(pattern + "$")


_QUESTION_PATTERNS = {kind: _pattern(template) for kind, template in TEMPLATES.items()}


def match_question(question: str) -> tuple[str, dict[str, str]] | None:
    """(kind, named fields) of a question in the world's wording, e.g. ("after", {"name": "red shape"}); `None` for
    any other text."""
    text = question.strip()
    for kind, pattern in _QUESTION_PATTERNS.items():
        match = pattern.match(text)
        if match:
            return kind, match.groupdict()
    return None


def true_answer(video: WorldVideo, question: str, options: list[str]) -> tuple[str | None, str]:
    """(correct option text, reason) for a question in the world's wording about `video`; `None` when the question
    names nothing in the video, names it ambiguously, or has no correct option among `options`."""
    events = video.events
    by_name: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_name.setdefault(event.name, []).append(index)
    matched = match_question(question)
    if matched is None:
        return None, "the question is not in the world's wording"
    kind, fields = matched
    for key in ("name", "a", "b"):
        if key in fields:
            found = by_name.get(fields[key], [])
            if len(found) != 1:
                return None, f"the video shows {len(found)} {fields[key]}s"
    if kind in LOCALIZED_KINDS:
        index = by_name[fields["name"]][0]
        other = index + 1 if kind == "after" else index - 1
        if not 0 <= other < len(events):
            return None, f"nothing comes {kind} the {fields['name']}"
        answer = events[other].colour
    elif kind in ("first", "last"):
        if not events:
            return None, "the video shows no shape"
        answer = events[0 if kind == "first" else -1].colour
    elif kind == "order":
        a, b = by_name[fields["a"]][0], by_name[fields["b"]][0]
        answer = f"the {fields['a'] if a < b else fields['b']}"
    else:  # needle
        needles = [s for s in video.scenes if s.needle]
        if len(needles) != 1 or fields["shape"] != NEEDLE_SHAPE:
            return None, f"the video has {len(needles)} needles"
        answer = needles[0].colour
    if answer not in options:
        return None, f"the right answer ({answer}) is not among the options"
    return answer, f"{kind} question: the timeline says {answer}"
