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


def generate_static(model: nn.Module, prompts: torch.Tensor, max_new_tokens: int, eos_id: int,
                    temperature: float = 0.0, generator: torch.Generator | None = None, repeats: int = 1,
                    forward=None) -> torch.Tensor:
    """`generate` with shapes that never change and no host synchronisation: for CUDA graphs.

    Every row is decoded for `max_new_tokens` steps, each one forward pass over the whole (B, prompt +
    max_new_tokens) token buffer with no cache (causal attention: the logits at a position are those of its
    prefix), read at the current position, a device tensor. So `forward` (default `model`; e.g.
    `torch.compile(model, mode="reduce-overhead")`) sees one input shape, compiles once and replays as one
    CUDA graph per token. It does about context / 2 times the arithmetic of `generate`, which on a GPU is
    cheaper than `generate`'s host reads for small batches (RL rollouts); `benchmarks/gpu_check.py` measures
    both. Tokens are drawn as in `generate` (the exponential race, the same draws per step), so the outputs
    are the same for the same logits; the generator ends further on (it draws every step, `generate` stops
    when all rows ended).
    """
    forward = model if forward is None else forward
    with torch.inference_mode():
        B, prompt_len = prompts.shape[0] * repeats, prompts.shape[1]
        tokens = torch.full((B, prompt_len + max_new_tokens), eos_id, dtype=torch.long, device=prompts.device)
        tokens[:, :prompt_len] = prompts.repeat_interleave(repeats, dim=0) if repeats > 1 else prompts
        ended = torch.zeros(B, dtype=torch.bool, device=prompts.device)
        position = torch.full((B, 1, 1), prompt_len - 1, device=prompts.device)
        for t in range(max_new_tokens):
            logits = forward(tokens[:, :-1])  # (B, T - 1, vocab); T - 1: the last token is never an input
            logits = logits.gather(1, position.expand(-1, -1, logits.shape[-1]))[:, 0]
            if temperature == 0:
                token = logits.argmax(dim=-1)
            else:
                scaled = logits.float() if temperature == 1 else logits.float() / temperature
                race = torch.empty((B, logits.shape[1]), device=logits.device).exponential_(generator=generator)
                token = (torch.softmax(scaled, dim=-1) / race).argmax(dim=-1)
            token = torch.where(ended, eos_id, token)
            tokens[:, prompt_len + t] = token
            ended |= token == eos_id
            position += 1
    return tokens[:, prompt_len:].clone()


DECODERS = {"shared": generate, "static": generate_static}
"""The decoders a stage may use (`--decode`): shared (`generate`: prefixes shared, ended rows dropped; reads the
device every token) or static (`generate_static`: fixed shapes, no reads; more arithmetic)."""
