"""Benchmark: one TPO training step on long videos, four ways, measured side by side in one run.

Paths (each run in a fresh subprocess, so peak memory is its own):
  (a) duplicated: every row runs the vision encoder and the language model over the whole prompt (what TRL, LLaMA-
      Factory, ms-swift and the official TPO fork do): share_video_encoding=False, prefix_sharing=False;
  (b) shared video encoding: the vision encoder runs once per pair (share_video_encoding=True);
  (c) (b) + prefix sharing: the language model runs once over each pair's prompt, both answers packed after it;
  (d) (c) + precompute_ref_log_probs: the reference pass runs once before training, not in the step.

The model is a random Qwen2.5-VL-shaped model, small in width but long in sequence (32 frames -> >= 2k video
tokens, 64-token answers), trained with LoRA on the language model. A step is `Trainer.training_step` (forward of
policy and reference, backward) on a pre-collated batch; the optimizer update is the same for every path and left
out. Peak memory: growth of the process's max RSS over the steps on CPU (`resource.getrusage`), or
`torch.cuda.max_memory_allocated` over the steps on CUDA.

    python benchmarks/train_step.py                    # CPU, tiny-but-long
    python benchmarks/train_step.py --device cuda --frames 64 --hidden_size 1024 --layers 8 --pairs 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATHS = {
    "a": dict(share_video_encoding=False, prefix_sharing=False, precompute_ref_log_probs=False),
    "b": dict(share_video_encoding=True, prefix_sharing=False, precompute_ref_log_probs=False),
    "c": dict(share_video_encoding=True, prefix_sharing=True, precompute_ref_log_probs=False),
    "d": dict(share_video_encoding=True, prefix_sharing=True, precompute_ref_log_probs=True),
}
LABELS = {
    "a": "(a) duplicated rows",
    "b": "(b) shared video encoding",
    "c": "(c) + prefix sharing",
    "d": "(d) + precomputed reference",
}
ANSWERS = [
    (
        "The red square slides to the right, then a blue circle drifts left.",
        "Nothing moves; the scene shows one still green shape.",
    ),
    (
        "A green circle moves right for three seconds, then a yellow square.",
        "A red square spins in place while the camera zooms out slowly.",
    ),
]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def build_model(hidden_size: int, layers: int):
    """A random Qwen2.5-VL of the given language-model width and depth, with the tiny vision tower and processor."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from tpo_hf.tiny import build_tiny_model

    _, processor = build_tiny_model("qwen2_5_vl")
    config = _.config
    heads = max(2, hidden_size // 32)
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = hidden_size, 2 * hidden_size, layers
    text.layer_types = ["full_attention"] * layers
    text.num_attention_heads, text.num_key_value_heads = heads, max(1, heads // 2)
    text.head_dim = hidden_size // heads
    quarter = text.head_dim // 8  # M-RoPE sections (t, h, w) must sum to head_dim / 2
    text.rope_parameters["mrope_section"] = [2 * quarter, quarter, quarter]
    text.max_position_embeddings = 32768
    config.vision_config.out_hidden_size = hidden_size
    import torch

    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    return model, processor


def run_path(path: str, args: argparse.Namespace) -> dict:
    """One path in this process: build, collate, warm up, time `args.steps` training steps."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig

    from tpo_hf import TPOConfig, TPOTrainer
    from tpo_hf.synthetic import Scene, write_synthetic_video

    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    videos = work / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    scenes = [
        [Scene(6, "red", "square", "right"), Scene(6, "blue", "circle", "left")],
        [Scene(5, "green", "circle", "right"), Scene(7, "yellow", "square", "left")],
    ]
    rows = []
    for index in range(args.pairs):
        name = f"clip{index % 2}.mp4"
        if not (videos / name).exists():
            write_synthetic_video(videos / name, scenes[index % 2], fps=8, height=args.height, width=args.width)
        chosen, rejected = ANSWERS[index % 2]
        rows.append(
            {
                "prompt": f"Describe what happens in the video, in order (question {index}).",
                "chosen": chosen[: args.answer_tokens].ljust(args.answer_tokens - 10, "."),
                "rejected": rejected[: args.answer_tokens].ljust(args.answer_tokens - 10, "."),
                "video": name,
            }
        )
    dataset = Dataset.from_list(rows)
    model, processor = build_model(args.hidden_size, args.layers)
    config = TPOConfig(
        str(work / f"out-{path}"),
        num_frames=args.frames,
        max_pixels=args.height * args.width,
        video_root=str(videos),
        per_device_train_batch_size=args.pairs,
        max_length=None,
        bf16=args.device == "cuda",
        use_cpu=args.device == "cpu",
        report_to=[],
        save_strategy="no",
        activation_checkpointing=args.activation_checkpointing,
        dataloader_num_workers=0,
        **PATHS[path],
    )
    trainer = TPOTrainer(
        model,
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=LoraConfig(r=16, lora_alpha=32),
    )
    batch = next(iter(trainer.get_train_dataloader()))  # (d): reference log-probs are precomputed here
    num_video_tokens = int((batch["input_ids"][0] == model.config.video_token_id).sum())
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by `train()`'s loop, which is not used here
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.training_step(trainer.model, batch)
        if cuda:
            torch.cuda.synchronize()
        trainer.model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step()  # warm-up: allocator, kernels, lazy inits
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = max(_rss_bytes(), _max_rss_bytes()) if args.steps == 0 else _rss_bytes()
        base_peak = _max_rss_bytes()
    times = [step() for _ in range(args.steps)]
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        # ru_maxrss never decreases: the warm-up step already set it, so count the larger of that growth and the
        # growth seen during the timed steps
        peak = max(_max_rss_bytes(), base_peak) - base
    stats = getattr(trainer, "_last_packing_stats", None)
    rows_length = batch["input_ids"].size(1)
    policy_tokens = stats["packed_length"] if stats else 2 * rows_length  # per pair, padding included
    reference_tokens = 0 if PATHS[path]["precompute_ref_log_probs"] else policy_tokens
    encoder_runs = 1 if PATHS[path]["share_video_encoding"] else (2 if PATHS[path]["precompute_ref_log_probs"] else 4)
    return {
        "path": path,
        "median_step_s": statistics.median(times),
        "peak_bytes": peak,
        "lm_tokens_per_pair": policy_tokens + reference_tokens,
        "video_tokens_per_pair": num_video_tokens,
        "encoder_runs_per_pair": encoder_runs,
        "prefix_sharing_active": bool(trainer._prefix_sharing),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--answer_tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=2, help="pairs per step (per_device_train_batch_size)")
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--activation_checkpointing", action="store_true")
    parser.add_argument("--paths", default="abcd")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print("RESULT " + json.dumps(run_path(args.child, args)))
        return

    with tempfile.TemporaryDirectory() as workdir:
        forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
        results = {}
        for path in args.paths:
            command = [sys.executable, __file__, *forwarded, "--workdir", workdir, "--child", path]
            completed = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
            if completed.returncode or not lines:
                sys.stderr.write(completed.stderr[-4000:])
                raise SystemExit(f"path {path} failed (exit {completed.returncode})")
            results[path] = json.loads(lines[-1][len("RESULT ") :])
            print(f"  measured {LABELS[path]}", file=sys.stderr, flush=True)

    first = results.get("a")
    print(
        f"TPO train step, {args.device}: {args.frames} frames ({results[next(iter(results))]['video_tokens_per_pair']}"
        f" video tokens), {args.answer_tokens}-token answers, {args.pairs} pairs/step, LM hidden {args.hidden_size}"
        f" x {args.layers} layers, LoRA r=16, median of {args.steps} steps"
    )
    header = (
        f"{'path':<30} {'step s':>8} {'x faster':>9} {'peak MiB':>9} {'x mem':>6} {'LM tok/pair':>12} {'enc/pair':>9}"
    )
    print(header)
    print("-" * len(header))
    for path, result in results.items():
        speed = first["median_step_s"] / result["median_step_s"] if first else float("nan")
        memory = result["peak_bytes"] / first["peak_bytes"] if first and first["peak_bytes"] > 0 else float("nan")
        print(
            f"{LABELS[path]:<30} {result['median_step_s']:>8.3f} {speed:>9.2f} {result['peak_bytes'] / 2**20:>9.1f}"
            f" {memory:>6.2f} {result['lm_tokens_per_pair']:>12} {result['encoder_runs_per_pair']:>9}"
        )


if __name__ == "__main__":
    main()
