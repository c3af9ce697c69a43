"""Trajectory data (KAT-Dev mid-training): run a policy through the tool loop on tasks and keep
the verified trajectories as SFT / CPT data.

Policies: ``reference`` (each task's reference calls), a served model (an OpenAI-compatible base URL
ending in ``/v1``: ``codekiln serve MODEL_DIR``, ``vllm serve``), a Hugging Face export folder (sampled
with the torch engine: ``config.json``, ``model.safetensors``, ``tokenizer.json``), or a codekiln ``.pt``
RL checkpoint with the char tokenizer. Each kept line is::

    {"task_id", "messages": [... {"role": "assistant", "content", "failed"?} ...], "resolved", "reward",
     "turns", "finish", "failed_calls", "text"}

``messages`` is what the SFT workload (``train/sft.py``) and :func:`trajectory_sft` read — observations
are tool messages (never trained) and ``failed: true`` marks assistant turns whose tool call failed
(error-masked SFT); ``text`` is the rendered chat for continued pretraining.
"""

from __future__ import annotations

import json
from pathlib import Path

from codekiln.workloads.rl.agent.config import AgentConfig
from codekiln.workloads.rl.agent.reference import ScriptedEngine, TextEngine, reference_turns
from codekiln.workloads.rl.agent.rollout import AgentRunner, Trajectory
from codekiln.workloads.rl.agent.sessions import SandboxSessions
from codekiln.workloads.rl.agent.tasks import SweTask
from codekiln.workloads.special_tokens import IM_END, IM_START


def render_text(messages: list[dict]) -> str:
    """The chat as ChatML text (CPT data)."""
    return "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)


class ChatAPIEngine(TextEngine):
    """A served model as the policy: each live rollout's messages go to an OpenAI-compatible
    ``/v1/chat/completions`` endpoint (``codekiln serve``, ``vllm serve``) through the shared LLM client;
    the reply text is re-encoded locally for the loop's token budgets (log-probs are not needed for data)."""

    def __init__(self, base_url: str, tokenizer, model: str = "default", max_concurrency: int = 8) -> None:
        from codekiln.workloads.llm.client import LLMClient
        from codekiln.workloads.llm.config import LLMConfig
        from codekiln.workloads.rl.agent.chat import ChatTokenizer

        self.ct = ChatTokenizer(tokenizer)
        self.client = LLMClient(LLMConfig(base_url=base_url, model=model, cache=False,
                                          max_concurrency=max_concurrency))
        self._rows: list = []

    def generate(self, prompts, params) -> list:
        from codekiln.workloads.rl.engines.base import Completion

        chats = [[{"role": m["role"], "content": m["content"]} for m in row.messages] for row in self._rows]
        out = []
        for res in self.client.chat_many(chats, temperature=params.temperature, top_p=params.top_p,
                                         max_tokens=params.max_tokens, seed=params.seed):
            if not res.ok:
                raise ValueError(f"--policy: the served model failed: {res.error}")
            stop = res.finish_reason == "stop"
            ids = self.ct.encode(res.text) + ([self.ct.im_end] if stop else [])
            out.append(Completion(ids, [0.0] * len(ids), "stop" if stop else "length"))
        return out


def _policy(spec: str, seed: int):
    """(engine, tokenizer) for a policy spec."""
    if spec.startswith(("http://", "https://")):
        from codekiln.workloads.rl.tokenizer import CharTokenizer

        tok = CharTokenizer()  # local bookkeeping of the token budget only
        return ChatAPIEngine(spec, tok), tok
    from codekiln.workloads.rl.engines import build_engine
    from codekiln.workloads.rl.tokenizer import build_tokenizer

    path = Path(spec)
    if path.is_dir():
        import torch

        from codekiln.workloads.model.config import ModelConfig
        from codekiln.workloads.model.hf import load_hf_to_continue

        torch.manual_seed(seed)
        model = load_hf_to_continue(str(path), ModelConfig(), "--policy").eval()
        return build_engine("torch", model), build_tokenizer("auto", str(path))
    if path.is_file():
        import torch

        from codekiln.workloads.model.transformer import Transformer
        from codekiln.workloads.rl.config import RLConfig

        state = torch.load(path, map_location="cpu", weights_only=False)
        cfg = RLConfig.model_validate(state["config"])
        tok = build_tokenizer(cfg.tokenizer, None)
        model = Transformer(cfg.model.model_copy(update={"vocab_size": tok.vocab_size}))
        model.load_state_dict(state["policy"])
        return build_engine("torch", model.eval()), tok
    raise ValueError(f"--policy {spec}: not 'reference', an http(s) base URL, a Hugging Face export folder, "
                     "or an RL checkpoint (.pt)")


def collect(tasks: list[SweTask], sandbox_url: str, out: str | Path, *, policy: str = "reference",
            samples_per_task: int = 1, keep: str = "resolved", cfg: AgentConfig | None = None,
            max_turn_tokens: int = 512, temperature: float = 0.8, seed: int = 0) -> dict:
    """Run the policy on every task, write kept trajectories as JSONL; returns counts.

    Args:
        tasks: the tasks.
        sandbox_url: the sandbox server (sessions).
        out: output JSONL path.
        policy: ``reference``, an OpenAI-compatible base URL, an HF export folder or a ``.pt`` RL checkpoint.
        samples_per_task: trajectories per task (sampled policies).
        keep: ``resolved`` (verified trajectories only) or ``all``.
        cfg: agent settings.
        max_turn_tokens: per-turn sampling budget.
        temperature: sampling temperature.
        seed: sampling seed.
    """
    if keep not in ("resolved", "all"):
        raise ValueError(f"--keep must be 'resolved' or 'all', got {keep!r}")
    cfg = cfg or AgentConfig()
    sessions = SandboxSessions(sandbox_url, ttl_s=cfg.session_ttl_s)
    if policy == "reference":
        from codekiln.workloads.rl.tokenizer import CharTokenizer

        tok = CharTokenizer()
        engine = ScriptedEngine(tok, {t.instance_id: reference_turns(t) for t in tasks})
        samples_per_task = 1
    else:
        engine, tok = _policy(policy, seed)
    runner = AgentRunner(engine, tok, sessions, cfg)
    trajs: list[Trajectory] = runner.run(tasks, samples_per_task, max_turn_tokens=max_turn_tokens,
                                         temperature=temperature, seed=seed)
    kept = [t for t in trajs if keep == "all" or t.resolved]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        for t in kept:
            fh.write(json.dumps({**t.to_record(), "text": render_text(t.messages)}, ensure_ascii=False) + "\n")
    return {"trajectories": len(trajs), "kept": len(kept), "resolved": sum(t.resolved for t in trajs),
            "failed_calls": sum(t.failed_calls for t in trajs), "out": str(out)}
