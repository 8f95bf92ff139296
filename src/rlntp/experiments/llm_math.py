"""The plan of the GSM8K and MATH recipes (Figs. 5 right, 19-21, `gsm8k.py` and `math_mixture.py`): SFT on
long/short mixtures, then GRPO from several SFT epochs.

The plan, each step skipped when its output exists (a rerun resumes):
  data/p=P              `rlntp llm data` at each p_cot (p_cot = 1 is the full chain-of-thought baseline)
  sft/p=P               `rlntp llm sft`, one checkpoint per epoch
  grpo/p=P,epoch=E      `rlntp llm grpo` from epoch E's checkpoint, for each p_cot < 1
  eval/NAME.json        `rlntp llm eval` of every SFT epoch and every GRPO checkpoint
  llm.png               accuracy and mean length against training sequences: SFT checkpoints as stars,
                        GRPO curves from them, the best full-CoT SFT checkpoint as the baseline
The `tiny` preset builds its own model (a random tiny Llama and a BPE tokenizer trained here) and
GSM8K-format records, and runs on a CPU in minutes: it checks the wiring, not the paper's claims.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlntp.experiments.claims import PARTLY, REPRODUCED, Claim, Verdict, k_of_n, sampling_margin
from rlntp.experiments.provenance import choice
from rlntp.files import atomic_write_text, save_figure

TINY_NOTE = ("tiny preset: a random 2-layer Llama on synthetic records in the dataset's format; it proves the "
             "wiring (data -> SFT -> GRPO -> eval), not the paper's claims")


@dataclass(frozen=True)
class LLMRecipeConfig:
    """One reproduction of the LLM setting; the stage options are those of `rlntp llm sft|grpo|eval`."""

    dataset: str
    model: str
    """a hub name, or `tiny` to build one here"""
    source: str | None
    """the training records (hub name or file); None: synthetic GSM8K-format records (tiny)"""
    p_cots: tuple[float, ...]
    rl_from_epochs: tuple[int, ...]
    """SFT epochs GRPO starts from, for each p_cot < 1"""
    sft: dict[str, Any] = field(default_factory=dict)
    grpo: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    config_name: str | None = None
    records: tuple[int, int] = (256, 32)
    """tiny: synthetic training and test records"""


def tiny(dataset: str) -> LLMRecipeConfig:
    """The tiny preset: 12 epochs of SFT at p_cot 0.25 and 1, GRPO for 4 steps from epochs 1 and 12. The model
    learns the format (both tags), not the arithmetic."""
    return LLMRecipeConfig(dataset, "tiny", None, p_cots=(0.25, 1.0), rl_from_epochs=(1, 12),
                           sft=dict(epochs=12, lr=2e-3, per_device_batch=16),
                           grpo=dict(steps=4, lr=1e-3, group_size=4, completions_per_device=8, save_every=2,
                                     max_completion_length=64),
                           eval=dict(generations=2, max_new_tokens=64, questions=16))


PAPER_PRESET_SOURCES = {"grpo/save_every": choice("how often to checkpoint: not stated"),
                        "grpo/gradient_checkpointing": choice("memory"),
                        "eval/max_new_tokens": choice("not stated; as the rollouts' limit"),
                        "records": choice("the tiny preset's record counts: unused by this preset")}
"""The provenance both LLM recipes' `paper` presets share (each adds what its appendix states)."""


def _p(p_cot: float) -> str:
    return f"p={p_cot:g}"


def secondary_process() -> bool:
    """Whether this is a process other than the main one of an `accelerate launch` (it does not claim the directory:
    the main process holds it; this one joins the plan, whose steps wait for the main process)."""
    from rlntp.llm.common import distributed

    return not distributed().is_main_process


