"""A tiny Llama, a byte-level BPE tokenizer trained here, and GSM8K-format records: the LLM path without a hub.

It proves the wiring of data -> SFT -> GRPO -> evaluation on a CPU in minutes; the model is random
and tiny, so its accuracies say nothing about the paper's claims.
"""

import random
import tempfile
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


def train_tokenizer(texts: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts` with Llama 3's special tokens and chat template.

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
    tokenizer.train_from_iterator(texts, trainer)
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
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(out)
    return out
