"""Pre-training step: rlntp against a plain Hugging Face GPT-2 training loop, in the same run.

    python benchmarks/bench_pretrain.py [--tasks parity,mult --d 20,50 --models 2x128x4,4x256x8
                                         --digits 4 --device cpu|cuda --compile]

Each setting (parity at each d, batch 256; 4x4 multiplication, batch 128; each model shape
LAYERSxWIDTHxHEADS: 2x128x4 is the cpu presets' model, 4x256x8 the paper's) is measured on its own:
all contenders get the same batches of the mixture and the same initial weights. Steps are
interleaved (one of each per round) so that a noisy, shared machine slows all alike; the median
over rounds is reported, with the achieved GFLOP/s of each next to this machine's measured float32
matmul peak, and the peak memory of a step (benchmarks/measure.py: tensor memory above the
weights and optimizer state). Contenders:

- hf:          GPT2LMHeadModel(input_ids, labels) on the batch padded to the context, torch.optim.Adam
- rlntp-dense: our GPT-2 + fused Adam on the same padded batch (what the plain-PyTorch model alone buys)
- rlntp:       the project's step (`next_token_loss`: rows run only up to their EOS, the last block
               only from the first output position on) + fused Adam
- rlntp+compile (with --compile): the same under `torch.compile(dynamic=True)`

On CUDA (the default when a GPU is present) steps are synchronized before each clock reading and
the peak is the GPU's float32 matmul peak, measured the same way. Each table ends with the wall
time 50,000 rlntp steps of that setting would take; at d = 50 and 4x256x8 (batch 256) that is the
fig1 `paper` preset's pre-training per seed.
"""

import argparse
import statistics
from dataclasses import replace

import torch
import torch.nn.functional as F

from rlntp.models import ModelConfig, build_model
from rlntp.tasks import TaskConfig, make_task
from rlntp.tasks.base import Task
from rlntp.training.losses import next_token_loss

from measure import MB, clock, state_bytes, step_peak  # noqa: E402 (benchmarks/, the script's directory)


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """float32 GFLOP/s of one large square matmul: the practical compute ceiling of the device."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t0 = clock(device)
        a @ b
        times.append(clock(device) - t0)
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
    parser.add_argument("--d", default="20", help="parity: input bits, comma-separated (e.g. 20,50)")
    parser.add_argument("--digits", type=int, default=4, help="mult: digits per operand")
    parser.add_argument("--p-cot", type=float, default=0.25)
    parser.add_argument("--models", default="2x128x4", help="LAYERSxWIDTHxHEADS, comma-separated (e.g. 2x128x4,4x256x8)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: parity 256, mult 128")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time rlntp's model under torch.compile")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = matmul_peak_gflops(device)
    for model in args.models.split(","):
        layers, width, heads = (int(n) for n in model.split("x"))
        cfg = ModelConfig(layers=layers, width=width, heads=heads)
        for name in args.tasks.split(","):
            for d in (args.d.split(",") if name == "parity" else [args.d.split(",")[0]]):
                task = make_task(TaskConfig(task=name, d=int(d), digits=args.digits, p_cot=args.p_cot))
                bench(task, cfg, args, args.batch_size or (256 if name == "parity" else 128), device, peak)


def bench(task: Task, cfg: ModelConfig, args: argparse.Namespace, batch_size: int, device: torch.device,
          peak: float) -> None:
    """Time the contenders on `task` and print the table and the rlntp / hf ratio."""
    g = torch.Generator().manual_seed(0)
    batches = [task.sample(batch_size, g) for _ in range(args.rounds + args.warmup + 1)]
    batches = [replace(b, tokens=b.tokens.to(device), loss_mask=b.loss_mask.to(device)) for b in batches]
    V = task.vocab_size

    def model(config: ModelConfig) -> torch.nn.Module:
        return build_model(config, V, task.context_len, task.eos_id, seed=0, device=device).train()

    hf = model(replace(cfg, impl="hf")).hf.train()
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

    def rlntp_step(net, optimizer):
        def step(batch):
            loss, _ = next_token_loss(net, batch.tokens, batch.loss_mask)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    steps = {"hf": (hf_step, hf, hf_opt), "rlntp-dense": (dense_step, dense, dense_opt),
             "rlntp": (rlntp_step(ours, ours_opt), ours, ours_opt)}
    if args.compile:
        compiled = model(cfg)
        compiled_opt = torch.optim.Adam(compiled.parameters(), lr=1e-3, fused=True)
        steps["rlntp+compile"] = (rlntp_step(torch.compile(compiled, dynamic=True), compiled_opt), compiled,
                                  compiled_opt)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i, batch in enumerate(batches[:-1]):
        for name, (step, _, _) in steps.items():
            t0 = clock(device)
            step(batch)
            if i >= args.warmup:
                times[name].append(clock(device) - t0)
    memory = {name: step_peak(lambda: step(batches[-1]), device) for name, (step, _, _) in steps.items()}
    state = state_bytes(ours, ours_opt)

    T = task.context_len
    timed = batches[args.warmup:-1]
    ours_tokens = torch.stack([b.lengths for b in timed]).add(task.prompt_len).float().mean().item()
    ours_flops = statistics.mean(
        sum(train_flops(int((b.lengths == n).sum()), task.prompt_len + n, cfg.layers, cfg.width, V,
                        query_from=task.prompt_len - 1)
            for n in b.lengths.unique().tolist()) for b in timed)
    flops = {"hf": train_flops(batch_size, T, cfg.layers, cfg.width, V),
             "rlntp-dense": train_flops(batch_size, T - 1, cfg.layers, cfg.width, V),
             "rlntp": ours_flops, "rlntp+compile": ours_flops}
    median = {name: statistics.median(ts) for name, ts in times.items()}
    threads = f"{torch.get_num_threads()} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"\npre-training step, {task.title} p_cot={args.p_cot}, GPT-2 {cfg.layers}x{cfg.width} "
          f"({cfg.heads} heads), batch {batch_size}, {device.type} ({threads}), "
          f"median of {args.rounds} interleaved rounds")
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s; weights + Adam state: {state / MB:.1f} MB")
    print(f"{'':14s} {'s/step':>8s} {'seq/s':>7s} {'GFLOP/step':>11s} {'GFLOP/s':>8s} {'% peak':>7s} {'peak MB':>8s} "
          f"{'speed-up vs hf':>15s}")
    for name in steps:
        gflops = flops[name] / 1e9
        print(f"{name:14s} {median[name]:8.3f} {batch_size / median[name]:7.0f} {gflops:11.1f} "
              f"{gflops / median[name]:8.0f} {100 * gflops / median[name] / peak:6.0f}% {memory[name] / MB:8.1f} "
              f"{median['hf'] / median[name]:14.2f}x")
    print(f"(rlntp runs {ours_tokens:.1f} tokens per row on average instead of {T - 1}: rows stop at their EOS; "
          f"its last block skips the {task.prompt_len - 1} input positions whose outputs no loss needs)")
    print(f"RATIO rlntp/hf speed-up ({task.title}, {cfg.layers}x{cfg.width}): {median['hf'] / median['rlntp']:.2f}x")
    paper = getattr(task, "d", None) == 50 and (cfg.layers, cfg.width, cfg.heads) == (4, 256, 8)
    print(f"50,000 rlntp steps of this setting{' (the fig1 paper preset: pre-training, per seed)' if paper else ''}: "
          f"{50_000 * median['rlntp'] / 3600:.1f} h")


if __name__ == "__main__":
    main()
