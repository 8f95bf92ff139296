"""The prepared GPU check: one command, at most ~9 minutes, one JSON summary and a log (`make gpu-check`).

    python benchmarks/gpu_check.py [--device cuda|cpu] [--tiny] [--out runs/gpu_check] [--parts a,b,...]

GPU time comes in short spells, so everything to learn from one is in this script, prepared on a CPU. Each part
runs in its own process under its own time limit (a hang or a crash costs that part alone) and writes its
numbers; the summary `OUT/gpu_check.json` holds every part's status, seconds and results, `OUT/gpu_check.log`
everything they printed. The parts, at Fig. 1's paper setting (d = 50, GPT-2 4 x 256 x 8, batch 256):

  tests      the CUDA tests (tests/test_cuda.py; skipped there without a GPU)
  steps      the pre-training step: grouped, static and compiled (`--step-impl`), fp32 and bf16, 4 runs packed;
             median ms per step and host synchronisations per step (`rlntp.devices.HostSyncCounter`)
  grpo       a GRPO step (rollouts and update, 8 prompts x 8); the rollouts' decoding alone with each decoder
             (shared, static, static compiled); an evaluation (2,560 greedy + sampled) with each decoder
  fig1       the first 2,000 steps of the fig1 paper preset's pre-training (seed 0), and the projected time of
             the preset per seed: 50,000 steps, its evaluations, and its five GRPO runs of 100 steps
  llm        the tiny LLM preset (`rlntp reproduce gsm8k --preset tiny`) on the device, and with
             --vllm colocate where vLLM is installed

--tiny shrinks every setting (d = 6, a 1 x 16 x 2 model, tens of steps, fewer repeats; for the LLM part the stage
commands `rlntp llm data|sft|grpo` once each on a 1-layer Llama instead of the preset) so that `--device cpu --tiny`
runs in about a minute: tests/test_gpu_ready.py runs it in CI, so the script cannot rot, and checks its numbers.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from measure import clock  # benchmarks/measure.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
PARTS = {"tests": 60, "steps": 130, "grpo": 100, "fig1": 130, "llm": 120}
"""Each part and its time limit in seconds (540 in all)."""


def paper_setting(tiny: bool) -> dict:
    """Fig. 1's paper preset (pre-training and GRPO), or its tiny stand-in."""
    from rlntp.experiments.fig1 import RECIPE

    preset = RECIPE.presets["paper"].settings
    setting = {"task": dict(preset["pretrain"]["task"]), "model": dict(preset["pretrain"]["model"]),
               "train": dict(preset["pretrain"]["train"]), "post": dict(preset["posttrain"]["grpo"]["post"]),
               "grpo_from": len(preset["posttrain"]["grpo"]["from_steps"]), "head_steps": 2000}
    if tiny:
        setting["task"]["d"] = 6
        setting["model"] = {"layers": 1, "width": 16, "heads": 2}
        setting["train"] |= {"batch_size": 32, "eval_samples": 64, "eval_every": 20}
        setting["post"] |= {"eval_samples": 64}
        setting["head_steps"] = 40
    return setting


