"""Several pre-training runs trained as one batched model in one process (`rlntp sweep --pack N`).

Runs of one GPT-2 architecture and batch shape that differ only in their seed and mixture (p_cot) train together,
in `training.pretrain`'s loop (the one loop for one run or several). What is packing's own is here: which runs may
pack (`pack_key`), and a `Pack`: the runs' parameters stacked along a leading run axis
(`torch.func.stack_module_state`: leaf tensors that one optimizer steps), each run's loss the model's own forward
(`models.gpt.GPT`, through `torch.func.functional_call`) on its slice of them. One backward pass of the sum of the
runs' losses gives each run its own loss's gradient; Adam is element-wise, so one optimizer over the stacked
parameters is each run's own; gradient clipping is per run, computed as `clip_grad_norm_` computes a run's alone.
Each run keeps its own model (a copy of its weights for its evaluations and checkpoints), data stream, metrics,
checkpoints and trackers: its run directory has the files and meanings of one trained alone, which `rlntp eval`,
`--resume` and a sweep's results read as they are.

How the forward maps over the runs: on a CPU one run after another, each run's floats bit for bit those of the
run trained alone with `--step-impl static` (tests/test_packed.py checks every weight, moment and metric), and
faster there than the vectorized map (benchmarks/bench_pack.py); on an accelerator vectorized with
`torch.func.vmap`, one batched kernel per operation for all runs, where a small model's step is launch overhead:
there the floats agree with the run alone up to float rounding (batched kernels round differently).

A pack's step is always the static one (`--step-impl static`: the padded batch in one pass; `compiled` compiles
it; `auto` is static here); `grouped`, the CPU's `auto` for a run alone, has no packed form, so runs that ask for it
are not packed (`rlntp sweep --pack` refuses them, `check_packable`). Each run's config.json records the stretch of
steps it trained packed, the pack's size and the step that ran (`runs.history`).
"""

from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from rlntp.config import flatten
from rlntp.errors import Diverged, UserError
from rlntp.tasks.base import Sequences
from rlntp.training.config import StageConfig
from rlntp.training.losses import padded_next_token_loss
from rlntp.training.optim import make_optimizer

PER_RUN = ("train.seed", "task.p_cot", "task.p_medium")
"""The settings in which packed runs may differ: everything else (shapes, optimizer, cadence) is shared."""


class PackError(UserError):
    """These runs cannot train packed (the sweep then trains them one by one)."""


class StepsDiffer(PackError):
    """The runs' directories stand at different checkpoints (a kill between their saves): `steps[i]` is run i's."""

    def __init__(self, steps: list[int]):
        super().__init__(f"the runs stand at different steps ({', '.join(map(str, sorted(set(steps))))})")
        self.steps = steps


class RunDiverged(Diverged):
    """One run of a pack diverged (`index`: which); the others are unharmed."""

    def __init__(self, index: int, error: Diverged):
        super().__init__(str(error))
        self.index = index


def packed_step_impl(step_impl: str) -> str:
    """The step a pack takes for a run's `step_impl`: static (auto, static) or compiled; PackError for grouped."""
    if step_impl == "grouped":
        raise PackError("train.step_impl = 'grouped' has no packed form (a pack takes the static step); set it to "
                        "'auto', 'static' or 'compiled', or train without --pack")
    return "compiled" if step_impl == "compiled" else "static"


def check_packable(runs: list[Any]) -> None:
    """PackError, before a sweep starts, if a run (a `PretrainRun`) that could train packed asks for a step packing
    would override."""
    for run in runs:
        if pack_key(run) is not None:
            packed_step_impl(run.train.step_impl)


def pack_key(run: Any) -> str | None:
    """Runs (`PretrainRun`s) with one key can train packed; None for a run that cannot (an architecture other than
    the fast GPT-2, whose forward is the one `Pack` maps over the runs and the one tested packed)."""
    if not run.model.uses_fast_path:
        return None
    shared = {k: v for k, v in flatten(run.to_dict()).items() if k not in PER_RUN}
    return repr(sorted(shared.items()))


