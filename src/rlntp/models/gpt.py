"""GPT-2 in plain PyTorch: the same architecture and weights as Hugging Face's GPT2LMHeadModel, faster.

Why it exists: on a 2-core CPU a pre-training step of Hugging Face's GPT-2 spends much of its time
outside the matrix multiplications (Conv1D reshapes, attention-mask plumbing, the generic
generation cache). This module keeps the math identical (tanh-GELU, pre-LayerNorm blocks, tied
embeddings, 1/sqrt(head_dim) attention scaling) with fused `scaled_dot_product_attention` and a
preallocated KV cache; `benchmarks/bench_pretrain.py` measures the difference and
`tests/test_models.py` proves the logits match Hugging Face's on the same weights. Parameter names
mirror Hugging Face's, so checkpoints convert both ways (`from_hf` / `to_hf`) and are saved with
`save_pretrained`.
"""


import torch
import torch.nn.functional as F
from torch import nn
from transformers import Cache, GPT2Config, GPT2LMHeadModel

# Hugging Face's GPT-2 stores these as Conv1D weights of shape (in, out); nn.Linear uses (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


class KVCache:
    """Preallocated keys and values of every layer, filled left to right as tokens are decoded.

    It speaks the part of Hugging Face's `Cache` API that decoding uses (`update`, `get_seq_length`,
    `batch_select_indices`), so the model also runs on a `transformers.DynamicCache`: that one
    grows by concatenation and is differentiable, which training over a shared prompt needs
    (`rlntp.training.losses.token_logprobs`). This one writes in place and is for decoding only.
    """

    def __init__(self, layers: int, batch: int, heads: int, max_len: int, head_dim: int, like: torch.Tensor):
        shape = (batch, heads, max_len, head_dim)
        self.k = [torch.empty(shape, dtype=like.dtype, device=like.device) for _ in range(layers)]
        self.v = [torch.empty(shape, dtype=like.dtype, device=like.device) for _ in range(layers)]
        self.lengths = [0] * layers
        """positions already cached, per layer"""

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.lengths[layer_idx]

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, heads, T, head_dim) to layer `layer_idx`; return all its keys and values so far."""
        start = self.lengths[layer_idx]
        end = self.lengths[layer_idx] = start + k.shape[2]
        keys, values = self.k[layer_idx], self.v[layer_idx]
        keys.narrow(2, start, end - start).copy_(k)
        values.narrow(2, start, end - start).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the sequences `indices` (in that order; one may appear more than once)."""
        # Copy only the filled positions: the buffers are mostly empty while decoding short responses.
        for buffers in (self.k, self.v):
            for layer, (old, end) in enumerate(zip(buffers, self.lengths)):
                buffers[layer] = old.new_empty((len(indices), *old.shape[1:]))
                buffers[layer][:, :, :end] = old[:, :, :end].index_select(0, indices)


class SelfAttention(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.heads = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor, layer: int, cache: KVCache | Cache | None, query_from: int = 0) -> torch.Tensor:
        """Attention outputs of positions query_from.. (keys and values of every position, appended to `cache`)."""
        B, T, C = x.shape
        nh, hs = self.heads, C // self.heads
        if query_from:  # queries only where outputs are needed: skip a third of c_attn for the rest
            q = F.linear(x[:, query_from:], self.c_attn.weight[:C], self.c_attn.bias[:C])
            q = q.view(B, T - query_from, nh, hs).transpose(1, 2)  # (B, nh, Tq, hs)
            kv = F.linear(x, self.c_attn.weight[C:], self.c_attn.bias[C:])
            k, v = kv.view(B, T, 2, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, T, hs) each
        else:  # one view for all three: decoding runs this per token, and each op costs microseconds
            q, k, v = self.c_attn(x).view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)
        Tq = q.shape[2]
        start = 0
        if cache is not None:
            start = cache.get_seq_length(layer)
            k, v = cache.update(k, v, layer)
        first = start + query_from  # the position of the first query; the queries are the last Tq positions
        if Tq == 1:  # the last position attends to everything: no mask
            y = F.scaled_dot_product_attention(q, k, v)
        elif first == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # causal among the queries, all of the positions before them
            mask = torch.ones(Tq, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=first)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).reshape(B, Tq, C))


class MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's "gelu_new"


class Block(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, layer: int, cache: KVCache | Cache | None, query_from: int = 0) -> torch.Tensor:
        x = x[:, query_from:] + self.attn(self.ln_1(x), layer, cache, query_from)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2 language model: `forward(input_ids, cache=None, logits_from=0) -> logits (B, T - logits_from, vocab)`.

    `cache`: a `KVCache` (decoding) or any Hugging Face `Cache` (e.g. a differentiable `DynamicCache`).
    """

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.n_positions, config.n_embd),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2

    def forward(self, input_ids: torch.Tensor, cache: KVCache | Cache | None = None, logits_from: int = 0) -> torch.Tensor:
        """Logits of positions logits_from.. of `input_ids`, which continue what `cache` holds (if given).

        Training needs logits only where targets are (the outputs, after the d input bits). The
        last block then runs its queries, attention output and MLP on those positions alone, its
        keys and values on all: the same logits for about 30% fewer FLOPs per step.
        """
        start = 0 if cache is None else cache.get_seq_length()
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        x = self.transformer.wte(input_ids) + self.transformer.wpe(positions)
        last = len(self.transformer.h) - 1
        for layer, block in enumerate(self.transformer.h):
            x = block(x, layer, cache, logits_from if layer == last else 0)
        return self.lm_head(self.transformer.ln_f(x))

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache for `batch` sequences of at most `max_len` tokens."""
        c = self.config
        return KVCache(c.n_layer, batch, c.n_head, max_len, c.n_embd // c.n_head, like=self.lm_head.weight)

    @classmethod
    def from_hf(cls, hf_model: GPT2LMHeadModel) -> "GPT":
        """The same network, with a copy of `hf_model`'s weights, on the same device."""
        model = cls(hf_model.config).to(hf_model.device)
        state = {k: v.t() if k.endswith(_CONV1D_SUFFIXES) else v for k, v in hf_model.state_dict().items()}
        model.load_state_dict(state)
        return model

    def to_hf(self) -> GPT2LMHeadModel:
        """A Hugging Face GPT2LMHeadModel with a copy of these weights, on the same device."""
        hf_model = GPT2LMHeadModel(self.config).to(self.lm_head.weight.device)
        state = {k: v.t() if k.endswith(_CONV1D_SUFFIXES) else v for k, v in self.state_dict().items()}
        hf_model.load_state_dict(state)
        return hf_model.eval()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


