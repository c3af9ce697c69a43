"""vLLM rollouts colocated with the trainer (imported lazily; GPU only).

Set up the way TRL's colocate mode does it (``trl/generation/vllm_generation.py``):

* one ``vllm.LLM`` per trainer rank, ``distributed_executor_backend="external_launcher"``: vLLM
  runs inside the torchrun process and uses its ``RANK`` / ``WORLD_SIZE`` / ``MASTER_*``; with
  ``tensorParallelSize`` > 1, each group of that many consecutive ranks forms one vLLM instance
  (every rank of the group generates the group's gathered prompts with the same seed, then keeps
  its own slice);
* sleep mode: ``sleep(level)`` while the trainer runs (level 1 moves the weights to CPU and
  drops the KV cache, level 2 drops both), ``wake_up(tags=["weights"])`` before the weights
  are pushed, ``wake_up(tags=["kv_cache"])`` right before generation;
* weight sync from the sharded policy one tensor at a time: every rank all-gathers one
  parameter (``DTensor.full_tensor``), hands it to vLLM's ``load_weights`` (which slices it
  for its tensor-parallel rank) and drops it, so no rank ever holds the whole gathered model;
  then the prefix cache is reset.

Token-sequence stops and the RFT abort check run on the sampled tokens afterwards
(``finish_completion``): vLLM is started without a tokenizer. Old log-probs are recomputed
by the trainer for every non-torch engine, so vLLM's kernels never bias the PPO ratio.
"""

from __future__ import annotations

import os
import tempfile

import torch

from codekiln.workloads.rl.engines.base import Completion, SamplingParams, Weights, finish_completion, iter_weights


def require_vllm():
    """Import vllm, with a clear error without it or without a GPU."""
    try:
        import vllm
    except ImportError as exc:  # pragma: no cover - depends on the image
        raise RuntimeError("engine 'vllm' needs the vllm package (GPU image): pip install 'codekiln[vllm]'") from exc
    if not torch.cuda.is_available():
        raise RuntimeError("engine 'vllm' needs a CUDA GPU; use engine: torch on CPU")
    return vllm


def tp_groups(world_size: int, tp: int) -> list[list[int]]:
    """Consecutive ranks per vLLM instance: world 8, tp 2 -> [[0, 1], [2, 3], [4, 5], [6, 7]]."""
    if tp < 1 or world_size % tp:
        raise ValueError(f"vllm.tensorParallelSize ({tp}) must divide the number of processes ({world_size})")
    return [list(range(i * tp, (i + 1) * tp)) for i in range(world_size // tp)]


def vllm_sampling_kwargs(params: SamplingParams, row: int) -> dict:
    """vllm.SamplingParams keyword arguments for one prompt (a distinct seed per row: a GRPO group
    repeats its prompt, and one shared seed would sample the same completion for all of them)."""
    return {
        "n": 1, "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
        "stop_token_ids": list(params.stop_token_ids), "logprobs": 0, "detokenize": False,
        "seed": None if params.seed is None else params.seed * 1_000_003 + row,
    }


def completion_from_vllm(output, params: SamplingParams, row: int) -> Completion:
    """Our Completion from one vLLM ``CompletionOutput`` (token ids, sampled-token log-probs)."""
    ids = list(output.token_ids)
    logprobs = [d[t].logprob for d, t in zip(output.logprobs or [], ids, strict=False)]
    if len(logprobs) != len(ids):
        logprobs = [0.0] * len(ids)
    reason = "stop" if output.finish_reason == "stop" else "length"
    return finish_completion(ids, logprobs, reason, params, row)


class VLLMEngine:
    """Colocated vLLM (one per rank, external launcher) fed by the trainer's weights.

    Args:
        model: the policy (config and initial weights; sharded or not).
        config: the spec's ``vllm`` block (``VLLMConfig``); None: defaults.
    """

    def __init__(self, model, config=None) -> None:
        vllm = require_vllm()
        import torch.distributed as dist

        from codekiln.workloads.model.hf import export_hf
        from codekiln.workloads.rl.config import VLLMConfig
        from codekiln.workloads.rl.sharding import full_state_dict, is_sharded

        self.config = config = config or VLLMConfig()
        self.model_cfg = model.cfg
        self._vllm = vllm
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        rank = dist.get_rank() if world > 1 else 0
        self.tp = config.tensor_parallel_size
        self.tp_group = None
        if self.tp > 1:
            self.tp_group, _ = dist.new_subgroups_by_enumeration(tp_groups(world, self.tp))
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        state = full_state_dict(model) if is_sharded(model) else model.state_dict()
        self._dir = tempfile.mkdtemp(prefix=f"codekiln-vllm-{rank}-")
        dtype = getattr(torch, config.dtype)
        export_hf(state, model.cfg, self._dir, dtype=dtype)
        del state
        self.llm = vllm.LLM(
            model=self._dir, skip_tokenizer_init=True, tensor_parallel_size=self.tp,
            gpu_memory_utilization=config.gpu_memory_utilization, enable_sleep_mode=True, dtype=config.dtype,
            distributed_executor_backend="external_launcher", seed=rank // self.tp,
            max_model_len=config.max_model_len or model.cfg.max_seq_len, max_num_batched_tokens=4096,
            logprobs_mode="processed_logprobs",
        )
        self._weights_asleep = self._kv_asleep = False

    # -- memory
    def sleep(self) -> None:
        """Release vLLM's GPU memory for training (``vllm.sleepLevel``)."""
        if not (self._weights_asleep or self._kv_asleep):
            self.llm.sleep(level=self.config.sleep_level)
            self._weights_asleep = self._kv_asleep = True

    def wake_up(self) -> None:
        """Weights only (their values are replaced by ``update_weights``); the KV cache comes back right
        before generation."""
        if self._weights_asleep:
            torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
            self._weights_asleep = False

    # -- weights
    def _runner_model(self):
        return self.llm.llm_engine.model_executor.driver_worker.model_runner.model

    def update_weights(self, weights: Weights) -> None:
        """Stream (name, tensor) pairs into vLLM one at a time (every rank must call: gathers are collective)."""
        from codekiln.workloads.model.hf import to_hf_state_dict

        self.wake_up()
        target = self._runner_model()
        device = torch.device("cuda", torch.cuda.current_device())
        dtype = getattr(torch, self.config.dtype)
        for name, tensor in iter_weights(weights):
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            for hf_name, hf_tensor in to_hf_state_dict({name: full}, self.model_cfg).items():
                target.load_weights([(hf_name, hf_tensor.to(device, dtype))])
            del full
        self.llm.reset_prefix_cache()

    # -- rollouts
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        import torch.distributed as dist

        local = [list(p) for p in prompts]
        if self.tp_group is not None:  # every rank of a vLLM instance generates the instance's prompts
            gathered: list = [None] * self.tp
            dist.all_gather_object(gathered, local, group=self.tp_group)
            counts = [len(g) for g in gathered]
            all_prompts = [p for g in gathered for p in g]
            me = dist.get_rank(group=self.tp_group)
            start = sum(counts[:me])
        else:
            all_prompts, start = local, 0
        self.wake_up()
        if self._kv_asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._kv_asleep = False
        sps = [self._vllm.SamplingParams(**vllm_sampling_kwargs(params, i)) for i in range(len(all_prompts))]
        outs = self.llm.generate([{"prompt_token_ids": p} for p in all_prompts], sps, use_tqdm=False)
        mine = outs[start:start + len(local)]
        return [completion_from_vllm(o.outputs[0], params, i) for i, o in enumerate(mine)]  # abort_fn: local rows
