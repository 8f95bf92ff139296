"""Several pre-training runs trained as one batched model in one process (`rlntp sweep --pack N`).

Runs of one GPT-2 architecture and batch shape that differ only in their seed and mixture (p_cot) train
together: their parameters are stacked along a leading run axis, every linear layer is one batched matrix
multiplication over the runs, and one backward pass takes every run's gradient (of the sum of the runs'
losses, so each run's gradient is its own loss's). Adam is element-wise, so one optimizer over the stacked
parameters is each run's own optimizer; gradient clipping is per run. Each run keeps its own data stream,
evaluations (its model alone, as `rlntp.evaluation` decodes it), metrics, checkpoints and trackers: its run
directory has the files and meanings of one trained alone, which `rlntp eval`, `--resume` and a sweep's
results read as they are. The floats agree with a run trained alone up to float rounding (batched and plain
matrix products round differently; tests/test_packed.py states and checks the tolerance).

A pack's step is always the static one (`--step-impl static`: the padded batch in one pass; `compiled` compiles
it; `auto` is static here); `grouped`, the CPU's `auto` for a run alone, has no packed form, so runs that ask for it
are not packed (`rlntp sweep --pack` refuses them, `check_packable`). Each run's config.json records the stretch of
steps it trained packed, the pack's size and the step that ran (`runs.history`). On a GPU, where a small model's step is
launch overhead, N runs should cost about one; on a CPU packing gains only where one run's products are too
small for its threads (docs/sweeps.md, "Packing runs", has the measurements).
"""

import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rlntp.config import flatten
from rlntp.data import make_data
from rlntp.devices import autocast, pinned_threads, resolve_device, resolve_precision, synchronize
from rlntp.errors import Diverged, UserError, check
from rlntp.memory import check_fits
from rlntp.models import build_model, memory_estimate
from rlntp.models.gpt import GPT
from rlntp.runs.checkpoints import checkpoint_state, load_checkpoint_model
from rlntp.runs.dirs import open_run_dir
from rlntp.runs.task_record import record_task, resumed_task_change
from rlntp.runs.trackers import Trackers, check_trackers
from rlntp.tasks import make_task
from rlntp.tasks.trust import task_identity
from rlntp.training.losses import LossTally, padded_loss
from rlntp.training.optim import make_optimizer
from rlntp.training.pretrain import RESUMABLE_CHANGES, PretrainRun, log_evaluation, save_state

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


def check_packable(runs: list[PretrainRun]) -> None:
    """PackError, before a sweep starts, if a run that could train packed asks for a step packing would override."""
    for run in runs:
        if pack_key(run) is not None:
            packed_step_impl(run.train.step_impl)


def pack_key(run: PretrainRun) -> str | None:
    """Runs with one key can train packed; None for a run that cannot (an architecture without the fast path)."""
    if not run.model.uses_fast_path:
        return None
    shared = {k: v for k, v in flatten(run.to_dict()).items() if k not in PER_RUN}
    return repr(sorted(shared.items()))


class PackedGPT(nn.Module):
    """N GPT-2 models (`rlntp.models.gpt.GPT`) of one shape as stacked parameters, named as in GPT with a
    leading run axis: forward(tokens (N, B, T), logits_from) -> logits (N, B, T - logits_from, vocab)."""

    def __init__(self, models: list[GPT]):
        super().__init__()
        config = models[0].config
        self.layers, self.heads, self.eps = config.n_layer, config.n_head, config.layer_norm_epsilon
        self.names = [name for name, _ in models[0].named_parameters()]  # the tied lm_head is wte
        self.stacked = nn.ParameterList(
            nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in models])) for name in self.names)
        self._index = {name: i for i, name in enumerate(self.names)}

    def p(self, name: str) -> torch.Tensor:
        return self.stacked[self._index[name]]

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        w, b = self.p(f"{name}.weight"), self.p(f"{name}.bias")  # (N, out, in), (N, out)
        n = x.shape[0]
        y = torch.baddbmm(b[:, None, :], x.reshape(n, -1, x.shape[-1]), w.transpose(1, 2))
        return y.view(*x.shape[:-1], w.shape[1])

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        w, b = self.p(f"{name}.weight"), self.p(f"{name}.bias")
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * w[:, None, None] + b[:, None, None]

    def forward(self, tokens: torch.Tensor, logits_from: int = 0) -> torch.Tensor:
        N, B, T = tokens.shape
        wte = self.p("transformer.wte.weight")  # (N, vocab, C)
        V, C = wte.shape[1:]
        nh, hs = self.heads, C // self.heads
        ids = tokens + torch.arange(N, device=tokens.device)[:, None, None] * V  # row n of run n's table
        x = F.embedding(ids, wte.reshape(N * V, C)) + self.p("transformer.wpe.weight")[:, None, :T]
        for layer in range(self.layers):
            h = f"transformer.h.{layer}"
            start = logits_from if layer == self.layers - 1 else 0  # the last block: only positions with logits
            q, k, v = self._linear(self._norm(x, f"{h}.ln_1"), f"{h}.attn.c_attn").view(
                N * B, T, 3, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)
            if start:
                mask = torch.ones(T - start, T, dtype=torch.bool, device=x.device).tril(diagonal=start)
                y = F.scaled_dot_product_attention(q[:, :, start:], k, v, attn_mask=mask)
            else:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x[:, :, start:] + self._linear(y.transpose(1, 2).reshape(N, B, T - start, C), f"{h}.attn.c_proj")
            hidden = F.gelu(self._linear(self._norm(x, f"{h}.ln_2"), f"{h}.mlp.c_fc"), approximate="tanh")
            x = x + self._linear(hidden, f"{h}.mlp.c_proj")
        x = self._norm(x, "transformer.ln_f")
        return torch.bmm(x.reshape(N, -1, C), wte.transpose(1, 2)).view(N, B, -1, V)

    @torch.no_grad()
    def copy_to(self, index: int, model: GPT) -> None:
        """Write run `index`'s parameters into `model`."""
        for name, stacked in zip(self.names, self.stacked):
            model.get_parameter(name).copy_(stacked[index])


