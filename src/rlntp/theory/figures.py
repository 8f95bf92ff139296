"""The theory's two figures: simulation points over the closed forms of Theorems 1 and 2."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlntp.files import figure, save_figure
from rlntp.theory import closed_forms as cf


def plot_theorem1(p_cots: Sequence[float], rows: Sequence[dict], d: int, out: Path) -> Path:
    """Greedy and sampled accuracy, and P(long), against p_cot after pre-training, with the 1/3 line."""
    grid = np.linspace(0.0, 1.0, 401)
    fig, (ax_acc, ax_len) = figure(1, 2, figsize=(10, 3.8))
    ax_acc.plot(grid, [cf.greedy_accuracy(p) for p in grid], "-", color="C3", lw=1, label="greedy, theory")
    ax_acc.plot(grid, [cf.sampled_accuracy(p) for p in grid], "--", color="C0", lw=1,
                label="sampled, theory: (1 + p)/2")
    ax_acc.plot(p_cots, [r["greedy_acc"] for r in rows], "o", color="C3", label="greedy, simulation")
    ax_acc.plot(p_cots, [r["sampled_acc"] for r in rows], "s", color="C0", mfc="none", label="sampled, simulation")
    ax_acc.set(xlabel=r"$p_{cot}$", ylabel="test accuracy", ylim=(0.4, 1.04))
    ax_len.plot(grid, [cf.greedy_long_frac(p) for p in grid], "-", color="C3", lw=1, label="greedy, theory")
    ax_len.plot(grid, grid, "--", color="C0", lw=1, label=r"sampled, theory: $p_{cot}$")
    ax_len.plot(p_cots, [r["greedy_long_frac"] for r in rows], "o", color="C3", label="greedy, simulation")
    ax_len.plot(p_cots, [r["sampled_long_frac"] for r in rows], "s", color="C0", mfc="none",
                label="sampled, simulation")
    ax_len.set(xlabel=r"$p_{cot}$", ylabel=f"P(length = d = {d})", ylim=(-0.04, 1.04))
    for ax in (ax_acc, ax_len):
        ax.axvline(cf.CRITICAL_P_COT, color="grey", ls=":", lw=1)
        ax.text(cf.CRITICAL_P_COT + 0.01, 0.02, "1/3", transform=ax.get_xaxis_transform(), color="grey")
        ax.set_xlim(0, max(p_cots) + 0.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Theorem 1: linear autoregressive model after pre-training, parity d = {d}")
    save_figure(fig, out)
    return out


def plot_theorem2(tables: dict[float, list[dict]], d: int, out: Path) -> Path:
    """Long fraction and greedy accuracy against STaR round, simulated (markers) and predicted (lines), per p_cot."""
    fig, (ax_len, ax_acc) = figure(1, 2, figsize=(10, 3.8))
    for i, (p, rows) in enumerate(tables.items()):
        color, label = f"C{i}", rf"$p_{{cot}}$ = {p:g}" + (" = 1/d" if abs(p - 1 / d) < 1e-12 else "")
        rounds = [r["round"] for r in rows]
        ax_len.plot(rounds, [r["long_frac_predicted"] for r in rows], "-", color=color, lw=1)
        ax_len.plot(rounds, [r["long_frac"] for r in rows], "o", color=color, label=label)
        ax_acc.plot(rounds, [r["greedy_acc_predicted"] for r in rows], "-", color=color, lw=1, drawstyle="steps-mid")
        ax_acc.plot(rounds, [r["greedy_acc"] for r in rows], "o", color=color, label=label)
        ax_acc.axvline(cf.rounds_until_greedy_long(p), color=color, ls=":", lw=1)
    ax_len.axhline(cf.CRITICAL_P_COT, color="grey", ls=":", lw=1)
    ax_len.set(xlabel="STaR round", ylabel="P(length = d), sampled", ylim=(-0.02, 1.02),
               title=r"markers: simulation; lines: $p_{t+1} = 2p_t / (1 + p_t)$")
    ax_acc.set(xlabel="STaR round", ylabel="greedy accuracy", ylim=(0.4, 1.04),
               title="dotted: predicted round (first $p_t$ > 1/3)")
    for ax in (ax_len, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Theorem 2: STaR with the chain-of-thought reward, parity d = {d}")
    save_figure(fig, out)
    return out
