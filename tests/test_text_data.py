"""The text data of issue 14: invented facts, prior-skills probes, general text, topic splits."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from forgetless.data.knowledge import (
    GENERAL_TEXT,
    PRIOR_SKILLS,
    RELATIONS,
    Fact,
    knowledge_tasks,
)
from forgetless.data.text import IGNORE, PAD, encode_language_modelling
from forgetless.data.topics import topic_split, topic_texts
from forgetless.errors import DataError


def words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)}


def template_words() -> set[str]:
    return set().union(*(words(r.prompt + " " + r.paraphrase) for r in RELATIONS.values()))


def invented_names(stream) -> set[str]:
    """The words of the facts that are not words of the templates: the invented names."""
    return set().union(*(words(f.prompt + f.answer) for task in stream for f in task)) \
        - template_words()


class WordTokenizer:
    """A Hugging Face-style tokenizer with one token per word and its leading space."""

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.vocab.setdefault(piece, len(self.vocab))
                              for piece in re.findall(r"\s?\S+", text)]}


# ---- knowledge --------------------------------------------------------------------------------

def test_same_seed_same_facts_and_different_seeds_differ():
    assert knowledge_tasks(3, 8, seed=5) == knowledge_tasks(3, 8, seed=5)
    assert knowledge_tasks(3, 8, seed=5) != knowledge_tasks(3, 8, seed=6)
    # a different seed draws different names, not just a reordering of the same ones
    assert invented_names(knowledge_tasks(3, 8, seed=5)) != invented_names(
        knowledge_tasks(3, 8, seed=6))


def test_facts_are_distinct_within_and_across_tasks_and_never_reuse_a_name():
    stream = knowledge_tasks(tasks=10, facts_per_task=20, seed=0)
    assert [len(task) for task in stream] == [20] * 10
    facts = [f for task in stream for f in task]
    assert len({f.prompt for f in facts}) == len(facts)
    assert len({f.answer for f in facts}) == len(facts)
    # each fact has its own subject and answer: two names per fact, none shared
    assert len(invented_names(stream)) == 2 * len(facts)


@pytest.mark.parametrize("seed", range(5))
def test_no_invented_name_is_a_word_of_the_real_probes_or_the_general_text(seed):
    real = set().union(*(words(f.prompt + f.answer) for f in PRIOR_SKILLS),
                       *(words(text) for text in GENERAL_TEXT))
    names = invented_names(knowledge_tasks(tasks=10, facts_per_task=20, seed=seed))
    assert names and not names & real


def test_every_answer_starts_with_a_space_and_has_a_word():
    facts = [f for task in knowledge_tasks(4, 8, seed=1) for f in task] + list(PRIOR_SKILLS)
    for fact in facts:
        assert isinstance(fact, Fact)
        assert fact.answer.startswith(" ") and fact.answer.strip(), fact
        assert not fact.prompt.endswith(" "), fact


def test_each_task_cycles_through_the_relations_in_order():
    order = list(RELATIONS)
    for task in knowledge_tasks(2, 8, seed=0):
        for j, fact in enumerate(task):
            head = RELATIONS[order[j % len(order)]].prompt.split("{subject}")[0]
            assert fact.prompt.startswith(head), (j, fact)
    only = knowledge_tasks(1, 6, seed=0, relations=("inventor",))[0]
    assert all(f.prompt.endswith("was invented by") for f in only)


def test_paraphrased_prompts_ask_for_the_same_answers_in_other_words():
    taught = knowledge_tasks(2, 8, seed=3)
    paraphrased = knowledge_tasks(2, 8, seed=3, paraphrased=True)
    for task, other in zip(taught, paraphrased, strict=True):
        for fact, para in zip(task, other, strict=True):
            assert para.answer == fact.answer and para.prompt != fact.prompt
            assert words(fact.prompt) - template_words() == words(para.prompt) - template_words()


def test_bad_requests_are_one_line_data_errors():
    with pytest.raises(DataError, match="choose from capital"):
        knowledge_tasks(relations=("capitals",))
    with pytest.raises(DataError, match="at least 1 task"):
        knowledge_tasks(tasks=0)


def test_probe_candidates_and_general_text_are_distinct_and_large_enough():
    assert len(PRIOR_SKILLS) >= 60
    assert len({f.prompt for f in PRIOR_SKILLS}) == len(PRIOR_SKILLS)
    assert len(GENERAL_TEXT) >= 40 and len(set(GENERAL_TEXT)) == len(GENERAL_TEXT)


def test_encoding_puts_the_targets_exactly_on_the_answer_tokens():
    tokenizer = WordTokenizer()
    facts = knowledge_tasks(1, 8, seed=0)[0] + [Fact("The capital of France is",
                                                      " Buenos Aires")]
    x, y = encode_language_modelling(tokenizer, [f.prompt for f in facts],
                                     [f.answer for f in facts])
    for row, fact in enumerate(facts):
        prompt = tokenizer(fact.prompt)["input_ids"]
        answer = tokenizer(fact.answer)["input_ids"]
        positions = (y[row] != IGNORE).nonzero().flatten().tolist()
        # the target at position t is the token after x[t]: the answer's first token is
        # predicted from the prompt's last token
        assert positions == list(range(len(prompt) - 1, len(prompt) - 1 + len(answer)))
        assert y[row, positions].tolist() == answer
        tokens = x[row][x[row] != PAD].tolist()
        assert tokens == prompt + answer[:-1]


# ---- topics -----------------------------------------------------------------------------------

def write_chatterbot(folder):
    """A fake chatterbot corpus: 3 topics, one statement shared by two topics, short ones."""
    pytest.importorskip("yaml")
    folder.mkdir()
    for topic, size in (("animals", 12), ("music", 9), ("sport", 15)):
        lines = ["categories:", f"- {topic}", "conversations:"]
        for i in range(size):
            lines += [f"- - Tell me fact number {i} about {topic} please?",
                      f"  - Here is {topic} answer number {i} for you.", f"  - Nice {topic}."]
        lines += ["- - What do you like most of all?", "  - Sure."]
        (folder / f"{topic}.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_fortunes(folder):
    folder.mkdir()
    for topic, size in (("cats", 7), ("ships", 11)):
        entries = [f"A saying about {topic}, number {i},\nover two lines." for i in range(size)]
        (folder / topic).write_text("\n%\n".join(entries) + "\n%\n", encoding="utf-8")
        (folder / f"{topic}.dat").write_bytes(b"\x00\x01")
    return folder


def test_topic_texts_drop_shared_and_short_statements(tmp_path):
    texts = topic_texts("chatterbot", folder=write_chatterbot(tmp_path / "c"))
    assert {name: len(v) for name, v in texts.items()} == {"animals": 24, "music": 18,
                                                           "sport": 30}
    everything = [t for v in texts.values() for t in v]
    assert "What do you like most of all?" not in everything  # in every topic
    assert "Nice music." not in everything  # too short to carry a topic
    fortunes = topic_texts("fortunes", folder=write_fortunes(tmp_path / "f"))
    assert {name: len(v) for name, v in fortunes.items()} == {"cats": 7, "ships": 11}
    assert fortunes["cats"][0] == "A saying about cats, number 0, over two lines."


@pytest.mark.parametrize("source, writer", [("chatterbot", write_chatterbot),
                                            ("fortunes", write_fortunes)])
def test_topic_split_is_seeded_balanced_and_disjoint(tmp_path, source, writer):
    folder = writer(tmp_path / source)
    classes = tuple(sorted(topic_texts(source, folder=folder)))
    split = topic_split(source, classes=classes, seed=0, folder=folder)
    smallest = min(len(v) for v in topic_texts(source, folder=folder).values())
    n_test = round(smallest * 0.3)
    assert split.class_names == classes
    assert Counter(split.test_labels) == dict.fromkeys(range(len(classes)), n_test)
    assert Counter(split.train_labels) == dict.fromkeys(range(len(classes)), smallest - n_test)
    assert not set(split.train_texts) & set(split.test_texts)
    texts = topic_texts(source, folder=folder)
    for text, label in zip(split.train_texts + split.test_texts,
                           split.train_labels + split.test_labels, strict=True):
        assert text in texts[classes[label]]
    assert topic_split(source, classes=classes, seed=0, folder=folder) == split
    assert topic_split(source, classes=classes, seed=1, folder=folder) != split


def test_topic_split_errors_name_the_fix(tmp_path):
    folder = write_fortunes(tmp_path / "f")
    with pytest.raises(DataError, match="choose from cats, ships"):
        topic_split("fortunes", classes=("dogs",), folder=folder)
    with pytest.raises(DataError, match="smallest chosen topic has 7"):
        topic_split("fortunes", classes=("cats", "ships"), per_class=8, folder=folder)
    with pytest.raises(DataError, match="apt-get install fortunes"):
        topic_split("fortunes", folder=tmp_path / "absent")
    with pytest.raises(DataError, match="unknown topic corpus"):
        topic_texts("newsgroups")


def test_the_installed_chatterbot_corpus_gives_the_default_classes_balanced():
    pytest.importorskip("chatterbot_corpus")
    pytest.importorskip("yaml")
    split = topic_split()
    assert len(split.class_names) == 6
    assert Counter(split.train_labels) == dict.fromkeys(range(6), 57)
    assert Counter(split.test_labels) == dict.fromkeys(range(6), 25)


def test_a_drawn_name_that_is_real_or_already_used_is_drawn_again(monkeypatch):
    from forgetless.data.knowledge import Relation

    names = iter(["Paris", "Zorbia", "Zorbia", "quix", "Quix", "Plon", "Vask"])
    monkeypatch.setitem(RELATIONS, "capital", Relation(
        "capital", "The capital of {subject} is", "The capital city of {subject} is called",
        lambda rng: next(names), lambda rng: next(names)))
    # "Paris" is a probe's answer; "Zorbia" and "Quix" (any case) are taken by then
    assert knowledge_tasks(1, 2, relations=("capital",)) == [
        [Fact("The capital of Zorbia is", " quix"), Fact("The capital of Plon is", " Vask")]]


def test_an_absent_chatterbot_corpus_names_the_pip_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r'pip install "chatterbot-corpus>=1.3,<2"'):
        topic_split()
