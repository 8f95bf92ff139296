"""A recipe as one value: its command, its presets (each value beside its source), its claims and how it runs.

Each recipe module declares one `RECIPE = Recipe(...)`; `experiments.RECIPES` lists them in the report's order.
A recipe runs in one of two ways:

  - as a sweep (most recipes): each preset is a sweep (the form of a sweep file, `rlntp.sweeps.spec`); `report`
    draws the figures from the results table and returns the summary table, `prepare` (optional) makes what the
    sweep reads (datasets) before it runs;
  - by a plan of its own (`OwnPlan`: the theory, the LLM path): `jobs` are its jobs of the engine
    (`sweeps.stages`), `run` hands them to the engine and returns the summary and the results its claims read,
    `plan` what it would run, `inputs` options the command line adds (the LLM recipes' records).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlntp.experiments.claims import Claim
from rlntp.experiments.provenance import Source, plain, sources, written_sources

REPORT, SUMMARY = "report.json", "summary.txt"


@dataclass(frozen=True)
class Preset:
    """One preset of a recipe: its description, and its values each written beside its source."""

    description: str
    """one line: the help of `--preset NAME`"""
    values: Any
    """the settings, each value (or section) beside its source (`provenance.paper(value, where)`,
    `provenance.choice(value, why)`, or a shared source applied to it); a sweep's form (`sweeps.spec`) for a
    sweep recipe, or with `make`, the keyword arguments of an own plan's settings"""
    default: Source | None = None
    """the source of every value written plain (e.g. `provenance.CPU`); None: every value names its own"""
    make: Callable[..., Any] | None = None
    """makes the settings from the plain values (the LLM recipes: `LLMRecipeConfig`); None: the values as written"""

    @property
    def settings(self) -> Any:
        """The preset's settings, without their sources: what the recipe runs."""
        values = plain(self.values)
        return self.make(**values) if self.make is not None else values

    def sources(self, where: str) -> dict[str, tuple[Any, Source]]:
        """Every value with its source, by path (`provenance.sources`); ValueError naming a value without one. A
        preset that names no source at all (one a test adds) has none."""
        declared = ({"": self.default} if self.default is not None else {}) | written_sources(self.values)
        return sources(self.settings, declared, where) if declared else {}


@dataclass(frozen=True)
class OwnPlan:
    """How a recipe that is not a sweep runs (the theory, the LLM path)."""

    run: Callable[..., tuple[str, Any]]
    """run(settings, out, device, progress[, executor]) -> (summary, results): runs the plan's jobs into `out` on the
    engine (a rerun resumes; `executor`: where they run, default one at a time in this process)"""
    plan: Callable[[Any], dict[str, Any]]
    """plan(settings) -> what `run` would run and cost, with "lines" to print; writes nothing"""
    jobs: Callable[[Any, Path], list]
    """jobs(settings, out) -> the jobs `run` hands to the engine (`sweeps.spec.Job`): what `--status` reports"""
    inputs: type | None = None
    """a config dataclass of options the command line adds (the LLM recipes' --source, --data ...); None: none"""
    with_inputs: Callable[[Any, Any], Any] | None = None
    """with_inputs(settings, inputs) -> the settings reading them"""
    check_inputs: Callable[[Any, Any], None] | None = None
    """check_inputs(settings, inputs): ConfigError before the recipe's directory is claimed (a missing file, a hub
    that does not answer); `inputs` as given (None: none)"""
    secondary_process: Callable[[], bool] | None = None
    """whether this is a secondary process of an `accelerate launch`, which runs the plan without claiming the
    directory (the main process holds it)"""


@dataclass(frozen=True)
class Recipe:
    """A recipe: what the CLI (`rlntp reproduce NAME`), `reproduce all` and the report page need to know of it."""

    name: str
    """the command: rlntp reproduce NAME (and the default directory runs/NAME)"""
    title: str
    """one line: the command's help and the heading of its report section"""
    presets: dict[str, Preset]
    """its presets by name; the first is the default"""
    claims: list[Claim]
    """the paper's statements it tests, each with a criterion and a check of the results (`experiments.claims`)"""
    report: Callable[[Any, dict, Path], str] | None = None
    """a sweep recipe: report(table, spec, out) -> the summary table; draws its figures from the results into
    `out`"""
    prepare: Callable[[str, dict, Path, bool], None] | None = None
    """a sweep recipe, optional: prepare(preset, spec, out, progress) makes what the sweep reads (datasets); a
    relative `task.data` in the spec is relative to `out`"""
    own_plan: OwnPlan | None = None
    """a recipe that is not a sweep: how it runs"""
    in_all: bool = True
    """run by `rlntp reproduce all`"""
    def __post_init__(self) -> None:
        if (self.report is None) == (self.own_plan is None):
            raise ValueError(f"recipe {self.name}: give it a report (a sweep) or an own plan, exactly one")
        if not self.presets or not self.claims:
            raise ValueError(f"recipe {self.name}: needs at least one preset and one claim")

    @property
    def is_sweep(self) -> bool:
        """Whether its presets are sweeps (else it runs its own plan)."""
        return self.own_plan is None


def make_datasets(spec: dict, out: Path, options: Callable[[Any], dict[str, Any]],
                  make: Callable[[Any, Path], Any]) -> None:
    """Make each dataset the sweep's pre-training runs read (`task.data`, relative to `out`) that is not there yet,
    with make(task config, path); one already there (a rerun) must have been made with `options(task config)`, the
    fields its manifest records, or the recipe stops before any run with what differs."""
    from rlntp.data import MANIFEST, read_manifest
    from rlntp.errors import check
    from rlntp.sweeps.spec import expand

    seen = set()  # the seeds of a setting share its dataset: make or check each once
    for job in expand(spec, base=Path(out).resolve()):
        task = job.pretrain.task if job.stage == "pretrain" else None
        if task is None or not task.data or task.data in seen:
            continue
        seen.add(task.data)
        path, wanted = Path(task.data), options(task)
        if not (path / MANIFEST).exists():
            make(task, path)
            continue
        made = read_manifest(path)
        differ = ", ".join(f"{key} {made.get(key)!r} (this preset: {value!r})" for key, value in wanted.items()
                           if made.get(key) != value)
        check(not differ, f"the dataset {path} was made with other options: {differ}; move it away and rerun, "
                          "or reproduce into another --out")
