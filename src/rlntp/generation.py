"""Batched autoregressive generation with a KV cache: greedy or temperature sampling."""

import torch
from torch import nn


def generate(model: nn.Module, prompts: torch.Tensor, max_new_tokens: int, eos_id: int,
             temperature: float = 0.0, generator: torch.Generator | None = None, repeats: int = 1) -> torch.Tensor:
    """Continue every prompt `repeats` times (adjacent rows) by at most `max_new_tokens` tokens.

    Prompts all have the same length (no padding is needed). `temperature == 0` is greedy decoding,
    otherwise tokens are drawn from softmax(logits / temperature) with `generator`. Returns
    (B * repeats, max_new_tokens) new tokens, EOS after each row's first EOS. The caller chooses
    train or eval mode (rollouts use eval mode).

    The model runs once per distinct sequence, not per row: the cache holds one entry per distinct
    prefix (prompt and tokens so far), and rows that continue the same prefix share its logits until
    their draws differ. A group of rollouts starts as one entry (its prompt runs once) and splits
    where its rows' tokens part; rows that have emitted EOS leave (their entries are dropped when
    the cache is next rebuilt or a quarter of it is unused). In RL from a trained checkpoint a
    group's rows mostly agree (every correct chain of thought for one input is the same sequence),
    so this runs a fraction of the rows. The same logits, so the same tokens: a token is drawn by the
    exponential race, argmax(p / q) with q ~ Exp(1) for every row and vocabulary entry, the draw
    `torch.multinomial(p, 1)` makes on a CPU. q is drawn for all rows every step, so the generator
    advances as if every row were decoded to the end: the same seed gives the same rollouts as
    decoding every row on its own (tests/test_generation.py checks this against multinomial).
    """
    with torch.inference_mode():  # no autograd bookkeeping at all: a decoding step is mostly per-op overhead
        B = prompts.shape[0] * repeats
        out = torch.full((B, max_new_tokens), eos_id, dtype=torch.long, device=prompts.device)
        cache = model.new_cache(prompts.shape[0], prompts.shape[1] + max_new_tokens)
        logits = model(prompts, cache=cache)[:, -1]  # one row per distinct prefix, in cache order
        rows = torch.arange(B, device=prompts.device)  # the batch rows still decoding
        prefix = rows // repeats  # the cache row of each of them
        for t in range(max_new_tokens):
            row_logits = logits.index_select(0, prefix)
            if temperature == 0:
                token = row_logits.argmax(dim=-1)
            else:
                scaled = row_logits.float() if temperature == 1 else row_logits.float() / temperature
                probs = torch.softmax(scaled, dim=-1)
                race = torch.empty((B, probs.shape[1]), device=probs.device).exponential_(generator=generator)
                token = (probs / (race if len(rows) == B else race[rows])).argmax(dim=-1)
            out[rows, t] = token
            going = torch.nonzero(token != eos_id)[:, 0]
            if t == max_new_tokens - 1 or len(going) == 0:
                break
            rows, prefix, token = rows[going], prefix[going], token[going]
            vocab, slots = logits.shape[1], logits.shape[0]
            pairs, inverse = torch.unique(prefix * vocab + token, return_inverse=True)  # the new prefixes, in order
            parent, token = pairs // vocab, pairs % vocab
            if bool((parent[1:] != parent[:-1]).all()) and 4 * len(parent) > 3 * slots:
                # no prefix split and few ended: each continues in its cache row, ended ones run EOS unused
                # (copying the cache every time a row ends would cost more than running it)
                prefix = parent[inverse]
                token = torch.full((slots,), eos_id, device=token.device).index_copy(0, parent, token)
            else:
                cache.batch_select_indices(parent)
                prefix = inverse
            logits = model(token[:, None], cache=cache)[:, -1]
    return out.clone()  # a normal tensor: training reads rollouts, and autograd refuses inference tensors
