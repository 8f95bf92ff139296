"""Every stage a job can be, each declared once: how it runs, the one record that says it is done, and the fields
a resume may change (`Stage`). The engine (`sweeps.engine.run_jobs`) schedules any mix of them; an executor
only places them (`sweeps.executors`).

    stage          its directory (under the engine's root)   done when
    pretrain       runs/NAME/ (a sweep's)                      config.json is the job's, metrics readable, the
    posttrain      runs/NAME/                                  checkpoint at its last step is there
    llm_records    records/ (the tiny preset's own records)    records/test.jsonl
    llm_data       data/p=P/ (`rlntp llm data`)                its manifest.json (written last, by a rename)
    llm_model      model/ (the tiny preset's own Llama)        model/config.json
    sft            sft/p=P/ (`rlntp llm sft`)                  done.json
    grpo           grpo/p=P,epoch=E/ (`rlntp llm grpo`)        done.json
    llm_eval       eval/NAME.json (`rlntp llm eval`)           the file itself
    llm_analysis   analysis/NAME.json (`llm.completions`)      the file itself
    theory         theory/seed=S.json, the figures beside it   the file itself (written after the figures)

Every job resumes: a run from its checkpoints, a file-making stage by making its file again.
"""

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rlntp.errors import Interrupted, RunDirError, UserError, check
from rlntp.files import atomic_write_text
from rlntp.llm.common import RESUMABLE_CHANGES as LLM_RESUMABLE
from rlntp.runs.checkpoints import checkpoint_steps
from rlntp.runs.dirs import CONFIG, flat_diff
from rlntp.runs.metrics import read_metrics
from rlntp.sweeps.spec import Job
from rlntp.tasks.trust import reading
from rlntp.training.posttrain import RESUMABLE_CHANGES as POSTTRAIN_RESUMABLE
from rlntp.training.posttrain import PosttrainRun
from rlntp.training.pretrain import RESUMABLE_CHANGES as PRETRAIN_RESUMABLE
from rlntp.training.pretrain import PretrainRun


@dataclass(frozen=True)
class Stage:
    """What the engine knows of one kind of job."""

    name: str
    label: str
    """how messages name a job of it ("its pre-training runs/x failed")"""
    run: Callable[[Job, Path, bool], dict[str, Any] | None]
    """run (or resume) the job under the root directory; returns more of its outcome (or None)"""
    state: Callable[[Job, Path], dict[str, Any] | None]
    """what the job's record under the root shows: done, partial, damaged, changed; None: not started"""
    resumable: frozenset[str] = frozenset()
    """config fields (dotted) in which a run may differ from its job and still be its run"""
    main_only: bool = False
    """under `accelerate launch`: run by the main process alone (the others wait); else by every process"""
    threads: Callable[[Job], int] = lambda job: 1
    device: Callable[[Job], str] = lambda job: "cpu"


# --- pre- and post-training runs ------------------------------------------------------------------------


def job_config(job: Job) -> dict[str, Any]:
    """What a job's run directory must record (config.json) to be that job's run: the pre-training run's whole
    config, or a post-training run's own section and starting step (its task and model come from its source)."""
    if job.stage == "pretrain":
        return job.pretrain.to_dict()
    return {"stage": "posttrain", "source_step": job.source_step, "post": asdict(job.post)}


def _recorded(run_dir: Path, job: Job) -> dict[str, Any]:
    """The part of a run's config.json that `job_config` describes, as the current code would write it."""
    saved = json.loads((run_dir / CONFIG).read_bytes())
    with reading(str(run_dir / CONFIG)):
        if job.stage == "pretrain":
            return PretrainRun.recorded(saved)
        saved = PosttrainRun.recorded(saved)
    return {key: saved[key] for key in ("stage", "source_step", "post")}


def _run_state(job: Job, root: Path) -> dict[str, Any] | None:
    """done needs the job's config (but the stage's resumable fields), a readable metrics file, and the checkpoint at
    the job's last step."""
    run_dir = root / job.name
    if not (run_dir / CONFIG).exists():
        return {"state": "partial"} if run_dir.is_dir() and any(run_dir.iterdir()) else None
    try:
        recorded = _recorded(run_dir, job)
    except (OSError, ValueError, KeyError, TypeError, UserError) as e:
        return {"state": "damaged", "error": f"{run_dir / CONFIG} cannot be read as a run config ({e})"}
    resumable = STAGES[job.stage].resumable
    diffs = {k: v for k, v in flat_diff(recorded, job_config(job)).items() if k not in resumable}
    if diffs:
        field, (was, now) = sorted(diffs.items())[0]
        return {"state": "changed", "error": f"was made with {field} = {was!r}, the sweep file says {now!r}"}
    try:
        read_metrics(run_dir)
    except RunDirError as e:
        return {"state": "damaged", "error": str(e)}
    steps = checkpoint_steps(run_dir)
    if steps and steps[-1] > job.steps:
        return {"state": "changed", "error": f"reached step {steps[-1]}, past the sweep file's {job.steps} steps"}
    return {"state": "done" if steps and steps[-1] == job.steps else "partial"}


