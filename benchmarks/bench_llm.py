"""The LLM stages on a real model: `rlntp llm sft|grpo` against TRL's SFTTrainer and GRPOTrainer as a new user would
configure them, same model, data and batch, in one run.

    python benchmarks/bench_llm.py --checkpoint RUN/sft/p=0.05/checkpoint-26 [--steps 5] [--rounds 1] [--padding-free]

`--checkpoint`: an SFT checkpoint GRPO starts from (the small preset of `rlntp reproduce gsm8k` makes one;
docs/llm.md); SFT starts from `--model` (default smollm2-135m). The records: the first 2 x steps x batch of
`--source` (default: the GSM8K training records in tests/data/real), made into a mixture at p_cot 0.05, so that SFT's
epoch is the steps timed.

rlntp's stages are TRL's trainers with the paper's settings written out (`rlntp.llm.sft`, `rlntp.llm.grpo`: the loss
on the target only, the `grpo` loss aggregation, top-k off, dropout off, the stepwise reward in a worker process, a
checkpoint with optimizer state every epoch). The other side is the trainer with TRL's defaults, changed only where
the task needs it (batch, group size, completion length, learning rate, the same reward functions) and seed 0 as
rlntp's, so that both draw the same prompts; among its defaults is bf16 autocast, on a CPU too, where rlntp's stages
run float32 unless `--precision bf16`. The sides run alternately, `--rounds` times each, and every step's time is read
at the trainer's step end; the median over the steps after each run's first is reported with each side's mean
completion length (a GRPO step that generates longer responses costs more). `--padding-free` adds a third SFT side:
rlntp's SFT with `--padding-free` (each batch's sequences end to end in one row, no padding), against its padded
batches.
"""

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
except ImportError:
    print("bench_llm.py needs TRL and gguf: pip install -e '.[llm,smollm2]'", file=sys.stderr)
    sys.exit(2)

from rlntp.llm.dataset import LLMDataConfig, make_dataset, read_split
from rlntp.llm.grpo import GRPOConfig, run_grpo
from rlntp.llm.reward import reward_functions, shared_verifier
from rlntp.llm.sft import SFTConfig, run_sft
from rlntp.llm.sources import resolve_model


REAL = Path(__file__).resolve().parent.parent / "tests" / "data" / "real"


class StepTimes(TrainerCallback):
    """Seconds between consecutive step ends (the first from the start of training)."""

    def __init__(self):
        self.times: list[float] = []
        self._last = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now


def timed(trainer_class, times: StepTimes):
    """`trainer_class` with `times` among its callbacks: how rlntp's own trainers are timed without changing them."""

    class Timed(trainer_class):
        def __init__(self, *args, **kwargs):
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), times]
            super().__init__(*args, **kwargs)

    return Timed


def mixture(args, scratch: Path) -> Path:
    """A GSM8K mixture at p_cot 0.05 of the first 2 x steps x batch records of --source: one SFT epoch is the steps
    timed."""
    records = args.source.read_text().splitlines()[:2 * args.steps * args.batch]
    (scratch / "train.jsonl").write_text("\n".join(records) + "\n")
    out = scratch / "mixture"
    make_dataset(LLMDataConfig(dataset="gsm8k", source=str(scratch / "train.jsonl"), p_cot=0.05,
                               test_source=str(args.source)), out)  # its test split is not used
    return out


def rlntp_sft(args, out: Path, padding_free: bool = False) -> tuple[list[float], None]:
    times, original = StepTimes(), trl.SFTTrainer
    trl.SFTTrainer = timed(original, times)
    try:
        run_sft(SFTConfig(model=args.model, data=args.data, epochs=1, lr=1e-4, per_device_batch=args.batch,
                          max_length=512, cpu=True, precision=args.precision, padding_free=padding_free), out,
                progress=False)
    finally:
        trl.SFTTrainer = original
    return times.times, None


def trl_sft(args, out: Path) -> tuple[list[float], None]:
    model_dir, _ = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    times = StepTimes()
    config = trl.SFTConfig(output_dir=str(out), max_steps=args.steps, learning_rate=1e-4,
                           per_device_train_batch_size=args.batch, max_length=512, use_cpu=True, save_strategy="no",
                           seed=0, data_seed=0,
                           report_to=[], disable_tqdm=True, logging_strategy="no")
    trainer = trl.SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=config,
                             train_dataset=read_split(args.data, "sft").select_columns(["prompt", "completion"]),
                             processing_class=tokenizer, callbacks=[times])
    trainer.train()
    return times.times, None


