"""Where each preset value comes from: the paper's text (with its section or figure, and the words that state
it) or our choice (with why).

A preset (`experiments.recipe.Preset`) writes each value beside its source:

    {"task": {"d": paper(50, "Fig. 1 caption", "the parity of $d$=50 bits"), "p_cot": choice(0.15, "why")},
     "model": MODEL({"layers": 4, "width": 256, "heads": 8}), ...}       a value, or a section, beside its source

and may name a default source for the values written plain (`Preset.default`, e.g. CPU: "a small analogue for 2
CPU cores"). A value's source is the innermost one around it, so a section can be a choice while one of its
values is the paper's. Every value is addressed by its path: the keys of the nested dictionaries (a dataclass
preset by its fields) joined by "/", an axis by its name as written ("pretrain/axes/task.p_cot"). `sources`
resolves every value of a preset and refuses a value with no source.

A paper source quotes the sentence or caption it relies on, verbatim from the paper's text (our copy's: its
extraction dropped most mathematical symbols, so "for =50, =0.25" is how §3.1 reads there); fragments of one
quote are joined by QUOTE_GAP. `unquoted` checks quotes against the text (tests/test_provenance.py, against
../shared/seeds). A value the paper does not state, inferred from another figure or section, is a choice whose
note says from where.
"""

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rlntp.errors import check
from rlntp.registration import CONFIRMATION_SEED

PAPER, CHOICE = "paper", "choice"
QUOTE_GAP = " … "
"""Joins the fragments of one quote, each verbatim from the paper's text (words left out between them)."""
SHOWN_QUOTE = 60
"""A one-line display (`table`) cuts a quote to this many characters; rows and the report page hold it whole."""


@dataclass(frozen=True)
class Source:
    """The provenance of one preset value (or of a section of them)."""

    kind: str
    """paper: the paper states it; choice: we chose it"""
    note: str
    """paper: where it says so (section, appendix, figure); choice: why this value"""
    quote: str = ""
    """paper: the words of the paper's text that state it, verbatim (fragments joined by QUOTE_GAP); choice: none"""

    def __str__(self) -> str:
        return f"{self.kind}: {self.note}" + (f' "{self.quote}"' if self.quote else "")

    def shown(self, width: int = SHOWN_QUOTE) -> str:
        """The note, and the quote cut to `width` characters: one line of a table."""
        if not self.quote:
            return self.note
        quote = self.quote if len(self.quote) <= width else self.quote[: width - 1] + "…"
        return f'{self.note} "{quote}"'

    def __call__(self, value: Any) -> "Sourced":
        """`value` written beside this source (a shared source used in several presets: `BATCH_256(256)`)."""
        return Sourced(value, self)


@dataclass(frozen=True)
class Sourced:
    """A preset value written beside its source; a dictionary's source covers every value in it that has none
    of its own."""

    value: Any
    """the value as the recipe's settings hold it"""
    source: Source
    """where it comes from"""


def says(where: str, quote: str) -> Source:
    """The paper states it, at `where` (e.g. "App. B.1", "Fig. 13 caption"), in the words `quote` (verbatim from the
    paper's text, fragments joined by QUOTE_GAP): a source to apply to values. ValueError without a quote."""
    if not quote.strip():
        raise ValueError(f"the paper source '{where}' quotes nothing: give the words of the paper that state the "
                         "value, or make it a choice(value, why)")
    return Source(PAPER, where, quote)


def chose(why: str) -> Source:
    """We chose it, for the reason `why`: a source to apply to values (or a preset's default)."""
    return Source(CHOICE, why)


def paper(value: Any, where: str, quote: str) -> Sourced:
    """`value`, which the paper states at `where` in the words `quote` (`says`)."""
    return Sourced(value, says(where, quote))


def choice(value: Any, why: str) -> Sourced:
    """`value`, which we chose for the reason `why` (the paper does not state it, or we depart from it)."""
    return Sourced(value, chose(why))