def _pretrain(job: Job, root: Path, progress: bool) -> None:
    from rlntp.training.pretrain import pretrain

    pretrain(job.pretrain, root / job.name, resume=True, progress=progress, report_to=job.report_to,
             group=job.tracker_group)


def _posttrain(job: Job, root: Path, progress: bool) -> None:
    from rlntp.training.posttrain import posttrain

    run = PosttrainRun.starting_from(root / job.source, job.source_step, job.post)
    posttrain(run, root / job.name, resume=True, progress=progress, report_to=job.report_to, group=job.tracker_group)


# --- the LLM path (`experiments.llm_math`) --------------------------------------------------------------


@dataclass(frozen=True)
class TinyRecords:
    """llm_records: synthetic records in a dataset's format (`llm.tiny`), train.jsonl and test.jsonl."""

    dataset: str
    train: int
    test: int


@dataclass(frozen=True)
class TinyModel:
    """llm_model: a random tiny Llama whose tokenizer learns the training records (`source`) or, with `mixtures`,
    the SFT targets of those mixture directories."""

    dataset: str
    source: str | None
    config_name: str | None
    mixtures: tuple[str, ...] = ()


@dataclass(frozen=True)
class FromCheckpoint:
    """sft, grpo, llm_eval: `options` run from a checkpoint of another job's run, known once that job ran (the
    SFT checkpoint of `epoch`, or the GRPO checkpoint at `step`); `start` None: from `options.model` itself."""

    options: Any
    start: str | None = None
    epoch: int | None = None
    step: int | None = None

    def model(self, root: Path) -> str:
        """The checkpoint's directory."""
        if self.start is None:
            return self.options.model
        from rlntp.llm.grpo import step_checkpoints
        from rlntp.llm.sft import epoch_checkpoints

        found = step_checkpoints(root / self.start) if self.step else epoch_checkpoints(root / self.start)
        at = self.step or self.epoch
        check(at in found, f"{root / self.start} has no checkpoint at {'step' if self.step else 'epoch'} {at}")
        return str(found[at])


@dataclass(frozen=True)
class Analysis:
    """llm_analysis: how far one GRPO run's responses moved from the SFT data (`llm.completions.analyse_run`)."""

    sft: str
    epoch: int
    grpo: str
    data: str
    evals: tuple[tuple[int, str], ...]
    """step (0: the SFT checkpoint) -> its evaluation job"""
    responses: int
    device: str


def _file_state(suffix: str = "", record: str | None = None) -> Callable[[Job, Path], dict[str, Any] | None]:
    """done when ROOT/NAME+suffix (or its `record`) exists; partial when its directory holds something else."""
    def state(job: Job, root: Path) -> dict[str, Any] | None:
        path = root / (job.name + suffix)
        if (path / record if record else path).exists():
            return {"state": "done"}
        return {"state": "partial"} if path.is_dir() and any(path.iterdir()) else None

    return state


def _records(job: Job, root: Path, progress: bool) -> None:
    from rlntp.llm.tiny import gsm8k_records, math_records

    spec, out = job.config, root / job.name
    make = gsm8k_records if spec.dataset == "gsm8k" else math_records
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", make(spec.train, seed=0)), ("test", make(spec.test, seed=1))):
        atomic_write_text(out / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def _data(job: Job, root: Path, progress: bool) -> None:
    from rlntp.llm.dataset import make_dataset

    make_dataset(job.config, root / job.name, max_record_mb=None)  # sizes checked by `llm_math.check_inputs`


def _model(job: Job, root: Path, progress: bool) -> None:
    from rlntp.llm.dataset import load_records, read_split
    from rlntp.llm.tiny import make_tiny_llama
    from rlntp.tasks.math_text import DATASETS, target

    spec = job.config
    if spec.mixtures:  # --data: the tokenizer learns from the mixtures' SFT targets
        rows = [r for mixture in spec.mixtures for r in read_split(Path(mixture), "sft").to_list()]
        texts = [_plain(r["prompt"]) + _plain(r["completion"]) for r in rows]
    else:
        fmt = DATASETS[spec.dataset]
        texts = [_plain(fmt.prompt(r[fmt.question])) + target(*parts)
                 for r in load_records(spec.source, "train", spec.config_name, fmt, None)
                 if (parts := fmt.split(r[fmt.solution])) is not None]
    make_tiny_llama(root / job.name, texts)


def _plain(prompt) -> str:
    """A prompt's or completion's text for training the tokenizer: the string, or the messages' contents."""
    return prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)


