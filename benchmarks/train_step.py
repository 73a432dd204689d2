"""Benchmark: one TPO training step on long videos, four ways, measured side by side in one run.

Paths (each run in a fresh subprocess, so peak memory is its own):
  (a) duplicated: every row runs the vision encoder and the language model over the whole prompt (what TRL, LLaMA-
      Factory, ms-swift and the official TPO fork do): share_video_encoding=False, prefix_sharing=False;
  (b) shared video encoding: the vision encoder runs once per pair (share_video_encoding=True);
  (c) (b) + prefix sharing: the language model runs once over each pair's prompt, both answers packed after it;
  (d) (c) + precompute_ref_log_probs: the reference pass runs once before training, not in the step;
  (e) (c) with the dense L x L block mask instead of the segment-wise attention (prefix_sharing_attention='dense');
  (s) (c) with the segment-wise attention at any length (prefix_sharing_attention='segments').

(c) uses `prefix_sharing_attention='auto'`: the dense mask up to 1024 packed tokens, the segment-wise attention (no
L x L mask) above. The paths run interleaved (a, c, a, c, ... for `--repeats`), each run in its own subprocess, and
every ratio to (a) is printed as the median over repeats with its min-max spread: on a shared machine, paths run one
after the other drift apart with the load. "mask MiB": bytes of the attention mask (and the segment layout) the
first language-model layer receives, per step, measured with a forward pre-hook.

The model is a random Qwen2.5-VL-shaped model, small in width but long in sequence (32 frames -> >= 2k video
tokens, 64-token answers), trained with LoRA on the language model. A step is `Trainer.training_step` (forward of
policy and reference, backward) on a pre-collated batch; the optimizer update is the same for every path and left
out. Peak memory: growth of the process's max RSS over the steps on CPU (`resource.getrusage`), or
`torch.cuda.max_memory_allocated` over the steps on CUDA.

    python benchmarks/train_step.py                    # CPU, tiny-but-long
    python benchmarks/train_step.py --long             # CPU, >= 8k video tokens per pair, (a) vs (c)
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
    "e": dict(
        share_video_encoding=True,
        prefix_sharing=True,
        precompute_ref_log_probs=False,
        prefix_sharing_attention="dense",
    ),
    "s": dict(
        share_video_encoding=True,
        prefix_sharing=True,
        precompute_ref_log_probs=False,
        prefix_sharing_attention="segments",
    ),
}
LABELS = {
    "a": "(a) duplicated rows",
    "b": "(b) shared video encoding",
    "c": "(c) + prefix sharing",
    "d": "(d) + precomputed reference",
    "e": "(e) (c) with dense L x L mask",
    "s": "(s) (c) with segment attention",
}
# `--long`: 64 frames of 128x128 -> 32 temporal groups x 256 tokens = 8192 video tokens per prompt
LONG = dict(frames=64, height=128, width=128, pairs=1, layers=2, steps=1, warmup=0, paths="ac", repeats=3)
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
    from tpo_hf.prefix_sharing import LAYOUT_KWARG
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
    mask_bytes = []

    def record_mask(module, args_, kwargs):
        # what the first decoder layer's attention is handed to tell the branches apart: the 4D mask (as stored:
        # a stride-0 view counts one element) and the tensors of the segment layout
        tensors = [kwargs.get("attention_mask")]
        layout = kwargs.get(LAYOUT_KWARG)
        if layout is not None:
            tensors += layout.answer_masks
        mask_bytes.append(sum(t.untyped_storage().nbytes() for t in tensors if isinstance(t, torch.Tensor)))

    first_attention = next(m for name, m in trainer.model.named_modules() if name.endswith("layers.0.self_attn"))
    first_attention.register_forward_pre_hook(record_mask, with_kwargs=True)
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    cpu_times = []

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.training_step(trainer.model, batch)
        if cuda:
            torch.cuda.synchronize()
        trainer.model.zero_grad(set_to_none=True)
        cpu_times.append(time.process_time() - cpu_start)
        return time.perf_counter() - start

    for _ in range(args.warmup):
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
        # CPU seconds of this process (all its threads): what the step costs, less exposed to other processes' load
        "median_step_cpu_s": statistics.median(cpu_times[-len(times) :]),
        "peak_bytes": peak,
        "lm_tokens_per_pair": policy_tokens + reference_tokens,
        "video_tokens_per_pair": num_video_tokens,
        "encoder_runs_per_pair": encoder_runs,
        "prefix_sharing_active": bool(trainer._prefix_sharing),
        "segment_attention": bool(stats and stats["segment_attention"]),
        "mask_bytes": max(mask_bytes),
    }


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--long", action="store_true", help=f"the long setting: {LONG} unless given explicitly")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--answer_tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=2, help="pairs per step (per_device_train_batch_size)")
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the interleaved paths")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--activation_checkpointing", action="store_true")
    parser.add_argument("--paths", default="abcd")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    raw = argv if argv is not None else sys.argv[1:]
    args = parser.parse_args(raw)
    if args.long:
        given = {arg.split("=")[0][2:] for arg in raw if arg.startswith("--")}
        for key, value in LONG.items():
            if key not in given:
                setattr(args, key, value)

    if args.child:
        print("RESULT " + json.dumps(run_path(args.child, args)))
        return

    results: dict[str, list[dict]] = {path: [] for path in args.paths}
    with tempfile.TemporaryDirectory() as workdir:
        child_args = [
            f"--{key}={value}" for key, value in vars(args).items() if key not in ("child", "workdir", "long")
        ]
        child_args = [arg for arg in child_args if not arg.startswith("--activation_checkpointing")]
        if args.activation_checkpointing:
            child_args.append("--activation_checkpointing")
        for repeat in range(args.repeats):
            for path in args.paths:  # interleaved: a, c, a, c, ...
                command = [sys.executable, __file__, *child_args, "--workdir", workdir, "--child", path]
                completed = subprocess.run(command, capture_output=True, text=True)
                lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
                if completed.returncode or not lines:
                    sys.stderr.write(completed.stderr[-4000:])
                    raise SystemExit(f"path {path} failed (exit {completed.returncode})")
                result = json.loads(lines[-1][len("RESULT ") :])
                results[path].append(result)
                print(
                    f"  repeat {repeat + 1}/{args.repeats} {LABELS[path]}: {result['median_step_s']:.2f} s "
                    f"({result['median_step_cpu_s']:.2f} CPU s), "
                    f"peak {result['peak_bytes'] / 2**20:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )

    first = next(iter(results.values()))[0]
    print(
        f"TPO train step, {args.device}: {args.frames} frames of {args.height}x{args.width} "
        f"({first['video_tokens_per_pair']} video tokens), {args.answer_tokens}-token answers, {args.pairs} pairs/step, "
        f"LM hidden {args.hidden_size} x {args.layers} layers, LoRA r=16, median of {args.steps} steps per run, "
        f"{args.repeats} interleaved repeats; ratios to (a): median [min-max] over repeats"
    )
    header = (
        f"{'path':<31} {'step s':>8} {'x faster':>18} {'CPU s':>7} {'x faster (CPU s)':>18} {'peak MiB':>9} "
        f"{'x mem':>18} {'mask MiB':>9} {'LM tok/pair':>12} {'enc/pair':>9}"
    )
    print(header)
    print("-" * len(header))
    baseline = results.get("a")
    for path, runs in results.items():
        speed = cpu_speed = memory = []
        if baseline:
            # ratio within each repeat: the two runs of a repeat are neighbours in time, so they share the load
            speed = [a["median_step_s"] / r["median_step_s"] for a, r in zip(baseline, runs)]
            cpu_speed = [a["median_step_cpu_s"] / r["median_step_cpu_s"] for a, r in zip(baseline, runs)]
            memory = [r["peak_bytes"] / a["peak_bytes"] for a, r in zip(baseline, runs) if a["peak_bytes"] > 0]
        result = runs[0]
        print(
            f"{LABELS[path]:<31} {statistics.median(r['median_step_s'] for r in runs):>8.2f} {_spread(speed):>18} "
            f"{statistics.median(r['median_step_cpu_s'] for r in runs):>7.2f} {_spread(cpu_speed):>18} "
            f"{statistics.median(r['peak_bytes'] for r in runs) / 2**20:>9.1f} {_spread(memory):>18} "
            f"{result['mask_bytes'] / 2**20:>9.2f} {result['lm_tokens_per_pair']:>12} "
            f"{result['encoder_runs_per_pair']:>9}"
        )


if __name__ == "__main__":
    main()
