"""Stage 6 of the flow (publish): the Gradio demo shown in the Space, base model vs. TPO adapter side by side.

One model is loaded: the base with the TPO adapter (`PeftModel`). The base answer is generated inside
`with model.disable_adapter():`, the TPO answer with the adapter on, from the same sampled frames, which the app
shows in a gallery. The Space's `app.py` only calls `build_demo(...)`, so the same code runs locally
(`tpo-hf space --adapter ID --local`) and in tests with a tiny model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

EMPTY_ANSWER = "(no text: the model ended its answer at once)"


class VideoQA:
    """A base model + TPO adapter that answers questions about a video both ways, from the same frames."""

    def __init__(self, adapter: str | os.PathLike, base_model: str | None = None, device: str | None = None):
        import torch

        from ..models import adapter_base_model, load_video_model
        from ..validation import placeholder_tokens

        self.adapter = str(adapter)
        self.base_model = base_model or adapter_base_model(self.adapter)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.processor = load_video_model(
            self.base_model, self.adapter, dtype="bfloat16" if device == "cuda" else "float32", device=device
        )
        self.placeholder_tokens = placeholder_tokens(self.processor.processor)

    def sample(self, video: str, num_frames: int) -> tuple[Any, dict[str, Any]]:
        return self.processor.load_video(video, self.processor.default_view(num_frames=int(num_frames)))

    def answer(self, video: str, question: str, num_frames: int, max_new_tokens: int = 64):
        """Returns (sampled frames as images with their timestamps, base answer, TPO answer)."""
        if not video:
            raise ValueError("Upload a video or pick an example first.")
        if not question or not question.strip():
            raise ValueError("Type a question about the video.")
        # the processor would take it for a video slot ("Found total 2 <|video_pad|> tokens and 1 videos")
        found = [token for token in self.placeholder_tokens if token in question]
        if found:
            raise ValueError(
                f"The question holds the model's placeholder token(s) {', '.join(found)}, which mark where the video "
                "goes in the prompt (the app adds it): remove them from the question."
            )
        frames, metadata = self.sample(video, num_frames)
        decoded = (frames, metadata)
        kwargs = dict(max_new_tokens=int(max_new_tokens), do_sample=False)
        with self.model.disable_adapter():
            (base_answer,) = self.processor.generate(self.model, [question], [decoded], **kwargs)
        (tpo_answer,) = self.processor.generate(self.model, [question], [decoded], **kwargs)
        fps = metadata.get("fps") or 1.0
        gallery = [(frame, f"{index / fps:.1f} s") for frame, index in zip(frames, metadata.get("frames_indices", []))]
        return gallery, base_answer.strip() or EMPTY_ANSWER, tpo_answer.strip() or EMPTY_ANSWER


def build_demo(
    adapter: str | os.PathLike,
    base_model: str | None = None,
    num_frames: int | None = None,
    max_frames: int = 64,
    max_new_tokens: int = 128,
    examples: list[str] | None = None,
    qa: VideoQA | None = None,
):
    """Builds the Gradio Blocks app for `adapter` (Hub id or folder); `base_model` defaults to the adapter's base.

    `num_frames` is where the frames slider starts; by default, the frames the adapter was trained with (its
    processor's `VideoSettings`, saved with it). `examples` are video files offered as one-click examples.
    """
    import gradio as gr

    from ..video_settings import DEFAULT_NUM_FRAMES

    qa = qa or VideoQA(adapter, base_model)
    trained = qa.processor.settings
    num_frames = num_frames or trained.num_frames or trained.max_frames or DEFAULT_NUM_FRAMES
    max_frames = max(max_frames, num_frames)

    def respond(video, question, frames):
        try:
            return qa.answer(video, question, frames, max_new_tokens)
        except ValueError as error:
            raise gr.Error(str(error)) from error

    with gr.Blocks(title="TPO: base vs. TPO") as demo:
        gr.Markdown(
            f"# Temporal Preference Optimization\nBase model `{qa.base_model}` vs. TPO adapter `{qa.adapter}` "
            "(one model, adapter disabled for the base answer)."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload"], elem_id="video")
                question = gr.Textbox(label="Question", value="What happens in this video?", elem_id="question")
                frames = gr.Slider(2, max_frames, value=num_frames, step=1, label="Frames", elem_id="frames")
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
            with gr.Column():
                gallery = gr.Gallery(label="Sampled frames", columns=8, height=220, elem_id="gallery")
                with gr.Row():
                    base_answer = gr.Textbox(label="Base model", lines=4, elem_id="base_answer")
                    tpo_answer = gr.Textbox(label="TPO model", lines=4, elem_id="tpo_answer")
        if examples:
            gr.Examples([[str(Path(path))] for path in examples], inputs=[video], label="Example videos")
        ask.click(respond, [video, question, frames], [gallery, base_answer, tpo_answer], api_name="answer")
        question.submit(respond, [video, question, frames], [gallery, base_answer, tpo_answer])
    return demo