def _sft(job: Job, root: Path, progress: bool) -> None:
    from rlntp.llm.sft import run_sft

    run_sft(job.config.options, root / job.name, progress)


def _grpo(job: Job, root: Path, progress: bool) -> None:
    from rlntp.llm.grpo import run_grpo

    run_grpo(replace(job.config.options, model=job.config.model(root)), root / job.name, progress)


def _eval(job: Job, root: Path, progress: bool) -> None:
    from rlntp.llm.evaluate import run_eval

    run_eval(replace(job.config.options, model=job.config.model(root)), root / f"{job.name}.json")


def _analyse(job: Job, root: Path, progress: bool) -> None:
    import torch

    from rlntp.llm.completions import analyse_run
    from rlntp.llm.dataset import read_split
    from rlntp.llm.grpo import step_checkpoints
    from rlntp.llm.sft import epoch_checkpoints

    spec = job.config
    start = epoch_checkpoints(root / spec.sft)[spec.epoch]
    checkpoints = {0: start} | step_checkpoints(root / spec.grpo)
    evals = {step: root / f"{name}.json" for step, name in spec.evals}
    on = "cuda" if spec.device != "cpu" and torch.cuda.is_available() else "cpu"
    data = Path(spec.data)
    analyse_run(start, checkpoints, evals, read_split(data, "sft").to_list(), read_split(data, "test")["prompt"],
                root / f"{job.name}.json", spec.responses, on)


# --- the theory (`experiments.theory`) ------------------------------------------------------------------


@dataclass(frozen=True)
class Simulation:
    """theory: one seed of the linear model's simulation (`theory.experiments.write_figures`), its figures into
    `figures` (relative to the root); its record holds the summary and the measurements."""

    seed: int
    figures: str
    arguments: tuple[tuple[str, Any], ...] = ()


def _simulate(job: Job, root: Path, progress: bool) -> None:
    from rlntp.theory.experiments import write_figures

    spec = job.config
    _, summary, values = write_figures(root / spec.figures, seed=spec.seed, **dict(spec.arguments))
    record = root / f"{job.name}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"summary": summary, "measured": values | {"seed": spec.seed}}, indent=2)
                      + "\n")


STAGES = {stage.name: stage for stage in (
    Stage("pretrain", "pre-training", _pretrain, _run_state, frozenset(PRETRAIN_RESUMABLE),
          threads=lambda job: job.pretrain.train.threads, device=lambda job: job.pretrain.train.device),
    Stage("posttrain", "post-training", _posttrain, _run_state, frozenset(POSTTRAIN_RESUMABLE),
          threads=lambda job: job.post.threads, device=lambda job: job.post.device),
    Stage("llm_records", "records", _records, _file_state(record="test.jsonl"), main_only=True),
    Stage("llm_data", "mixture", _data, _file_state(record="manifest.json"), main_only=True),
    Stage("llm_model", "tiny model", _model, _file_state(record="config.json"), main_only=True),
    Stage("sft", "SFT", _sft, _file_state(record="done.json"), LLM_RESUMABLE,
          device=lambda job: "cpu" if job.config.options.cpu else "auto"),
    Stage("grpo", "GRPO", _grpo, _file_state(record="done.json"), LLM_RESUMABLE,
          device=lambda job: "cpu" if job.config.options.cpu else "auto"),
    Stage("llm_eval", "evaluation", _eval, _file_state(".json"), main_only=True,
          device=lambda job: "cpu" if job.config.options.cpu else "auto"),
    Stage("llm_analysis", "completion analysis", _analyse, _file_state(".json"), main_only=True,
          device=lambda job: job.config.device),
    Stage("theory", "simulation", _simulate, _file_state(".json"), main_only=True),
)}
"""Every stage, by name (a job's `stage`)."""


def stage_of(job: Job) -> Stage:
    return STAGES[job.stage]


