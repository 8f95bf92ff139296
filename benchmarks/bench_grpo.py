"""GRPO post-training: rlntp against TRL's GRPOTrainer, from the same checkpoint, in the same run.

    python benchmarks/bench_grpo.py [--checkpoint RUN/checkpoints/step_NNNNNNN] [--out runs/bench_grpo.png]

Needs TRL (`pip install trl`); exits with status 2 if it is missing. Without --checkpoint, a
pre-training run is made first, as `rlntp pretrain --d 20 --p-cot 0.25 --steps 2000
--out runs/bench-p25 --resume` would (about 6 minutes on 2 cores; reused on the next call).

Both sides start every run from the same checkpoint, on parity d = 20 with 8 prompts x 8 rollouts per
step, the end-to-end reward, sampling temperature 1 and no KL term. Two measurements:

1. Seconds per GRPO step. rlntp: `sample_rollouts` + `grpo_update`, as `rlntp posttrain` runs them,
   on the plain-PyTorch GPT-2. TRL: one `GRPOTrainer` step (Hugging Face `generate`, log-probs,
   loss, AdamW) on the Hugging Face GPT-2, float32, at rlntp's learning rate. Steps are interleaved
   (TRL's step-end callback has rlntp, in a process of its own, run one step and waits for it) so a
   noisy machine slows both alike, and the median over the steps after warm-up is reported. Both
   policies learn while they are timed, and a step that generates longer responses costs more, so
   each side's mean response length is printed too.
2. RL samples to reach >= 95% greedy accuracy on 640 fresh inputs (the same inputs for every
   contender, every --eval-every steps), within a budget of steps: rlntp with `PosttrainConfig()`'s
   defaults, TRL with `GRPOConfig`'s defaults where only what this task needs is changed, and TRL
   with those defaults but rlntp's learning rate (to tell the learning rate apart from the rest).
   The accuracy curves are written to --out.
"""

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from measure import MB, StepMemory, clock, step_peak  # noqa: E402 (benchmarks/, the script's directory)
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback  # noqa: E402
from transformers import logging as hf_logging
from transformers.trainer_callback import PrinterCallback, ProgressCallback  # noqa: E402

from rlntp.devices import seeded_generator  # noqa: E402
from rlntp.evaluation import evaluate  # noqa: E402
from rlntp.models import HFCausalLM, ModelConfig, load_model  # noqa: E402
from rlntp.runs import checkpoints  # noqa: E402
from rlntp.tasks import TaskConfig  # noqa: E402
from rlntp.tasks.parity import EOS, TOKEN_NAMES, ParityTask  # noqa: E402
from rlntp.training.grpo import grpo_update  # noqa: E402
from rlntp.training.posttrain import PosttrainConfig  # noqa: E402
from rlntp.training.pretrain import PretrainConfig, PretrainRun, pretrain  # noqa: E402
from rlntp.training.rewards import compute_reward  # noqa: E402
from rlntp.training.rollout import sample_rollouts  # noqa: E402

try:  # the benchmark's only extra dependency
    import trl
    from datasets import Dataset  # a dependency of trl
    from trl import GRPOConfig, GRPOTrainer
except ImportError:
    trl = None

CPU = torch.device("cpu")  # where prompts are drawn (the same inputs on every device)
TARGET_ACC = 0.95


# ---------------------------------------------------------------------------------------------------
# The parity task as TRL sees it: text prompts, a 3-token tokenizer, a reward function
# ---------------------------------------------------------------------------------------------------

