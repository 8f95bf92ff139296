"""Batched KV-cache generation against Hugging Face `generate`, and temperature sampling."""

import pytest
import torch

from rlntp.generation import generate
from rlntp.models import HFCausalLM, build_model, ModelConfig
from rlntp.tasks.parity import EOS

pytestmark = pytest.mark.unit


def _hf_greedy(hf_model, prompts, max_new_tokens):
    out = hf_model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=max_new_tokens,
                            do_sample=False, eos_token_id=EOS, pad_token_id=EOS)[:, prompts.shape[1]:]
    return torch.cat([out, out.new_full((out.shape[0], max_new_tokens - out.shape[1]), EOS)], dim=1)


def test_greedy_generation_matches_hugging_face_generate(small_trained):
    task, model = small_trained
    prompts = task.sample_prompts(512, torch.Generator().manual_seed(0))
    ours = generate(model, prompts, task.max_new_tokens, task.eos_id)
    theirs = _hf_greedy(model.to_hf(), prompts, task.max_new_tokens)
    assert torch.equal(ours, theirs)
    # the comparison is not vacuous: the half-trained model gives many different outputs
    assert len(set(map(tuple, ours.tolist()))) >= 8


def test_greedy_generation_of_mistral_matches_hugging_face_generate():
    model = build_model(ModelConfig(arch="mistral", layers=2, width=32, heads=4), 3, 13, EOS, seed=0).eval()
    with torch.no_grad():  # larger weights: a random model whose greedy outputs vary
        for p in model.parameters():
            p.mul_(8.0)
    assert isinstance(model, HFCausalLM)
    prompts = torch.randint(0, 2, (64, 6), generator=torch.Generator().manual_seed(0))
    ours = generate(model, prompts, 7, EOS)
    theirs = _hf_greedy(model.hf, prompts, 7)
    assert torch.equal(ours, theirs)
    assert len(set(ours[:, 0].tolist())) >= 2


def test_generation_stops_at_eos_and_pads_with_eos(small_trained):
    task, model = small_trained
    prompts = task.sample_prompts(256, torch.Generator().manual_seed(1))
    out = generate(model, prompts, task.max_new_tokens, task.eos_id, temperature=1.0,
                   generator=torch.Generator().manual_seed(0))
    assert out.shape == (256, task.max_new_tokens)
    after_eos = torch.cumsum((out == EOS).int(), dim=1) > 0
    assert (out[after_eos] == EOS).all()


@pytest.mark.integration
def test_sampling_draws_from_softmax_over_temperature(small_trained):
    task, model = small_trained
    prompt = task.sample_prompts(1, torch.Generator().manual_seed(2)).repeat(20_000, 1)
    with torch.no_grad():
        logits = model(prompt[:1])[0, -1]
    for temperature in (0.5, 1.0, 2.0):
        out = generate(model, prompt, 1, task.eos_id, temperature, torch.Generator().manual_seed(3))
        freqs = torch.bincount(out[:, 0], minlength=3).float() / 20_000
        expected = torch.softmax(logits / temperature, dim=-1)
        assert freqs.tolist() == pytest.approx(expected.tolist(), abs=0.012)  # > 3 standard deviations


def test_sampling_is_reproducible_from_the_generator(small_trained):
    task, model = small_trained
    prompts = task.sample_prompts(64, torch.Generator().manual_seed(4))
    a = generate(model, prompts, task.max_new_tokens, task.eos_id, 1.0, torch.Generator().manual_seed(9))
    b = generate(model, prompts, task.max_new_tokens, task.eos_id, 1.0, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def _full_batch_reference(model, prompts, max_new_tokens, temperature, generator):
    """Decoding every row to the end, each prompt row by row: what `generate` must equal token for token."""
    out = torch.full((prompts.shape[0], max_new_tokens), EOS, dtype=torch.long)
    done = torch.zeros(prompts.shape[0], dtype=torch.bool)
    seq = prompts
    for t in range(max_new_tokens):
        with torch.no_grad():
            logits = model(seq)[:, -1]
        if temperature == 0:
            token = logits.argmax(dim=-1)
        else:
            token = torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1, generator=generator)[:, 0]
        token = token.masked_fill(done, EOS)
        out[:, t] = token
        done |= token == EOS
        if done.all():
            break
        seq = torch.cat([seq, token[:, None]], dim=1)
    return out


@pytest.mark.parametrize("arch", ["gpt2", "mistral"])
def test_shared_prompts_and_finished_rows_leaving_the_batch_change_no_token(small_trained, arch):
    """Rows that emitted EOS leave the batch and a group's prompt is run once (`repeats`); with the same
    generator the tokens are those of decoding every row to the end, greedy and sampled."""
    task, model = small_trained
    if arch == "mistral":
        model = build_model(ModelConfig(arch="mistral", layers=2, width=32, heads=4), 3, task.context_len, EOS,
                            seed=0).eval()
    prompts = task.sample_prompts(16, torch.Generator().manual_seed(5))
    for temperature in (0.0, 1.0):
        ours = generate(model, prompts, task.max_new_tokens, EOS, temperature, torch.Generator().manual_seed(6),
                        repeats=4)
        reference = _full_batch_reference(model, prompts.repeat_interleave(4, dim=0), task.max_new_tokens,
                                          temperature, torch.Generator().manual_seed(6))
        assert torch.equal(ours, reference), temperature
        lengths = (ours != EOS).int().argmin(dim=1)
        if temperature > 0:  # rows did leave the batch early: some answers are short, some long
            assert lengths.min() <= 2 and (ours[:, -2] != EOS).any()


def test_rows_that_share_a_prefix_run_once(small_trained):
    """A group's prompt runs once, and rollouts that drew the same tokens so far run as one row."""
    task, model = small_trained
    rows_run = []
    hook = model.register_forward_hook(lambda module, args, output: rows_run.append(output.shape[0]))
    prompts = task.sample_prompts(8, torch.Generator().manual_seed(3))
    try:
        out = generate(model, prompts, task.max_new_tokens, EOS, 1.0, torch.Generator().manual_seed(4), repeats=8)
    finally:
        hook.remove()
    decoding = (out != EOS).int().cumsum(dim=1) == torch.arange(1, out.shape[1] + 1)  # rows still going after t
    assert rows_run[0] == 8  # the prompts, once each
    assert sum(rows_run[1:]) < decoding[:, :-1].sum() / 2  # one row per sampled token would run them all
