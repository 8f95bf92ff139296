"""The CUDA paths against the CPU ones: generation, the log-probabilities of rollouts, and the stages
end to end from the CLI. Skipped where no GPU is present (CI runs on CPU; run these on a GPU machine)."""

import copy

import pytest
import torch

from rlntp.cli import main
from rlntp.generation import generate
from rlntp.models import ModelConfig, build_model, load_model
from rlntp.runs import checkpoints, dirs, metrics
from rlntp.tasks.parity import ParityTask
from rlntp.training.losses import token_logprobs
from rlntp.training.rollout import sample_rollouts

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CUDA = torch.device("cuda")


def test_greedy_generation_on_cuda_agrees_with_the_cpu(small_trained):
    task, model = small_trained
    prompts = task.sample_prompts(512, torch.Generator().manual_seed(0))
    on_cpu = generate(model, prompts, task.max_new_tokens, task.eos_id)
    on_gpu = generate(copy.deepcopy(model).to(CUDA), prompts.to(CUDA), task.max_new_tokens, task.eos_id)
    # float sums differ in the last bits between the devices, which can flip a near-tie
    assert (on_gpu.cpu() == on_cpu).all(dim=1).float().mean() >= 0.99


@pytest.mark.parametrize("arch", ["gpt2", "mistral"])
def test_rollout_logprobs_on_cuda_share_prompts_as_on_the_cpu(arch):
    task = ParityTask(d=8, p_cot=0.5)
    model = build_model(ModelConfig(arch=arch, layers=2, width=32, heads=2), task.vocab_size, task.context_len,
                        task.eos_id, seed=0, device=CUDA).train()
    g = torch.Generator(device=CUDA).manual_seed(0)
    rollouts = sample_rollouts(model, task, task.sample_prompts(4, g), 6, 1.0, "e2e", g)
    rows = torch.arange(0, 24, 2, device=CUDA)

    def run(groups):
        model.zero_grad()
        logprobs, _ = token_logprobs(model, rollouts.tokens[rows], rollouts.response_mask[rows], groups=groups)
        logprobs.sum().backward()
        return logprobs.detach(), [p.grad.clone() for p in model.parameters()]

    plain, grads_plain = run(None)
    shared, grads_shared = run(rows // 6)
    torch.testing.assert_close(shared, plain, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_shared, grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_pretraining_and_grpo_run_on_cuda_and_their_checkpoints_load_on_the_cpu(tmp_path):
    small = ["--d", "8", "--width", "64", "--layers", "2", "--heads", "4", "--device", "cuda", "--quiet"]
    pre = tmp_path / "pretrain"
    main(["pretrain", "--p-cot", "0.5", *small, "--batch-size", "128", "--lr", "1e-3", "--steps", "400",
          "--eval-every", "200", "--save-every", "400", "--eval-samples", "1000", "--out", str(pre)])
    assert metrics.read_metrics(pre)[-1]["eval/greedy_acc"] >= 0.9  # p_cot above 1/3: learned (d = 8)
    post = tmp_path / "grpo"
    main(["posttrain", "--from", str(pre), "--step", "400", "--algo", "grpo", "--steps", "4", "--eval-every", "2",
          "--eval-samples", "256", "--device", "cuda", "--quiet", "--out", str(post)])
    assert metrics.read_metrics(post)[-1]["step"] == 4

    checkpoint = checkpoints.resolve_checkpoint(post)
    task_config, model_config = dirs.read_task_and_model(pre)
    tokens = ParityTask(d=8, p_cot=0.5).sample(16, torch.Generator().manual_seed(1)).tokens
    with torch.no_grad():
        on_cpu = load_model(checkpoint, model_config, "cpu").eval()(tokens)
        on_gpu = load_model(checkpoint, model_config, CUDA).eval()(tokens.to(CUDA))
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-3, atol=1e-3)