def rlntp_grpo(args, out: Path) -> tuple[list[float], float]:
    times, original = StepTimes(), trl.GRPOTrainer
    trl.GRPOTrainer = timed(original, times)
    try:
        done = run_grpo(GRPOConfig(model=str(args.checkpoint), data=args.data, steps=args.steps, lr=1e-5,
                                   group_size=8, completions_per_device=8, max_completion_length=200,
                                   save_every=args.steps, cpu=True, precision=args.precision), out, progress=False)
    finally:
        trl.GRPOTrainer = original
    lengths = [h["completions/mean_length"] for h in done["log"] if "completions/mean_length" in h]
    return times.times, statistics.mean(lengths)


def trl_grpo(args, out: Path) -> tuple[list[float], float]:
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint, padding_side="left")
    times = StepTimes()
    config = trl.GRPOConfig(output_dir=str(out), max_steps=args.steps, learning_rate=1e-5,
                            per_device_train_batch_size=8, num_generations=8, max_completion_length=200, use_cpu=True,
                            seed=0, data_seed=0,
                            save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=1)
    trainer = trl.GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(args.checkpoint),
                              reward_funcs=reward_functions(shared_verifier(5.0)), args=config,
                              train_dataset=read_split(args.data, "rl").select_columns(["prompt", "answer"]),
                              processing_class=tokenizer, callbacks=[times])
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return times.times, statistics.mean(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REAL / "gsm8k_train.jsonl", help="GSM8K training records")
    parser.add_argument("--checkpoint", type=Path, required=True, help="an SFT checkpoint GRPO starts from")
    parser.add_argument("--model", default="smollm2-135m", help="the model SFT starts from")
    parser.add_argument("--steps", type=int, default=5, help="steps per run and side")
    parser.add_argument("--batch", type=int, default=8, help="SFT sequences per step")
    parser.add_argument("--rounds", type=int, default=1, help="runs per side, alternating")
    parser.add_argument("--precision", default="auto",
                        help="rlntp's stages: auto (float32 on a CPU), bf16, fp32; TRL keeps its default (bf16)")
    parser.add_argument("--stages", nargs="+", choices=("sft", "grpo"), default=["sft", "grpo"], help="what to time")
    parser.add_argument("--padding-free", action="store_true",
                        help="also time rlntp's SFT with --padding-free, against its padded batches")
    parser.add_argument("--out", type=Path, help="write the medians here (JSON)")
    args = parser.parse_args()

    found: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        args.data = mixture(args, Path(scratch))
        for round_ in range(args.rounds):
            for name, run in (("rlntp sft", rlntp_sft), ("trl sft", trl_sft),
                              ("rlntp sft-free", functools.partial(rlntp_sft, padding_free=True)),
                              ("rlntp grpo", rlntp_grpo), ("trl grpo", trl_grpo)):
                if name.split()[1].removesuffix("-free") not in args.stages or (
                        name.endswith("-free") and not args.padding_free):
                    continue
                times, length = run(args, Path(scratch) / f"{name.replace(' ', '-')}-{round_}")
                entry = found.setdefault(name, {"times": [], "lengths": []})
                entry["times"] += times[1:]  # the first step carries the trainer's warm-up
                if length is not None:
                    entry["lengths"].append(length)
                print(f"{name} round {round_}: " + ", ".join(f"{t:.1f}" for t in times) + " s", flush=True)
    medians = {name: statistics.median(entry["times"]) for name, entry in found.items()}
    rows = []
    for stage in args.stages:
        ours, theirs = medians[f"rlntp {stage}"], medians[f"trl {stage}"]
        lengths = {side: found[f"{side} {stage}"]["lengths"] for side in ("rlntp", "trl")}
        shown = {side: f", mean completion {statistics.mean(v):.0f} tokens" if v else ""
                 for side, v in lengths.items()}
        rows.append({"stage": stage, "rlntp_s": ours, "trl_s": theirs, "ratio": theirs / ours,
                     "steps": len(found[f"rlntp {stage}"]["times"])})
        print(f"{stage}: rlntp {ours:.2f} s{shown['rlntp']}, TRL defaults {theirs:.2f} s{shown['trl']}, "
              f"TRL / rlntp = {theirs / ours:.2f}")
        if f"rlntp {stage}-free" in medians:
            free = medians[f"rlntp {stage}-free"]
            rows.append({"stage": f"{stage}, padding-free", "rlntp_padded_s": ours, "rlntp_padding_free_s": free,
                         "ratio": ours / free, "steps": len(found[f"rlntp {stage}-free"]["times"])})
            print(f"{stage}: rlntp padded {ours:.2f} s, padding-free {free:.2f} s, padded / padding-free = "
                  f"{ours / free:.2f}")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
