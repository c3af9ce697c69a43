"""Tree-structured trajectory SFT vs one causal row per trajectory (same loss, same gradients).

Trajectories of one task share the system prompt, the problem statement and often their first turns
(here: a group of rollouts that agree on the first turn and differ afterwards, like a GRPO group).
Prints JSON: tokens computed and time of a forward+backward, tree-packed vs unpacked (the baseline),
as ratios measured in the same process.

    .venv/bin/python benchmarks/agent_tree_sft.py [--group 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.rl.agent.chat import ChatTokenizer
from codekiln.workloads.rl.agent.protocol import ToolCall, render_observation, system_prompt
from codekiln.workloads.rl.agent.sft import encode_with_turns
from codekiln.workloads.rl.agent.tree import tree_token_loss, unpacked_token_loss
from codekiln.workloads.rl.tokenizer import CharTokenizer


def _group(n: int, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    base = [{"role": "system", "content": system_prompt("hermes")},
            {"role": "user", "content": "`median` in statistics.py gives wrong results: 1 test(s) fail "
                                        "(tests/test_statistics.py::test_median)."},
            {"role": "assistant", "content": "Read it.\n" + ToolCall("read_file", {"path": "statistics.py",
                                                                                  "start_line": 560,
                                                                                  "end_line": 580}).render()},
            {"role": "tool", "content": render_observation("\n".join(f"    line {i}: x = data[i] - {i}"
                                                                     for i in range(20)))}]
    chats = []
    for _ in range(n):
        fix = "".join(rng.choice("abcdefgh") for _ in range(12))
        chats.append(base + [
            {"role": "assistant", "content": "Fix.\n" + ToolCall("str_replace", {"path": "statistics.py",
                                                                               "old_str": fix, "new_str": fix[::-1]}
                                                                 ).render()},
            {"role": "tool", "content": render_observation("edited statistics.py")},
            {"role": "assistant", "content": "Submit.\n" + ToolCall("submit", {}).render()}])
    return chats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = CharTokenizer()
    ct = ChatTokenizer(tok)
    samples = [encode_with_turns(c, ct)[:2] for c in _group(args.group, 0)]
    seqs, masks = [s[0] for s in samples], [s[1] for s in samples]
    torch.manual_seed(0)
    model = Transformer(ModelConfig(preset="tiny", vocab_size=tok.vocab_size, max_seq_len=4096))
    from codekiln.workloads.rl.trie import build_trie

    out = {"benchmark": "agent_tree_sft", "machine": "cpu-2core (shared with other jobs)", "group": args.group,
           "tokens_unpacked": sum(len(s) for s in seqs), "tokens_tree": build_trie(seqs).num_tokens}
    times = {}
    for name, fn in (("unpacked", unpacked_token_loss), ("tree", tree_token_loss)):
        best = float("inf")
        for _ in range(args.repeats):
            model.zero_grad()
            t0 = time.perf_counter()
            loss, n = fn(model, seqs, masks)
            (loss / n).backward()
            best = min(best, time.perf_counter() - t0)
        times[name] = best
        out[f"loss_{name}"] = float(loss.detach() / n)
    out["token_ratio_tree_over_unpacked"] = round(out["tokens_tree"] / out["tokens_unpacked"], 4)
    out["time_ratio_tree_over_unpacked"] = round(times["tree"] / times["unpacked"], 4)
    out["seconds_best_of"] = {k: round(v, 4) for k, v in times.items()}
    out["note"] = "ratios against the unpacked baseline measured in this process; absolute seconds depend on load"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
