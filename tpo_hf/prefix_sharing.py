"""Stage 4 of the flow (cost): prefix sharing, one language-model pass over each pair's shared video prompt.

TRL's `DPOTrainer` lays a batch of B pairs out as 2B rows (`prompt + chosen`, then `prompt + rejected`), so the
prompt, thousands of video tokens in TPO, runs through the language model twice for the policy and twice for the
reference. Here each pair becomes ONE packed sequence

    [prompt[:-1]] [last prompt token, chosen[:-1]] [last prompt token, rejected[:-1]]

with a block attention mask (each answer branch sees the shared prompt and itself, never the other branch) and the
position ids each token has in its own unshared row (Qwen's 3D M-RoPE positions come from the model's own
`get_rope_index` on the unshared rows, gathered into the packed layout). The last prompt token is repeated in each
branch because its hidden state predicts the first answer token and a position holds one label; the last answer
token is left out because it predicts nothing. Every scored token therefore sees exactly the keys, values and
positions it sees in the unshared rows, so the per-token log-probs are the same.

The packed forward is reached through the model call TRL already makes: `TPOTrainer` passes a `PackedPairs` under the
`prefix_sharing` keyword, and the forward installed by `install_prefix_sharing` runs the packed inputs and scatters
the per-token outputs back to the 2B-row layout. TRL's loss code, the reference pass (adapter disabled or a separate
reference model) and `precompute_ref_log_probs` all go through it unchanged.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

PREFIX_SHARING_KWARG = "prefix_sharing"
# Attention implementations that take an arbitrary 4D mask (flash-attention kernels take none; flex needs a BlockMask)
SUPPORTED_ATTENTION = ("sdpa", "eager")
# Per-token outputs of TRL's fused LM head (`trl.trainer.utils.FusedCausalLMOutput`)
PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
_PASSTHROUGH_KWARGS = ("use_cache", "output_router_logits")

# Segment ids of packed positions
_PAD, _PROMPT, _CHOSEN, _REJECTED = -1, 0, 1, 2


@dataclass
class PackedPairs:
    """One packed sequence per pair, and the map back to TRL's 2B-row layout.

    Attributes:
        model_kwargs: forward inputs of the packed batch (`input_ids`, 4D `attention_mask`, `position_ids`,
            sequence keys such as `mm_token_type_ids`; the trainer adds the per-pair video inputs).
        shift_labels: `[B, Lp]` next-token label of each packed position within its branch, -100 where unscored.
        source_rows, source_cols: `[B, Lp]` row and column of each packed position in the 2B-row layout (-1: pad).
        num_rows, row_length: shape of the 2B-row batch the outputs are scattered back to.
    """

    model_kwargs: dict[str, Any]
    shift_labels: torch.Tensor
    source_rows: torch.Tensor
    source_cols: torch.Tensor
    num_rows: int
    row_length: int
    stats: dict[str, int] = field(default_factory=dict)

    def unpack(self, per_token: torch.Tensor) -> torch.Tensor:
        """`[B, Lp]` per-token values of the packed batch -> `[2B, L - 1]` as the unshared forward returns them.

        Position `c` of row `r` holds the value for predicting token `c + 1` of that row; unscored positions are 0.
        """
        scored = self.shift_labels != -100
        out = per_token.new_zeros(self.num_rows, self.row_length - 1)
        rows = self.source_rows[scored].to(per_token.device)
        cols = self.source_cols[scored].to(per_token.device)
        return out.index_put((rows, cols), per_token[scored.to(per_token.device)])


def pack_pairs(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    position_ids: torch.Tensor,
    sequence_inputs: dict[str, torch.Tensor] | None = None,
    mask_dtype: torch.dtype = torch.bool,
) -> PackedPairs:
    """Packs a 2B-row preference batch (chosen rows first, right padded) into B sequences sharing their prompt.

    Args:
        input_ids, attention_mask, completion_mask: `[2B, L]` as `VideoPreferenceCollator` emits them; row `i` and
            row `B + i` must carry the same prompt.
        position_ids: positions of the unshared rows, `[2B, L]` or `[k, 2B, L]` (Qwen's M-RoPE: k = 3).
        sequence_inputs: other `[2B, L]` inputs aligned with the tokens (e.g. `mm_token_type_ids`).
        mask_dtype: `torch.bool` (True = attend; SDPA) or a float dtype (additive 0 / min; eager attention).

    Raises:
        ValueError: the rows do not form pairs over one shared prompt (names the pair).
    """
    num_rows, row_length = input_ids.shape
    if num_rows % 2:
        raise ValueError(f"prefix sharing needs chosen and rejected rows in pairs, got {num_rows} rows")
    num_pairs = num_rows // 2
    ids_cpu = input_ids.cpu()
    lengths = attention_mask.sum(1).tolist()
    answer_lengths = completion_mask.sum(1).tolist()
    rows_per_pair, cols_per_pair, segments_per_pair = [], [], []
    for pair in range(num_pairs):
        chosen_row, rejected_row = pair, num_pairs + pair
        prompt_length = lengths[chosen_row] - answer_lengths[chosen_row]
        if (
            prompt_length < 1
            or lengths[rejected_row] - answer_lengths[rejected_row] != prompt_length
            or not torch.equal(ids_cpu[chosen_row, :prompt_length], ids_cpu[rejected_row, :prompt_length])
        ):
            raise ValueError(
                f"prefix sharing: rows {chosen_row} and {rejected_row} (pair {pair}) do not share one prompt; the "
                "batch must hold B chosen rows then B rejected rows over the same prompts (VideoPreferenceCollator)."
            )
        rows = [chosen_row] * (prompt_length - 1)
        cols = list(range(prompt_length - 1))
        segments = [_PROMPT] * (prompt_length - 1)
        for segment, row in ((_CHOSEN, chosen_row), (_REJECTED, rejected_row)):
            # The branch feeds [last prompt token, answer[:-1]]: one input per answer token to score
            answer_length = answer_lengths[row]
            rows += [row] * answer_length
            cols += range(prompt_length - 1, prompt_length - 1 + answer_length)
            segments += [segment] * answer_length
        rows_per_pair.append(rows)
        cols_per_pair.append(cols)
        segments_per_pair.append(segments)

    packed_length = max(len(rows) for rows in rows_per_pair)
    device = input_ids.device

    def pad(sequences: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([s + [value] * (packed_length - len(s)) for s in sequences], dtype=torch.long)

    source_rows = pad(rows_per_pair, -1).to(device)
    source_cols = pad(cols_per_pair, 0).to(device)
    segments = pad(segments_per_pair, _PAD).to(device)
    real = segments != _PAD
    gather_rows = source_rows.clamp(min=0)

    # Next-token labels of the unshared rows, read at each packed position
    next_tokens = torch.cat([input_ids[:, 1:], input_ids.new_full((num_rows, 1), -100)], dim=1)
    next_scored = torch.cat([completion_mask[:, 1:], completion_mask.new_zeros((num_rows, 1))], dim=1).bool()
    row_shift_labels = next_tokens.masked_fill(~next_scored, -100)
    shift_labels = row_shift_labels[gather_rows, source_cols].masked_fill(~real, -100)

    packed_ids = input_ids[gather_rows, source_cols].masked_fill(~real, 0)
    if position_ids.ndim == 2:
        packed_positions = position_ids[gather_rows, source_cols].masked_fill(~real, 0)
    else:
        packed_positions = position_ids[:, gather_rows, source_cols].masked_fill(~real, 0)

    # Block mask: causal, and a branch token sees the prompt and its own branch only
    query_segments, key_segments = segments[:, :, None], segments[:, None, :]
    causal = torch.ones(packed_length, packed_length, dtype=torch.bool, device=device).tril()
    allowed = causal & ((key_segments == _PROMPT) | (key_segments == query_segments)) & (key_segments != _PAD)
    allowed = allowed & (query_segments != _PAD)
    # Padding attends to itself only, so no softmax row is empty (an all-masked row gives NaN in SDPA)
    allowed |= torch.eye(packed_length, dtype=torch.bool, device=device)
    allowed = allowed[:, None]
    if mask_dtype == torch.bool:
        mask = allowed
    else:
        mask = torch.zeros(allowed.shape, dtype=mask_dtype, device=device).masked_fill(
            ~allowed, torch.finfo(mask_dtype).min
        )

    model_kwargs: dict[str, Any] = {"input_ids": packed_ids, "attention_mask": mask, "position_ids": packed_positions}
    for key, value in (sequence_inputs or {}).items():
        model_kwargs[key] = value[gather_rows, source_cols].masked_fill(~real, 0)
    stats = {
        "packed_tokens": int(real.sum()),
        "row_tokens": int(attention_mask.sum()),
        "packed_length": packed_length,
        "row_length": row_length,
    }
    return PackedPairs(model_kwargs, shift_labels, source_rows, source_cols, num_rows, row_length, stats)


def row_position_ids(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Position ids of the unshared 2B rows, as the model's own forward would compute them.

    Models with multimodal rotary positions (Qwen2/2.5/3-VL) expose `get_rope_index` on their backbone; it is called
    with the rows' grids and timing inputs. Other models use 1D positions counted over the attention mask.
    """
    backbone = getattr(model, "model", model)
    rope_index = getattr(backbone, "get_rope_index", None)
    attention_mask = inputs["attention_mask"]
    if rope_index is not None and inputs.get("mm_token_type_ids") is not None:
        accepted = inspect.signature(rope_index).parameters
        extra = {
            key: inputs[key]
            for key in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")
            if key in accepted and inputs.get(key) is not None
        }
        positions, _ = rope_index(
            inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], attention_mask=attention_mask, **extra
        )
        return positions
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def attention_mask_dtype(model: Any) -> torch.dtype | None:
    """Mask dtype the model's attention takes for a custom 4D mask; `None` when it cannot take one."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    implementation = getattr(config, "_attn_implementation", None) or getattr(
        model.config, "_attn_implementation", None
    )
    if implementation == "sdpa":
        return torch.bool
    if implementation == "eager":
        return model.dtype if model.dtype.is_floating_point else torch.float32
    return None


def unsupported_reason(model: Any, family: Any) -> str | None:
    """Why prefix sharing cannot run on `model` (a plain transformers model), or `None` when it can."""
    if not getattr(family, "supports_prefix_sharing", False):
        return f"the {family.name} family does not support it (see `supports_prefix_sharing` in tpo_hf/families.py)"
    if attention_mask_dtype(model) is None:
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        return (
            f"attention implementation {getattr(config, '_attn_implementation', None)!r} takes no custom 4D mask "
            f"(supported: {', '.join(SUPPORTED_ATTENTION)}; load the model with attn_implementation='sdpa')"
        )
    return None


def install_prefix_sharing(model: torch.nn.Module) -> None:
    """Lets `model(..., prefix_sharing=PackedPairs, fused_lm_head=True)` run the packed batch.

    `model` is the module whose forward TRL patched with its fused LM head (the base model under PEFT, or the
    reference model). The other row-layout inputs TRL passes along (`input_ids`, `labels`, ...) are ignored in favour
    of the packed ones; without `prefix_sharing` the forward is unchanged (generation, evaluation).
    """
    if getattr(model, "_tpo_prefix_sharing", False):
        return
    inner = model.forward

    @functools.wraps(inner)
    def forward(*args, prefix_sharing: PackedPairs | None = None, **kwargs):
        if prefix_sharing is None:
            return inner(*args, **kwargs)
        if args or not kwargs.get("fused_lm_head", False):
            raise ValueError("prefix_sharing needs keyword inputs and fused_lm_head=True (TRL's DPO forward)")
        passthrough = {key: kwargs[key] for key in _PASSTHROUGH_KWARGS if key in kwargs}
        outputs = inner(
            **prefix_sharing.model_kwargs, **passthrough, shift_labels=prefix_sharing.shift_labels, fused_lm_head=True
        )
        for name in PER_TOKEN_FIELDS:
            value = getattr(outputs, name, None)
            if value is not None:
                setattr(outputs, name, prefix_sharing.unpack(value))
        return outputs

    model.forward = forward
    model._tpo_prefix_sharing = True
