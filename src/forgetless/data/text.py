"""Text as tensors: the one convention every text benchmark, model adapter and objective shares.

A text sample is a row of token ids, right-padded with ``PAD`` (-1, never a real token id), so
text tasks are plain tensors like every other task: batched by the same loop, stored by the same
replay buffers, and the attention mask is ``x != PAD`` (no separate mask to carry around).

- Classification (a sentence encoder): ``x`` (N, L) token ids, ``y`` (N,) class labels.
- Language modelling: ``x`` (N, L) token ids and ``y`` (N, L) *aligned* targets: ``y[:, t]`` is
  the token the model must predict at position ``t`` (that is ``x[:, t + 1]``), or ``IGNORE``
  (-100) where no loss is taken (the prompt, when only the answer is trained; the padding).

The tokenizer is any callable in the Hugging Face style: ``tokenizer(text)["input_ids"]`` gives a
list of ids. ``encode_*`` never add special tokens beyond what ``add_special_tokens`` asks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from forgetless.errors import DataError

#: Padding in token-id tensors; the attention mask is ``x != PAD``.
PAD = -1
#: Targets that take no loss (PyTorch's cross-entropy ``ignore_index`` default).
IGNORE = -100


def token_ids(tokenizer, text: str, add_special_tokens: bool = False) -> list[int]:
    """The token ids of ``text`` (a list of ints)."""
    ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    return list(ids)


def pad_rows(rows: Sequence[Sequence[int]], fill: int, length: int | None = None) -> torch.Tensor:
    """Rows of ids as one (N, L) long tensor, right-padded with ``fill`` to the longest row (or
    ``length``; longer rows are refused rather than cut, so no answer is silently lost)."""
    longest = max((len(r) for r in rows), default=0)
    length = longest if length is None else length
    if longest > length:
        raise DataError(f"a text sample has {longest} tokens but the length limit is {length}; "
                        "raise the limit or shorten the text.")
    out = torch.full((len(rows), max(1, length)), fill, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.as_tensor(list(row), dtype=torch.long)
    return out


def encode_classification(tokenizer, texts: Sequence[str], max_length: int = 64) -> torch.Tensor:
    """Sentences as (N, L) token ids padded with ``PAD`` (with the encoder's special tokens,
    e.g. BERT's [CLS] ... [SEP]); longer sentences are cut to ``max_length`` tokens."""
    rows = []
    for text in texts:
        ids = token_ids(tokenizer, text, add_special_tokens=True)
        if len(ids) > max_length:  # keep the closing special token
            ids = ids[:max_length - 1] + ids[-1:]
        rows.append(ids)
    return pad_rows(rows, PAD)


def encode_language_modelling(tokenizer, prompts: Sequence[str], answers: Sequence[str],
                              answer_only: bool = True,
                              bos: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) for prompt + answer texts. ``answer_only``: loss on the answer tokens alone (the
    prompt conditions, the answer is what is learnt and scored); else on every token after the
    first. ``bos``: a token id put in front of every sample (None: none).

    The answer is tokenized together with the prompt (``prompt + answer``) so its tokens are the
    ones the model would produce after the prompt; the split point is where the prompt's own
    tokens end."""
    if len(prompts) != len(answers):
        raise DataError(f"{len(prompts)} prompts but {len(answers)} answers; give one answer "
                        "per prompt.")
    xs, ys = [], []
    for prompt, answer in zip(prompts, answers, strict=True):
        head = ([] if bos is None else [bos]) + token_ids(tokenizer, prompt)
        full = ([] if bos is None else [bos]) + token_ids(tokenizer, prompt + answer)
        split = _common_prefix(head, full)
        if split >= len(full):
            raise DataError(f"the answer {answer!r} adds no tokens to the prompt {prompt!r}; "
                            "give a non-empty answer.")
        targets = [IGNORE] * (len(full) - 1)
        first = max(split, 1) if answer_only else 1
        for t in range(first, len(full)):
            targets[t - 1] = full[t]
        xs.append(full[:-1])
        ys.append(targets)
    return pad_rows(xs, PAD), pad_rows(ys, IGNORE)


def attention_mask(x: torch.Tensor) -> torch.Tensor:
    """1 where ``x`` holds a token, 0 on padding."""
    return (x != PAD).long()


def model_input_ids(x: torch.Tensor, pad_token_id: int = 0) -> torch.Tensor:
    """``x`` with padding replaced by a real id (masked out by the attention mask anyway)."""
    return x.masked_fill(x == PAD, pad_token_id)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        n += 1
    return n
