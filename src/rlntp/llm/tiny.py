"""A tiny Llama, a byte-level BPE tokenizer trained here, and GSM8K-format records: the LLM path without a hub.

It proves the wiring of data -> SFT -> GRPO -> evaluation on a CPU in minutes; the model is random
and tiny, so its accuracies say nothing about the paper's claims.
"""

import random
import shutil
import tempfile
import threading
from pathlib import Path

LLAMA_SPECIAL = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                 "<|pad|>")
"""Special tokens of the tokenizer, Llama 3's names (the chat template below uses them)."""

TAGS = ("<think>", "</think>", "<answer>", "</answer>")

CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'system' %}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}"
    "{%- endif %}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
"""Llama 3.1 instruct's rendering of system/user/assistant turns (its default dates), without tool calls."""

_NAMES = ("Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Ken", "Alexis", "Tina", "Randy")
_ITEMS = ("clips", "apples", "pages", "marbles", "stickers", "cookies", "books", "coins")


def gsm8k_records(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` GSM8K-format records (`question`, `answer` with `<<a+b=c>>` notes and `#### c`) of two-step word problems."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        a, b, k = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 5)
        more, total = a + b, (a + b) * k
        question = (f"{name} has {a} {item} and gets {b} more. Then {name} ends up with {k} times as many. "
                    f"How many {item} does {name} have?")
        answer = (f"After getting more, {name} has {a}+{b} = <<{a}+{b}={more}>>{more} {item}.\n"
                  f"In the end {name} has {more}*{k} = <<{more}*{k}={total}>>{total} {item}.\n#### {total}")
        records.append({"question": question, "answer": answer})
    return records


def math_records(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` MATH-format records (`problem`, `solution` ending in `$\\boxed{...}$`, nested braces) adding fractions."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        a, c, b = rng.randint(1, 9), rng.randint(1, 9), rng.randint(2, 12)
        problem = f"What is $\\frac{{{a}}}{{{b}}} + \\frac{{{c}}}{{{b}}}$?"
        solution = (f"The denominators are equal, so we add the numerators: $\\frac{{{a}}}{{{b}}} + "
                    f"\\frac{{{c}}}{{{b}}} = \\frac{{{a}+{c}}}{{{b}}}$. The answer is $\\boxed{{\\frac{{{a + c}}}{{{b}}}}}$.")
        records.append({"problem": problem, "solution": solution})
    return records


TOKENIZER_CHARS = 1_000_000
"""Characters of text the tokenizer trains on at most: the first texts, each cut to TOKENIZER_TEXT_CHARS. Its ~250
merges need far less (measured on the real GSM8K sample: 100,000 characters give 94% of the vocabulary of all
194,000 and 0.6% more tokens on the test records), and the cap bounds the time and memory of the Rust trainer (all
of a 30 MB record file took 2 minutes and 3 GB; one 300,000-character word alone 50 s)."""
TOKENIZER_TEXT_CHARS = 8_000
"""Characters of one text the tokenizer trains on at most (BPE training time grows faster than linearly in the
length of a word; real GSM8K and MATH records are under 3,000)."""


def tokenizer_texts(texts: list[str]) -> list[str]:
    """The part of `texts` the tokenizer trains on: the first TOKENIZER_CHARS characters, each text cut to
    TOKENIZER_TEXT_CHARS (the same texts give the same tokenizer)."""
    kept, total = [], 0
    for text in texts:
        if total >= TOKENIZER_CHARS:
            break
        text = text[:min(TOKENIZER_TEXT_CHARS, TOKENIZER_CHARS - total)]
        kept.append(text)
        total += len(text)
    return kept


def interruptible(fn, *args):
    """`fn(*args)` in a daemon thread while this one waits: Rust code that never looks at signals (tokenizers'
    trainer) would hold off a Ctrl-C until it returns; here the KeyboardInterrupt is raised at once and the thread is
    left to end with the process."""
    done: list = []

    def run() -> None:
        try:
            done.append((True, fn(*args)))
        except BaseException as e:  # handed to the waiting thread
            done.append((False, e))

    thread = threading.Thread(target=run, daemon=True, name=f"rlntp-{getattr(fn, '__name__', 'work')}")
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    ok, value = done[0]
    if not ok:
        raise value
    return value


def train_tokenizer(texts: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts` (their first TOKENIZER_CHARS characters, `tokenizer_texts`) with
    Llama 3's special tokens and chat template; a Ctrl-C stops it at once (`interruptible`).

    The four tags are added tokens, so a tag is one token and `Assistant: ` + `<think>` tokenizes the
    same apart and together (the SFT loss mask then starts exactly at the target).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(LLAMA_SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    interruptible(tokenizer.train_from_iterator, tokenizer_texts(texts), trainer)
    tokenizer.add_tokens(list(TAGS))
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                             pair="<|begin_of_text|> $A $B",
                                                             special_tokens=[("<|begin_of_text|>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", pad_token="<|pad|>", chat_template=CHAT_TEMPLATE,
                                   model_max_length=2048)


def make_tiny_llama(out: Path, texts: list[str], hidden: int = 128, layers: int = 2, heads: int = 4,
                    seed: int = 0) -> Path:
    """Save a randomly initialized tiny Llama and its tokenizer (trained on `texts`) to `out`; returns `out`.

    `from_pretrained(out)` loads both, as it would a hub model; generation stops at end-of-text or
    end-of-turn, as Llama 3 instruct's generation config does.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(texts)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|eot_id|>")])
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))  # renamed when complete
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out)
    return out
