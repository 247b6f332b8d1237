"""Objectives: the loop, the score matrix and the strategies serve a language model and a text
encoder as they serve the MLP. Tiny randomly initialised transformers (no weights to load)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from forgetless.data.stream import Stream, Task  # noqa: E402
from forgetless.data.text import IGNORE, PAD, encode_classification, encode_language_modelling  # noqa: E402
from forgetless.errors import ScenarioError  # noqa: E402
from forgetless.learner import Learner  # noqa: E402
from forgetless.models import build_model  # noqa: E402
from forgetless.objectives import LanguageModelling  # noqa: E402
from forgetless.strategies import build_strategy  # noqa: E402

FACTS = [[("Capital of Abx is", " Qo"), ("Capital of Brz is", " Wu")],
         [("Capital of Cdy is", " Ep"), ("Capital of Dfx is", " Ri")]]


def lm_stream(model, probe_first: bool = False) -> Stream:
    """Two tasks of two facts each, every sequence padded to one length; ``probe_first``: a
    first task with test data only (the knowledge benchmark's prior skills)."""
    encoded = [encode_language_modelling(model.tokenizer, [p for p, _ in f], [a for _, a in f])
               for f in FACTS]
    length = max(x.shape[1] for x, _ in encoded)
    tasks = []
    for i, (x, y) in enumerate(encoded):
        x = torch.nn.functional.pad(x, (0, length - x.shape[1]), value=PAD)
        y = torch.nn.functional.pad(y, (0, length - y.shape[1]), value=IGNORE)
        tasks.append(Task(i, x, y, x, y, (), f"facts {i}"))
    if probe_first:
        x, y = tasks[0].test_x, tasks[0].test_y
        tasks = [Task(0, x[:0], y[:0], x, y, (), "probes")] + [
            Task(i + 1, t.train_x, t.train_y, t.test_x, t.test_y, (), t.description)
            for i, t in enumerate(tasks)]
    return Stream(tasks, "domain", 0, objective="language_modelling")


def tiny_lm(seed: int = 0):
    return build_model("tiny-lm", None, None, seed=seed)


def test_exact_match_is_greedy_decoding_in_one_pass():
    """The teacher-forced exact match equals generate(do_sample=False)'s answer, prompt by
    prompt, for a trained model that gets some answers right and some wrong."""
    model = tiny_lm()
    stream = lm_stream(model)
    learner = Learner(model, None, epochs=40, batch_size=2, lr=1e-2, progress=False)
    learner.fit(stream)
    tokenizer = model.tokenizer
    outcomes = []
    for facts in FACTS:
        for prompt, answer in facts:
            ids = torch.tensor([tokenizer(prompt)["input_ids"]])
            want = tokenizer(prompt + answer)["input_ids"][ids.shape[1]:]
            with torch.no_grad():
                out = model.transformer.generate(input_ids=ids, max_new_tokens=len(want),
                                                 do_sample=False, pad_token_id=0)
            outcomes.append(out[0, ids.shape[1]:].tolist() == want)
    scores = [LanguageModelling().score(learner, task)["exact_match"] for task in stream]
    assert scores == [sum(outcomes[:2]) / 2, sum(outcomes[2:]) / 2]
    assert 0 < sum(outcomes)  # the check is not vacuous: some answers are right
    # and wrong answers (each prompt with another fact's answer) score what generate says: 0
    swapped = [[(p, FACTS[1 - i][j][1]) for j, (p, _) in enumerate(facts)]
               for i, facts in enumerate(FACTS)]
    x, y = encode_language_modelling(tokenizer, [p for f in swapped for p, _ in f],
                                     [a for f in swapped for _, a in f])
    wrong = Task(0, x, y, x, y, (), "wrong answers")
    assert LanguageModelling().score(learner, wrong)["exact_match"] == 0.0


def test_language_model_loss_is_on_the_answer_tokens_only():
    model = tiny_lm()
    stream = lm_stream(model)
    learner = Learner(model, None, progress=False)
    learner.bind(stream)
    task = stream[0]
    logits = model(task.train_x)
    target = task.train_y != IGNORE
    manual = torch.nn.functional.cross_entropy(logits[target], task.train_y[target])
    assert torch.allclose(learner.loss(logits, task.train_y, task.task_ids), manual)
    assert int(target.sum()) < int((task.train_x != PAD).sum())  # prompts take no loss


def test_fine_tuning_a_language_model_learns_and_forgets():
    """Naive fine-tuning learns each task's facts (exact match 1.0 on the diagonal) and, after
    the next task, answers fewer of the first: the phenomenon, on a tiny model."""
    model = tiny_lm()
    result = Learner(model, None, epochs=120, batch_size=2, lr=1e-2, progress=False).fit(
        lm_stream(model))
    r = result.accuracy_matrix
    assert r[0][0] == 1.0 and r[1][1] == 1.0
    assert r[1][0] < 1.0
    perplexity = result.scores["perplexity"]
    assert perplexity[0][0] < result.untrained_scores["perplexity"][0]  # it learnt task 1


@pytest.mark.parametrize("name", ["ewc", "online-ewc", "si", "mas", "l2", "lwf", "er", "derpp",
                                  "agem", "gem", "cumulative", "joint", "lora", "olora",
                                  "wise-ft", "merge", "lora+er", "lora+ewc"])
def test_strategies_that_serve_a_language_model_run_on_one(name):
    model = tiny_lm()
    result = Learner(model, build_strategy(name, {}), epochs=2, batch_size=2, lr=1e-3,
                     progress=False).fit(lm_stream(model, probe_first=True))
    assert len(result.accuracy_matrix) == 3  # a probe task with nothing to train on, then two
    assert all(0 <= v <= 1 for row in result.accuracy_matrix for v in row)


@pytest.mark.parametrize("name", ["icarl", "er-ace", "gdumb", "generative-replay"])
def test_strategies_that_cannot_serve_a_language_model_refuse_it(name):
    model = tiny_lm()
    with pytest.raises(ScenarioError, match="does not serve language modelling"):
        Learner(model, build_strategy(name, {}), progress=False).fit(lm_stream(model))


def _movement_on_task_2(strategy):
    """The trainable parameters of a model with its last layer trained, the mean absolute
    change while learning task 2 (after task 1) under ``strategy``, and the strategy."""
    model = build_model("tiny-lm", None, None, seed=0, train_layers=1)
    stream = lm_stream(model)
    learner = Learner(model, strategy, epochs=20, batch_size=2, lr=1e-2, progress=False)
    learner.bind(stream)
    learner.learn(stream[0])  # EWC's Fisher and anchor are taken after it
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    learner.learn(stream[1])
    moved = torch.cat([(p.detach() - before[n]).abs().flatten()
                       for n, p in model.named_parameters() if n in before]).mean()
    return set(before), float(moved), learner.strategy.parts[0]


def test_ewc_importances_cover_the_trainable_parameters_only_and_pin_them():
    trainable, naive_moved, _ = _movement_on_task_2(build_strategy("naive", {}))
    _, ewc_moved, ewc = _movement_on_task_2(
        build_strategy("ewc", {"lam": 1e6, "fisher_estimator": "empirical"}))
    frozen = build_model("tiny-lm", None, None, seed=0, train_layers=1)
    assert len(trainable) < len(list(frozen.parameters()))  # some parameters are frozen
    assert set(ewc.fishers[0]) == trainable
    assert all(bool((f > 0).any()) for f in ewc.fishers[0].values())
    assert ewc_moved < 0.2 * naive_moved  # a large lambda holds the weights the Fisher covers


def test_der_keeps_top_k_logits_per_token_and_matches_them():
    objective = LanguageModelling()
    logits = torch.randn(2, 5, 300)
    x = torch.tensor([[3, 4, 5, PAD, PAD], [3, 4, 5, 6, 7]])
    stored = objective.logit_memory(logits, x)
    assert stored.shape == (2, 5, 32)  # 16 values + 16 token ids per position, not 300
    assert float(objective.logit_matching(logits, stored)) == 0.0
    assert float(objective.logit_matching(logits + 1.0, stored)) == pytest.approx(1.0)
    changed_padding = logits.clone()
    changed_padding[0, 3:] += 5.0  # padding positions are not matched
    assert float(objective.logit_matching(changed_padding, stored)) == 0.0


def test_distillation_of_a_language_model_is_zero_for_the_teacher_itself():
    objective = LanguageModelling()
    logits = torch.randn(2, 4, 50)
    x = torch.tensor([[3, 4, PAD, PAD], [3, 4, 5, 6]])
    assert float(objective.distillation(logits, logits, x, None, 2.0)) == pytest.approx(0.0,
                                                                                       abs=1e-6)
    assert float(objective.distillation(logits, torch.randn(2, 4, 50), x, None, 2.0)) > 0


def topic_stream(model) -> Stream:
    """Class-incremental text classification: 'cat'/'dog' sentences, then 'red'/'blue'."""
    words = [["cat", "dog"], ["red", "blue"]]
    tasks = []
    for t, pair in enumerate(words):
        texts = [f"the {w} number {k}" for k in range(8) for w in pair]
        labels = torch.tensor([2 * t + i for _ in range(8) for i in range(2)])
        x = encode_classification(model.tokenizer, texts)
        tasks.append((x, labels))
    length = max(x.shape[1] for x, _ in tasks)
    built = []
    for t, (x, y) in enumerate(tasks):
        x = torch.nn.functional.pad(x, (0, length - x.shape[1]), value=PAD)
        built.append(Task(t, x, y, x, y, (2 * t, 2 * t + 1), f"words {t}"))
    return Stream(built, "class", 4)


def test_a_text_encoder_classifies_token_ids_through_the_same_loop():
    torch.manual_seed(0)  # BERT's dropout draws from the global RNG (as the runner seeds it)
    model = build_model("tiny-encoder", None, 4, seed=0)
    result = Learner(model, None, epochs=30, batch_size=8, lr=3e-3, progress=False).fit(
        topic_stream(model))
    r = result.accuracy_matrix
    assert r[0][0] == 1.0 and r[1][1] == 1.0  # each task's words are learnt
    assert r[1][0] < 0.5  # and the first task's are forgotten: class-IL naive


def test_a_learner_that_does_not_train_takes_no_steps_and_leaves_the_weights():
    from forgetless.strategies.bounds import Naive

    class Frozen(Naive):
        trains_model = False

    model = build_model("tiny-encoder", None, 4, seed=0)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    result = Learner(model, Frozen(), epochs=3, progress=False).fit(topic_stream(model))
    assert result.steps == [0, 0]
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


@pytest.mark.parametrize("name", ["ewc", "mas", "online-ewc"])
def test_importances_of_a_text_encoder_are_taken_sample_by_sample(name):
    """torch.func cannot vectorise a transformer over samples; the per-sample loop gives every
    trainable parameter an importance, with the default estimator, and the run completes."""
    model = build_model("tiny-encoder", None, 4, seed=0)
    learner = Learner(model, build_strategy(name, {}), epochs=2, batch_size=8, lr=1e-3,
                      progress=False)
    result = learner.fit(topic_stream(model))
    part = learner.strategy.parts[0]
    importance = part.importance if name == "mas" else part.fishers[-1]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(importance) == trainable
    assert sum(float(v.sum()) for v in importance.values()) > 0
    assert len(result.accuracy_matrix) == 2
