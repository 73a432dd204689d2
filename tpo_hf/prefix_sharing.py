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

Two ways to keep the branches apart inside attention:

- segment-wise attention (`attention="segments"`, no L x L mask): the language model's attention implementation is
  swapped for `prefix_attention_forward`, registered with transformers' `AttentionInterface` under
  `tpo_prefix_<inner>` for the text config only (the vision tower keeps its own). Per pair it runs the prompt
  causally over itself (one SDPA call, `is_causal`, so CPU and GPU use their flash kernels) and both answer branches
  over the prompt and themselves (one SDPA call whose mask is answers x (prompt + answers): linear in the prompt), or,
  on CUDA with `flash_attn` installed, one `flash_attn_varlen_func` call over all segments. The segment lengths reach
  it as the `tpo_prefix_layout` keyword argument, which the transformers models forward to their attention function;
  the 4D `attention_mask` is a stride-0 view (no memory) so that transformers builds no mask of its own. Without the
  keyword (generation, evaluation) the function calls the original implementation.
- a dense 4D block mask (`attention="dense"`): L x L per pair; the only way for eager attention (`auto` can also keep
  it for short packed sequences, `DENSE_MAX_PACKED_LENGTH`, but it measured no faster there).

One module over 500 lines on purpose: the packing, the masks and positions, and the attention it installs must agree
token for token, and are checked together (tests/test_prefix_sharing.py).
"""

from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

logger = logging.getLogger(__name__)

PREFIX_SHARING_KWARG = "prefix_sharing"
# The keyword the packed forward passes down to `prefix_attention_forward` through the model's **kwargs
LAYOUT_KWARG = "tpo_prefix_layout"
# Name prefix under which the segment-wise attention is registered, per wrapped implementation
ATTENTION_PREFIX = "tpo_prefix_"
ATTENTION_MODES = ("auto", "segments", "dense")
# `auto`: packed sequences up to this length use the dense mask, longer ones the segment-wise attention. 0: the
# dense mask was not measurably faster anywhere (benchmarks/train_step.py, CPU, 2 pairs: CPU-seconds ratio to the
# duplicated rows 1.91x dense vs 2.03x segments at 718 packed tokens, and segments ahead at ~1.2k), so `auto` keeps
# it for eager attention only
DENSE_MAX_PACKED_LENGTH = 0
# Per-token outputs of TRL's fused LM head (`trl.trainer.utils.FusedCausalLMOutput`)
PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
_PASSTHROUGH_KWARGS = ("use_cache", "output_router_logits")

# Segment ids of packed positions
_PAD, _PROMPT, _CHOSEN, _REJECTED = -1, 0, 1, 2


@dataclass
class PrefixLayout:
    """Segment lengths of each packed pair, read by `prefix_attention_forward` in place of an L x L mask.

    Attributes:
        segments: per pair `(prompt, chosen, rejected)` token counts; the packed row is laid out in that order, then
            padding.
        answer_masks: per pair a `[chosen + rejected, prompt + chosen + rejected]` bool mask (True = attend) for the
            answer queries: the whole prompt, and causally their own branch.
    """

    segments: list[tuple[int, int, int]]
    answer_masks: list[torch.Tensor]
    # `varlen` is the same for every layer of a forward: built once per packed batch and device
    _varlen: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, segments: list[tuple[int, int, int]], device: torch.device | str) -> PrefixLayout:
        masks = []
        for prompt, chosen, rejected in segments:
            answers = chosen + rejected
            branch = torch.zeros(answers, answers, dtype=torch.bool, device=device)
            branch[:chosen, :chosen] = True
            branch[chosen:, chosen:] = True
            branch = branch.tril()
            masks.append(torch.cat([torch.ones(answers, prompt, dtype=torch.bool, device=device), branch], dim=1))
        return cls(segments, masks)

    def varlen(self, packed_length: int, device: torch.device) -> dict[str, Any]:
        """Flat indices and cumulative lengths for one `flash_attn_varlen_func` call over all segments.

        Queries are the real packed tokens in order; each answer branch's keys are its prompt followed by itself,
        so flash attention's bottom-right causal alignment (seqlen_q < seqlen_k) gives exactly the branch mask.
        """
        cache_key = (packed_length, str(device))
        if cache_key in self._varlen:
            return self._varlen[cache_key]
        query_index, key_index, query_lengths, key_lengths = [], [], [0], [0]
        for pair, (prompt, chosen, rejected) in enumerate(self.segments):
            start = pair * packed_length
            prompt_keys = list(range(start, start + prompt))
            chosen_start, rejected_start = start + prompt, start + prompt + chosen
            for query_start, length, keys in (
                (start, prompt, prompt_keys),
                (chosen_start, chosen, prompt_keys + list(range(chosen_start, chosen_start + chosen))),
                (rejected_start, rejected, prompt_keys + list(range(rejected_start, rejected_start + rejected))),
            ):
                if length:
                    query_index += range(query_start, query_start + length)
                    key_index += keys
                    query_lengths.append(length)
                    key_lengths.append(len(keys))
        self._varlen[cache_key] = varlen_tensors(query_index, key_index, query_lengths, key_lengths, device)
        return self._varlen[cache_key]


def varlen_tensors(
    query_index: list[int], key_index: list[int], query_lengths: list[int], key_lengths: list[int], device: Any
) -> dict[str, Any]:
    """Index and `cu_seqlens` tensors for `flash_attn_varlen_func` (lengths start with a 0)."""
    as_long = functools.partial(torch.tensor, dtype=torch.long, device=device)
    return {
        "query_index": as_long(query_index),
        "key_index": as_long(key_index),
        "cu_seqlens_q": torch.tensor(query_lengths, device=device).cumsum(0).to(torch.int32),
        "cu_seqlens_k": torch.tensor(key_lengths, device=device).cumsum(0).to(torch.int32),
        "max_seqlen_q": max(query_lengths),
        "max_seqlen_k": max(key_lengths),
    }


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
    attention: str = "dense",
    dense_max_length: int = DENSE_MAX_PACKED_LENGTH,
) -> PackedPairs:
    """Packs a 2B-row preference batch (chosen rows first, right padded) into B sequences sharing their prompt.

    Args:
        input_ids, attention_mask, completion_mask: `[2B, L]` as `VideoPreferenceCollator` emits them; row `i` and
            row `B + i` must carry the same prompt.
        position_ids: positions of the unshared rows, `[2B, L]` or `[k, 2B, L]` (Qwen's M-RoPE: k = 3).
        sequence_inputs: other `[2B, L]` inputs aligned with the tokens (e.g. `mm_token_type_ids`).
        mask_dtype: `torch.bool` (True = attend; SDPA) or a float dtype (additive 0 / min; eager attention).
        attention: `"dense"`: an L x L block mask per pair; `"segments"`: a `PrefixLayout` under `LAYOUT_KWARG` for
            `prefix_attention_forward`, and a stride-0 placeholder mask (needs `install_prefix_attention`);
            `"auto"`: dense when the packed length is at most `dense_max_length`, else segments.

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
    if attention not in ATTENTION_MODES:
        raise ValueError(f"pack_pairs: attention must be one of {ATTENTION_MODES}, got {attention!r}")
    rows_per_pair, cols_per_pair, segments_per_pair, segment_lengths = [], [], [], []
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
        segment_lengths.append((prompt_length - 1, answer_lengths[chosen_row], answer_lengths[rejected_row]))
        rows_per_pair.append(rows)
        cols_per_pair.append(cols)
        segments_per_pair.append(segments)

    packed_length = max(len(rows) for rows in rows_per_pair)
    device = input_ids.device
    if attention == "auto":
        attention = "dense" if packed_length <= dense_max_length else "segments"

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

    model_kwargs: dict[str, Any] = {"input_ids": packed_ids, "position_ids": packed_positions}
    if attention == "segments":
        # A 4D mask makes transformers skip its own mask creation; stride 0, so it holds one element, not L x L
        model_kwargs["attention_mask"] = torch.ones((), dtype=torch.bool, device=device).expand(
            num_pairs, 1, packed_length, packed_length
        )
        model_kwargs[LAYOUT_KWARG] = PrefixLayout.build(segment_lengths, device)
    else:
        model_kwargs["attention_mask"] = _block_mask(segments, mask_dtype)
    for key, value in (sequence_inputs or {}).items():
        model_kwargs[key] = value[gather_rows, source_cols].masked_fill(~real, 0)
    stats = {
        "packed_tokens": int(real.sum()),
        "row_tokens": int(attention_mask.sum()),
        "packed_length": packed_length,
        "row_length": row_length,
        "segment_attention": int(attention == "segments"),
        "mask_bytes": model_kwargs["attention_mask"].untyped_storage().nbytes(),
    }
    return PackedPairs(model_kwargs, shift_labels, source_rows, source_cols, num_rows, row_length, stats)


def _block_mask(segments: torch.Tensor, mask_dtype: torch.dtype) -> torch.Tensor:
    """`[B, 1, Lp, Lp]` mask of the packed rows from their `[B, Lp]` segment ids."""
    packed_length, device = segments.size(1), segments.device
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
    return mask


def row_position_ids(model: Any, inputs: dict[str, torch.Tensor], family: Any = None) -> torch.Tensor:
    """Position ids of the unshared 2B rows, as the model's own forward would compute them.

    Models with multimodal rotary positions (Qwen2/2.5/3-VL) expose `get_rope_index` on their backbone; it is called
    with the rows' grids and timing inputs. A family whose positions come from other inputs says how in its registry
    entry (`VideoFamily.row_positions`). Other models use 1D positions counted over the attention mask. `family`:
    the model's registry entry, looked up when not given.
    """
    if family is None:
        from .families import get_family

        try:
            family = get_family(model)
        except ValueError:  # not a registry model: the generic rules below
            pass
    if family is not None and family.row_positions is not None:
        return family.row_positions(model, inputs)
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


def _text_config(model: Any) -> Any:
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def inner_attention(model: Any) -> str | None:
    """The language model's attention implementation, seen through the segment-wise wrapper if installed."""
    config = _text_config(model)
    implementation = getattr(config, "_attn_implementation", None) or getattr(
        model.config, "_attn_implementation", None
    )
    if isinstance(implementation, str) and implementation.startswith(ATTENTION_PREFIX):
        return implementation[len(ATTENTION_PREFIX) :]
    return implementation


def attention_mask_dtype(model: Any) -> torch.dtype | None:
    """Mask dtype the model's attention takes for a custom 4D mask; `None` when it cannot take one."""
    implementation = inner_attention(model)
    if implementation == "sdpa":
        return torch.bool
    if implementation == "eager":
        return model.dtype if model.dtype.is_floating_point else torch.float32
    return None


def segments_supported(model: Any) -> bool:
    """Whether `prefix_attention_forward` can replace the language model's attention (any registered implementation
    but eager, whose model-specific function is not in transformers' `AttentionInterface`)."""
    from transformers import AttentionInterface

    implementation = inner_attention(model)
    return implementation != "eager" and implementation in AttentionInterface._global_mapping


def unsupported_reason(model: Any, family: Any) -> str | None:
    """Why prefix sharing cannot run on `model` (a plain transformers model), or `None` when it can."""
    if not getattr(family, "supports_prefix_sharing", False):
        return f"the {family.name} family does not support it (see `supports_prefix_sharing` in tpo_hf/families.py)"
    if attention_mask_dtype(model) is None and not segments_supported(model):
        return (
            f"attention implementation {inner_attention(model)!r} takes no custom 4D mask and is not registered in "
            "transformers' AttentionInterface (supported: sdpa, eager, flash_attention_2/3, kernels, flex_attention)"
        )
    return None


def _flash_varlen() -> Any:
    """`flash_attn_varlen_func` where the flash-attn package is installed, else None (CPU, or no package)."""
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


def _grouped_sdpa(query, key, value, mask, dropout=0.0, scale=None) -> torch.Tensor:
    """Masked SDPA of `[1, H, q, D]` queries over `[1, Hkv, k, D]` keys without repeating the keys per query head.

    The query heads sharing a key head are stacked along the query axis (head h reads key head h // (H / Hkv), as
    transformers' `repeat_kv`), with the `[q, k]` mask repeated to match, so the keys are read as they are.
    """
    heads, length = query.shape[1], query.shape[2]
    groups = heads // key.shape[1]
    if groups > 1:
        query = query.reshape(1, key.shape[1], groups * length, query.shape[-1])
        mask = mask.repeat(groups, 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=scale
    )
    return out.reshape(1, heads, length, out.shape[-1])


def prefix_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    *,
    inner: str = "sdpa",
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of packed pairs from their segment lengths, never an L x L mask (see the module docstring).

    `query` is `[B, H, Lp, D]`, `key`/`value` `[B, Hkv, Lp, D]`; returns `[B, Lp, H, D]` as transformers' attention
    functions do. Without a `PrefixLayout` under `LAYOUT_KWARG` the call goes to the `inner` implementation.
    """
    from transformers import AttentionInterface

    layout: PrefixLayout | None = kwargs.pop(LAYOUT_KWARG, None)
    if layout is None:
        return AttentionInterface._global_mapping[inner](
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if kwargs.get("sliding_window") is not None or kwargs.get("softcap") is not None:
        raise ValueError(
            "segment-wise prefix attention does not implement sliding windows or soft-capping; set "
            "prefix_sharing_attention='dense' with attn_implementation='sdpa'"
        )
    dropout = dropout if module.training else 0.0
    batch, heads, packed_length, head_dim = query.shape
    flash = _flash_varlen() if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) else None
    if flash is not None:
        index = layout.varlen(packed_length, query.device)
        flat_query = query.transpose(1, 2).reshape(batch * packed_length, heads, head_dim)
        flat_key = key.transpose(1, 2).reshape(batch * packed_length, key.shape[1], head_dim)
        flat_value = value.transpose(1, 2).reshape(batch * packed_length, value.shape[1], value.shape[-1])
        out = flash(
            flat_query[index["query_index"]],
            flat_key[index["key_index"]],
            flat_value[index["key_index"]],
            index["cu_seqlens_q"],
            index["cu_seqlens_k"],
            index["max_seqlen_q"],
            index["max_seqlen_k"],
            dropout_p=dropout,
            softmax_scale=scaling,
            causal=True,
        )
        full = out.new_zeros(batch * packed_length, heads, out.shape[-1]).index_copy(0, index["query_index"], out)
        return full.view(batch, packed_length, heads, out.shape[-1]), None

    rows = []
    for pair, ((prompt, chosen, rejected), answer_mask) in enumerate(zip(layout.segments, layout.answer_masks)):
        q, k, v = query[pair : pair + 1], key[pair : pair + 1], value[pair : pair + 1]
        end = prompt + chosen + rejected
        parts = []
        if prompt:
            # causal over the prompt alone: the kernels' own causal path (flash on CPU and GPU), no mask tensor
            parts.append(
                torch.nn.functional.scaled_dot_product_attention(
                    q[:, :, :prompt],
                    k[:, :, :prompt],
                    v[:, :, :prompt],
                    is_causal=True,
                    dropout_p=dropout,
                    scale=scaling,
                    enable_gqa=k.shape[1] != heads,
                )
            )
        if end > prompt:
            parts.append(
                _grouped_sdpa(q[:, :, prompt:end], k[:, :, :end], v[:, :, :end], answer_mask, dropout, scaling)
            )
        if end < packed_length:
            parts.append(q.new_zeros(1, heads, packed_length - end, value.shape[-1]))
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def install_prefix_attention(model: torch.nn.Module) -> str:
    """Swaps the language model's attention for `prefix_attention_forward` around its current implementation.

    The wrapper is registered with transformers' `AttentionInterface` (and its mask function with the mask
    interface, so unpacked forwards get the usual mask) and set on the text config only: the vision tower keeps its
    own implementation. Returns the wrapped implementation's name.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    inner = inner_attention(model)
    name = f"{ATTENTION_PREFIX}{inner}"
    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, functools.partial(prefix_attention_forward, inner=inner))
        mask_function = ALL_MASK_ATTENTION_FUNCTIONS._global_mapping.get(inner)
        if mask_function is not None:
            AttentionMaskInterface.register(name, mask_function)
    text_config = _text_config(model)
    if text_config is model.config:
        model.set_attn_implementation(name)
    else:
        key = next(key for key in model.config.sub_configs if getattr(model.config, key, None) is text_config)
        model.set_attn_implementation({key: name})
    return inner


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
