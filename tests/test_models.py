"""Models against Hugging Face's on the same weights; checkpoints; the output-only loss."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, GPT2LMHeadModel

from rlntp.errors import CheckpointError, ConfigError
from rlntp.models import GPT, HFCausalLM, ModelConfig, build_model, load_model, save_model
from rlntp.tasks.parity import ParityTask
from rlntp.training.losses import next_token_loss

pytestmark = pytest.mark.unit

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _perturbed(model):
    """Random non-default weights everywhere (biases and LayerNorms included), so nothing matches by luck."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g).to(p.device))
    return model


@pytest.mark.parametrize("device", DEVICES)
def test_fast_gpt2_computes_the_same_logits_as_hugging_face(device):
    cfg = ModelConfig(layers=2, width=64, heads=4)
    fast = _perturbed(build_model(cfg, vocab_size=3, context_len=21, eos_id=2, seed=0, device=device)).eval()
    assert isinstance(fast, GPT)
    hf = fast.to_hf()
    assert isinstance(hf, GPT2LMHeadModel)
    tokens = torch.randint(0, 3, (5, 21), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        torch.testing.assert_close(fast(tokens), hf(tokens).logits, rtol=1e-5, atol=1e-5)
        # and back: from_hf(to_hf(m)) is m
        torch.testing.assert_close(GPT.from_hf(hf)(tokens), fast(tokens), rtol=0, atol=0)


def test_same_seed_same_initialization_in_both_implementations():
    fast = build_model(ModelConfig(impl="fast"), 3, 41, 2, seed=5)
    hf = build_model(ModelConfig(impl="hf"), 3, 41, 2, seed=5)
    tokens = torch.randint(0, 3, (2, 41), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fast(tokens), hf(tokens), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "mistral"])
def test_kv_cache_decoding_matches_full_forward(arch):
    model = _perturbed(build_model(ModelConfig(arch=arch, layers=2, width=32, heads=4), 3, 16, 2, seed=0)).eval()
    tokens = torch.randint(0, 3, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(tokens)
        cache = model.new_cache(3, 16)
        pieces = [model(tokens[:, :6], cache=cache), model(tokens[:, 6:9], cache=cache)]  # prompt, then a block
        pieces += [model(tokens[:, t : t + 1], cache=cache) for t in range(9, 16)]  # one token at a time
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "mistral"])
def test_checkpoints_are_hugging_face_checkpoints(tmp_path, arch):
    cfg = ModelConfig(arch=arch, layers=1, width=32, heads=2)
    model = _perturbed(build_model(cfg, 3, 21, 2, seed=0)).eval()
    save_model(model, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, use_safetensors=True).eval()
    assert hf.config.model_type == arch and hf.config.vocab_size == 3
    tokens = torch.randint(0, 3, (2, 21), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, model(tokens), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(load_model(tmp_path, cfg)(tokens), model(tokens), rtol=0, atol=0)


def test_model_sizes_follow_the_task_and_have_no_dropout():
    model = build_model(ModelConfig(layers=3, width=48, heads=6), vocab_size=3, context_len=41, eos_id=2, seed=0)
    c = model.config
    assert (c.vocab_size, c.n_positions, c.n_layer, c.n_embd, c.n_head) == (3, 41, 3, 48, 6)
    assert c.resid_pdrop == c.embd_pdrop == c.attn_pdrop == 0
    mistral = build_model(ModelConfig(arch="mistral", layers=2, width=32, heads=4), 3, 41, 2, seed=0)
    assert isinstance(mistral, HFCausalLM) and mistral.config.attention_dropout == 0
    assert mistral.config.max_position_embeddings == 41 and mistral.config.num_hidden_layers == 2


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    cfg = ModelConfig(layers=1, width=32, heads=2)
    save_model(build_model(cfg, 3, 21, 2, seed=0), tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 200])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_model(tmp_path, cfg)
    weights.unlink()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_model(tmp_path, cfg)


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=130, heads=4), "width must be a positive multiple of heads"),
    (dict(arch="llama"), "unknown arch 'llama'"),
    (dict(impl="jax"), "unknown impl"),
    (dict(arch="mistral", impl="fast"), "impl 'fast' exists for gpt2 only"),
])
def test_invalid_model_configs_raise_a_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kwargs)


def test_length_bucketed_loss_equals_the_padded_batch_loss():
    task = ParityTask(d=8, p_cot=0.3, p_medium=0.3)
    model = _perturbed(build_model(ModelConfig(layers=2, width=32, heads=2), 3, task.context_len, 2, seed=0))
    batch = task.sample(50, torch.Generator().manual_seed(0))
    loss, n_tokens = next_token_loss(model, batch.tokens, batch.loss_mask)
    logits = model(batch.tokens[:, :-1])
    targets = batch.tokens[:, 1:].masked_fill(~batch.loss_mask[:, 1:], -100)
    dense = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, dense, rtol=1e-6, atol=1e-6)
    assert n_tokens == int((batch.lengths + task.prompt_len).sum())  # each row runs up to its EOS input
    # hand-computed: only outputs and the first EOS are targets
    assert int(batch.loss_mask.sum()) == int((batch.lengths + 1).sum())


@pytest.mark.parametrize("arch", ["gpt2", "mistral"])
def test_logits_from_gives_the_same_logits_for_less_work(arch):
    model = _perturbed(build_model(ModelConfig(arch=arch, layers=2, width=32, heads=4), 3, 21, 2, seed=0)).eval()
    tokens = torch.randint(0, 3, (4, 21), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(tokens)
        for k in (1, 9, 20):
            torch.testing.assert_close(model(tokens, logits_from=k), full[:, k:], rtol=1e-5, atol=1e-6)
