"""Batched autoregressive generation with a KV cache: greedy or temperature sampling."""

import torch
from torch import nn


@torch.no_grad()
def generate(model: nn.Module, prompts: torch.Tensor, max_new_tokens: int, eos_id: int,
             temperature: float = 0.0, generator: torch.Generator | None = None, repeats: int = 1) -> torch.Tensor:
    """Continue every prompt `repeats` times (adjacent rows) by at most `max_new_tokens` tokens.

    Prompts all have the same length (no padding is needed), so the cache is filled by one forward
    pass over the prompts (each once, however many times it is continued: RL's group of rollouts
    shares it), then one token per step; decoding stops as soon as every row has emitted EOS.
    `temperature == 0` is greedy decoding, otherwise tokens are drawn from softmax(logits /
    temperature) with `generator`. Returns (B * repeats, max_new_tokens) new tokens, EOS after each
    row's first EOS. The caller chooses train or eval mode (rollouts use eval mode).

    Rows that have emitted EOS leave the batch (and the cache) once a quarter of it has finished:
    in RL from a short-answering checkpoint most rows end after two tokens while a few run to the
    long length. A token is drawn by the exponential race, argmax(p / q) with q ~ Exp(1) for every
    row and vocabulary entry: the draw `torch.multinomial(p, 1)` makes on a CPU, so the tokens are
    the same as multinomial's. q is drawn for all B rows every step, so the generator advances
    exactly as if every row were decoded to the end: the same seed gives the same rollouts with or
    without the shrinking (tests/test_generation.py checks both against multinomial on the full batch).
    """
    T = prompts.shape[1]
    B = prompts.shape[0] * repeats
    out = torch.full((B, max_new_tokens), eos_id, dtype=torch.long, device=prompts.device)
    rows = torch.arange(B, device=prompts.device)  # the batch rows still in the cache, in cache order
    done = torch.zeros(B, dtype=torch.bool, device=prompts.device)  # indexed like `rows`
    cache = model.new_cache(prompts.shape[0], T + max_new_tokens)
    logits = model(prompts, cache=cache)[:, -1]
    if repeats > 1:
        cache.batch_repeat_interleave(repeats)
        logits = logits.repeat_interleave(repeats, dim=0)
    for t in range(max_new_tokens):
        if temperature == 0:
            token = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            race = torch.empty((B, probs.shape[1]), device=probs.device).exponential_(generator=generator)
            token = (probs / (race if len(rows) == B else race[rows])).argmax(dim=-1)
        token = token.masked_fill(done, eos_id)
        out[rows, t] = token
        done |= token == eos_id
        finished = int(done.sum())
        if t == max_new_tokens - 1 or finished == len(rows):
            break
        if 4 * finished >= len(rows):  # drop the finished rows from the batch and the cache
            keep = torch.nonzero(~done)[:, 0]
            cache.batch_select_indices(keep)
            rows, token, done = rows[keep], token[keep], done[keep]
        logits = model(token[:, None], cache=cache)[:, -1]
    return out
