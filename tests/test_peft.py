"""The parameter-efficient strategies (lora, lora-tasks, olora) on the MLP and on tiny randomly
initialised Hugging Face models (a Llama-style causal LM and a BERT encoder, built from config
classes: no weights, nothing downloaded).

The Stream takes floating inputs today, so the transformer classifiers below read token ids
stored as floats (exact up to 2**24) and turn them back into ids; the lead's
``forgetless.models.pretrained`` adapters replace them."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from forgetless.data.stream import Stream, Task  # noqa: E402
from forgetless.data.text import PAD  # noqa: E402
from forgetless.errors import ConfigurationError  # noqa: E402
from forgetless.learner import Learner  # noqa: E402
from forgetless.models import build_model  # noqa: E402
from forgetless.strategies import STRATEGIES, build_strategy  # noqa: E402
from forgetless.strategies.peft.adapters import (  # noqa: E402
    REINITIALISES,
    default_targets,
    lora_parameters,
)
from forgetless.strategies.peft.olora import OLoRA  # noqa: E402
from strategy_helpers import (  # noqa: E402
    assert_same_model,
    learner_for,
    recorded_terms,
    safe_roundtrip,
    small_stream,
)

VOCAB, LENGTH = 64, 6


def tiny_llama() -> nn.Module:
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2)
    return transformers.LlamaForCausalLM(config)


def tiny_bert() -> nn.Module:
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     max_position_embeddings=LENGTH)
    return transformers.BertModel(config)


class TokenClassifier(nn.Module):
    """A transformer's last hidden states, mean-pooled over the tokens that are not ``PAD``,
    into a Linear ``head``: the shape of a pretrained text classifier."""

    def __init__(self, transformer: nn.Module, num_outputs: int) -> None:
        super().__init__()
        self.transformer = transformer
        self.head = nn.Linear(transformer.config.hidden_size, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.long()
        mask = (ids != PAD).long()
        out = self.transformer(input_ids=ids.clamp_min(0), attention_mask=mask,
                               output_hidden_states=True)
        hidden = out.hidden_states[-1]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return self.head(pooled)


def token_samples(n: int, task: int, tasks: int, scenario: str, generator) -> tuple:
    """``n`` samples of two classes; a class's tokens come from its own block of the vocabulary
    (so it is learnable); every other sample ends in a PAD."""
    block = VOCAB // (2 * tasks)
    y = torch.arange(n) % 2
    x = torch.randint(0, block, (n, LENGTH), generator=generator) + (2 * task + y[:, None]) * block
    x[::2, -1] = PAD
    return x.float(), y + (2 * task if scenario != "domain" else 0)


def token_stream(scenario: str, tasks: int = 2, seed: int = 0) -> Stream:
    generator = torch.Generator().manual_seed(seed)
    built = []
    for t in range(tasks):
        train_x, train_y = token_samples(24, t, tasks, scenario, generator)
        test_x, test_y = token_samples(8, t, tasks, scenario, generator)
        built.append(Task(t, train_x, train_y, test_x, test_y,
                          tuple(sorted(set(train_y.tolist())))))
    return Stream(built, scenario, 2 if scenario == "domain" else 2 * tasks)


def transformer_learner(kind: str, spec: str, stream: Stream, seed: int = 0, **settings):
    torch.manual_seed(seed)
    body = tiny_llama() if kind == "llama" else tiny_bert()
    learner = Learner(TokenClassifier(body, stream.num_outputs), build_strategy(spec, settings),
                      iterations=4, batch_size=8, lr=1e-2, seed=seed)
    learner.bind(stream)
    return learner


def part(learner: Learner, name: str):
    return next(p for p in learner.strategy.parts if p.name == name)


def base_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter that is not a LoRA adapter's nor the head's, copied."""
    return {n: p.detach().clone() for n, p in model.named_parameters()
            if "lora_" not in n and not n.startswith("head.")}


# ---------------------------------------------------------------------- which layers, which train
def test_default_targets_follow_the_model():
    llama = default_targets(tiny_llama())
    assert llama and {n.rpartition(".")[2] for n in llama} == {"q_proj", "v_proj"}
    assert len(llama) == 4  # 2 layers x (q, v)
    bert = default_targets(tiny_bert())
    assert {n.rpartition(".")[2] for n in bert} == {"query", "value"} and len(bert) == 4
    mlp = build_model("mlp", (64,), 10, hidden=(32, 16))
    assert default_targets(mlp) == ("body.1", "body.3")  # every Linear but the head