def packed_losses(model: PackedGPT, tokens: torch.Tensor, loss_mask: torch.Tensor, first: int) -> torch.Tensor:
    """(N,) each run's mean next-token loss on its batch (N, B, T), as `padded_next_token_loss` computes it."""
    return padded_loss(model(tokens[..., :-1], logits_from=first), tokens, loss_mask, first)


def _clip_per_run(params: list[torch.Tensor], max_norm: float) -> None:
    """`clip_grad_norm_` of each run's gradients (slice n of every stacked gradient) to `max_norm`."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)  # (N,)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))


def pretrain_packed(runs: list[PretrainRun], outs: list[Path], progress: bool = True, allow_unverified: bool = False,
                    report_to: tuple[str, ...] = (), group: str | None = None) -> list[Path]:
    """Pre-train `runs` (one `pack_key`) together, each into its own run directory of `outs`, resuming them.

    PackError (before any directory is touched, or once they are opened: before any step) when they cannot
    train packed: different keys, or run directories at different steps. RunDiverged names the run that
    diverged; the others' checkpoints so far are kept.
    """
    check(len(runs) == len(outs) and len(runs) >= 1, "pretrain_packed: one output directory per run")
    keys = {pack_key(run) for run in runs}
    if None in keys or len(keys) > 1:
        raise PackError("only runs of one GPT-2 shape that differ in seed and p_cot train packed")
    step_impl = packed_step_impl(runs[0].train.step_impl)
    report_to = check_trackers(report_to)
    cfg = runs[0].train
    tasks = [make_task(run.task) for run in runs]
    task = tasks[0]
    identities = [task_identity(t) for t in tasks]
    changes = [resumed_task_change(out, identity, False) for out, identity in zip(outs, identities)]
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    # each run: its share of the packed step, and its own copy of the weights for evaluations and checkpoints
    check_fits(len(runs) * memory_estimate(runs[0].model, task.vocab_size, task.context_len, cfg.batch_size,
                                           cfg.eval_samples), device, "packed pre-training", "pack fewer runs")
    datas = [make_data(t, run.task.data, run.train.seed, device) for t, run in zip(tasks, runs)]
    check(all(data.train_size is None or data.train_size >= cfg.batch_size for data in datas),
          f"a dataset's train split has fewer rows than batch_size {cfg.batch_size}")
    tokenizer = task.tokenizer()
    with pinned_threads(cfg.threads), contextlib.ExitStack() as stack:
        ran = {"packed": len(runs), "step_impl": step_impl, "decode": cfg.decode, "precision": precision,
               "device": str(device)}
        run_dirs = [stack.enter_context(open_run_dir(out, run.to_dict(), True, RESUMABLE_CHANGES, cfg.steps,
                                                     normalize=PretrainRun.recorded, ran=ran))
                    for run, out in zip(runs, outs)]
        checkpoints = [d.resume_point() for d in run_dirs]
        steps = [0 if c is None else checkpoint_state(c)["step"] for c in checkpoints]
        if len(set(steps)) > 1:
            raise StepsDiffer(steps)
        trackers = [stack.enter_context(Trackers(report_to, out, run.to_dict(), group)) for run, out in zip(runs, outs)]
        models, optimizers, tallies = [], [], []
        for run, checkpoint, run_dir, data in zip(runs, checkpoints, run_dirs, datas):
            if checkpoint is None:
                model = build_model(run.model, task.vocab_size, task.context_len, task.eos_id, run.train.seed, device)
            else:
                model = load_checkpoint_model(checkpoint, run.model, device, allow_unverified)
            optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, device, cfg.weight_decay, cfg.max_grad_norm)
            state = run_dir.restore(checkpoint, optimizer, data.generators, allow_unverified)
            models.append(model)
            optimizers.append(optimizer)
            tallies.append(LossTally(device, state.get("loss_sum", 0.0), state.get("loss_steps", 0)))
        step = run_dirs[0].step
        for out, identity, change in zip(outs, identities, changes):
            record_task(out, identity, change, step)

        packed = PackedGPT(models).train()
        optimizer = make_optimizer(packed, cfg.optimizer, cfg.lr, device, cfg.weight_decay)
        params = [list(m.parameters()) for m in models]
        for j, param in enumerate(packed.stacked):  # the runs' own optimizer moments, stacked
            states = [opt.state[run_params[j]] for opt, run_params in zip(optimizers, params)]
            if states[0]:
                optimizer.state[param] = {"step": states[0]["step"].clone()} | {
                    key: torch.stack([s[key] for s in states]) for key in ("exp_avg", "exp_avg_sq")}
        if cfg.max_grad_norm is not None:
            optimizer.register_step_pre_hook(lambda *_: _clip_per_run(list(packed.stacked), cfg.max_grad_norm))
        loss_fn = packed_losses
        if step_impl == "compiled":
            loss_fn = torch.compile(packed_losses, mode="reduce-overhead" if device.type == "cuda" else None,
                                    dynamic=False)

        def unpack(i: int, optimizer_state: bool = False) -> None:
            """Model i holds run i's weights (for its evaluation), and with `optimizer_state` optimizer i its moments
            (for its checkpoint)."""
            packed.copy_to(i, models[i])
            if not optimizer_state:
                return
            for param, stacked in zip(models[i].parameters(), packed.stacked):
                if stacked in optimizer.state:
                    s = optimizer.state[stacked]
                    optimizers[i].state[param] = {"step": s["step"].clone(), "exp_avg": s["exp_avg"][i].clone(),
                                                  "exp_avg_sq": s["exp_avg_sq"][i].clone()}

        def log_eval(i: int, step: int, train_time: float = 0.0, tokens: int = 0, timed_steps: int = 0) -> None:
            log_evaluation(outs[i], step, models[i], tasks[i], datas[i], runs[i].train, tallies[i], trackers[i],
                           device, precision, train_time, tokens, timed_steps)

        def each_run(action) -> None:
            for i in range(len(runs)):
                try:
                    action(i)
                except Diverged as e:
                    raise RunDiverged(i, e) from e

        if step == 0:
            each_run(lambda i: (unpack(i), log_eval(i, 0)))
        timed_steps, train_time, tokens = 0, 0.0, 0
        bar = tqdm(total=cfg.steps, initial=step, desc=f"pretrain {len(runs)} packed", disable=not progress,
                   unit="step")
        while step < cfg.steps:
            t0 = time.perf_counter()
            batches = [data.train_batch(step, cfg.batch_size) for data in datas]
            with autocast(device, precision):
                losses = loss_fn(packed, torch.stack([b.tokens for b in batches]),
                                 torch.stack([b.loss_mask for b in batches]), task.prompt_len - 1)
            losses.sum().backward()  # each run's parameters get their own loss's gradient
            for i, tally in enumerate(tallies):
                tally.add(losses[i], step + 1)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step, timed_steps = step + 1, timed_steps + 1
            tokens += batches[0].tokens.numel() - len(batches[0].tokens)  # per run, as pretrain counts them
            evaluating, saving = step % cfg.eval_every == 0 or step == cfg.steps, step % cfg.save_every == 0 \
                or step == cfg.steps
            if evaluating:
                synchronize(device)
            train_time += time.perf_counter() - t0
            for run_dir in run_dirs:
                run_dir.step = step
            bar.update(1)
            if evaluating or saving:
                each_run(lambda i: unpack(i, optimizer_state=saving))
            if evaluating:
                each_run(lambda i: log_eval(i, step, train_time, tokens, timed_steps))
                timed_steps, train_time, tokens = 0, 0.0, 0
                for tally in tallies:
                    tally.reset()
            if saving:
                each_run(lambda i: save_state(outs[i], step, models[i], optimizers[i], datas[i], tallies[i],
                                              cfg.batch_size, tokenizer, identities[i]))
        bar.close()
        if any(t.names for t in trackers):
            from rlntp.plots import plot_run

            for tracker, out in zip(trackers, outs):
                tracker.image(plot_run(out))
    return outs
