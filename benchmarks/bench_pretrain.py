"""Pre-training step: rlntp against a plain Hugging Face GPT-2 training loop, in the same run.

    python benchmarks/bench_pretrain.py [--tasks parity,mult --d 20 --digits 4 --layers 2 --width 128 --heads 4]

Each setting (parity d = 20, batch 256; 4x4 multiplication, batch 128) is measured on its own: all
contenders get the same batches of the mixture and the same initial weights. Steps are
interleaved (one of each per round) so that a noisy, shared machine slows both alike; the median
over rounds is reported, with the achieved GFLOP/s of each next to this machine's measured float32
matmul peak. Three contenders:

- hf:          GPT2LMHeadModel(input_ids, labels) on the batch padded to the context, torch.optim.Adam
- rlntp-dense: our GPT-2 + fused Adam on the same padded batch (what the plain-PyTorch model alone buys)
- rlntp:       the project's step (`next_token_loss`: rows run only up to their EOS, the last block
               only from the first output position on) + fused Adam
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from rlntp.models import ModelConfig, build_model
from rlntp.tasks import TaskConfig, make_task
from rlntp.tasks.base import Task
from rlntp.training.losses import next_token_loss


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """float32 GFLOP/s of one large square matmul: the practical compute ceiling of this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e9


def train_flops(rows: int, seq_len: int, layers: int, width: int, vocab: int, query_from: int = 0) -> float:
    """Matmul FLOPs of forward + backward (3x forward) for `rows` sequences of `seq_len` tokens.

    With `query_from` > 0 the last block computes keys and values for every position but queries,
    attention outputs, MLP and logits only from position `query_from` on (as rlntp's GPT-2 does).
    """
    T, C, Tq = seq_len, width, seq_len - query_from
    full_layer = 2 * 12 * C**2 * T + 2 * T**2 * C  # weights (qkv, proj, 4x MLP) + causal QK^T and AV
    last_layer = 2 * 2 * C**2 * T + 2 * 10 * C**2 * Tq + 2 * 2 * C * (T**2 - query_from**2) / 2
    forward = (layers - 1) * full_layer + (last_layer if query_from else full_layer) + 2 * C * vocab * Tq
    return 3 * rows * forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="parity,mult", help="comma-separated: parity, mult")
    parser.add_argument("--d", type=int, default=20, help="parity: input bits")
    parser.add_argument("--digits", type=int, default=4, help="mult: digits per operand")
    parser.add_argument("--p-cot", type=float, default=0.25)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=None, help="default: parity 256, mult 128")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    for name in args.tasks.split(","):
        task = make_task(TaskConfig(task=name, d=args.d, digits=args.digits, p_cot=args.p_cot))
        bench(task, args, args.batch_size or (256 if name == "parity" else 128))


def bench(task: Task, args: argparse.Namespace, batch_size: int) -> None:
    """Time the three contenders on `task` and print the table and the rlntp / hf ratio."""
    cfg = ModelConfig(layers=args.layers, width=args.width, heads=args.heads)
    g = torch.Generator().manual_seed(0)
    batches = [task.sample(batch_size, g) for _ in range(args.rounds + args.warmup)]
    V = task.vocab_size

    def model(config: ModelConfig) -> torch.nn.Module:
        return build_model(config, V, task.context_len, task.eos_id, seed=0).train()

    hf = model(ModelConfig(**{**vars(cfg), "impl": "hf"})).hf.train()
    hf_opt = torch.optim.Adam(hf.parameters(), lr=1e-3)
    dense = model(cfg)
    dense_opt = torch.optim.Adam(dense.parameters(), lr=1e-3, fused=True)
    ours = model(cfg)
    ours_opt = torch.optim.Adam(ours.parameters(), lr=1e-3, fused=True)

    def hf_step(batch):
        labels = batch.tokens.masked_fill(~batch.loss_mask, -100)
        hf(input_ids=batch.tokens, attention_mask=torch.ones_like(batch.tokens), labels=labels).loss.backward()
        hf_opt.step()
        hf_opt.zero_grad(set_to_none=True)

    def dense_step(batch):
        logits = dense(batch.tokens[:, :-1])
        targets = batch.tokens[:, 1:].masked_fill(~batch.loss_mask[:, 1:], -100)
        F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100).backward()
        dense_opt.step()
        dense_opt.zero_grad(set_to_none=True)

    def ours_step(batch):
        loss, _ = next_token_loss(ours, batch.tokens, batch.loss_mask)
        loss.backward()
        ours_opt.step()
        ours_opt.zero_grad(set_to_none=True)

    steps = {"hf": hf_step, "rlntp-dense": dense_step, "rlntp": ours_step}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i, batch in enumerate(batches):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(batch)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)

    peak = matmul_peak_gflops()
    T = task.context_len
    lengths = torch.stack([b.lengths for b in batches[args.warmup:]])
    ours_tokens = (lengths + task.prompt_len).float().mean().item()  # model input tokens per row of `rlntp`
    flops = {
        "hf": train_flops(batch_size, T, args.layers, args.width, V),
        "rlntp-dense": train_flops(batch_size, T - 1, args.layers, args.width, V),
        "rlntp": statistics.mean(
            sum(train_flops(int((b.lengths == n).sum()), task.prompt_len + n, args.layers, args.width, V,
                            query_from=task.prompt_len - 1)
                for n in b.lengths.unique().tolist()) for b in batches[args.warmup:]),
    }
    median = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"\npre-training step, {task.title} p_cot={args.p_cot}, GPT-2 {args.layers}x{args.width} "
          f"({args.heads} heads), batch {batch_size}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} interleaved rounds")
    print(f"machine float32 matmul peak: {peak:.0f} GFLOP/s")
    print(f"{'':12s} {'s/step':>8s} {'GFLOP/step':>11s} {'GFLOP/s':>8s} {'% peak':>7s} {'speed-up vs hf':>15s}")
    for name in steps:
        gflops = flops[name] / 1e9
        print(f"{name:12s} {median[name]:8.3f} {gflops:11.1f} {gflops / median[name]:8.0f} "
              f"{100 * gflops / median[name] / peak:6.0f}% {median['hf'] / median[name]:14.2f}x")
    print(f"(rlntp runs {ours_tokens:.1f} tokens per row on average instead of {T - 1}: rows stop at their EOS; "
          f"its last block skips the {task.prompt_len - 1} input positions whose outputs no loss needs)")
    print(f"RATIO rlntp/hf speed-up ({task.title}): {median['hf'] / median['rlntp']:.2f}x")


if __name__ == "__main__":
    main()