class Pack:
    """N models of one shape trained as one: their parameters stacked along a leading run axis, one optimizer
    (`cfg`'s, clipping per run) over them, each run's loss its model's own forward on its slice.

    `first`: the position whose logits predict the first target (`padded_next_token_loss`). `vectorize`: map the
    forward over the runs with `torch.func.vmap` (default: on an accelerator) rather than run by run (a CPU).
    `compiled`: the losses through `torch.compile` (on CUDA in mode reduce-overhead: CUDA graphs).
    """

    def __init__(self, models: list[nn.Module], cfg: StageConfig, first: int, compiled: bool = False,
                 vectorize: bool | None = None):
        device = next(models[0].parameters()).device
        self.models, self.model, self.first = models, models[0], first  # model: the forward all runs take
        self.vectorize = device.type != "cpu" if vectorize is None else vectorize
        stacked, _ = stack_module_state(models)  # {name: (N, ...)}; GPT has no buffers; the tied lm_head is wte
        self.stacked = nn.ParameterList(stacked.values())  # the leaves the optimizer steps
        self.params = dict(zip(stacked, self.stacked))  # the same tensors, by the model's parameter names
        self.optimizer = make_optimizer(self.stacked, cfg.optimizer, cfg.lr, device, cfg.weight_decay)
        if cfg.max_grad_norm is not None:
            self.optimizer.register_step_pre_hook(lambda *_: _clip_per_run(list(self.stacked), cfg.max_grad_norm))
        self._losses = self._stacked_losses
        if compiled:
            self._losses = torch.compile(self._stacked_losses, mode="reduce-overhead" if device.type == "cuda"
                                         else None, dynamic=False)

    def losses(self, batches: list[Sequences]) -> tuple[torch.Tensor, int]:
        """(N,) each run's mean next-token loss on its batch (`padded_next_token_loss`), and the tokens each ran."""
        tokens, loss_mask = torch.stack([b.tokens for b in batches]), torch.stack([b.loss_mask for b in batches])
        return self._losses(tokens, loss_mask), tokens.shape[1] * (tokens.shape[2] - 1)

    def _stacked_losses(self, tokens: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
        if self.vectorize:
            return vmap(self._run_loss)(self.params, tokens, loss_mask)
        runs = [dict(zip(self.params, slices)) for slices in zip(*(p.unbind() for p in self.params.values()))]
        return torch.stack([self._run_loss(*run) for run in zip(runs, tokens, loss_mask)])

    def _run_loss(self, params: dict[str, torch.Tensor], tokens: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
        """One run's loss on its batch (B, T): the static step's, through the model's forward with `params`."""
        def model(input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
            return functional_call(self.model, params, (input_ids,), kwargs)

        return padded_next_token_loss(model, tokens, loss_mask, self.first)[0]

    @torch.no_grad()
    def load_moments(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Stack the runs' optimizer moments (`optimizers[i]`: run i's, as a resumed checkpoint restored them)."""
        for name, param in self.params.items():
            states = [opt.state[model.get_parameter(name)] for opt, model in zip(optimizers, self.models)]
            if states[0]:
                self.optimizer.state[param] = {"step": states[0]["step"].clone()} | {
                    key: torch.stack([s[key] for s in states]) for key in ("exp_avg", "exp_avg_sq")}

    @torch.no_grad()
    def unpack(self, i: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Model i (`models[i]`) gets run i's weights (for its evaluation), and `optimizer` (run i's) its moments (for
        its checkpoint)."""
        for name, param in self.params.items():
            target = self.models[i].get_parameter(name)
            target.copy_(param[i])
            if optimizer is not None and param in self.optimizer.state:
                s = self.optimizer.state[param]
                optimizer.state[target] = {"step": s["step"].clone(), "exp_avg": s["exp_avg"][i].clone(),
                                           "exp_avg_sq": s["exp_avg_sq"][i].clone()}


def _clip_per_run(params: list[torch.Tensor], max_norm: float) -> None:
    """`clip_grad_norm_` of each run's gradients (slice i of every stacked gradient) to `max_norm`: the same norm,
    coefficient and products as for the run alone."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([nn.utils.get_total_norm([g[i] for g in grads]) for i in range(len(grads[0]))])  # (N,)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))
