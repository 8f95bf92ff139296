"""What a sweep will run, and what it will cost, before anything runs (`rlntp sweep FILE --plan`,
`rlntp reproduce NAME --plan`).

The plan counts the runs, steps, samples, evaluations and checkpoints of the expanded sweep, and estimates
its cost from a short timing probe on the chosen device: for each distinct model and task (at the runs'
threads, device and precision), a freshly initialized model takes an optimizer step on a few sequences
and generates a few answers (up to PROBE_NEW_TOKENS tokens, scaled to the budget), each timed after a
warm-up. A run's step is priced from these per-sequence rates: its batch (pre-training), its rollouts
plus its update passes over them (post-training), two answers per evaluation input. Generation is timed
with every answer at full length and every rollout distinct (EOS never ends a row), so RL steps and
evaluations are upper bounds where trained models answer short; rates scale linearly in rows (on a GPU,
where rows run in parallel, an overestimate). Nothing is written: the probe's model lives in memory.
"""

import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from rlntp.regime import MEMORISATION, format_passes, passes, recordable, seen_share
from rlntp.sweeps.spec import Job
from rlntp.tasks import builtin_distinct_inputs

PROBE_ROWS = 16
"""Rows a probe generates on."""
PROBE_TOKENS = 1024
"""Tokens a probe's training step takes, about: as many rows as fit, from 1 to PROBE_ROWS."""
PROBE_NEW_TOKENS = 32
"""Tokens a probe generates per answer at most; a longer budget is scaled from it (linearly: attention over a
longer cache costs more, which the models' sizes here make small beside their weights)."""


def plan_jobs(jobs: list[Job], device: str = "auto", probe: bool = True, executor=None) -> dict[str, Any]:
    """The plan of the expanded sweep `jobs` (module docstring) as JSON data; with an `executor` (ExecutorConfig)
    of --executor slurm, also its jobs and what each asks for (`slurm.plan_section`)."""
    pre = [job for job in jobs if job.stage == "pretrain"]
    post = [job for job in jobs if job.stage == "posttrain"]
    kinds: dict[str, dict[str, Any]] = {}
    for job in jobs:
        key, describe = _kind(job)
        entry = kinds.setdefault(key, describe | {"runs": 0, "steps": 0, "samples": 0, "evaluations": 0,
                                                  "eval_inputs": 0, "checkpoints": 0, "_job": job})
        config = job.pretrain.train if job.post is None else job.post
        evals = _evaluations(config.steps, config.eval_every)
        entry["runs"] += 1
        entry["steps"] += config.steps
        entry["samples"] += config.steps * (config.batch_size if job.post is None else job.post.samples_per_step)
        entry["evaluations"] += evals
        entry["eval_inputs"] += evals * config.eval_samples
        entry["checkpoints"] += _evaluations(config.steps, config.save_every) - 1  # no checkpoint at step 0
    seconds, rates = 0.0, {}
    for entry in kinds.values():
        job = entry.pop("_job")
        if probe:
            model_key = repr((entry["task"], entry["model"], entry["threads"], entry["device"], entry["precision"]))
            if model_key not in rates:
                rates[model_key] = probe_rates(job, device)
            timing = step_costs(job, rates[model_key])
            entry["probe"] = rates[model_key] | timing
            entry["seconds"] = (entry["steps"] * timing["step_s"]
                                + entry["eval_inputs"] * timing["eval_s_per_input"])
            seconds += entry["seconds"]
    resolved = _device(device)
    plan = {
        "runs": {"pretrain": len(pre), "posttrain": len(post),
                 "posttrain_groups": dict(Counter(job.group for job in post))},
        "totals": {"pretrain_steps": sum(j.pretrain.train.steps for j in pre),
                   "pretrain_samples": sum(j.pretrain.train.steps * j.pretrain.train.batch_size for j in pre),
                   "rl_steps": sum(j.post.steps for j in post),
                   "rl_samples": sum(j.post.steps * j.post.samples_per_step for j in post),
                   "checkpoints": sum(k["checkpoints"] for k in kinds.values()),
                   "eval_inputs": sum(k["eval_inputs"] for k in kinds.values())},
        "kinds": list(kinds.values()),
        "regime": pretrain_regime(jobs),
        "device": str(resolved),
    }
    if probe:
        plan["cost"] = {"seconds": seconds, "hours": seconds / 3600, "estimate": _estimate(seconds, resolved),
                        "method": "a timing probe of each kind of run on this device, generation at full length "
                                  "(an upper bound where answers are short), one run at a time; runs at once "
                                  "(--workers, Ray) divide the wall time, not the device-hours"}
    if executor is not None and executor.executor == "slurm":
        from rlntp.sweeps.slurm import plan_section

        plan["slurm"] = plan_section(executor, jobs, plan["kinds"])
    return plan