def job_threads(job: Job | tuple[Job, ...]) -> int:
    """The CPU threads a job's run (or a pack's) uses (its config's `threads`)."""
    job = job[0] if isinstance(job, tuple) else job
    return stage_of(job).threads(job)


def most_threads(jobs: list[Job]) -> int:
    """The most threads any of `jobs` uses (1 for none)."""
    return max((job_threads(job) for job in jobs), default=1)


def job_state(job: Job, root: Path) -> dict[str, Any] | None:
    """What the record of `job` under `root` shows (its stage's `state`)."""
    return stage_of(job).state(job, Path(root))


# --- running a job --------------------------------------------------------------------------------------


def execute(job: Job | tuple[Job, ...], runs_dir: str, progress: bool = False) -> dict[str, Any]:
    """Run (or resume, or find finished) one job under the root `runs_dir`; its outcome: state done or failed,
    error, seconds. What an executor runs where it places a job.

    A tuple of pre-training jobs trains packed (`execute_pack`). A run sets its own thread count (its
    config's `threads`). Never raises for a failure of the job itself, so one failed job never stops the
    others; a Ctrl-C (Interrupted) does propagate: it stops the engine.
    """
    _trust_tasks(job)
    if isinstance(job, tuple):
        return execute_pack(job, runs_dir, progress)
    start = time.perf_counter()
    outcome: dict[str, Any] = {"state": "done", "error": None}
    try:
        outcome |= stage_of(job).run(job, Path(runs_dir), progress) or {}
    except Interrupted:
        raise
    except UserError as e:
        outcome = {"state": "failed", "error": str(e)}
    except Exception as e:  # a bug or a resource failure: keep the traceback for the status file
        outcome = {"state": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    return outcome | {"seconds": time.perf_counter() - start}


def _trust_tasks(job: Job | tuple[Job, ...]) -> None:
    """In a worker process: the engine's process chose to run these jobs' tasks (they were named by its user, not
    read from a file: `tasks.trust`), so the source runs' config.json that a post-training job reads may name them."""
    from rlntp.tasks.trust import trust_task, trusted

    for one in job if isinstance(job, tuple) else (job,):
        if one.pretrain is not None and trusted(one.pretrain.task):
            trust_task(one.pretrain.task.task)


def execute_pack(jobs: tuple[Job, ...], runs_dir: str, progress: bool = False) -> dict[str, Any]:
    """Pre-train `jobs` packed (`rlntp.training.packed`); {"runs": {name: outcome}}, each outcome as `execute`'s.

    The engine's policy for a pack: a run that diverges fails alone; the others go on packed. Runs whose
    directories stand at different steps (a kill between their saves) first catch up alone to the furthest
    one's step, then go on packed. Where packing fails otherwise, each run not failed continues alone from
    its checkpoints, its outcome saying why under `pack_error`.
    """
    from rlntp.training.packed import RunDiverged, StepsDiffer
    from rlntp.training.pretrain import pretrain, pretrain_packed

    start = time.perf_counter()
    outcomes: dict[str, dict[str, Any]] = {}
    remaining, pack_error = list(jobs), None
    trackers = dict(report_to=jobs[0].report_to, group=jobs[0].tracker_group)
    while remaining and pack_error is None:
        outs = [Path(runs_dir) / job.name for job in remaining]
        try:
            pretrain_packed([job.pretrain for job in remaining], outs, progress, **trackers)
            for job in remaining:
                outcomes[job.name] = {"state": "done", "error": None, "seconds": time.perf_counter() - start,
                                      "packed": len(remaining)}
            remaining = []
        except Interrupted:
            raise
        except RunDiverged as e:
            outcomes[remaining[e.index].name] = {"state": "failed", "error": str(e), "packed": len(remaining),
                                                 "seconds": time.perf_counter() - start}
            remaining.pop(e.index)
        except StepsDiffer as e:
            target = max(e.steps)
            try:
                for job, out, step in zip(remaining, outs, e.steps):
                    if step < target:
                        run = job.pretrain
                        pretrain(replace(run, train=replace(run.train, steps=target)), out, resume=True,
                                 progress=progress, **trackers)
            except Interrupted:
                raise
            except Exception as catch_up:  # the run alone will meet it again and report it
                pack_error = f"{e}; catching up alone failed: {catch_up}"
        except UserError as e:
            pack_error = str(e)
        except Exception as e:  # a bug in packing: the runs still train, alone
            pack_error = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    for job in remaining:
        outcomes[job.name] = execute(job, runs_dir, progress) | {"pack_error": pack_error}
    return {"runs": outcomes}