class Partial(dict):
    """A part's results so far, rewritten to OUT/part_NAME.json after each measurement: a part stopped by its
    time limit keeps what it measured."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.path.write_text(json.dumps({"result": self, "complete": False}, indent=1))


def count_syncs(step, device) -> int | None:
    """Host synchronisations in one call of `step`: on CUDA the real ones (torch.cuda.set_sync_debug_mode's
    warnings), elsewhere the operations that would cause them (`HostSyncCounter`)."""
    import warnings

    import torch

    from rlntp.devices import HostSyncCounter

    if device.type == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize(device)
        return sum("synchroniz" in str(w.message) for w in caught)
    with HostSyncCounter() as syncs:
        step()
    return syncs.count


def _median_ms(step, device, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = clock(device)
        step()
        times.append(clock(device) - t0)
    return 1e3 * statistics.median(times)


def part_steps(device, setting: dict, tiny: bool, results: dict) -> dict:
    """ms per pre-training step and host syncs per step, for each way of running it."""
    from rlntp.data import make_data
    from rlntp.devices import autocast
    from rlntp.models import ModelConfig, build_model
    from rlntp.tasks import TaskConfig, make_task
    from rlntp.training.optim import make_optimizer
    from rlntp.training.packed import Pack
    from rlntp.training.pretrain import PretrainConfig, make_step_loss

    task = make_task(TaskConfig(**setting["task"]))
    config, batch = ModelConfig(**setting["model"]), setting["train"]["batch_size"]
    data = make_data(task, None, 0, device)
    variants = [("grouped", "fp32"), ("static", "fp32"), ("static", "bf16"), ("compiled", "fp32"),
                ("compiled", "bf16")]
    if device.type != "cuda":
        variants = [v for v in variants if v[1] == "fp32"]  # bf16 on a CPU is emulated: not worth the minutes
    for impl, precision in variants:
        model = build_model(config, task.vocab_size, task.context_len, task.eos_id, 0, device).train()
        optimizer = make_optimizer(model, "adam", 1e-4, device)
        loss_of = make_step_loss(model, task, impl, device)

        def step():
            b = data.train_batch(0, batch)
            with autocast(device, precision):
                loss, _ = loss_of(b.tokens, b.loss_mask)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        t0 = time.perf_counter()
        step()  # the first call compiles
        first_s = time.perf_counter() - t0
        ms = _median_ms(step, device, 3 if tiny else 30, warmup=1 if tiny else 3)
        # compiled code bypasses dispatch modes: on a CPU its count would be 0 by construction, so none is given
        syncs = None if impl == "compiled" and device.type != "cuda" else count_syncs(step, device)
        results[f"{impl}/{precision}"] = {"ms_per_step": ms, "first_step_s": first_s, "syncs_per_step": syncs}
        print(f"{impl}/{precision}: {ms:.2f} ms per step (first {first_s:.1f} s), {syncs} host syncs", flush=True)
    runs = 4
    models = [build_model(config, task.vocab_size, task.context_len, task.eos_id, s, device) for s in range(runs)]
    pack = Pack(models, PretrainConfig(optimizer="adam", lr=1e-4), task.prompt_len - 1)  # vmap on a GPU

    def packed_step():
        pack.losses([data.train_batch(0, batch) for _ in range(runs)])[0].sum().backward()
        pack.optimizer.step()
        pack.optimizer.zero_grad(set_to_none=True)

    ms = _median_ms(packed_step, device, 3 if tiny else 30, warmup=1 if tiny else 3)
    results[f"packed{runs}/fp32"] = {"ms_per_step": ms, "ms_per_run_step": ms / runs}
    print(f"{runs} runs packed: {ms:.2f} ms per step ({ms / runs:.2f} per run)", flush=True)
    return results


def part_grpo(device, setting: dict, tiny: bool, results: dict) -> dict:
    """Seconds of a GRPO step (rollouts + update) and of an evaluation at the preset's sizes, in the preset's
    precision (its pre-training's too)."""
    import torch

    from rlntp.devices import autocast, resolve_precision, seeded_generator
    from rlntp.evaluation import evaluate
    from rlntp.generation import generate, generate_static
    from rlntp.models import ModelConfig, build_model
    from rlntp.tasks import TaskConfig, make_task
    from rlntp.training.grpo import grpo_update
    from rlntp.training.optim import make_optimizer
    from rlntp.training.posttrain import PosttrainConfig
    from rlntp.training.rollout import sample_rollouts

    task = make_task(TaskConfig(**setting["task"]))
    post = PosttrainConfig(**setting["post"])
    model = build_model(ModelConfig(**setting["model"]), task.vocab_size, task.context_len, task.eos_id, 0,
                        device).train()
    optimizer = make_optimizer(model, "adam", post.lr, device)
    g = seeded_generator(device, 0)

    precision = resolve_precision(post.precision, device)

    def step():
        with autocast(device, precision):
            rollouts = sample_rollouts(model, task, task.sample_prompts(post.prompts, g), post.rollouts,
                                       post.temperature, post.reward, g)
        grpo_update(model, optimizer, rollouts, post.clip_eps, precision=precision)

    results["precision"] = precision
    results["grpo_step_s"] = _median_ms(step, device, 3 if tiny else 10, warmup=1) / 1e3
    # the rollouts' decoding alone: shared prefixes (the default), static shapes, static under torch.compile
    prompts = task.sample_prompts(post.prompts, g)
    compiled = torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None, dynamic=False)
    model.eval()
    for name, decode in (("shared", lambda: generate(model, prompts, task.max_new_tokens, task.eos_id, 1.0, g,
                                                     post.rollouts)),
                         ("static", lambda: generate_static(model, prompts, task.max_new_tokens, task.eos_id, 1.0, g,
                                                            post.rollouts)),
                         ("static_compiled", lambda: generate_static(model, prompts, task.max_new_tokens,
                                                                     task.eos_id, 1.0, g, post.rollouts,
                                                                     forward=compiled))):
        with autocast(device, precision):
            results[f"rollouts_{name}_s"] = _median_ms(decode, device, 3 if tiny else 10, warmup=2) / 1e3
    model.train()
    for name, samples in (("eval_s", setting["train"]["eval_samples"]), ("rl_eval_s", post.eval_samples)):
        for decode in ("shared", "static"):
            t0 = clock(device)
            with autocast(device, precision):
                evaluate(model, task, samples, seeded_generator(device, 0, 1), decode=decode)
            results[name if decode == "shared" else f"{name}_static"] = clock(device) - t0
    print(json.dumps(results), flush=True)
    return results