def parity_tokenizer() -> PreTrainedTokenizerFast:
    """`0`, `1`, `EOS` -> 0, 1, 2 (rlntp's ids), words split on whitespace; EOS also pads; no BOS."""
    tokenizer = Tokenizer(models.WordLevel({name: i for i, name in enumerate(TOKEN_NAMES)}, unk_token="EOS"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="EOS", pad_token="EOS")


def prompt_dataset(task: ParityTask, n: int, seed: int) -> "Dataset":
    """n fresh inputs as TRL prompts: `0 1 1 0 ...` (d bits, no BOS, as rlntp's model reads them)."""
    x = task.sample_prompts(n, seeded_generator(CPU, seed, 3))
    return Dataset.from_dict({"prompt": [" ".join(TOKEN_NAMES[b] for b in row) for row in x.tolist()]})


def parity_reward(task: ParityTask, log: list[dict[str, float]]) -> Callable[..., list[float]]:
    """A TRL reward function computing rlntp's end-to-end reward; logs each batch's mean reward and length.

    It reads `completion_ids` rather than the decoded `completions`: TRL decodes with
    skip_special_tokens, which drops the EOS that decides the answer (the token right before it).
    TRL cuts each completion after its first EOS; one without EOS has d + 1 tokens and is wrong.
    """

    def parity_e2e(prompts: list[str], completions: list[str], completion_ids: list[list[int]],
                   **kwargs) -> list[float]:
        x = torch.tensor([[TOKEN_NAMES.index(b) for b in p.split()] for p in prompts])
        outputs = torch.full((len(prompts), task.max_new_tokens), EOS, dtype=torch.long)
        for row, ids in zip(outputs, completion_ids, strict=True):
            row[:len(ids)] = torch.tensor(ids)
        reward = compute_reward("e2e", task, x, outputs).value
        lengths = torch.tensor([len(ids) - (len(ids) > 0 and ids[-1] == EOS) for ids in completion_ids])
        log.append({"reward": reward.mean().item(), "response_len": lengths.float().mean().item()})
        return reward.tolist()

    return parity_e2e


def trl_config(task: ParityTask, steps: int, seed: int, out_dir: str, device: torch.device,
               **overrides) -> "GRPOConfig":
    """GRPOConfig's defaults with only what this task and machine need changed, then `overrides`."""
    return GRPOConfig(
        output_dir=out_dir,
        max_steps=steps,
        num_generations=8,  # rollouts per prompt
        per_device_train_batch_size=64,  # TRL counts completions: 64 / 8 generations = 8 prompts per step
        max_completion_length=task.max_new_tokens,  # d + 1
        temperature=1.0,  # (TRL's default too)
        # TRL samples in train mode and has no switch for eval-mode rollouts; disabling dropout is its
        # closest setting (the paper needed it; a no-op here: the checkpoint has no dropout).
        disable_dropout=True,
        use_cpu=device.type == "cpu",
        seed=seed,  # the benchmark's --seed (TRL's default is 42), for repeatable runs
        report_to=[],  # no external logging services
        save_strategy="no",
        logging_strategy="no",  # nothing printed between steps (TRL's metrics are not needed here)
        disable_tqdm=True,
        **overrides,
    )


def trl_trainer(checkpoint: Path, task: ParityTask, config: "GRPOConfig", reward_log: list[dict[str, float]],
                callback: TrainerCallback, seed: int) -> "GRPOTrainer":
    """A GRPOTrainer on a fresh copy of the checkpoint's Hugging Face model, prompts for every step."""
    model = AutoModelForCausalLM.from_pretrained(checkpoint, use_safetensors=True)
    prompts = config.max_steps * config.per_device_train_batch_size // config.num_generations
    trainer = GRPOTrainer(model=model, reward_funcs=parity_reward(task, reward_log), args=config,
                          train_dataset=prompt_dataset(task, prompts, seed), processing_class=parity_tokenizer(),
                          callbacks=[callback])
    for quiet in (PrinterCallback, ProgressCallback):  # keep the end-of-training summary off the table
        trainer.remove_callback(quiet)
    return trainer


# ---------------------------------------------------------------------------------------------------
# 1. Seconds per step
# ---------------------------------------------------------------------------------------------------

def rlntp_worker(conn: Connection, checkpoint: Path, task: ParityTask, seed: int, device: str, threads: int) -> None:
    """rlntp's side of the timing, in a process of its own, driven over `conn`.

    "step": one GRPO step (`sample_rollouts` + `grpo_update`, as `rlntp posttrain` runs them), answered
    with (seconds, mean response length); "memory": one more step, answered with its peak bytes; "stop".
    Its own process because in TRL's, rlntp's step ran 20-40% slower than alone: TRL's step allocates
    and frees a few hundred MB, and the allocator's state it leaves behind (not the CPU) slowed the
    next step (measured: 320 MB allocated and freed between steps, 53 -> 67 ms per rlntp step).
    """
    torch.set_num_threads(threads)
    device = torch.device(device)
    post = PosttrainConfig(seed=seed)
    model = load_model(checkpoint, ModelConfig(impl="fast"), device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=post.lr, fused=True)  # as `rlntp posttrain`
    rng = seeded_generator(device, seed, 2)

    def step() -> float:
        rollouts = sample_rollouts(model, task, task.sample_prompts(post.prompts, rng), post.rollouts, post.temperature,
                                   post.reward, rng)
        grpo_update(model, optimizer, rollouts, post.clip_eps, post.kl_beta, None, post.updates_per_step,
                    post.token_level)
        return rollouts.lengths.float().mean().item()

    while (command := conn.recv()) != "stop":
        if command == "step":
            t0 = clock(device)
            length = step()
            conn.send((clock(device) - t0, length))
        else:
            conn.send(step_peak(step, device))


class Interleave(TrainerCallback):
    """Times each TRL step (from one step end to the next) and has the rlntp worker run one step between them.

    The steps after `timed` (the last one) are not timed but profiled for peak memory, each side's own.
    """

    def __init__(self, rlntp: Connection, warmup: int, timed: int, device: torch.device):
        self.rlntp, self.warmup, self.timed, self.device = rlntp, warmup, timed, device
        self.times: dict[str, list[float]] = {"trl": [], "rlntp": []}
        self.lengths: list[float] = []
        self.memory: dict[str, int] = {}
        self.trl_memory = StepMemory(device)

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = clock(self.device)

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.timed:
            self.trl_memory.start()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step > self.timed:
            self.memory["trl"] = self.trl_memory.stop()
            self.rlntp.send("memory")
            self.memory["rlntp"] = self.rlntp.recv()
            return
        trl_s = clock(self.device) - self.t0
        self.rlntp.send("step")
        rlntp_s, length = self.rlntp.recv()
        if state.global_step > self.warmup:
            self.times["trl"].append(trl_s)
            self.times["rlntp"].append(rlntp_s)
            self.lengths.append(length)
        self.t0 = clock(self.device)


def time_steps(checkpoint: Path, task: ParityTask, rounds: int, warmup: int, seed: int, out_dir: str,
               device: torch.device):
    """Median seconds per step, mean response length and peak step memory (bytes) of each side.

    `rounds` interleaved steps are timed after `warmup`; one more step of each is profiled for memory.
    TRL runs here, rlntp in a worker process (`rlntp_worker`); they take turns, never run at once.
    """
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no allocator state or threads shared
    conn, worker_conn = context.Pipe()
    worker = context.Process(target=rlntp_worker, daemon=True,
                             args=(worker_conn, checkpoint, task, seed, str(device), torch.get_num_threads()))
    worker.start()
    try:
        reward_log: list[dict[str, float]] = []
        interleave = Interleave(conn, warmup, warmup + rounds, device)
        # float32 like rlntp (TRL's default bf16 autocast is slower on a CPU), rlntp's learning rate, no KL
        config = trl_config(task, warmup + rounds + 1, seed, out_dir, device, learning_rate=PosttrainConfig().lr,
                            beta=0.0, bf16=False)
        trl_trainer(checkpoint, task, config, reward_log, interleave, seed).train()
        conn.send("stop")
    finally:
        worker.join(timeout=60)
        if worker.is_alive():
            worker.kill()
    median = {name: statistics.median(ts) for name, ts in interleave.times.items()}
    length = {"trl": statistics.mean(r["response_len"] for r in reward_log[warmup:-1]),
              "rlntp": statistics.mean(interleave.lengths)}
    return median, length, interleave.memory


# ---------------------------------------------------------------------------------------------------
# 2. RL samples to 95% greedy accuracy
# ---------------------------------------------------------------------------------------------------

def greedy_acc(model: torch.nn.Module, task: ParityTask, samples: int, seed: int, step: int) -> float:
    """Greedy accuracy on inputs drawn from a generator seeded by (seed, step), as `rlntp posttrain` does."""
    device = next(model.parameters()).device
    return evaluate(model, task, samples, seeded_generator(device, seed, step, 1))["eval/greedy_acc"]


def rlntp_curve(checkpoint: Path, task: ParityTask, post: PosttrainConfig, eval_samples: int, device: torch.device,
                ) -> tuple[list[tuple[int, float]], list[float]]:
    """(RL samples, greedy accuracy) every `post.eval_every` steps of the `rlntp posttrain` loop; rollout rewards."""
    model = load_model(checkpoint, ModelConfig(impl="fast"), device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=post.lr, fused=True)
    rng = seeded_generator(device, post.seed, 2)
    curve = [(0, greedy_acc(model, task, eval_samples, post.seed, 0))]
    rewards = []
    for step in range(1, post.steps + 1):
        rollouts = sample_rollouts(model, task, task.sample_prompts(post.prompts, rng), post.rollouts,
                                   post.temperature, post.reward, rng, post.length_penalty)
        grpo_update(model, optimizer, rollouts, post.clip_eps, post.kl_beta, None, post.updates_per_step,
                    post.token_level)
        rewards.append(rollouts.rewards.mean().item())
        if step % post.eval_every == 0 or step == post.steps:
            curve.append((step * post.samples_per_step, greedy_acc(model, task, eval_samples, post.seed, step)))
    return curve, rewards


class EvalEvery(TrainerCallback):
    """Greedy accuracy of TRL's model at the start and every `every` steps, on rlntp's evaluation inputs."""

    def __init__(self, task: ParityTask, every: int, samples: int, seed: int, samples_per_step: int):
        self.task, self.every, self.samples, self.seed = task, every, samples, seed
        self.samples_per_step = samples_per_step
        self.curve: list[tuple[int, float]] = []

    def _evaluate(self, model, step: int):
        # `evaluate` switches to eval mode and back; the wrapper adopts the Hugging Face model's mode
        wrapped = HFCausalLM(model).train(model.training)
        self.curve.append((step * self.samples_per_step, greedy_acc(wrapped, self.task, self.samples, self.seed, step)))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._evaluate(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._evaluate(model, state.global_step)


def trl_curve(checkpoint: Path, task: ParityTask, steps: int, eval_every: int, eval_samples: int, seed: int,
              out_dir: str, device: torch.device,
              **overrides) -> tuple[list[tuple[int, float]], list[float], "GRPOConfig"]:
    """(RL samples, greedy accuracy) every `eval_every` steps of a GRPOTrainer run; rollout rewards; its config."""
    reward_log: list[dict[str, float]] = []
    config = trl_config(task, steps, seed, out_dir, device, **overrides)
    evaluator = EvalEvery(task, eval_every, eval_samples, seed, config.per_device_train_batch_size)
    trl_trainer(checkpoint, task, config, reward_log, evaluator, seed).train()
    return evaluator.curve, [r["reward"] for r in reward_log], config


def samples_to(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first evaluated number of RL samples at which greedy accuracy is >= target, or None."""
    return next((samples for samples, acc in curve if acc >= target), None)


# ---------------------------------------------------------------------------------------------------

def resolve_checkpoint(args: argparse.Namespace) -> Path:
    """--checkpoint, or the last checkpoint of a p_cot = 0.25 pre-training run made (or resumed) here."""
    if args.checkpoint is not None:
        checkpoint = Path(args.checkpoint)
    else:
        out = Path(args.pretrain_out)
        print(f"no --checkpoint: pre-training into {out} (resumable; about 6 minutes on 2 cores) ...")
        run = PretrainRun(TaskConfig(d=args.d, p_cot=0.25), ModelConfig(), PretrainConfig(steps=2000))
        pretrain(run, out, resume=True)
        checkpoint = checkpoints.resolve_checkpoint(out)
    if not (checkpoint / "model.safetensors").is_file():
        sys.exit(f"{checkpoint} is not a checkpoint directory (no model.safetensors); "
                 "pass RUN/checkpoints/step_NNNNNNN of an rlntp run")
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a checkpoint directory, RUN/checkpoints/step_NNNNNNN "
                        "(default: pre-train one into --pretrain-out)")
    parser.add_argument("--pretrain-out", default="runs/bench-p25", help="where to pre-train without --checkpoint")
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20, help="timed steps of each side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each side before them")
    parser.add_argument("--budget", type=int, default=60, help="RL steps of each accuracy curve")
    parser.add_argument("--eval-every", type=int, default=2, help="steps between accuracy evaluations")
    parser.add_argument("--eval-samples", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="runs/bench_grpo.png", help="PNG of the accuracy curves")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="both sides run here (TRL through its `use_cpu`)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if trl is None:
        print("bench_grpo.py needs TRL, which is not installed: pip install trl")
        sys.exit(2)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    checkpoint = resolve_checkpoint(args)
    hf = AutoModelForCausalLM.from_pretrained(checkpoint, use_safetensors=True).config
    if hf.n_positions != 2 * args.d + 1:
        sys.exit(f"{checkpoint} was trained with context {hf.n_positions}, not 2d + 1 = {2 * args.d + 1}; "
                 f"pass --d {(hf.n_positions - 1) // 2}")
    task = ParityTask(args.d, p_cot=0.25)  # p_cot only shapes pre-training data; RL samples inputs alone
    post = PosttrainConfig(steps=args.budget, eval_every=args.eval_every, eval_samples=args.eval_samples,
                           seed=args.seed)
    print(f"GRPO, parity d={args.d} from {checkpoint} (GPT-2 {hf.n_layer}x{hf.n_embd}, {hf.n_head} heads), "
          f"{post.prompts} prompts x {post.rollouts} rollouts per step, "
          f"{f'{torch.get_num_threads()} threads' if device.type == 'cpu' else torch.cuda.get_device_name(device)}, "
          f"trl {trl.__version__}")

    with tempfile.TemporaryDirectory() as out_dir:
        median, length, memory = time_steps(checkpoint, task, args.rounds, args.warmup, args.seed, out_dir, device)
        print(f"\n1. seconds per step on {device.type}, lr {post.lr:g}, median of {args.rounds} interleaved steps "
              f"after {args.warmup} warm-up; peak memory of one more step (tensors above weights and optimizer)")
        print(f"{'':8s} {'s/step':>8s} {'mean response len':>18s} {'peak MB':>8s} {'speed-up vs trl':>16s}")
        for name in ("trl", "rlntp"):
            print(f"{name:8s} {median[name]:8.3f} {length[name]:18.1f} {memory[name] / MB:8.1f} "
                  f"{median['trl'] / median[name]:15.2f}x")
        print(f"RATIO rlntp/trl speed-up: {median['trl'] / median['rlntp']:.2f}x")

        budget = args.budget * post.samples_per_step
        print(f"\n2. RL samples to >= {TARGET_ACC:.0%} greedy accuracy ({args.eval_samples} inputs every "
              f"{args.eval_every} steps; budget {args.budget} steps = {budget} samples)")
        curves = {"rlntp PosttrainConfig()": (*rlntp_curve(checkpoint, task, post, args.eval_samples, device),
                                              post.lr)}
        for label, overrides in (("trl GRPOConfig defaults", {}),
                                 ("trl defaults, rlntp's lr", {"learning_rate": post.lr})):
            curve, rewards, config = trl_curve(checkpoint, task, args.budget, args.eval_every, args.eval_samples,
                                               args.seed, out_dir, device, **overrides)
            curves[label] = (curve, rewards, config.learning_rate)
    k = min(5, args.budget)
    print(f"{'':24s} {'lr':>6s} {'samples to 95%':>20s} {'final greedy acc':>17s} "
          f"{f'rollout reward, first -> last {k} steps':>39s}")
    for label, (curve, rewards, lr) in curves.items():
        reached = samples_to(curve, TARGET_ACC)
        text = f"{reached}" if reached is not None else f"not reached in {budget}"
        print(f"{label:24s} {lr:6.0e} {text:>20s} {curve[-1][1]:17.3f} "
              f"{statistics.mean(rewards[:k]):31.2f} -> {statistics.mean(rewards[-k:]):.2f}")
    print("(TRL defaults kept: lr 1e-6 decayed linearly to 0 over the budget, AdamW, grad-norm clip 1, bf16 "
          "autocast, DAPO token-level loss, group-scaled rewards, clip 0.2, beta 0)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (curve, _, lr) in curves.items():
        samples, acc = zip(*curve)
        ax.plot(samples, acc, marker=".", label=f"{label} (lr {lr:.0e})")
    ax.axhline(TARGET_ACC, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="RL samples (prompts x rollouts)", ylabel=f"greedy accuracy ({args.eval_samples} fresh inputs)",
           ylim=(0.0, 1.02), title=f"GRPO from {checkpoint.name}, parity d={args.d}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