def run_llm(preset: LLMRecipeConfig, out: Path, device: str = "auto",
            progress: bool = True) -> tuple[str, dict[str, Any] | None]:
    """Run the plan of `preset` into `out` (module docstring) and draw its figure; returns the summary table and
    the results the claims read, {"tiny": whether the preset is the tiny one, "rows": one per SFT epoch and GRPO
    checkpoint} ("" and None in a secondary process of `accelerate launch`)."""
    from rlntp.errors import check
    from rlntp.llm.common import distributed
    from rlntp.llm.dataset import LLMDataConfig, make_dataset
    from rlntp.llm.evaluate import LLMEvalConfig
    from rlntp.llm.grpo import GRPOConfig, run_grpo, step_checkpoints
    from rlntp.llm.sft import SFTConfig, epoch_checkpoints, run_sft

    check(device in ("auto", "cpu"), f"--device {device}: the LLM stages take cpu or auto (accelerate assigns GPUs)")
    out = Path(out)
    state = distributed()
    with state.main_process_first():
        model, source, test_source = _inputs(preset, out)
    stage_options = dict(cpu=True) if device == "cpu" else {}
    # every option is validated before the first stage starts
    SFTConfig(model=model, data=out, **preset.sft, **stage_options)
    GRPOConfig(model=model, data=out, **preset.grpo, **stage_options)
    LLMEvalConfig(model=model, data=out, **preset.eval, **stage_options)

    # Under `accelerate launch` every process runs this plan: the trainers share the work; data and
    # evaluations are made by the main process while the others wait.
    main = state.is_main_process

    def evaluate(checkpoint: Path, data: Path, name: str) -> dict[str, Any] | None:
        options = LLMEvalConfig(model=str(checkpoint), data=data, **preset.eval, **stage_options)
        result = _evaluate(options, out, name) if main else None
        state.wait_for_everyone()
        return result

    rows = []
    for p_cot in preset.p_cots:
        data = out / "data" / _p(p_cot)
        with state.main_process_first():
            if not (data / "manifest.json").exists():
                make_dataset(LLMDataConfig(dataset=preset.dataset, source=source, config_name=preset.config_name,
                                           test_source=test_source, p_cot=p_cot), data)
        sft_dir = out / "sft" / _p(p_cot)
        done = run_sft(SFTConfig(model=model, data=data, **preset.sft, **stage_options), sft_dir, progress)
        per_epoch = done["sequences_per_epoch"]
        for epoch, checkpoint in epoch_checkpoints(sft_dir).items():
            metrics = evaluate(checkpoint, data, f"sft,{_p(p_cot)},epoch={epoch}")
            rows.append(dict(stage="sft", p_cot=p_cot, epoch=epoch, step=0, sequences=epoch * per_epoch,
                             **(metrics or {})))
        if p_cot == 1.0:
            continue
        for epoch in preset.rl_from_epochs:
            start = epoch_checkpoints(sft_dir)[epoch]
            grpo_dir = out / "grpo" / f"{_p(p_cot)},epoch={epoch}"
            grpo = run_grpo(GRPOConfig(model=str(start), data=data, **preset.grpo, **stage_options), grpo_dir,
                            progress)
            for step, checkpoint in step_checkpoints(grpo_dir).items():
                metrics = evaluate(checkpoint, data, f"grpo,{_p(p_cot)},epoch={epoch},step={step}")
                rows.append(dict(stage="grpo", p_cot=p_cot, epoch=epoch, step=step,
                                 sequences=epoch * per_epoch + step * grpo["completions_per_step"], **(metrics or {})))
    if not main:
        return "", None
    atomic_write_text(out / "results.json", json.dumps(rows, indent=2) + "\n")
    plot_llm(rows, preset, out / "llm.png")
    return summarize(rows, preset), {"tiny": preset.model == "tiny", "rows": rows}


PAPER_HOURS = {"gsm8k": {"sft": (1.5, 1.5), "grpo": (20, 35)}, "math": {"sft": (1.5, 1.5), "grpo": (14, 29)}}
"""Wall hours per run on 8 A100s the paper reports (App. B.3, B.4): the only cost estimate of the `paper` presets
here, whose stages load hub models this plan does not download."""


