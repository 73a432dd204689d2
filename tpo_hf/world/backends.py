"""Curation roles for the world: a question writer and a judge that read the world's wording and timelines.

They stand in for the paper's GPT-4o-mini and plug into the curation pipeline as ordinary backends
(`--question_backend world_questions`, `--judge_backend world_judge`), with no special case inside the pipeline:

- `WorldQuestionBackend` turns a caption into a multiple-choice question, as the paper's LLM does from the video
  model's caption of a segment. It reads only the caption, so a wrong caption gives a wrong question, which the
  judge then catches, exactly the failure the paper's filter exists for.
- `WorldJudgeBackend` applies the paper's three checks against the true timeline saved beside each video
  (`x.mp4` -> `x.json`): is answer 1 better than answer 2, does the question contradict the video or is it
  ambiguous, is answer 1 correct.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..curation.backends import GenerationBackend, GenerationRequest
from ..eval.answers import UNPARSEABLE, extract_answer_letter, option_letters, split_mcq_prompt
from .questions import LOCALIZED_KINDS, ask, parse_caption, true_answer
from .timeline import WorldVideo, read_timeline, world_rng

# The localized kinds the writer asks about a segment's caption (the world has two: "right after X" and "right before
# X", a moment named by its content); the paper's task type only seeds which question is drawn. "Right before X" is
# left out: on the dev set (dev seed 100; benchmarks/results/method_validity/probes/forgetting_probes_dev.json) its
# pairs caused the short-clip forgetting (TPO 5:5, 2-scene clips: "before" 97% -> 63%) and taught nothing on long
# videos, and dropping them alone kept short clips at the base's level. The held-out questions still ask both kinds.
CURATED_LOCALIZED_KINDS = ("after",)


class WorldQuestionBackend(GenerationBackend):
    """Writes one question per caption (JSON reply `{"question", "answer"}`), or "None" when the caption names no
    world scene the task type can ask about."""

    model_id = "tpo-hf/world-question-writer"

    def __init__(self, seed: int = 0, localized_kinds: tuple[str, ...] = CURATED_LOCALIZED_KINDS):
        unknown = sorted(set(localized_kinds) - set(LOCALIZED_KINDS))
        if unknown:
            raise ValueError(f"localized_kinds has unknown kinds {unknown}; choose from {list(LOCALIZED_KINDS)}.")
        self.seed = seed
        self.localized_kinds = tuple(localized_kinds)

    @classmethod
    def from_config(cls, config: Any, role: str, device: str | None = None) -> WorldQuestionBackend:
        if role != "question":
            raise ValueError(f"world_questions writes questions; it cannot take the {role} role.")
        return cls(config.seed)

    def _one(self, request: GenerationRequest) -> str:
        caption_text = request.candidate.caption or ""
        task_type = request.candidate.task_type
        scenes = parse_caption(caption_text)
        if not scenes:
            return "None"
        video = WorldVideo("caption", tuple(scenes))
        rng = world_rng("question-writer", self.seed, caption_text, task_type)
        kinds = list(self.localized_kinds)
        rng.shuffle(kinds)
        if any(scene.needle for scene in scenes):  # a caption that saw the odd moment asks about it
            kinds.insert(0, "needle")
        for kind in kinds:
            question = ask(video, kind, rng)
            if question is not None:
                return json.dumps({"question": question.prompt, "answer": question.letter})
        return "None"

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int, seed: int = 0) -> list[str]:
        return [self._one(request) for request in requests]


class WorldJudgeBackend(GenerationBackend):
    """The paper's three checks against the timeline saved beside the video (`<video>.json`)."""

    model_id = "tpo-hf/world-timeline-judge"

    def __init__(self, video_root: str | os.PathLike = ""):
        self.video_root = str(video_root)
        self._timelines: dict[str, WorldVideo] = {}

    @classmethod
    def from_config(cls, config: Any, role: str, device: str | None = None) -> WorldJudgeBackend:
        """Reads timelines beside the run's videos (`video_dir`, `video_root` or the dataset's folder)."""
        from ..data import default_video_root

        if role != "judge":
            raise ValueError(f"world_judge judges pairs; it cannot take the {role} role.")
        return cls(config.video_dir or config.video_root or default_video_root(config.dataset_name) or "")

    def timeline(self, video_id: str) -> WorldVideo:
        video_path = os.path.join(self.video_root, video_id)
        if video_path not in self._timelines:
            path = Path(video_path).with_suffix(".json")
            if not path.is_file():
                raise FileNotFoundError(
                    f"The world judge needs the timeline of {video_path} at {path}; world corpora are written with "
                    "`tpo-hf world corpus`, which saves it beside each video."
                )
            self._timelines[video_path] = read_timeline(path)
        return self._timelines[video_path]

    def verdict(self, request: GenerationRequest) -> dict:
        candidate = request.candidate
        video = self.timeline(candidate.video_id)
        question, options = split_mcq_prompt(candidate.question or "")
        answer, reason = true_answer(video, question, options)
        if answer is None:
            return {"better": "No", "contradiction": "Yes", "correct": "No", "reason": reason}
        truth = option_letters(len(options))[options.index(answer)]
        chosen = extract_answer_letter(candidate.chosen, options)
        rejected = extract_answer_letter(candidate.rejected, options)
        correct = chosen == truth
        better = correct and rejected != truth
        if chosen == UNPARSEABLE:
            reason = "answer 1 names no option"
        elif not correct:
            reason = f"answer 1 says {chosen}, the timeline says {truth} ({answer})"
        elif not better:
            reason = f"both answers say {truth}"
        else:
            reason = f"answer 1 is right ({truth}: {answer}), answer 2 says {rejected}"
        yes = {True: "Yes", False: "No"}
        return {"better": yes[better], "contradiction": "No", "correct": yes[correct], "reason": reason}

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int, seed: int = 0) -> list[str]:
        return [json.dumps(self.verdict(request)) for request in requests]