def part_fig1(device, setting: dict, tiny: bool, out: Path) -> dict:
    """The first steps of the fig1 paper preset's pre-training, and the whole preset's projected time per seed."""
    from rlntp.models import ModelConfig
    from rlntp.runs.metrics import read_metrics
    from rlntp.tasks import TaskConfig
    from rlntp.training.pretrain import PretrainConfig, PretrainRun, pretrain

    train = setting["train"]
    steps, head = train["steps"], setting["head_steps"]
    run = PretrainRun(TaskConfig(**setting["task"]), ModelConfig(**setting["model"]),
                      PretrainConfig(**train | {"steps": head, "save_every": head, "device": str(device)}))
    shutil.rmtree(out / "fig1_head", ignore_errors=True)  # a fresh run every time: its time is the measurement
    t0 = time.perf_counter()
    pretrain(run, out / "fig1_head", progress=False)
    wall = time.perf_counter() - t0
    records = read_metrics(out / "fig1_head")
    timed = [r for r in records if "perf/step_s" in r]
    step_s = sum(r["perf/step_s"] for r in timed) / len(timed)
    grpo = json.loads((out / "part_grpo.json").read_text())["result"] if (out / "part_grpo.json").is_file() else {}
    evals = steps // train["eval_every"] + 1
    eval_s = (wall - step_s * head) / (head // train["eval_every"] + 1)  # the rest of the wall time: evaluations
    projected = {"pretrain_s": steps * step_s + evals * eval_s}
    if "grpo_step_s" in grpo and "rl_eval_s" in grpo:  # the grpo part ran in this invocation and got that far
        post = setting["post"]
        per_run = post["steps"] * grpo["grpo_step_s"] + (post["steps"] // post["eval_every"] + 1) * grpo["rl_eval_s"]
        projected |= {"grpo_runs_s": setting["grpo_from"] * per_run}
    projected["total_s"] = sum(projected.values())
    result = {"steps_run": head, "wall_s": wall, "step_s": step_s, "eval_s": eval_s,
              "final": {k: records[-1][k] for k in ("train/loss", "eval/greedy_acc", "eval/sampled_long_frac")},
              "projected_per_seed": projected}
    print(json.dumps(result), flush=True)
    return result


def part_llm(device, tiny: bool, out: Path, results: dict) -> dict:
    """The tiny LLM preset on the device; then, where vLLM is installed, GRPO from its last SFT checkpoint with
    rollouts from vLLM colocated on the GPU (not yet run on a GPU: this machine has neither)."""
    import importlib.util

    def rlntp(*args: str) -> float:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "rlntp", *args], capture_output=True, text=True)
        print(done.stdout[-2000:], done.stderr[-3000:], flush=True)
        if done.returncode:
            raise RuntimeError(f"rlntp {' '.join(args)} exited with {done.returncode}: {done.stderr.strip()[-500:]}")
        return time.perf_counter() - t0

    recipe = out / "llm_tiny"
    for old in (recipe, out / "llm_vllm", out / "llm_stages"):  # fresh runs: a finished one would resume in no time
        shutil.rmtree(old, ignore_errors=True)
    if tiny:
        return llm_stages(device, out / "llm_stages", rlntp, results)
    # the LLM stages take cpu or auto (accelerate assigns the GPUs)
    results["tiny_preset_s"] = rlntp("reproduce", "gsm8k", "--preset", "tiny", "--device",
                                     "cpu" if device.type == "cpu" else "auto", "--out", str(recipe), "--quiet")
    if device.type != "cuda" or importlib.util.find_spec("vllm") is None:
        results["vllm"] = "skipped: " + ("not on CUDA" if device.type != "cuda" else "vLLM is not installed")
        return results
    sft = sorted((recipe / "sft").glob("p=*/checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2]))[-1]
    results["vllm_grpo_s"] = rlntp("llm", "grpo", "--model", str(sft), "--data", str(recipe / "data" / sft.parent.name),
                                   "--out", str(out / "llm_vllm"), "--steps", "4", "--group-size", "4",
                                   "--completions-per-device", "4", "--vllm", "colocate", "--quiet")
    return results


def llm_stages(device, out: Path, rlntp, results: dict) -> dict:
    """--tiny: each LLM stage command once at the smallest sizes (a 1-layer Llama, 64 records, one SFT epoch, two
    GRPO steps) instead of the tiny preset's 4 epochs at two mixtures: the commands the vLLM run uses, in seconds."""
    from rlntp.llm.tiny import gsm8k_records, make_tiny_llama

    out.mkdir(parents=True)
    records = gsm8k_records(80)
    for name, rows in (("train", records[:64]), ("test", records[64:])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    model = make_tiny_llama(out / "model", [r["question"] + " " + r["answer"] for r in records], hidden=32, layers=1,
                            heads=2)
    cpu = ["--cpu"] if device.type == "cpu" else []
    results["data_s"] = rlntp("llm", "data", "--dataset", "gsm8k", "--source", str(out / "train.jsonl"),
                              "--test-source", str(out / "test.jsonl"), "--p-cot", "0.5", "--out", str(out / "data"))
    results["sft_s"] = rlntp("llm", "sft", "--model", str(model), "--data", str(out / "data"), "--out",
                             str(out / "sft"), "--epochs", "1", "--per-device-batch", "8", *cpu, "--quiet")
    sft = sorted((out / "sft").glob("checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2]))[-1]
    results["grpo_steps"] = 2
    results["grpo_s"] = rlntp("llm", "grpo", "--model", str(sft), "--data", str(out / "data"), "--out",
                              str(out / "grpo"), "--steps", "2", "--group-size", "2", "--completions-per-device", "4",
                              "--max-completion-length", "16", "--save-every", "2", *cpu, "--quiet")
    results["grpo_checkpoints"] = sorted(p.name for p in (out / "grpo").glob("checkpoint-*"))
    results["vllm"] = "skipped: " + ("not on CUDA" if device.type != "cuda" else "not with --tiny")
    return results


def run_part(name: str, device_name: str, tiny: bool, out: Path) -> None:
    """One part, in this process: its result as OUT/part_NAME.json."""
    import torch

    from rlntp.devices import resolve_device

    device = resolve_device(device_name)
    torch.set_num_threads(min(os.cpu_count() or 1, 8))
    setting = paper_setting(tiny)
    partial = Partial(out / f"part_{name}.json")
    if name == "tests":
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests/test_cuda.py")]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        print(done.stdout[-4000:], done.stderr[-2000:], flush=True)
        if done.returncode not in (0, 5):  # 5: nothing collected
            raise RuntimeError(f"the CUDA tests failed: {done.stdout.strip().splitlines()[-1:]}")
        result = {"summary": (done.stdout.strip().splitlines() or [""])[-1]}
    elif name == "steps":
        result = part_steps(device, setting, tiny, partial)
    elif name == "grpo":
        result = part_grpo(device, setting, tiny, partial)
    elif name == "fig1":
        result = part_fig1(device, setting, tiny, out)
    else:
        result = part_llm(device, tiny, out, partial)
    (out / f"part_{name}.json").write_text(json.dumps({"result": result, "complete": True}, indent=1))


def machine(device_name: str) -> dict:
    import torch

    facts = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": device_name,
             "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny settings (CI's check that the script runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/gpu_check")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part:
        run_part(args.part, args.device, args.tiny, args.out)
        return {}
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("CUDA is not available here; on a CPU run `--device cpu --tiny` (what CI runs)")
    asked = args.parts.split(",")
    unknown = sorted(set(asked) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    parts = [name for name in PARTS if name in asked]  # in order: fig1 projects with grpo's numbers
    for stale in args.out.glob("part_*.json"):  # an earlier invocation's: fig1 must not read them
        stale.unlink()
    summary = {"machine": machine(args.device), "tiny": args.tiny, "parts": {}}
    log = args.out / "gpu_check.log"
    with open(log, "w") as log_file:
        for name in parts:
            t0 = time.perf_counter()
            command = [sys.executable, __file__, "--part", name, "--device", args.device, "--out", str(args.out)]
            log_file.write(f"===== {name}\n")
            log_file.flush()
            limit = PARTS[name] * (3 if args.tiny else 1)  # tiny runs on a CPU, maybe a loaded one: more slack
            # its own process group: at the limit, the part and everything it started (pytest, rlntp, vLLM) end
            process = subprocess.Popen(command + ["--tiny"] * args.tiny, stdout=log_file, stderr=subprocess.STDOUT,
                                       cwd=ROOT, start_new_session=True)
            try:
                code = process.wait(timeout=limit)
                status = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                status = f"timed out after {limit} s"
            entry = {"status": status, "seconds": round(time.perf_counter() - t0, 1)}
            result_file = args.out / f"part_{name}.json"
            if result_file.is_file():
                saved = json.loads(result_file.read_text())
                entry["result"] = saved["result"]
                if not saved.get("complete", True):
                    entry["status"] += " (results so far kept)"
            summary["parts"][name] = entry
            print(f"{name}: {status} in {entry['seconds']} s", flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out / 'gpu_check.json'} and {log}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
