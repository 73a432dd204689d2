"""Stage 5 of the flow: evaluation. Multiple-choice video QA on Video-MME, MLVU and LongVideoBench, and video
needle-in-a-haystack, with the base model and the TPO adapter side by side in one run.

- `answers`: the option letter out of a free-form reply (`extract_answer_letter`).
- `benchmarks`: the benchmarks' schemas, lmms-eval 0.7.3's prompts, generation settings and answer parsers
  (`load_benchmark`, `BENCHMARKS`, `lmms_eval_predictions`).
- `mcq`: the evaluation loop with its results cache (`evaluate_mcq`, `summarize`: headline score, breakdowns and the
  unparseable rate).
- `vniah`: haystacks, needles and the heatmap (`build_vniah_suite`, `vniah_scores`, `plot_vniah_heatmap`).
- `results`: JSON, Markdown and `huggingface_hub.EvalResult` outputs.
- `config`: `EvalConfig`, the settings of a run; `run`: the run itself (`evaluate`), outputs and cache.
- `lmms_plugin`: `lmms-eval --model tpo_hf`. The command, `tpo-hf eval --config FILE.yaml`, is
  `tpo_hf.commands.eval` (also `accelerate launch -m tpo_hf.commands.eval`, data parallel).
"""

from .answers import UNPARSEABLE, extract_answer_letter
from .benchmarks import BENCHMARKS, Benchmark, MCQSample, get_benchmark, load_benchmark
from .mcq import MCQRun, ResultsCache, SampleResult, evaluate_mcq, summarize
from .results import eval_results, markdown_table, write_results_json
from .vniah import Needle, VNIAHSample, build_vniah_suite, insert_needle, plot_vniah_heatmap, vniah_scores

__all__ = [
    "BENCHMARKS",
    "UNPARSEABLE",
    "Benchmark",
    "MCQRun",
    "MCQSample",
    "Needle",
    "ResultsCache",
    "SampleResult",
    "VNIAHSample",
    "build_vniah_suite",
    "eval_results",
    "evaluate_mcq",
    "extract_answer_letter",
    "get_benchmark",
    "insert_needle",
    "load_benchmark",
    "markdown_table",
    "plot_vniah_heatmap",
    "summarize",
    "vniah_scores",
    "write_results_json",
]
