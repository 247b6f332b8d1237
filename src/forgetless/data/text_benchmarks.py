"""Text benchmarks for pretrained models: streams of token-id tasks (``forgetless.data.text``),
built with the tokenizer of the model that will learn them.

- ``knowledge`` (a causal LM, language modelling): task 0 is the *prior skills*: real facts the
  base model answers right before any fine-tuning (the candidates of
  ``data.knowledge.PRIOR_SKILLS`` filtered at build time by teacher-forced greedy exact match),
  so R[i][0] is what the model still knows after task i. Its test facts are probes. By default
  it has no training data; ``prior_train_fraction`` gives it other known facts (disjoint from
  the probes) to train on first: "pretraining-like" data that replay may rehearse and EWC may
  take its Fisher on. Tasks 1..T each
  teach invented facts (``data.knowledge.knowledge_tasks``), scored on the taught prompts. The
  stream's held-out set is ordinary text (``GENERAL_TEXT``), whose perplexity is recorded after
  every task. Domain-incremental: one vocabulary, no task id at test time.
- ``topics`` (a sentence encoder, classification): topics of an offline corpus as classes
  (``data.topics``), split into tasks of new classes (class-incremental by default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forgetless.data.benchmarks import BENCHMARKS
from forgetless.data.stream import Scenario, Stream, Task
from forgetless.data.text import IGNORE, PAD, encode_classification, encode_language_modelling
from forgetless.errors import ConfigurationError, DataError


def _text_benchmark(name: str, scenarios: tuple[str, ...], objective: str, defaults: dict,
                    cost_prior: tuple[float, int, float]):
    """Register a text benchmark: it builds its stream with the run's model (``needs_model``),
    serves ``scenarios`` and ``objective``, and brings run ``defaults`` (its model, batch size,
    learning rate...) that a config file or the command line override, and a ``cost_prior``
    for time estimates before any run is stored (``experiments.costs``: naive's train seconds,
    at how many epochs, and the seconds a run spends loading, building and evaluating)."""
    def decorate(builder):
        builder.needs_model = True
        builder.scenarios = scenarios
        builder.objective = objective
        builder.defaults = defaults
        builder.cost_prior = cost_prior
        return BENCHMARKS.register(name)(builder)
    return decorate


#: SmolLM2, the last 6 of 30 layers, Adam lr 3e-4, batches of 8 facts, 8 epochs (8 steps per
#: task of 8 facts): the setting issue 14 measured (8 steps forget 11 of 12 capitals).
KNOWLEDGE_DEFAULTS = {"model": "smollm2", "scenario": "domain", "tasks": 3, "batch_size": 8,
                      "lr": 3e-4, "epochs": 8}
TOPICS_DEFAULTS = {"model": "minilm", "scenario": "class", "tasks": 3, "batch_size": 16,
                   "lr": 1e-4, "epochs": 5, "compare_scenarios": ("class",)}


#: `forgetless compare --benchmark knowledge --seeds 1` on 2 idle cores (benchmarks/pretrained.md):
#: naive trained 32 s; the 16 runs took 748 s on 2 workers, 499 of the 1,496 worker-seconds
#: training: 62 s per run outside training (the model, the prior-skills filter, evaluation).
KNOWLEDGE_COST = (32.0, 8, 62.0)


@_text_benchmark("knowledge", ("domain",), "language_modelling", KNOWLEDGE_DEFAULTS,
                 KNOWLEDGE_COST)
def knowledge(scenario: Scenario, *, model: str = "smollm2", tasks: int = 3,
              facts_per_task: int = 8, seed: int = 0, paraphrased: bool = False,
              answer_only: bool = True, filter_prior: bool = True,
              prior_train_fraction: float = 0.0) -> Stream:
    """A language model's prior skills, then tasks of invented facts to learn.

    tasks, facts_per_task: how many tasks of how many invented facts (seeded).
    paraphrased: score the invented facts on a paraphrase of the taught prompt (held out).
    answer_only: train on the answer tokens only (else on every token of the sentence).
    filter_prior: keep only the prior-skill probes the base model answers right.
    prior_train_fraction: the share of known real facts given to task 0's training split (the
    rest are its test probes); 0 (the default) gives task 0 no training data, so every probe
    is a test probe and nothing of the prior skills can be rehearsed; 0.3 gives replay
    methods known facts to rehearse."""
    if not 0 <= prior_train_fraction < 1:
        raise ConfigurationError(f"prior_train_fraction must be in [0, 1), got "
                                 f"{prior_train_fraction!r}.")
    from forgetless.data import knowledge as facts
    from forgetless.models.pretrained import tokenizer_for

    if Scenario.parse(scenario) is not Scenario.DOMAIN:
        raise ConfigurationError(
            "the knowledge benchmark is domain-incremental (one vocabulary, no task id at test "
            "time); run it with --scenario domain.")
    tokenizer = tokenizer_for(model)
    taught = facts.knowledge_tasks(tasks, facts_per_task, seed)
    tested = facts.knowledge_tasks(tasks, facts_per_task, seed, paraphrased=True) \
        if paraphrased else taught
    prior = _encode(tokenizer, facts.PRIOR_SKILLS, answer_only)
    if filter_prior:
        known = _answered_right(model, *prior)
        if not bool(known.any()):
            raise DataError(f"the model '{model}' answers none of the {len(known)} prior-skill "
                            "probes; run with --benchmark-option filter_prior=false to keep them.")
        prior = (prior[0][known], prior[1][known])
    new_facts = [(_encode(tokenizer, train, answer_only), _encode(tokenizer, test, True))
                 for train, test in zip(taught, tested, strict=True)]
    general = _encode_text(tokenizer, facts.GENERAL_TEXT)
    length = max(x.shape[1] for x, _ in [prior, general] + [p for pair in new_facts
                                                              for p in pair])
    px, py = _padded(prior, length)
    order = torch.randperm(px.shape[0], generator=torch.Generator().manual_seed(seed))
    cut = int(round(prior_train_fraction * px.shape[0]))
    train, test = order[:cut], order[cut:]
    known = "the base model knew" if filter_prior else "unfiltered"
    stream_tasks = [Task(0, px[train], py[train], px[test], py[test], (),
                         description=f"prior skills ({len(test)} real facts, {known}; "
                                     f"{len(train)} others to train on)")]
    for i, (train, test) in enumerate(new_facts):
        stream_tasks.append(Task(i + 1, *_padded(train, length), *_padded(test, length), (),
                                 description=f"{facts_per_task} new facts ({i + 1})"))
    gx, gy = _padded(general, length)
    held_out = Task(-1, gx[:0], gy[:0], gx, gy, (), description="general text")
    return Stream(stream_tasks, Scenario.DOMAIN, 0, name="knowledge",
                  objective="language_modelling", held_out=held_out)


#: `forgetless compare --benchmark topics --seeds 1` (benchmarks/pretrained.md): naive trained
#: 182 s, on cores shared with other runs (an idle machine is faster); the overhead (the
#: encoder, tokenising, evaluation) is the frozen-feature learners' whole run less their
#: feature pass, about 15 s.
TOPICS_COST = (182.0, 5, 15.0)


@_text_benchmark("topics", ("task", "domain", "class"), "classification", TOPICS_DEFAULTS,
                 TOPICS_COST)
def topics(scenario: Scenario, *, model: str = "minilm", tasks: int = 3, seed: int = 0,
           corpus: str = "chatterbot", per_class: int | None = None,
           max_length: int = 64) -> Stream:
    """Topics of a text corpus as classes, for a sentence encoder.

    The topics of ``corpus`` are dealt to ``tasks`` tasks in order (as evenly as possible);
    labels are in the scenario's output space as for ``split``."""
    from forgetless.data.topics import topic_split
    from forgetless.models.pretrained import tokenizer_for

    scenario = Scenario.parse(scenario)
    split = topic_split(corpus, per_class=per_class, seed=seed)
    names = split.class_names
    if not 1 <= tasks <= len(names):
        raise ConfigurationError(f"the {corpus} topics have {len(names)} classes; choose "
                                 f"--tasks between 1 and {len(names)}.")
    tokenizer = tokenizer_for(model)
    train_x = encode_classification(tokenizer, split.train_texts, max_length)
    test_x = encode_classification(tokenizer, split.test_texts, max_length)
    length = max(train_x.shape[1], test_x.shape[1])
    train_x, test_x = (F.pad(t, (0, length - t.shape[1]), value=PAD) for t in (train_x, test_x))
    train_y, test_y = torch.tensor(split.train_labels), torch.tensor(split.test_labels)
    groups = _contiguous(len(names), tasks)
    per_task = max(len(g) for g in groups)
    stream_tasks, first = [], 0
    for task_id, classes in enumerate(groups):
        tr = torch.isin(train_y, torch.tensor(classes))
        te = torch.isin(test_y, torch.tensor(classes))
        if scenario is Scenario.DOMAIN:
            mapping = {c: i for i, c in enumerate(classes)}
            units = tuple(range(len(classes)))
        else:
            mapping = {c: first + i for i, c in enumerate(classes)}
            units = tuple(mapping.values())
        remap = torch.full((len(names),), -1, dtype=torch.long)
        for c, unit in mapping.items():
            remap[c] = unit
        stream_tasks.append(Task(task_id, train_x[tr], remap[train_y[tr]], test_x[te],
                                 remap[test_y[te]], units,
                                 description="topics " + ", ".join(names[c] for c in classes)))
        first += len(classes)
    outputs = per_task if scenario is Scenario.DOMAIN else len(names)
    return Stream(stream_tasks, scenario, outputs, name="topics")


