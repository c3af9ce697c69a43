"""vLLM rollout engine (colocated with the trainer; imported lazily, GPU only).

The engine sleeps (releases KV cache and weights) while the trainer updates, wakes up
before the next rollout and receives the trainer's weights after every step. Our
Transformer uses Hugging Face Llama parameter names, so vLLM's Llama loader takes the
state dict unchanged. vLLM's returned log-probs are informational: the trainer recomputes
old log-probs itself for every non-torch engine (``RLTrainer._old_policy_pass``), so
precision and temperature conventions of the serving kernels cannot bias the ratio.
Untested here (no GPU in CI); its test runs where vllm and a GPU exist.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch

from codekiln.workloads.rl.engines.base import Completion, SamplingParams


def _require_vllm():
    try:
        import vllm
    except ImportError as exc:  # pragma: no cover - depends on the image
        raise RuntimeError("engine 'vllm' needs the vllm package (GPU image): pip install 'codekiln[vllm]'") from exc
    if not torch.cuda.is_available():
        raise RuntimeError("engine 'vllm' needs a CUDA GPU; use engine: torch on CPU")
    return vllm


def hf_llama_config(cfg) -> dict:
    """A Hugging Face LlamaConfig dict for our ModelConfig (what vLLM loads)."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "max_position_embeddings": cfg.max_seq_len, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "hidden_act": "silu",
    }


class VLLMEngine:
    """Colocated vLLM engine fed by the trainer's weights."""

    def __init__(self, model, gpu_memory_utilization: float = 0.4, enable_sleep_mode: bool = True) -> None:
        vllm = _require_vllm()
        from safetensors.torch import save_file

        self._dir = tempfile.mkdtemp(prefix="codekiln-vllm-")
        with open(os.path.join(self._dir, "config.json"), "w") as fh:
            json.dump(hf_llama_config(model.cfg), fh)
        state = {f"model.{k}" if not k.startswith("lm_head") else k: v.detach().cpu().contiguous()
                 for k, v in model.state_dict().items()}
        save_file(state, os.path.join(self._dir, "model.safetensors"))
        self.llm = vllm.LLM(
            model=self._dir, skip_tokenizer_init=True, gpu_memory_utilization=gpu_memory_utilization,
            enable_sleep_mode=enable_sleep_mode, dtype="bfloat16", enforce_eager=True,
        )
        self._vllm = vllm

    def update_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        weights = [(f"model.{k}" if not k.startswith("lm_head") else k, v) for k, v in state_dict.items()]
        # same access path as TRL's colocated mode (in-process executor, single GPU)
        self.llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights(weights)
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        self.llm.sleep(level=1)

    def wake_up(self) -> None:
        self.llm.wake_up()

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        sp = self._vllm.SamplingParams(
            max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
            stop_token_ids=params.stop_token_ids, logprobs=0, seed=params.seed, detokenize=False,
        )
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
        result = []
        for out in outs:
            c = out.outputs[0]
            lp = [d[t].logprob for d, t in zip(c.logprobs, c.token_ids, strict=True)]
            result.append(Completion(list(c.token_ids), lp, "stop" if c.finish_reason == "stop" else "length"))
        return result