def plan_llm(preset: LLMRecipeConfig) -> dict[str, Any]:
    """What `run_llm(preset)` runs, writing nothing: SFT and GRPO runs, epochs, steps and evaluations, and the
    cost (the paper's reported hours for its presets; measured minutes on a 2-core CPU for `tiny`)."""
    rl_p_cots = [p for p in preset.p_cots if p != 1.0]
    sft_runs, grpo_runs = len(preset.p_cots), len(rl_p_cots) * len(preset.rl_from_epochs)
    epochs, steps = preset.sft.get("epochs", 1), preset.grpo.get("steps", 1)
    save_every = preset.grpo.get("save_every", steps)
    evaluations = sft_runs * epochs + grpo_runs * (steps // save_every + (steps % save_every != 0))
    plan = {"runs": {"sft": sft_runs, "grpo": grpo_runs},
            "totals": {"sft_epochs": sft_runs * epochs, "grpo_steps": grpo_runs * steps,
                       "completions_per_step_per_device": preset.grpo.get("completions_per_device"),
                       "evaluations": evaluations}}
    if preset.model == "tiny":
        plan["cost"] = {"estimate": "about 1 minute on a 2-core CPU (measured: docs/llm.md)"}
    else:
        hours = PAPER_HOURS[preset.dataset]
        low = sft_runs * hours["sft"][0] + grpo_runs * hours["grpo"][0]
        high = sft_runs * hours["sft"][1] + grpo_runs * hours["grpo"][1]
        plan["cost"] = {"hours_on_8_gpus": [low, high], "gpu_hours": [8 * low, 8 * high],
                        "estimate": f"≈ {8 * low:,.0f}-{8 * high:,.0f} A100-hours ({low:,.0f}-{high:,.0f} h on 8 "
                                    f"A100s) from the paper's reported times per run (App. B.3-B.4), not probed: "
                                    f"the stages load {preset.model} from the hub"}
    plan["lines"] = [f"model {preset.model}; data {preset.source or 'synthetic records made here'}",
                     f"runs: {sft_runs} SFT (p_cot {', '.join(f'{p:g}' for p in preset.p_cots)}), {grpo_runs} GRPO "
                     f"(from epochs {', '.join(map(str, preset.rl_from_epochs))} at each p_cot < 1)",
                     f"SFT: {sft_runs * epochs} epochs in all; GRPO: {grpo_runs * steps:,} steps in all; "
                     f"{evaluations} evaluations",
                     f"cost: {plan['cost']['estimate']}"]
    return plan


def _inputs(preset: LLMRecipeConfig, out: Path) -> tuple[str, str, str | None]:
    """(model, training source, test source): the preset's, or for `tiny` a model and records built in `out`."""
    if preset.model != "tiny":
        return preset.model, preset.source, None
    from rlntp.llm.tiny import gsm8k_records, make_tiny_llama, math_records
    from rlntp.tasks.math_text import DATASETS, target

    records = out / "records"
    make = gsm8k_records if preset.dataset == "gsm8k" else math_records
    fmt = DATASETS[preset.dataset]
    train, test = make(preset.records[0], seed=0), make(preset.records[1], seed=1)
    if not (records / "test.jsonl").exists():
        records.mkdir(parents=True, exist_ok=True)
        for name, rows in (("train", train), ("test", test)):
            atomic_write_text(records / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    model = out / "model"
    if not (model / "config.json").exists():
        texts = [_plain(fmt.prompt(r[fmt.question])) + target(*fmt.split(r[fmt.solution])) for r in train]
        make_tiny_llama(model, texts)
    return str(model), str(records / "train.jsonl"), str(records / "test.jsonl")


def _plain(prompt) -> str:
    """A prompt's text for training the tokenizer: the string, or the messages' contents."""
    return prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)


def _evaluate(options, out: Path, name: str) -> dict[str, Any]:
    """The metrics of one evaluation, computed once (OUT/eval/NAME.json) and read back on a rerun."""
    from rlntp.llm.evaluate import run_eval

    path = out / "eval" / f"{name}.json"
    metrics = json.loads(path.read_text()) if path.exists() else run_eval(options, path)
    return {k: v for k, v in metrics.items() if k not in ("model", "written_by")}


def summarize(rows: list[dict[str, Any]], preset: LLMRecipeConfig) -> str:
    """One line per SFT epoch and GRPO checkpoint: accuracy, length, long fraction, reward."""
    lines = [f"{preset.dataset} ({preset.model}): accuracy = the answer tag holds the right answer, "
             f"{preset.eval.get('generations', 4)} samples per question"]
    if preset.model == "tiny":
        lines.append(TINY_NOTE)
    lines.append(f"{'stage':>5s} {'p_cot':>5s} {'epoch':>5s} {'step':>5s} {'sequences':>10s} {'acc':>6s} "
                 f"{'length':>7s} {'long':>5s} {'reward':>7s}")
    for r in rows:
        lines.append(f"{r['stage']:>5s} {r['p_cot']:5.2f} {r['epoch']:5d} {r['step']:5d} {r['sequences']:10,d} "
                     f"{r['accuracy']:6.3f} {r['mean_length']:7.1f} {r['long_frac']:5.2f} {r['reward']:7.1f}")
    return "\n".join(lines)


def plot_llm(rows: list[dict[str, Any]], preset: LLMRecipeConfig, path: Path) -> None:
    """Fig. 5 right: accuracy and mean length against training sequences; stars at SFT checkpoints, GRPO lines
    from them, the best full-CoT SFT checkpoint dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_len) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    p_cots = sorted({r["p_cot"] for r in rows if r["p_cot"] < 1})
    for i, p_cot in enumerate(p_cots):
        color = f"C{i}"
        stars = [r for r in rows if r["stage"] == "sft" and r["p_cot"] == p_cot]
        for ax, key in ((ax_acc, "accuracy"), (ax_len, "mean_length")):
            ax.plot([r["sequences"] for r in stars], [r[key] for r in stars], "*", ms=11, color=color,
                    label=f"SFT, $p_{{cot}}$ = {p_cot:g}" if ax is ax_acc else None)
            for epoch in preset.rl_from_epochs:
                start = [r for r in stars if r["epoch"] == epoch]
                curve = start + [r for r in rows if r["stage"] == "grpo" and r["p_cot"] == p_cot
                                 and r["epoch"] == epoch]
                ax.plot([r["sequences"] for r in curve], [r[key] for r in curve], "-", marker=".", color=color,
                        alpha=0.8)
    full = [r for r in rows if r["stage"] == "sft" and r["p_cot"] == 1.0]
    for ax, key in ((ax_acc, "accuracy"), (ax_len, "mean_length")):
        ax.plot([r["sequences"] for r in full], [r[key] for r in full], "*", ms=8, color="0.6",
                label="SFT, full CoT" if ax is ax_acc and full else None)
    if full:
        best = max(full, key=lambda r: r["accuracy"])
        ax_acc.axhline(best["accuracy"], ls="--", color="k", lw=1, label="best SFT, full CoT")
        ax_len.axhline(best["mean_length"], ls="--", color="k", lw=1)
    ax_acc.set(xlabel="training sequences (SFT, then GRPO rollouts)", ylabel="test accuracy", ylim=(-0.02, 1.02))
    ax_len.set(xlabel="training sequences (SFT, then GRPO rollouts)", ylabel="mean response length (tokens)")
    ax_acc.legend(fontsize=8)
    for ax in (ax_acc, ax_len):
        ax.grid(alpha=0.3)
    title = f"{preset.dataset.upper()}: SFT on long/short mixtures (stars), then GRPO (lines)"
    fig.suptitle(title + (f"\n{TINY_NOTE}" if preset.model == "tiny" else f" — {preset.model}"), fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def _with_tiny_note(check):
    """A check of the LLM results whose verdict on the tiny preset says so: a random tiny model on synthetic
    records is not the paper's setting, so a criterion met there counts as 'partly' at most."""
    def checked(results: dict[str, Any]) -> Verdict:
        verdict = check(results["rows"])
        if not results.get("tiny"):
            return verdict
        return Verdict(PARTLY if verdict.verdict == REPRODUCED else verdict.verdict,
                       f"tiny preset, wiring only (a random 2-layer Llama on synthetic records): {verdict.evidence}")

    return checked


def _smallest_p(rows: list[dict[str, Any]]) -> float:
    """The smallest p_cot > 0 of the SFT runs (the paper's Fig. 5 right: 0.05)."""
    small = [r["p_cot"] for r in rows if r["stage"] == "sft" and 0 < r["p_cot"] < 1]
    if not small:
        raise ValueError("no SFT run at a p_cot strictly between 0 and 1")
    return min(small)


def _baseline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best SFT checkpoint on the full chain of thought (p_cot = 1)."""
    full = [r for r in rows if r["stage"] == "sft" and r["p_cot"] == 1.0]
    if not full:
        raise ValueError("no SFT run at p_cot = 1 (the full chain-of-thought baseline)")
    return max(full, key=lambda r: r["accuracy"])


def _margin(row: dict[str, Any]) -> float:
    """Three standard deviations of the difference of two accuracies, each over the test questions (the
    generations of one question are not independent, so the questions count, not the responses)."""
    return sampling_margin(row["questions"] / 2)


def _sft_saturates_below(rows: list[dict[str, Any]]) -> Verdict:
    p, baseline = _smallest_p(rows), _baseline(rows)
    best = max((r for r in rows if r["stage"] == "sft" and r["p_cot"] == p), key=lambda r: r["accuracy"])
    below = best["accuracy"] < baseline["accuracy"] - _margin(baseline)
    return k_of_n({f"p_cot = {p:g}": (below, f"best SFT accuracy {best['accuracy']:.3f} (epoch {best['epoch']}) vs "
                                             f"{baseline['accuracy']:.3f} at p_cot = 1 (epoch {baseline['epoch']})")},
                  unit="mixtures")


def _grpo_ends(rows: list[dict[str, Any]]) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """Per SFT epoch GRPO started from at the smallest p_cot: (its SFT checkpoint's row, its last row)."""
    p = _smallest_p(rows)
    ends = {}
    for epoch in sorted({r["epoch"] for r in rows if r["stage"] == "grpo" and r["p_cot"] == p}):
        start = next(r for r in rows if r["stage"] == "sft" and r["p_cot"] == p and r["epoch"] == epoch)
        last = max((r for r in rows if r["stage"] == "grpo" and r["p_cot"] == p and r["epoch"] == epoch),
                   key=lambda r: r["step"])
        ends[epoch] = (start, last)
    if not ends:
        raise ValueError(f"no GRPO run at p_cot = {p:g}")
    return ends


def _grpo_reaches_baseline(rows: list[dict[str, Any]]) -> Verdict:
    baseline = _baseline(rows)
    return k_of_n({f"from epoch {epoch}": (last["accuracy"] >= baseline["accuracy"] - _margin(baseline),
                                           f"{start['accuracy']:.3f} -> {last['accuracy']:.3f}")
                   for epoch, (start, last) in _grpo_ends(rows).items()},
                  need="all", unit=f"GRPO runs (baseline {baseline['accuracy']:.3f})")


def _grpo_lengthens(rows: list[dict[str, Any]]) -> Verdict:
    return k_of_n({f"from epoch {epoch}": (last["mean_length"] > start["mean_length"],
                                           f"{start['mean_length']:.0f} -> {last['mean_length']:.0f} tokens")
                   for epoch, (start, last) in _grpo_ends(rows).items()}, need="all", unit="GRPO runs")


_SMALL = "at the preset's smallest p_cot > 0"

CLAIMS = [
    Claim("§5.2, Fig. 5 (right), 19-21: as SFT on a mixture with few long demonstrations continues, accuracy improves "
          "but does not reach the full chain-of-thought baseline and appears to saturate at a lower value",
          f"{_SMALL}, the best SFT accuracy over epochs is below the best SFT accuracy at p_cot = 1 by more than 3 "
          "standard deviations of a difference (1.5/sqrt(test questions / 2))",
          _with_tiny_note(_sft_saturates_below)),
    Claim("§5.2, Fig. 5 (right), 19-21: once switched to GRPO, the model rapidly reaches the baseline accuracy, even "
          "when starting from the first SFT epoch",
          f"{_SMALL}, every GRPO run (one per SFT epoch it starts from) ends with accuracy at least the full "
          "chain-of-thought baseline's minus 3 standard deviations of a difference (1.5/sqrt(test questions / 2))",
          _with_tiny_note(_grpo_reaches_baseline)),
    Claim("§5.2, Fig. 5 (right), 19-21: during GRPO the average response length increases",
          f"{_SMALL}, every GRPO run ends with a larger mean response length than its SFT checkpoint's",
          _with_tiny_note(_grpo_lengthens)),
]