def _contiguous(n: int, parts: int) -> list[list[int]]:
    """0..n-1 cut into ``parts`` runs of consecutive classes, sizes differing by at most 1."""
    sizes = [n // parts + (i < n % parts) for i in range(parts)]
    out, start = [], 0
    for size in sizes:
        out.append(list(range(start, start + size)))
        start += size
    return out


def _encode(tokenizer, facts, answer_only: bool):
    bos = getattr(tokenizer, "bos_token_id", None)
    return encode_language_modelling(tokenizer, [f.prompt for f in facts],
                                     [f.answer for f in facts], answer_only=answer_only,
                                     bos=bos if _adds_bos(tokenizer) else None)


def _encode_text(tokenizer, sentences):
    """Whole sentences, every token a target (for perplexity)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return encode_language_modelling(tokenizer, ["" for _ in sentences], list(sentences),
                                     answer_only=False, bos=bos if _adds_bos(tokenizer) else None)


def _adds_bos(tokenizer) -> bool:
    """SmolLM2's tokenizer adds no BOS token and the model was trained without one; the
    tiny byte tokenizer has one. Put a BOS in front only where the tokenizer itself would."""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and len(ids) > 0 and ids[0] == bos


def _padded(pair, length: int):
    x, y = pair
    return (F.pad(x, (0, length - x.shape[1]), value=PAD),
            F.pad(y, (0, length - y.shape[1]), value=IGNORE))


@torch.no_grad()
def _answered_right(model_name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Which probes the base model answers right (teacher-forced greedy exact match)."""
    from forgetless.models import build_model
    from forgetless.objectives.language_modelling import greedy_exact_match

    model = build_model(model_name, None, None, seed=0).eval()
    return torch.cat([greedy_exact_match(model(x[start:start + 16]), y[start:start + 16])
                      for start in range(0, x.shape[0], 16)])


def fact_stream(tokenizer, tasks, answer_only: bool = True, name: str = "facts") -> Stream:
    """A language-modelling stream of a user's own facts: ``tasks`` is a list of tasks, each a
    list of (prompt, answer) pairs (answers start with a space: ``(" Paris")``); each task is
    trained and scored on its own prompts (exact match of the greedy answer). Every sequence is
    padded to one length, so replay can mix tasks."""
    from forgetless.data.knowledge import Fact

    encoded = [_encode(tokenizer, [Fact(*fact) for fact in facts], answer_only)
               for facts in tasks]
    if not encoded:
        raise DataError("fact_stream needs at least one task of (prompt, answer) pairs.")
    length = max(x.shape[1] for x, _ in encoded)
    built = []
    for i, pair in enumerate(encoded):
        x, y = _padded(pair, length)
        built.append(Task(i, x, y, x, y, (), description=f"{len(x)} facts ({i + 1})"))
    return Stream(built, Scenario.DOMAIN, 0, name=name, objective="language_modelling")

