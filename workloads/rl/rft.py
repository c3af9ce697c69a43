"""RFT with reference answers, as far as KAT-Dev's public description allows.

KAT-Dev describes RFT as RL whose reward is relative to a reference trajectory, with
rollouts stopped early once they stray far from it. Exact rules are not published; our
assumptions, documented here and in the README:

* every task has a reference answer (``Task.reference``), scored by the same unit tests;
* the reference joins its prompt's group as one extra rollout, so group-relative
  advantages measure each sample against the reference (a group where the policy fails
  pushes towards the reference; one where it matches gets no signal);
* a rollout is aborted once the normalised edit distance between its text and the
  reference's prefix of the same length exceeds ``rftMaxDivergence`` (after 4
  characters); an aborted rollout is incomplete code, so it fails its tests (reward 0).
"""

from __future__ import annotations

import torch

from codekiln.workloads.rl.batch import RolloutBatch
from codekiln.workloads.rl.logprobs import response_logprobs

MIN_CHARS = 4


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def divergence(text: str, reference: str) -> float:
    """Edit distance to the reference's prefix of the same length, divided by the length."""
    if not text:
        return 0.0
    return edit_distance(text, reference[: len(text)]) / len(text)


def divergence_abort(decode, tasks, rollouts_per_prompt: int, max_divergence: float):
    """An ``abort_fn`` for the engine: stop rows whose text strays from their task's reference.

    Args:
        decode: token ids -> text.
        tasks: the batch's tasks, one group of ``rollouts_per_prompt`` rows each.
        rollouts_per_prompt: group size.
        max_divergence: ``rftMaxDivergence``.
    """
    refs = [t.reference or "" for t in tasks]

    def abort(row: int, token_ids: list[int]) -> bool:
        text = decode(token_ids)
        return len(text) >= MIN_CHARS and divergence(text, refs[row // rollouts_per_prompt]) > max_divergence

    return abort


def add_reference_rollouts(
    model, tokenizer, batch: RolloutBatch, tasks, *, temperature: float, packed: bool,
) -> RolloutBatch:
    """Append each task's reference answer to its group (old log-probs from ``model``, the current policy)."""
    rows = []
    for gi, task in enumerate(tasks):
        if task.reference is None:
            raise ValueError(f"algorithm 'rft' needs a reference answer for task {task.id!r}")
        rows.append((gi, task, tokenizer.encode(task.prompt), tokenizer.encode(task.reference) + [tokenizer.eot_id]))
    with torch.no_grad():
        logp, _ = response_logprobs(model, [r[2] for r in rows], [r[3] for r in rows], temperature, packed=packed)
    ref = RolloutBatch(
        prompts=[r[2] for r in rows], responses=[r[3] for r in rows], old_logp=logp.float().cpu(),
        group_ids=torch.tensor([r[0] for r in rows]), task_ids=[r[1].id for r in rows],
        truncated=torch.zeros(len(rows), dtype=torch.bool),
    )
    merged = RolloutBatch.concat([batch, ref])
    merged.group_ids[len(batch):] = ref.group_ids  # concat renumbers groups: put each reference back into its own
    return merged
