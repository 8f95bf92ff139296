"""How far RL's responses move from the SFT data (paper §5.2, Figs. 22-31).

The paper reads completions sampled during GRPO from the first SFT checkpoint: short early, longer with
more probability later, then elaborate correct ones that mimic the long chains of thought of the SFT
data (Figs. 22-24), and, late in RL, responses unlike the SFT data (Fig. 25; on MATH sometimes, Figs.
26-27, and sometimes not, Figs. 28-31): in-distribution gains first ("mining" the SFT data), then
out-of-distribution ones. This module measures that for one GRPO run, at each checkpoint's sampled test
responses (`rlntp llm eval` keeps them):

    loglik_sft      mean per-token log-likelihood of the responses under the SFT checkpoint GRPO started
                    from: how likely the SFT model was to write them
    loglik_self     the same under the checkpoint that wrote them
    far_frac        the fraction of responses less likely under the SFT checkpoint than 95% of the SFT data's
                    long targets are (below their 5th percentile): responses unlike the SFT data
    lengths         response lengths in tokens, against the SFT data's target lengths

The reference is the SFT half of the mixture: its long targets' per-token log-likelihood under the same SFT
checkpoint, and the token lengths of all its targets.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlntp.files import atomic_write_text
from rlntp.llm.reward import REWARD_POINTS

FAR_QUANTILE = 0.05
"""A response is far from the SFT data when it is less likely than this quantile of the long SFT targets."""


def mean_logliks(model_dir: str, prompts: list, responses: list[str], device: str = "cpu",
                 batch: int = 8) -> list[float]:
    """Mean per-token log-likelihood of each response given its prompt under the model at `model_dir` (teacher
    forcing; the prompt tokenized as the stages do, `llm.evaluate.prompt_ids`, the response as plain text).
    An empty response scores nan."""
    import torch
    from transformers import AutoTokenizer

    from rlntp.llm.common import load_causal_lm
    from rlntp.llm.evaluate import prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_causal_lm(model_dir, dtype=torch.float32 if device == "cpu" else "auto").to(device).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    limit = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    scores = []
    for start in range(0, len(responses), batch):
        rows = []
        for prompt, response in zip(prompts[start:start + batch], responses[start:start + batch]):
            head = prompt_ids(tokenizer, prompt)
            tail = tokenizer(response, add_special_tokens=False)["input_ids"][:max(limit - len(head), 0)]
            rows.append((head, tail))
        width = max(len(h) + len(t) for h, t in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        scored = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (head, tail) in enumerate(rows):
            ids[i, :len(head) + len(tail)] = torch.tensor(head + tail)
            mask[i, :len(head) + len(tail)] = 1
            scored[i, len(head):len(head) + len(tail)] = True
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device))[..., 0].cpu()
        target = scored[:, 1:]
        counts = target.sum(1)
        sums = (logp * target).sum(1)
        scores += [float(s / c) if c > 0 else float("nan") for s, c in zip(sums, counts)]
    return scores


def _responses(eval_path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The responses an evaluation kept (`NAME.responses.jsonl` beside `NAME.json`), the first `limit` of them."""
    lines = eval_path.with_suffix(".responses.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:limit] if line.strip()]


def _quantiles(values: list[float]) -> dict[str, float]:
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if values.size == 0:
        return {}
    return {q: float(np.quantile(values, p)) for q, p in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))} | {
        "mean": float(values.mean())}


def analyse_run(sft_checkpoint: Path, checkpoints: dict[int, Path], evals: dict[int, Path], sft_rows: list[dict],
                test_prompts: list, out: Path, responses: int = 256, device: str = "cpu") -> dict[str, Any]:
    """The measures of the module docstring for one GRPO run, written to `out` (JSON) and returned; read back on a
    rerun. `checkpoints` and `evals` map a step (0: the SFT checkpoint) to its model directory and its evaluation
    file; `sft_rows` is the SFT half of the mixture (prompt, completion, long); `test_prompts` the test split's
    prompts in order (a response's `question` indexes them)."""
    from transformers import AutoTokenizer

    if out.exists():
        return json.loads(out.read_text())
    long_rows = [r for r in sft_rows if r["long"]][:responses]
    target_text = [_completion_text(r["completion"]) for r in sft_rows]
    tokenizer = AutoTokenizer.from_pretrained(str(sft_checkpoint))
    data_lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in target_text]
    reference = mean_logliks(str(sft_checkpoint), [r["prompt"] for r in long_rows],
                             [_completion_text(r["completion"]) for r in long_rows], device)
    finite = [v for v in reference if np.isfinite(v)]
    threshold = float(np.quantile(finite, FAR_QUANTILE)) if finite else float("nan")
    steps = []
    for step, eval_path in sorted(evals.items()):
        kept = _responses(eval_path, responses)
        prompts = [test_prompts[r["question"]] for r in kept]
        texts = [r["response"] for r in kept]
        under_sft = mean_logliks(str(sft_checkpoint), prompts, texts, device)
        under_self = under_sft if step == 0 else mean_logliks(str(checkpoints[step]), prompts, texts, device)
        scored = [v for v in under_sft if np.isfinite(v)]
        steps.append({"step": step, "responses": len(kept),
                      "loglik_sft": float(np.mean(scored)) if scored else float("nan"),
                      "loglik_self": float(np.nanmean(under_self)) if scored else float("nan"),
                      "far_frac": float(np.mean([v < threshold for v in scored])) if scored else float("nan"),
                      "lengths": _quantiles([r["length"] for r in kept]),
                      "length_values": [r["length"] for r in kept]})
    result = {"sft_checkpoint": str(sft_checkpoint), "far_quantile": FAR_QUANTILE,
              "sft_data": {"long_targets": len(long_rows), "loglik_long": float(np.mean(finite)) if finite else None,
                           "far_threshold": threshold, "lengths": _quantiles(data_lengths),
                           "length_values": data_lengths},
              "steps": steps}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    return result


def _completion_text(completion) -> str:
    """A completion's text: the string, or (chat) the assistant messages' contents."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion if m.get("role", "assistant") == "assistant")


def examples(evals: dict[int, Path], limit: int = 1200) -> list[dict[str, Any]]:
    """One test question's responses before (the SFT checkpoint, step 0), during (the middle checkpoint) and after
    GRPO (the last), as Figs. 22-24: the question whose last response is right if there is one, else the first;
    each response cut to `limit` characters."""
    steps = sorted(evals)
    chosen = {step: _responses(evals[step]) for step in sorted({steps[0], steps[len(steps) // 2], steps[-1]})}
    last = chosen[steps[-1]]
    question = next((r["question"] for r in last if r["correct_in_answer"] > 0), last[0]["question"] if last else 0)
    found = []
    for step, responses in chosen.items():
        response = next((r for r in responses if r["question"] == question), None)
        if response is not None:
            text = response["response"]
            found.append({"step": step, "question": question, "answer": response["answer"],
                          "response": text if len(text) <= limit else text[:limit] + " […]",
                          "length": response["length"], "correct": response["correct_in_answer"] > 0,
                          "reward": sum(response[k] for k in REWARD_POINTS)})
    return found