def pretrain_regime(jobs: list[Job]) -> list[dict[str, Any]]:
    """The regime of each pre-training run of `jobs` before it runs, writing nothing: {"run", "pretrain_samples"
    (train.steps x train.batch_size), "distinct_inputs" (`regime.recordable`), "passes" (their ratio; > 1: the
    memorisation regime)}.

    The distinct inputs are a built-in task's (`Task.distinct_inputs`: 2^d for parity, the ordered operand pairs
    for multiplication); for a dataset, its train split's rows less the duplicates its manifest records, where it
    exists (exact for `rlntp data mult`, whose pairs are distinct; an upper bound for a sampled one); None for a
    dataset not made yet and for a task of your own (its code is not run to plan: a run records its own,
    `sweeps.engine.write_results`)."""
    rows = []
    for job in jobs:
        if job.stage != "pretrain":
            continue
        train, task = job.pretrain.train, job.pretrain.task
        samples = train.steps * train.batch_size
        inputs = _dataset_rows(task.data) if task.data else builtin_distinct_inputs(asdict(task))
        rows.append({"run": job.name, "pretrain_samples": samples, "distinct_inputs": recordable(inputs),
                     "passes": passes(samples, inputs)})
    return rows


def _dataset_rows(path: str) -> int | None:
    """A dataset's distinct train inputs: those its manifest counts (`rlntp data parity`: each input in `copies`
    rows), else its train rows less the duplicates it records; None where there is no dataset yet."""
    from rlntp.data import read_manifest
    from rlntp.errors import ConfigError

    try:
        manifest = read_manifest(Path(path))
        if isinstance(counted := (manifest.get("inputs") or {}).get("train"), int):
            return counted
        rows = manifest["splits"]["train"]["rows"]
        duplicates = (manifest.get("duplicate_pairs") or {}).get("train", 0)
        return rows - duplicates if isinstance(rows, int) and isinstance(duplicates, int) else None
    except (ConfigError, KeyError, TypeError, AttributeError):
        return None


def render_regime(regime: list[dict[str, Any]]) -> list[str]:
    """The pre-training runs' regime as lines: one per (samples, distinct inputs) with its runs and passes."""
    groups = Counter((row["pretrain_samples"], row["distinct_inputs"], row["passes"]) for row in regime)
    lines = []
    for (samples, inputs, per_input), count in groups.items():
        if inputs is None:
            lines.append(f"  {count} run(s): {samples:,} samples of distinct inputs not known before it runs (a "
                         "dataset not made yet, or a task of your own)")
            continue
        where = "the memorisation regime" if per_input > MEMORISATION else "no more samples than inputs"
        shown = f"{inputs:,}" if isinstance(inputs, int) else inputs
        lines.append(f"  {count} run(s): {samples:,} samples of {shown} distinct inputs: {format_passes(per_input)} "
                     f"passes, {seen_share(per_input):.0%} of the inputs seen ({where})")
    return ["pre-training regime (samples seen / distinct inputs):", *lines] if lines else []


def _kind(job: Job) -> tuple[str, dict[str, Any]]:
    """What a run's cost depends on, as a key and as JSON: the task (not its mixture weights), the model, the
    batch, the threads, device and precision; post-training also the algorithm and rollouts per step."""
    task = {k: v for k, v in asdict(job.pretrain.task).items() if k not in ("p_cot", "p_medium", "data")}
    model = asdict(job.pretrain.model)
    if job.post is None:
        train = job.pretrain.train
        describe = {"stage": "pretrain", "task": task, "model": model, "batch_size": train.batch_size,
                    "threads": train.threads, "device": train.device, "precision": train.precision}
    else:
        post = job.post
        describe = {"stage": "posttrain", "algo": post.algo, "task": task, "model": model,
                    "prompts_per_step": post.prompts, "rollouts_per_prompt": post.rollouts,
                    "updates_per_step": post.updates_per_step, "star_epochs": post.star_epochs,
                    "star_batch_size": post.star_batch_size, "threads": post.threads, "device": post.device,
                    "precision": post.precision}
    return repr(sorted(describe.items(), key=lambda kv: kv[0])), describe


