"""Where each preset value comes from: the paper's text (with its section or figure) or our choice (with why).

A recipe declares, beside its PRESETS,

    PROVENANCE = {"paper": {"pretrain/task/d": paper("§3.1, Fig. 1"), "pretrain/train": choice("..."), ...},
                  "cpu": {"": choice("a small analogue for 2 CPU cores"), "pretrain/task/p_cot": paper("...")}}

keyed by a path into the preset: the keys of its nested dictionaries (a dataclass preset by its fields)
joined by "/", an axis by its name as written ("pretrain/axes/task.p_cot"). An entry covers the value at
its path and everything below it; the longest matching entry wins, so a section can be a choice while one
of its values is the paper's. `sources` resolves every value of a preset and refuses a value with no
entry, or an entry that names no value (a preset edited without its provenance).
"""

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

PAPER, CHOICE = "paper", "choice"


@dataclass(frozen=True)
class Source:
    """The provenance of one preset value."""

    kind: str
    """paper: the paper states it; choice: we chose it"""
    note: str
    """paper: where it says so (section, appendix, figure); choice: why this value"""

    def __str__(self) -> str:
        return f"{self.kind}: {self.note}"


def paper(where: str) -> Source:
    """A value the paper states, at `where` (e.g. "App. B.1", "Fig. 13 caption")."""
    return Source(PAPER, where)


def choice(why: str) -> Source:
    """A value we chose, for the reason `why` (the paper does not state it, or we depart from it)."""
    return Source(CHOICE, why)


def leaves(settings: Any) -> dict[str, Any]:
    """A preset's values by path (module docstring); a list or tuple is one value."""
    if dataclasses.is_dataclass(settings):
        settings = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    found: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{path}/{key}" if path else str(key))
        else:
            found[path] = json.loads(json.dumps(node, default=str))

    walk(settings, "")
    return found


def sources(settings: Any, declared: dict[str, Source], where: str) -> dict[str, tuple[Any, Source]]:
    """Every value of a preset with its provenance: {path: (value, Source)}, in the preset's order.

    Raises ValueError naming the first value no entry of `declared` covers, or the entries that cover
    no value (`where` names the preset in the message).
    """
    values = leaves(settings)
    resolved = {}
    for path, value in values.items():
        covering = [key for key in declared if key == "" or path == key or path.startswith(key + "/")]
        if not covering:
            raise ValueError(f"{where}: {path} = {value!r} has no provenance: add it to the recipe's PROVENANCE "
                             f"as paper('where the paper states it') or choice('why')")
        resolved[path] = (value, declared[max(covering, key=len)])
    stale = [key for key in declared if key and not any(p == key or p.startswith(key + "/") for p in values)]
    if stale:
        raise ValueError(f"{where}: PROVENANCE names {', '.join(stale)}, which the preset does not have")
    return resolved


def preset_sources(module, preset: str) -> dict[str, tuple[Any, Source]]:
    """`sources` of a recipe module's preset, from its PROVENANCE."""
    name = module.RECIPE.name
    declared = getattr(module, "PROVENANCE", {}).get(preset)
    if declared is None:
        raise ValueError(f"the {name} recipe declares no PROVENANCE for its {preset} preset")
    return sources(module.PRESETS[preset], declared, f"the {name} recipe's {preset} preset")


def as_rows(resolved: dict[str, tuple[Any, Source]]) -> list[dict[str, Any]]:
    """The resolved values as JSON rows: path, value, provenance (paper | choice) and its note."""
    return [{"setting": path, "value": value, "provenance": source.kind, "note": source.note}
            for path, (value, source) in resolved.items()]


def table(resolved: dict[str, tuple[Any, Source]], value_width: int = 40) -> str:
    """A fixed-width text table: setting, value (cut to `value_width`), paper/choice, note."""
    def shown(value: Any) -> str:
        text = json.dumps(value)
        return text if len(text) <= value_width else text[: value_width - 1] + "…"

    rows = [(path, shown(value), source.kind, source.note) for path, (value, source) in resolved.items()]
    first, second = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    return "\n".join(f"{path:<{first}s}  {value:<{second}s}  {kind:<6s}  {note}" for path, value, kind, note in rows)