def test_lora_on_a_causal_lm_freezes_everything_but_the_adapters():
    """Strategy level (the Stream cannot carry language-modelling targets yet): setup injects
    adapters into q_proj / v_proj; lm_head and every base weight are frozen."""
    model = tiny_llama()
    learner = Learner(model, build_strategy("lora"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(lora_parameters(model, "lora"))
    assert trainable and all(".q_proj." in n or ".v_proj." in n for n in trainable)
    assert learner.strategy.footprint().parameters_added == sum(
        p.numel() for p in lora_parameters(model, "lora").values())
    # PEFT's initialisation leaves the function unchanged (B = 0)
    ids = torch.randint(0, VOCAB, (2, LENGTH))
    reference = tiny_llama()
    reference.load_state_dict({n.replace(".base_layer", ""): v for n, v in
                               model.state_dict().items() if "lora_" not in n})
    assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-6)


def test_target_modules_override_the_rule_and_a_wrong_name_is_refused():
    model = tiny_llama()
    Learner(model, build_strategy("lora", {"target_modules": "k_proj"}))
    assert {n.split(".lora_")[0].rpartition(".")[2] for n in lora_parameters(model, "lora")} \
        == {"k_proj"}
    with pytest.raises(ConfigurationError, match="no module of the model is named nope"):
        Learner(tiny_llama(), build_strategy("lora", {"target_modules": ["nope"]}))
    with pytest.raises(ConfigurationError, match="r .* positive whole number"):
        build_strategy("lora", {"r": 0})


@pytest.mark.parametrize("kind", ["mlp", "llama", "bert"])
def test_lora_training_changes_only_adapters_and_head(digits_streams, kind):
    if kind == "mlp":
        learner = learner_for("lora", small_stream(digits_streams, "class", tasks=2))
        stream = small_stream(digits_streams, "class", tasks=2)
    else:
        stream = token_stream("class")
        learner = transformer_learner(kind, "lora", stream)
    model = learner.model
    before = base_weights(model)
    adapters = {n: p.detach().clone() for n, p in lora_parameters(model, "lora").items()}
    head = model.head.weight.detach().clone()
    learner.fit(stream)
    after = base_weights(model)
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(value, after[name]), f"{kind}: base weight {name} moved"
    moved = [n for n, p in lora_parameters(model, "lora").items()
             if not torch.equal(p, adapters[n])]
    assert len(moved) == len(adapters)  # every A and B trained
    assert not torch.equal(model.head.weight, head)


# ---------------------------------------------------------------------- lora composes
@pytest.mark.parametrize("spec", ["lora+ewc", "ewc+lora"])
def test_ewc_importances_cover_exactly_the_lora_parameters(digits_streams, spec):
    stream = small_stream(digits_streams, "class", tasks=2)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, build_strategy(spec, {"train_head": False}), iterations=4,
                      batch_size=16)
    before = base_weights(model)
    terms = recorded_terms(part(learner, "ewc"))
    learner.fit(stream)
    assert len(terms) == 2
    assert set(terms[0][0]) == set(lora_parameters(model, "lora"))
    assert any(f.abs().sum() > 0 for f in terms[1][0].values())
    assert all(torch.equal(v, base_weights(model)[n]) for n, v in before.items())
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("head"))


@pytest.mark.parametrize("kind", ["mlp", "bert"])
def test_lora_with_replay_runs_and_replays_into_the_adapters(digits_streams, kind):
    if kind == "mlp":
        stream = small_stream(digits_streams, "class", tasks=3)
        learner = learner_for("lora+er", stream)
    else:
        stream = token_stream("class")
        learner = transformer_learner(kind, "lora+er", stream)
    before = base_weights(learner.model)
    fit = learner.fit(stream)
    assert len(fit.accuracy_matrix) == len(stream.tasks)
    assert len(part(learner, "er").buffer) > 0
    assert all(torch.equal(v, base_weights(learner.model)[n]) for n, v in before.items())


