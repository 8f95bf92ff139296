"""Batched autoregressive generation with a KV cache: greedy or temperature sampling."""

import torch
from torch import nn


@torch.no_grad()
def generate(model: nn.Module, prompts: torch.Tensor, max_new_tokens: int, eos_id: int,
             temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue every prompt by at most `max_new_tokens` tokens.

    Prompts all have the same length (no padding is needed), so the cache is filled by one forward
    pass over the prompts, then one token per step; decoding stops as soon as every row has
    emitted EOS. `temperature == 0` is greedy decoding, otherwise tokens are drawn from
    softmax(logits / temperature) with `generator`. Returns (B, max_new_tokens) new tokens, EOS
    after each row's first EOS. The caller chooses train or eval mode (rollouts use eval mode).
    """
    B, T = prompts.shape
    out = torch.full((B, max_new_tokens), eos_id, dtype=torch.long, device=prompts.device)
    done = torch.zeros(B, dtype=torch.bool, device=prompts.device)
    cache = model.new_cache(B, T + max_new_tokens)
    logits = model(prompts, cache=cache)[:, -1]
    for t in range(max_new_tokens):
        if temperature == 0:
            token = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator)[:, 0]
        token = token.masked_fill(done, eos_id)
        out[:, t] = token
        done |= token == eos_id
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        logits = model(token[:, None], cache=cache)[:, -1]
    return out