# The sources the parity recipes share (App. B.1 and §3 of the paper; our text of it lost many numbers).
BATCH_256 = paper("§3.1: 256 sequences per iteration")
ADAM = paper("App. B.1: the Adam optimizer")
PRETRAIN_LR = choice("our text of App. B.1 lost the learning rate; 1e-4, a usual Adam rate at these widths")
POST_LR = choice("our text of App. B.1 lost the RL learning rate; 1e-4")
PRETRAIN_EVAL = paper("App. B.1: test statistics on 2,560 new samples")
POST_EVAL = paper("App. B.1: test statistics on 640 new samples")
THREE_SEEDS = paper("3 seeds (Figs. 2 and 3 captions)")
P_COT = paper("§3.2: p_cot = 0.25 (Figs. 1, 3, 6-8, 13)")
D_50 = paper("§3.1-3.2: d = 50")
MODEL = choice("our text lost the default architecture; a member of App. B.1's grid (depth {2, 4, 8}, "
               "width {128, 256}, heads {4, 8, 16, 32})")
CADENCE = choice("how often to evaluate and checkpoint: not stated; often enough to draw the curves")
GRPO = paper("§3.2: GRPO")
E2E = choice("the figure does not name the reward; the end-to-end one, as in Figs. 6-8 (App. C.1)")
GROUP = choice("App. B.1: batch 64 for GRPO; our text lost the group size, so 8 inputs x 8 rollouts")
CLIP = choice("our text of App. B.1 lost the clip parameter; 0.2, PPO's and TRL's default")
RL_STEPS = choice("not stated; enough RL steps to reach 100% in the paper's figures (they end within ~100)")
CPU = choice("a small analogue for 2 CPU cores: d <= 12, a 2-layer GPT-2 of width 64, batch 128, lr 1e-3, "
             "a few thousand steps (the paper's sizes take GPU-hours)")
TINY = choice("the tiny preset: a random 2-layer Llama on records made here; it checks the wiring on a CPU, "
              "not the paper's claims")
PARITY_GRPO = {"prompts_per_step": 8, "rollouts_per_prompt": 8, "clip_eps": 0.2, "lr": 1e-4}
"""The GRPO settings the parity `paper` presets state explicitly (else the defaults), so each has its provenance."""
GRPO_SOURCES = {"prompts_per_step": GROUP, "rollouts_per_prompt": GROUP, "clip_eps": CLIP, "lr": POST_LR}
AT_TAU = choice("not in the paper: the update's log-probabilities at tau_RL (TRL's choice), beside the paper's "
                "(temperature 1), docs/commands.md")
AS_FIGS_2_3 = choice("3 seeds, as the captions of Figs. 2 and 3")
PARITY_PRETRAIN = {"pretrain/model": MODEL, "pretrain/train/batch_size": BATCH_256, "pretrain/train/lr": PRETRAIN_LR,
                   "pretrain/train/optimizer": ADAM, "pretrain/train/eval_every": CADENCE,
                   "pretrain/train/save_every": CADENCE, "pretrain/train/eval_samples": PRETRAIN_EVAL}
"""The pre-training values the parity `paper` presets share; a recipe adds (or overrides) what its figure states."""
PARITY_RL = {"grpo": PARITY_GRPO, "reinforce": {"prompts_per_step": 64, "lr": 1e-4},
             "star": {"star_epochs": 3, "star_batch_size": 64, "lr": 1e-4}}
"""The same, per RL algorithm."""
PARITY_RL_SOURCES = {"grpo": GRPO_SOURCES,
                     "reinforce": {"prompts_per_step": paper("App. B.1: batch size 64 for REINFORCE"), "lr": POST_LR},
                     "star": {"star_epochs": paper("App. B.1: 3 epochs on the correct samples"),
                              "star_batch_size": paper("App. B.1: batch size 64"), "lr": POST_LR}}


def under(prefix: str, declared: dict[str, Source]) -> dict[str, Source]:
    """`declared` with every path put under `prefix` (e.g. one GRPO group's post section)."""
    return {f"{prefix}/{key}": source for key, source in declared.items()}


def parity_rl(group: str, algo: str) -> dict[str, Source]:
    """The post section of post-training group `group` of a parity `paper` preset: its algorithm's settings
    (PARITY_RL), its length and cadence (choices) and its evaluation inputs (the paper's)."""
    return under(f"posttrain/{group}/post", PARITY_RL_SOURCES[algo] | {
        "steps": RL_STEPS, "eval_every": CADENCE, "save_every": CADENCE, "eval_samples": POST_EVAL})