def test_without_peft_the_strategy_says_how_to_install_it(digits_streams, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now fails
    with pytest.raises(ConfigurationError, match=r"needs the peft package.*\[llm\]"):
        learner_for("lora", small_stream(digits_streams, "class"))


COMPOSABLE = [name for name, cls in STRATEGIES.items()
              if cls.family in ("regularization", "replay") and name not in REINITIALISES]


@pytest.mark.parametrize("name", COMPOSABLE)
def test_every_regulariser_and_replay_strategy_composes_with_lora(digits_streams, name):
    cls = STRATEGIES.get(name)
    stream = small_stream(digits_streams, "class" if "class" in cls.scenarios else "task", 2)
    learner = learner_for(f"lora+{name}", stream)
    before = base_weights(learner.model)
    adapters = {n: p.detach().clone() for n, p in lora_parameters(learner.model, "lora").items()}
    learner.fit(stream)
    assert all(torch.equal(v, base_weights(learner.model)[n]) for n, v in before.items())
    assert any(not torch.equal(p, adapters[n])
               for n, p in lora_parameters(learner.model, "lora").items())


def test_lora_refuses_strategies_that_rebuild_layers(digits_streams):
    stream = small_stream(digits_streams, "task")
    with pytest.raises(ConfigurationError, match="lora wraps the model's layers.*pnn"):
        learner_for("lora+pnn", stream)
    with pytest.raises(ConfigurationError, match="lora wraps the model.s layers.*olora"):
        learner_for("lora+olora", stream)
    with pytest.raises(ConfigurationError, match="gdumb re-initialises every weight"):
        learner_for("gdumb+lora", small_stream(digits_streams, "class"))


# ---------------------------------------------------------------------- lora-tasks
def task_logits(learner: Learner, task: Task) -> torch.Tensor:
    """The logits of the task's own output units (what its predictions read)."""
    ids = torch.full((task.test_x.shape[0],), task.task_id, dtype=torch.long)
    with torch.no_grad():
        learner.model.eval()
        return learner.forward(task.test_x, ids)[:, list(task.classes)]


@pytest.mark.parametrize("kind", ["mlp", "bert"])
def test_lora_tasks_keeps_earlier_tasks_bit_identical(digits_streams, kind):
    if kind == "mlp":
        stream = small_stream(digits_streams, "task", tasks=3)
        torch.manual_seed(0)
        model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
        # weight decay and Adam state kept across tasks would move frozen head rows
        learner = Learner(model, build_strategy("lora-tasks"), iterations=6, batch_size=16,
                          weight_decay=0.1, reset_optimizer=False)
        learner.bind(stream)
    else:
        stream = token_stream("task", tasks=3)
        learner = transformer_learner(kind, "lora-tasks", stream)
    learner.learn(stream[0])
    first = task_logits(learner, stream[0])
    learner.learn(stream[1])
    second = task_logits(learner, stream[1])
    learner.learn(stream[2])
    assert torch.equal(task_logits(learner, stream[0]), first)
    assert torch.equal(task_logits(learner, stream[1]), second)
    assert not torch.equal(task_logits(learner, stream[2]), first)  # it learnt
    assert part(learner, "lora-tasks").adapters == ["task0", "task1", "task2"]
    # the optimiser kept across tasks was rebuilt for the new trainable set
    optimised = {id(p) for group in learner.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in learner.trainable_parameters()}
    assert {id(p) for p in lora_parameters(learner.model, "task2").values()} <= optimised


def test_lora_tasks_answers_a_mixed_batch_with_each_tasks_adapter(digits_streams):
    stream = small_stream(digits_streams, "task", tasks=2)
    learner = learner_for("lora-tasks+er", stream)
    for task in stream:
        learner.learn(task)
    x = torch.cat([stream[0].test_x[:5], stream[1].test_x[:5]])
    ids = torch.tensor([0, 1] * 5)
    mixed_x = torch.cat([x[:5], x[5:]])[torch.tensor([0, 5, 1, 6, 2, 7, 3, 8, 4, 9])]
    with torch.no_grad():
        mixed = learner.forward(mixed_x, ids)
        alone = [learner.forward(mixed_x[ids == t], ids[ids == t]) for t in (0, 1)]
    assert torch.allclose(mixed[ids == 0], alone[0], atol=1e-6)
    assert torch.allclose(mixed[ids == 1], alone[1], atol=1e-6)
    assert not torch.allclose(alone[0], learner.forward(mixed_x[ids == 0],
                                                        torch.ones(5, dtype=torch.long)))
    assert all(p.requires_grad == ("task1" in n or n.startswith("head"))
               for n, p in learner.model.named_parameters())


# ---------------------------------------------------------------------- olora
def olora_after_two_tasks(stream, lambda_orth: float, iterations: int = 4) -> Learner:
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, OLoRA(lambda_orth=lambda_orth), iterations=iterations,
                      batch_size=16, lr=1e-2)
    learner.bind(stream)
    for task in stream:
        learner.learn(task)
    return learner


