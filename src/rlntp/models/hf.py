"""Hugging Face models: configs sized from the task, and an adapter to the interface the stages use."""

import torch
from torch import nn
from transformers import DynamicCache, GPT2Config, MistralConfig, PretrainedConfig, PreTrainedModel


def hf_config(arch: str, layers: int, width: int, heads: int, vocab_size: int, context_len: int,
              eos_id: int) -> PretrainedConfig:
    """A Hugging Face config for a from-scratch model: no dropout, context and vocabulary of the task."""
    special = dict(bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_positions=context_len, n_embd=width, n_layer=layers,
                          n_head=heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **special)
    return MistralConfig(vocab_size=vocab_size, max_position_embeddings=context_len, hidden_size=width,
                         intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, head_dim=width // heads, sliding_window=None,
                         attention_dropout=0.0, **special)


class HFCausalLM(nn.Module):
    """Any Hugging Face causal LM behind `forward(input_ids, cache=None, logits_from=0) -> logits` and `new_cache`.

    The reference implementation (and the only one for Mistral): generation goes through the
    model's own KV cache (`DynamicCache`), so it is exactly what `generate` would compute.
    """

    def __init__(self, hf_model: PreTrainedModel):
        super().__init__()
        self.hf = hf_model
        self.config = hf_model.config

    def forward(self, input_ids: torch.Tensor, cache: DynamicCache | None = None, logits_from: int = 0) -> torch.Tensor:
        out = self.hf(input_ids=input_ids, past_key_values=cache, use_cache=cache is not None)
        return out.logits[:, logits_from:]

    def new_cache(self, batch: int, max_len: int) -> DynamicCache:
        return DynamicCache(config=self.config)

    def to_hf(self) -> PreTrainedModel:
        return self.hf
