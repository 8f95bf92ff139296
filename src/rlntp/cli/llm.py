"""`rlntp llm data|sft|grpo|eval`: the LLM path's stages, options generated from their frozen dataclasses."""

from pathlib import Path
from typing import Annotated

from rlntp.cli.parsing import Flat
from rlntp.llm.dataset import MAX_RECORD_MB, LLMDataConfig
from rlntp.llm.evaluate import LLMEvalConfig
from rlntp.llm.grpo import GRPOConfig
from rlntp.llm.sft import SFTConfig


def data(config: Annotated[LLMDataConfig, Flat], out: Path, max_record_mb: float = MAX_RECORD_MB) -> None:
    """GSM8K or MATH records -> the SFT and RL halves of a long/short mixture and the test split (Parquet).

    Each training target keeps its chain of thought with probability p_cot (seeded, per record).
    Records whose solution has no final answer (no `####`, no `\\boxed{}`) are counted in the manifest.

    Args:
        config: the records and the mixture
        out: the dataset directory to create (must not exist or be empty)
        max_record_mb: refuse a local record file larger than this (MB), before reading it: its records are held
            in memory (GSM8K's training set is 4 MB, MATH's 10 MB)
    """
    from rlntp.errors import check
    from rlntp.llm.dataset import make_dataset

    check(max_record_mb > 0, f"max_record_mb must be > 0, got {max_record_mb}")
    manifest = make_dataset(config, out, max_record_mb)
    rows, long = manifest["rows"], manifest["long"]
    print(f"wrote {out}: sft {rows['sft']:,} rows ({long['sft']:,} long), rl {rows['rl']:,}, test {rows['test']:,}")
    for split, skipped in manifest["unsplittable"].items():
        if skipped:
            shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
            print(f"left out {len(skipped)} {split} record(s) with no final answer to split off: rows {shown}")


def sft(options: Annotated[SFTConfig, Flat], out: Path, quiet: bool = False) -> None:
    """Supervised fine-tuning on the SFT half with TRL's SFTTrainer; loss on the target only, a checkpoint per epoch.

    Rerunning the same command resumes from the last checkpoint. Launch on several GPUs with
    `accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m rlntp.cli llm sft ...`.

    Args:
        options: the model, data and training options
        out: the run directory (OUT/checkpoint-STEP per epoch, OUT/done.json)
        quiet: no progress bar or log lines
    """
    from rlntp.llm.sft import run_sft

    done = run_sft(options, out, progress=not quiet)
    first, last = done["loss"][0][1], done["loss"][-1][1]
    print(f"SFT loss {first:.3f} -> {last:.3f}; checkpoints per epoch: {', '.join(done['checkpoints'].values())}")


def grpo(options: Annotated[GRPOConfig, Flat], out: Path, quiet: bool = False) -> None:
    """GRPO with the stepwise reward (TRL's GRPOTrainer) from an SFT checkpoint on the RL half.

    Rerunning the same command resumes from the last checkpoint.

    Args:
        options: the starting model, data and GRPO options
        out: the run directory (OUT/checkpoint-STEP every --save-every steps, OUT/done.json)
        quiet: no progress bar or log lines
    """
    from rlntp.llm.grpo import run_grpo

    done = run_grpo(options, out, progress=not quiet)
    rewards = [h["reward"] for h in done["log"] if "reward" in h]
    print(f"GRPO: {len(rewards)} steps, mean reward {rewards[0]:.1f} -> {rewards[-1]:.1f}; run in {out}")


def evaluate(options: Annotated[LLMEvalConfig, Flat], out: Path) -> None:
    """Accuracy, mean length, long fraction and reward components of a model on the test split.

    Args:
        options: the model, data and sampling options
        out: the metrics file to write (JSON); the responses go beside it (.responses.jsonl)
    """
    import json

    from rlntp.llm.evaluate import run_eval

    print(json.dumps(run_eval(options, out), indent=2))


RERUN_HINT = "rerun the same command to continue"  # sft and grpo resume that way (no --resume)
DESCRIPTION = "Pretrained LLMs on GSM8K/MATH mixtures: data, SFT, GRPO, evaluation (pip install 'rlntp[llm]')"


def commands() -> dict:
    return {"data": data, "sft": sft, "grpo": grpo, "eval": evaluate}