def test_olora_penalty_is_zero_for_orthogonal_a_and_positive_otherwise(digits_streams):
    stream = small_stream(digits_streams, "class", tasks=2)
    learner = olora_after_two_tasks(stream, 0.5)
    olora = part(learner, "olora")
    layers = [m for m in learner.model.modules() if hasattr(m, "lora_A")]
    assert len(layers) == 1
    with torch.no_grad():
        eye = torch.eye(64)
        layers[0].lora_A["task0"].weight.copy_(eye[:8])
        layers[0].lora_A["task1"].weight.copy_(3 * eye[8:16])
    olora._old = None
    assert olora.penalty(None, None).item() == 0.0
    with torch.no_grad():
        layers[0].lora_A["task1"].weight.copy_(eye[:8])  # the same subspace: A1 A0^T = I_8
    assert olora.penalty(None, None).item() == pytest.approx(0.5 * 8)


def overlap(learner: Learner) -> float:
    """sum |A1 A0^T| / (||A1|| ||A0||): the new adapter's overlap with the old, scale removed."""
    layer = next(m for m in learner.model.modules() if hasattr(m, "lora_A"))
    a0, a1 = (layer.lora_A[a].weight.detach() for a in ("task0", "task1"))
    return float((a1 @ a0.T).abs().sum() / (a1.norm() * a0.norm()))


def test_olora_pushes_the_new_adapter_orthogonal_to_the_old(digits_streams):
    stream = small_stream(digits_streams, "class", tasks=2)
    free, pushed = (overlap(olora_after_two_tasks(stream, lam, iterations=30))
                    for lam in (0.0, 1.0))
    assert pushed < 0.5 * free, (free, pushed)


def test_olora_applies_every_adapter_and_trains_only_the_newest(digits_streams):
    stream = small_stream(digits_streams, "class", tasks=2)
    learner = olora_after_two_tasks(stream, 0.5)
    layer = next(m for m in learner.model.modules() if hasattr(m, "lora_A"))
    assert layer.active_adapters == ["task0", "task1"]
    assert {n for n, p in learner.model.named_parameters() if p.requires_grad} == \
        set(lora_parameters(learner.model, "task1")) | {"head.weight", "head.bias"}


# ---------------------------------------------------------------------- state
@pytest.mark.parametrize("kind, spec, scenario", [
    ("bert", "lora", "class"), ("bert", "lora-tasks", "task"), ("bert", "olora", "class"),
    ("bert", "lora+ewc", "class"), ("llama", "olora", "class"), ("llama", "lora-tasks", "task")])
def test_transformer_state_round_trip_continues_identically(kind, spec, scenario):
    stream = token_stream(scenario, tasks=3)
    # the exact Fisher's per-sample gradients (vmap) cannot run through transformers' masks
    settings = {"fisher_estimator": "batched"} if "ewc" in spec else {}
    uninterrupted = transformer_learner(kind, spec, stream, **settings)
    for task in stream:
        uninterrupted.learn(task)
    first_part = transformer_learner(kind, spec, stream, **settings)
    first_part.learn(stream[0])
    first_part.learn(stream[1])
    state = safe_roundtrip(first_part.state_dict())
    resumed = transformer_learner(kind, spec, stream, seed=123, **settings)
    resumed.load_state_dict(state)
    resumed.learn(stream[2])
    assert_same_model(uninterrupted, resumed, stream.tasks, spec)


def test_checkpoint_file_rebuilds_the_adapters(digits_streams, tmp_path):
    stream = small_stream(digits_streams, "class")
    uninterrupted = learner_for("olora", stream)
    for task in stream:
        uninterrupted.learn(task)
    first_part = learner_for("olora", stream)
    first_part.learn(stream[0])
    first_part.learn(stream[1])
    path = first_part.save(tmp_path / "olora.ckpt")
    resumed = Learner.load(path, stream=stream)
    assert part(resumed, "olora").adapters == ["task0", "task1"]
    resumed.learn(stream[2])
    assert_same_model(uninterrupted, resumed, stream.tasks, "olora")


@pytest.mark.parametrize("spec, scenario", [("lora+ewc", "class"), ("lora-tasks+er", "task"),
                                            ("olora", "class")])
def test_adapters_live_on_the_learners_device(digits_streams, device, spec, scenario):
    stream = small_stream(digits_streams, scenario, tasks=2)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, build_strategy(spec), iterations=4, batch_size=16, device=device)
    fit = learner.fit(stream)
    assert len(fit.accuracy_matrix) == 2
    assert {p.device.type for p in learner.model.parameters()} == {device.type}
