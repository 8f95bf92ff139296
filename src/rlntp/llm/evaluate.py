"""`rlntp llm eval`: accuracy, response length and reward components of a model on a mixture's test split.

Each test question gets `generations` sampled responses (paper: 4) and every number is their
average: accuracy (the answer tag holds the right answer), mean length in tokens (and its standard error over the
questions), the fraction of responses with a non-empty chain of thought, and the mean points of each reward
component.
"""

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlntp.errors import check
from rlntp.files import GENERATOR, atomic_write_text, check_output, is_rlntp_output, write_output
from rlntp.llm.common import LLMStageConfig, load_causal_lm, use_bf16


@dataclass(frozen=True)
class LLMEvalConfig(LLMStageConfig):
    """Sampled responses of a model (an SFT or GRPO checkpoint, or a hub name) to the test questions of a mixture,
    scored with the stepwise reward."""

    generations: int = 4
    """responses sampled per question (paper: 4)"""
    temperature: float = 1.0
    """sampling temperature"""
    greedy: bool = False
    """greedy decoding instead of sampling (one response per question: --generations 1)"""
    max_new_tokens: int = 512
    """tokens a response may have"""
    questions: int | None = None
    """evaluate the first N test questions only (default: all)"""
    prompts_per_batch: int = 16
    """questions per generation call (HF generate)"""
    verify_timeout_s: float = 5.0
    """wall-clock limit of one math-verify check"""
    vllm: bool = False
    """generate with vLLM (CUDA; pip install 'rlntp[vllm]')"""

    def check(self) -> None:
        super().check()
        for name in ("generations", "max_new_tokens", "prompts_per_batch"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check(self.questions is None or self.questions >= 1, f"questions must be >= 1, got {self.questions}")
        check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        check(self.verify_timeout_s > 0, f"verify_timeout_s must be > 0, got {self.verify_timeout_s}")
        check(not self.greedy or self.generations == 1,
              f"--greedy gives one response per question (all greedy ones are the same): pass --generations 1, got "
              f"{self.generations}")


def prompt_ids(tokenizer, prompt) -> list[int]:
    """Token ids of a prompt as TRL's trainers make them: chat messages through the chat template, text with BOS."""
    if isinstance(prompt, str):
        return tokenizer(prompt)["input_ids"]
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"]


def generate_hf(model_dir: str, prompts: list, options: LLMEvalConfig) -> tuple[list[str], list[int]]:
    """`options.generations` sampled (or one greedy) responses per prompt with `model.generate` (left-padded batches,
    KV cache)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    device = torch.device("cuda" if torch.cuda.is_available() and not options.cpu else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if use_bf16(options.precision, options.cpu) else torch.float32
    model = load_causal_lm(model_dir, options.allow_pickle, dtype).to(device).eval()
    stops = model.generation_config.eos_token_id
    stops = set([stops] if isinstance(stops, int) else stops or [tokenizer.eos_token_id])
    torch.manual_seed(options.seed)
    texts, lengths = [], []
    for start in tqdm(range(0, len(prompts), options.prompts_per_batch), desc="generating", unit="batch"):
        batch = [{"input_ids": prompt_ids(tokenizer, p)} for p in prompts[start:start + options.prompts_per_batch]]
        inputs = tokenizer.pad(batch, return_tensors="pt").to(device)
        with torch.no_grad():
            sampling = {"do_sample": False} if options.greedy else {
                "do_sample": True, "temperature": options.temperature, "top_p": 1.0, "top_k": 0}
            out = model.generate(**inputs, **sampling, max_new_tokens=options.max_new_tokens,
                                 num_return_sequences=options.generations, pad_token_id=tokenizer.pad_token_id)
        for row in out[:, inputs["input_ids"].shape[1]:].tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
            lengths.append(end)
            texts.append(tokenizer.decode(row[:end], skip_special_tokens=True))
    return texts, lengths


def generate_vllm(model_dir: str, prompts: list, options: LLMEvalConfig) -> tuple[list[str], list[int]]:
    """The same responses from a vLLM engine (token-id prompts, so BOS and the chat template are TRL's)."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    engine = LLM(model=model_dir, seed=options.seed)
    params = SamplingParams(n=options.generations, temperature=0.0 if options.greedy else options.temperature,
                            top_p=1.0, max_tokens=options.max_new_tokens, seed=options.seed)
    results = engine.generate([{"prompt_token_ids": prompt_ids(tokenizer, p)} for p in prompts], params)
    texts = [c.text for r in results for c in r.outputs]
    lengths = [len(c.token_ids) for r in results for c in r.outputs]
    return texts, lengths


def length_se(lengths: list[int], generations: int) -> float:
    """The standard error of the mean response length, with the questions as the units (a question's responses are
    not independent): the standard deviation of the per-question mean lengths over sqrt(questions); 0 for one
    question."""
    per_question = [statistics.fmean(lengths[i:i + generations]) for i in range(0, len(lengths), generations)]
    if len(per_question) < 2:
        return 0.0
    return statistics.stdev(per_question) / math.sqrt(len(per_question))


def run_eval(options: LLMEvalConfig, out: Path) -> dict[str, Any]:
    """Evaluate `options.model` on the test split; writes the metrics to `out` (JSON) and the responses beside it
    (`out` with .responses.jsonl). Returns the metrics."""
    import importlib.util

    from rlntp.llm.common import check_model
    from rlntp.llm.dataset import read_split
    from rlntp.llm.sources import resolve_model

    out, responses_file = Path(out), Path(out).with_suffix(".responses.jsonl")
    check_output(out, suffix=".json")
    check(not responses_file.exists() or is_rlntp_output(out),
          f"{responses_file} exists and was not written by rlntp; move it away or choose another --out")
    check_model(options.model, options.allow_pickle)
    check(not options.vllm or importlib.util.find_spec("vllm") is not None,
          "--vllm needs vLLM: pip install 'rlntp[vllm]' (on a CUDA machine)")
    test = read_split(options.data, "test")
    model_dir, source = resolve_model(options.model)  # a GGUF is converted once (cached)
    if options.questions is not None:
        test = test.select(range(min(options.questions, len(test))))
    prompts, golds = test["prompt"], test["answer"]
    from rlntp.llm.reward import REWARD_POINTS, score, shared_verifier, think_text

    generate = generate_vllm if options.vllm else generate_hf
    began = time.perf_counter()
    texts, lengths = generate(model_dir, prompts, options)
    seconds = time.perf_counter() - began  # the model's loading included: a small share of a real evaluation
    answers = [g for g in golds for _ in range(options.generations)]
    verifier = shared_verifier(options.verify_timeout_s)
    scores = [score(text, gold, verifier) for text, gold in zip(texts, answers)]
    n, correct = len(texts), sum(s["correct_in_answer"] > 0 for s in scores)
    metrics = {
        "written_by": f"{GENERATOR} llm eval", "model": options.model,
        **({"model_source": source} if source else {}), "questions": len(prompts), "responses": n,
        "correct": correct, "accuracy": correct / n,
        "mean_length": sum(lengths) / n, "length_se": length_se(lengths, options.generations),
        "generation_s": seconds, "tokens_per_s": sum(lengths) / seconds,
        "long_frac": sum(bool((think_text(t) or "").strip()) for t in texts) / n,
        "reward": sum(sum(s.values()) for s in scores) / n,
        **{f"rewards/{k}": sum(s[k] for s in scores) / n for k in REWARD_POINTS},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    responses = [{"question": i // options.generations, "answer": a, "response": t, "length": length, **s}
                 for i, (t, a, length, s) in enumerate(zip(texts, answers, lengths, scores))]
    atomic_write_text(responses_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in responses))
    write_output(out, (json.dumps(metrics, indent=2) + "\n").encode())
    return metrics