def _evaluations(steps: int, every: int) -> int:
    """Evaluations (or checkpoints, counting step 0) of a run: step 0, every `every`, and the last."""
    return 1 + steps // every + (steps % every != 0)


def _device(device: str) -> torch.device:
    from rlntp.devices import resolve_device

    return resolve_device(device)


def probe_rates(job: Job, device: str = "auto") -> dict[str, float]:
    """Seconds per sequence of a training step and of generation at full length, for the model and task of `job` at
    its threads, device and precision, measured on a fresh model (module docstring)."""
    from rlntp.devices import autocast, pinned_threads, resolve_precision, seeded_generator
    from rlntp.generation import generate
    from rlntp.models import build_model
    from rlntp.tasks import make_task
    from rlntp.training.losses import next_token_loss
    from rlntp.training.optim import make_optimizer

    task = make_task(job.pretrain.task)
    config = job.pretrain.train if job.post is None else job.post
    torch_device = _device(device if config.device == "auto" else config.device)
    precision = resolve_precision(config.precision, torch_device)
    generator = seeded_generator(torch_device, 0)
    with pinned_threads(config.threads):
        model = build_model(job.pretrain.model, task.vocab_size, task.context_len, task.eos_id, 0, torch_device)
        optimizer = make_optimizer(model, config.optimizer, config.lr, torch_device, config.weight_decay,
                                   config.max_grad_norm)
        train_rows = max(1, min(PROBE_ROWS, PROBE_TOKENS // task.context_len))
        batch = task.sample(train_rows, generator)

        def train_step() -> None:
            with autocast(torch_device, precision):
                loss, _ = next_token_loss(model, batch.tokens, batch.loss_mask)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        train_s = _timed(train_step, torch_device)
        prompts = task.sample_prompts(PROBE_ROWS, generator)
        model.eval()
        tokens = min(task.max_new_tokens, PROBE_NEW_TOKENS)
        with torch.no_grad(), autocast(torch_device, precision):  # EOS id -1: every row runs to the budget
            generate(model, prompts, 2, -1, 1.0, generator)  # warm-up
            generate_s = _timed(lambda: generate(model, prompts, tokens, -1, 1.0, generator), torch_device,
                                warm_up=False) * task.max_new_tokens / tokens
    return {"train_s_per_sequence": train_s / train_rows, "generate_s_per_sequence": generate_s / PROBE_ROWS}


def checkpoint_interval_s(jobs: list[Job], device: str = "auto") -> tuple[float, str | None]:
    """Seconds the slowest of `jobs` takes from one checkpoint to the next (its steps and evaluations in between, by
    the timing probe on this machine), and that job's name (None for no jobs)."""
    rates: dict[str, dict[str, float]] = {}
    need, slowest = 0.0, None
    for job in jobs:
        key = _kind(job)[0]
        if key not in rates:
            rates[key] = probe_rates(job, device)
        costs = step_costs(job, rates[key])
        train = job.pretrain.train if job.post is None else job.post
        interval = min(train.save_every, train.steps)
        seconds = interval * costs["step_s"] + -(-interval // train.eval_every) * train.eval_samples * costs[
            "eval_s_per_input"]
        if seconds > need:
            need, slowest = seconds, job.name
    return need, slowest


def step_costs(job: Job, rates: dict[str, float]) -> dict[str, float]:
    """Seconds per step and per evaluation input of `job` from its model's `rates` (`probe_rates`)."""
    train, gen = rates["train_s_per_sequence"], rates["generate_s_per_sequence"]
    costs = {"eval_s_per_input": 2 * gen}  # a greedy and a sampled answer per input
    if job.post is None:
        return costs | {"step_s": job.pretrain.train.batch_size * train}
    post = job.post
    n = post.samples_per_step
    if post.algo == "star":  # every kept sample (at most all), star_epochs epochs
        update = post.star_epochs * n * train
    else:  # grpo: its updates plus the old log-probabilities' pass; reinforce: one
        update = (post.updates_per_step + 1 if post.algo == "grpo" else 1) * n * train
    return costs | {"step_s": n * gen + update}


MIN_PROBE_S = 0.25
"""A probe repeats a call until this many seconds have passed (once at least), and takes the mean."""
LONG_CALL_S = 2.0
"""On a CPU, a warm-up call that takes at least this long is the measurement: the one-time costs a warm-up absorbs
(allocations, the optimizer's state) are small beside it, and a large model steps once instead of twice (the
paper presets of multiplication and Mistral: 8 s per step on one thread). On a GPU the first call also sets up the
context and kernels, which can take seconds for any model: there the warm-up is never the measurement."""


def _timed(fn, device: torch.device, warm_up: bool = True) -> float:
    """Mean seconds of a call of `fn` (after a warm-up call), over calls for at least MIN_PROBE_S."""
    _sync(device)
    if warm_up:
        started = time.perf_counter()
        fn()
        _sync(device)
        if (seconds := time.perf_counter() - started) >= LONG_CALL_S and device.type == "cpu":
            return seconds
    started, calls = time.perf_counter(), 0
    while calls == 0 or time.perf_counter() - started < MIN_PROBE_S:
        fn()
        _sync(device)
        calls += 1
    return (time.perf_counter() - started) / calls


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _estimate(seconds: float, device: torch.device) -> str:
    """'≈ 3.1 GPU-hours on this GPU (NAME)' or '≈ 140 CPU-hours here' (CPU-hours: one run at a time)."""
    hours = seconds / 3600
    amount = f"{hours:,.1f}" if hours >= 0.1 else f"{seconds / 60:,.1f} minutes, {hours:.2f}"
    if device.type == "cuda":
        return f"≈ {amount} GPU-hours on this GPU ({torch.cuda.get_device_name(device)})"
    return f"≈ {amount} CPU-hours here (one run at a time at its own threads)"


def render(plan: dict[str, Any], title: str) -> str:
    """The plan as text: counts, each kind of run with its measured step, the estimate, then the settings."""
    runs, totals = plan["runs"], plan["totals"]
    groups = ", ".join(f"{name} {count}" for name, count in runs["posttrain_groups"].items())
    lines = [title,
             f"runs: {runs['pretrain']} pre-training, {runs['posttrain']} post-training"
             + (f" ({groups})" if groups else ""),
             f"pre-training: {totals['pretrain_steps']:,} steps, {totals['pretrain_samples']:,} samples",
             f"post-training: {totals['rl_steps']:,} steps, {totals['rl_samples']:,} RL samples (rollouts counted)",
             f"evaluations: {totals['eval_inputs']:,} test inputs in all; checkpoints: {totals['checkpoints']:,}",
             *render_regime(plan.get("regime", []))]
    for kind in plan["kinds"]:
        model = kind["model"]
        what = (f"{kind['stage']}" + (f" {kind['algo']}" if kind["stage"] == "posttrain" else "")
                + f", {kind['task'].get('task', 'parity')} {_task_size(kind['task'])}, {model['arch']} "
                  f"{model['layers']}x{model['width']}/{model['heads']}: {kind['runs']} runs, {kind['steps']:,} steps")
        if "probe" in kind:
            what += (f"; {kind['probe']['step_s']:.3g} s/step, {kind['probe']['eval_s_per_input'] * 1000:.3g} ms per "
                     f"evaluation input -> {kind['seconds'] / 3600:,.2f} h")
        lines.append("  " + what)
    if "cost" in plan:
        lines.append(f"cost: {plan['cost']['estimate']} on {plan['device']}")
        lines.append(f"  ({plan['cost']['method']})")
    if "slurm" in plan:
        from rlntp.sweeps.slurm import render_plan

        lines.extend(render_plan(plan["slurm"]))
    return "\n".join(lines)


def _task_size(task: dict[str, Any]) -> str:
    return f"d = {task['d']}" if task.get("task", "parity") == "parity" else f"n = {task.get('digits')}"
