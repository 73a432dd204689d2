"""Runs `tpo_hf.train` recipes one after another in one process and prints a `TPO_RUN {json}` line per run and rank,
for tests/test_sharded.py. Started by `accelerate launch --config_file recipes/accelerate_configs/{fsdp,zero3}.yaml`
(two processes) or by plain `python` (the one-process reference).

Accelerate (1.15) switches a process group to FSDP or DeepSpeed only on accelerators: on CPU its `AcceleratorState`
keeps `MULTI_CPU` and drops the FSDP / DeepSpeed plugin, so a CPU run of those configs would silently be DDP. Here
the state is switched on the gloo group the way `AcceleratorState` does it for GPUs (state and `PartialState`);
everything after that (`fully_shard` and DTensor parameters, ZeRO-3 partitioning, their gathers, full state dicts,
sharded optimizer checkpoints and their loading) is accelerate's, torch's and DeepSpeed's own code.
"""

from __future__ import annotations

import json
import sys

from accelerate import state as accelerate_state
from accelerate.utils import DistributedType

_accelerator_state_init = accelerate_state.AcceleratorState.__init__


def _sharded_on_cpu(self, *args, fsdp_plugin=None, deepspeed_plugin=None, **kwargs):
    _accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, deepspeed_plugin=deepspeed_plugin, **kwargs)
    if self.distributed_type != DistributedType.MULTI_CPU:
        return
    if fsdp_plugin is not None:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
    elif deepspeed_plugin is not None:
        self.distributed_type = DistributedType.DEEPSPEED
        deepspeed_plugin.set_mixed_precision(self._mixed_precision)
        deepspeed_plugin.select(_from_accelerator_state=True)
        self.deepspeed_plugins = deepspeed_plugin
    else:
        return
    accelerate_state.PartialState._shared_state["distributed_type"] = self.distributed_type


accelerate_state.AcceleratorState.__init__ = _sharded_on_cpu


def run(recipe: str) -> None:
    from torch.distributed.tensor import DTensor

    from tpo_hf.train import main, make_parser

    trainer = main(*make_parser().parse_args_and_config(args=["--config", recipe]))
    accelerator = trainer.accelerator
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    report = {
        "recipe": recipe,
        "rank": accelerator.process_index,
        "world_size": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "fsdp_version": getattr(plugin, "fsdp_version", None),
        # FSDP2: DTensor parameters; ZeRO-3: parameters partitioned by DeepSpeed (`ds_numel`, local data emptied)
        "sharded_parameters": sum(
            isinstance(p, DTensor) or hasattr(p, "ds_numel") for p in trainer.model.parameters()
        ),
        "zero_stage": getattr(getattr(accelerator.state, "deepspeed_plugin", None), "zero_stage", None),
        "share_video_encoding": trainer._share_video_encoding,
        "prefix_sharing": trainer._prefix_sharing,
        "pairs_trained": trainer._pairs_trained,
    }
    print("TPO_RUN " + json.dumps(report), flush=True)


if __name__ == "__main__":
    for recipe in sys.argv[1:]:
        run(recipe)