def confirmation_seeds(n: int, count: str, spent: Iterable[int] = ()) -> Sourced:
    """`n` confirmation seeds, a choice whose note says why these seeds (none was run before the preset and its
    claims were registered) and why `n` (`count`, e.g. 'the Fig. 1 caption, "Lines correspond to median across 3
    seeds."'): the seeds of a preset whose verdicts are published. From `CONFIRMATION_SEED` (1000, 1001, ...); once
    a registration changed after its confirmation run, `spent` names the seeds that judged the earlier one, and the
    seeds start at the next thousand above them (2000, ...), so a preset cannot go back to seeds already looked at."""
    spent = sorted(spent)
    check(all(seed >= CONFIRMATION_SEED for seed in spent),
          f"spent confirmation seeds are {CONFIRMATION_SEED} or above, not {spent}")
    first = (spent[-1] // CONFIRMATION_SEED + 1) * CONFIRMATION_SEED if spent else CONFIRMATION_SEED
    before = f"; seeds {spent[0]}-{spent[-1]} judged an earlier registration" if spent else ""
    return choice(list(range(first, first + n)),
                  f"{n} confirmation seeds from {first}, never run before this preset and its claims were "
                  f"registered (the exploration seeds below {CONFIRMATION_SEED} were looked at while choosing them"
                  f"{before}); why {n}: {count}")


def plain(declared: Any) -> Any:
    """A preset as written (values beside their sources) without the sources: the settings themselves."""
    if isinstance(declared, Sourced):
        return plain(declared.value)
    if isinstance(declared, dict):
        return {key: plain(value) for key, value in declared.items()}
    return declared


def written_sources(declared: Any, path: str = "") -> dict[str, Source]:
    """The sources written in a preset, by the path of the value (or section) each stands beside."""
    found = {}
    if isinstance(declared, Sourced):
        found[path] = declared.source
        declared = declared.value
    if isinstance(declared, dict):
        for key, value in declared.items():
            found |= written_sources(value, f"{path}/{key}" if path else str(key))
    return found


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
            raise ValueError(f"{where}: {path} = {value!r} has no provenance: write it as paper(value, 'where the "
                             f"paper states it') or choice(value, 'why')")
        resolved[path] = (value, declared[max(covering, key=len)])
    stale = [key for key in declared if key and not any(p == key or p.startswith(key + "/") for p in values)]
    if stale:
        raise ValueError(f"{where}: a source names {', '.join(stale)}, which the preset does not have")
    return resolved


def as_rows(resolved: dict[str, tuple[Any, Source]]) -> list[dict[str, Any]]:
    """The resolved values as JSON rows: path, value, provenance (paper | choice), its note, and a paper source's
    quote (whole)."""
    return [{"setting": path, "value": value, "provenance": source.kind, "note": source.note}
            | ({"quote": source.quote} if source.quote else {}) for path, (value, source) in resolved.items()]


def table(resolved: dict[str, tuple[Any, Source]], value_width: int = 40) -> str:
    """A fixed-width text table: setting, value (cut to `value_width`), paper/choice, note (and quote, cut)."""
    def shown(value: Any) -> str:
        text = json.dumps(value)
        return text if len(text) <= value_width else text[: value_width - 1] + "…"

    rows = [(path, shown(value), source.kind, source.shown()) for path, (value, source) in resolved.items()]
    first, second = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    return "\n".join(f"{path:<{first}s}  {value:<{second}s}  {kind:<6s}  {note}" for path, value, kind, note in rows)


def normalised(text: str) -> str:
    """`text` with every run of whitespace one space: the only normalisation before a quote is looked up (our
    text of the paper has no hyphenation or ligature artefacts; its line breaks and spacing differ from a quote's)."""
    return " ".join(text.split())


def unquoted(found: Iterable[Source], text: str) -> list[Source]:
    """The paper sources among `found` whose quote is empty or has a fragment (split at QUOTE_GAP) that is not in
    `text` verbatim after `normalised`; choices are skipped."""
    text = normalised(text)
    return [source for source in found if source.kind == PAPER
            and (not source.quote.strip()
                 or any(normalised(part) not in text for part in source.quote.split(QUOTE_GAP.strip())))]


# The sources the parity recipes share (App. B.1 and §3 of the paper; our text of it lost many numbers). App. B.1
# states one setting of each kind for all the parity experiments; where our text lost its number, the section or
# caption that gives it for one experiment supplies it (B.1's "a batch size =" is §3.1's 256).
BATCH_256 = says("App. B.1's batch size (its number lost in our text) is §3.1's 256",
                 "256 sequences per iteration for 50,000 iterations … We use the Adam (Kingma and Ba,, 2015) "
                 "optimizer with learning rate = and a batch size =.")
ADAM = says("App. B.1: the Adam optimizer",
            "We use the Adam (Kingma and Ba,, 2015) optimizer with learning rate = and a batch size =.")
PRETRAIN_LR = chose("our text of App. B.1 lost the learning rate; 1e-4, a usual Adam rate at these widths")
POST_LR = chose("our text of App. B.1 lost the RL learning rate; 1e-4")
PRETRAIN_EVAL = says("App. B.1: test statistics on 2,560 new samples",
                     "Test statistics are estimated using 2,560 new samples.")
POST_EVAL = says("App. B.1: test statistics on 640 new samples", "Test statistics are estimated using 640 new samples.")
FROM_LAST = says("App. B.1: post-training continues from the last checkpoint",
                 "We continue post-training from the last checkpoint of pre-training.")
STAR_SAMPLES = says("App. B.1's samples per STaR round (its number lost in our text) are Fig. 3 caption's 3,200",
                    "$n$=3,200 sequences for STaR … For STaR, we generate samples per RL iteration")
THREE_SEEDS = says("Fig. 2 caption: 3 seeds",
                   "separate mixture coefficient $p_{\\mathrm{cot}}$. Figure shows average and 1 standard deviation "
                   "across 3 seeds.")
D_50 = chose("d = 50, as Figs. 1-3 (§3.1: 'we fix the input dimension to a large value (e.g. =50)'); our text does "
             "not state this figure's d")
MODEL = chose("our text lost the default architecture and App. B.1's grid values; depth 4 is one of Figs. 6-8's "
              "(App. C.1: 2, 4, 8), width 256 and 8 heads are ours (Fig. 13's model: width 128, 32 heads)")
CADENCE = chose("how often to evaluate and checkpoint: not stated; often enough to draw the curves")
GROUP = chose("App. B.1: batch 64 for GRPO; our text lost the group size, so 8 inputs x 8 rollouts")
CLIP = chose("our text of App. B.1 lost the clip parameter; 0.2, PPO's and TRL's default")
ONE_PASS_AT_D18 = chose("2,000 steps of 128: the most that stay within one pass over the 2^18 inputs (256,000 "
                        "samples of 262,144, 0.98 passes), the paper's regime")
RL_STEPS = chose("not stated; enough RL steps to reach 100% in the paper's figures (they end within ~100)")
CPU = chose("a small analogue for 2 CPU cores: d <= 12, a 2-layer GPT-2 of width 64, batch 128, lr 1e-3, "
            "a few thousand steps (the paper's sizes take GPU-hours)")
REGIME = chose("a small analogue for 2 CPU cores in the paper's regime: pre-training sees no more samples than there "
               "are inputs (2^d), as at d = 50, where no input repeats; a 2-layer GPT-2 of width 64, batch 128, lr "
               "1e-3, a few thousand steps (the paper's sizes take GPU-hours)")
QUICK = chose("the memorisation regime, for tests and demos: d <= 12, where pre-training sees every input dozens of "
              "times, so accuracy may be a memorised table, not the paper's generalisation; a 2-layer GPT-2 of width "
              "64, batch 128, lr 1e-3")
TINY = chose("the tiny preset: a random 2-layer Llama on records made here; it checks the wiring on a CPU, "
             "not the paper's claims")
AT_TAU = chose("not in the paper: the update's log-probabilities at tau_RL (TRL's choice), beside the paper's "
               "(temperature 1), docs/commands.md")
AS_FIGS_2_3 = chose("3 seeds, as the captions of Figs. 2 and 3; our text does not state this figure's seeds")

PARITY_MODEL = MODEL({"layers": 4, "width": 256, "heads": 8})
"""The model of the parity `paper` presets whose figure does not name one."""
PARITY_RL = {"grpo": {"prompts_per_step": GROUP(8), "rollouts_per_prompt": GROUP(8), "clip_eps": CLIP(0.2),
                      "lr": POST_LR(1e-4)},
             "reinforce": {"prompts_per_step": paper(64, "App. B.1: batch size 64 for REINFORCE",
                                                     "For REINFORCE and GRPO, we use batch size 64."),
                           "lr": POST_LR(1e-4)},
             "star": {"star_epochs": paper(3, "App. B.1: 3 epochs on the correct samples",
                                           "train on the correct ones for 3 epochs with batch size 64"),
                      "star_batch_size": paper(64, "App. B.1: batch size 64",
                                               "train on the correct ones for 3 epochs with batch size 64"),
                      "lr": POST_LR(1e-4)}}
"""The RL settings the parity `paper` presets state explicitly (else the defaults), per algorithm."""
PARITY_GRPO = PARITY_RL["grpo"]
_RL_CADENCE = {"steps": RL_STEPS, "eval_every": CADENCE, "save_every": CADENCE, "eval_samples": POST_EVAL}


def parity_train(steps: Sourced, eval_every: int | Sourced, save_every: int | Sourced) -> dict[str, Any]:
    """The `train` section of a parity `paper` preset: `steps` (with its source), batch 256 of Adam at 1e-4,
    2,560 evaluation inputs, and the cadence of evaluations and checkpoints (a choice unless given a source)."""
    def cadence(value: int | Sourced) -> Sourced:
        return value if isinstance(value, Sourced) else CADENCE(value)

    return {"steps": steps, "batch_size": BATCH_256(256), "lr": PRETRAIN_LR(1e-4), "optimizer": ADAM("adam"),
            "eval_every": cadence(eval_every), "eval_samples": PRETRAIN_EVAL(2560), "save_every": cadence(save_every)}


def rl_cadence(**values: Any) -> dict[str, Sourced]:
    """The length and cadence of a parity `paper` preset's RL runs (steps, eval_every, eval_samples, save_every, in
    the order given), each beside its source: the steps and cadence our choices, the 640 evaluation inputs the
    paper's."""
    return {key: _RL_CADENCE[key](value) for key, value in values.items()}
