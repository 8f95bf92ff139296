"""Packed pre-training (`rlntp sweep --pack N`) against the same N runs stepping one after another, in the same run.

    python benchmarks/bench_pack.py [--runs 4 --d 6,20 --models 1x16x2,2x32x2,2x128x4 --batch 64
                                     --threads 1 --device cpu|cuda --rounds 20 --map auto|loop|vmap --json OUT.json]

For each setting, N runs of one shape (their own weights and batches) take a pre-training step:
- alone:  one model at a time (`padded_next_token_loss` + fused Adam, the step of `--step-impl static`), N steps
- packed: one step of a `Pack` of the N runs (`rlntp.training.packed`): the model's forward over the stacked
          parameters, mapped over the runs as a pack maps it on the device (--map auto: run by run on a CPU, vmap
          elsewhere), or as --map says
Steps are interleaved (one of each per round) so that a noisy machine slows both alike; the median over rounds
is reported, and alone / packed: how many times faster the packed step trains the N runs. On a CPU both use
--threads threads (a sweep's runs use their own `threads`); on CUDA steps are synchronized before each reading.
"""

import argparse
import json
import statistics
import sys

import torch
from measure import clock  # benchmarks/measure.py, beside this script

from rlntp.data import make_data
from rlntp.models import ModelConfig, build_model
from rlntp.tasks import TaskConfig, make_task
from rlntp.training.losses import padded_next_token_loss
from rlntp.training.optim import make_optimizer
from rlntp.training.packed import Pack
from rlntp.training.pretrain import PretrainConfig


def measure(runs: int, d: int, shape: str, batch: int, device: torch.device, rounds: int,
            vectorize: bool | None = None) -> dict:
    """Median seconds of N steps alone and of one packed step, for one setting."""
    layers, width, heads = map(int, shape.split("x"))
    task = make_task(TaskConfig(d=d, p_cot=0.25))
    models = [build_model(ModelConfig(layers=layers, width=width, heads=heads), task.vocab_size, task.context_len,
                          task.eos_id, seed, device) for seed in range(runs)]
    datas = [make_data(task, None, seed, device) for seed in range(runs)]
    first = task.prompt_len - 1
    pack = Pack(models, PretrainConfig(optimizer="adam", lr=1e-3), first, vectorize=vectorize)
    optimizers = [make_optimizer(m, "adam", 1e-3, device) for m in models]

    def alone() -> None:
        for model, optimizer, data in zip(models, optimizers, datas):
            b = data.train_batch(0, batch)
            padded_next_token_loss(model, b.tokens, b.loss_mask, first)[0].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def together() -> None:
        pack.losses([data.train_batch(0, batch) for data in datas])[0].sum().backward()
        pack.optimizer.step()
        pack.optimizer.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {"alone": [], "packed": []}
    for r in range(rounds + 2):
        for name, step in (("alone", alone), ("packed", together)):
            t0 = clock(device)
            step()
            if r >= 2:  # two warm-up rounds
                times[name].append(clock(device) - t0)
    alone_s, packed_s = statistics.median(times["alone"]), statistics.median(times["packed"])
    return {"runs": runs, "d": d, "model": shape, "batch": batch, "map": "vmap" if pack.vectorize else "loop",
            "alone_s": alone_s, "packed_s": packed_s, "speedup": alone_s / packed_s}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--d", default="6,20")
    parser.add_argument("--models", default="1x16x2,2x32x2,2x128x4")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--map", choices=("auto", "loop", "vmap"), default="auto",
                        help="how the pack maps the forward over the runs (auto: as a pack on the device does)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"{args.runs} runs, batch {args.batch} each, {device}" + (f", {args.threads} threads" if
                                                                   device.type == "cpu" else "") + f", map {args.map}")
    print(f"{'d':>4} {'model':>10} {'alone ms':>9} {'packed ms':>10} {'alone/packed':>13}")
    rows = []
    for d in map(int, args.d.split(",")):
        for shape in args.models.split(","):
            row = measure(args.runs, d, shape, args.batch, device, args.rounds,
                          {"auto": None, "loop": False, "vmap": True}[args.map])
            rows.append(row)
            print(f"{d:>4} {shape:>10} {1e3 * row['alone_s']:>9.2f} {1e3 * row['packed_s']:>10.2f} "
                  f"{row['speedup']:>12.2f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "threads": args.threads, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
