"""Class-incremental text classification for a sentence encoder: topics as classes, from a
corpus installed offline.

Two corpora, both read from disk (nothing is downloaded at run time):

- ``chatterbot`` (default): the English topic files of the ``chatterbot-corpus`` PyPI package
  (BSD; ``pip install "chatterbot-corpus>=1.3,<2"``, part of the ``[llm]`` extra). Chosen as
  the default because pip installs it, so CI and a newcomer get it from the README's one
  install line. A sample is one statement (a question or an answer) of a topic's dialogues.
  Its topics are small and uneven: only 6 of 21 keep >= 82 distinct statements of 4+ words
  (the 7th, literature, has 56), so the default is those 6 topics at 82 samples each (57 to
  train, 25 to test), which splits evenly into 3 tasks of 2 classes or 2 of 3.
- ``fortunes``: Debian's ``fortunes`` package (``apt-get install fortunes``; topic files in
  ``/usr/share/games/fortunes``). Larger topics (>= 102 entries of 4+ words and at most 300
  characters in each of the 10 default classes), but apt only, so it is the option for a
  machine that has it, not the default.

Both separate well on frozen all-MiniLM-L6-v2 features (nearest class mean within a few points
of a joint logistic regression; benchmarks/topic_corpora.md).

Every statement found in two topics is dropped (its label would be ambiguous), very short
statements ("No.", "Sort of.") are dropped (they carry no topic), and every class is cut to
the same number of samples with the same train/test sizes, so class-IL accuracy is not skewed
by class size. Labels follow the order of ``class_names``.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import NamedTuple

from forgetless.errors import DataError

#: Default classes per corpus (chosen for size; sizes measured in the module docstring).
DEFAULT_CLASSES = {
    "chatterbot": ("ai", "coding", "conversations", "emotion", "psychology", "trivia"),
    "fortunes": ("computers", "food", "law", "science", "sports", "startrek", "politics",
                 "love", "kids", "education"),
}
FORTUNES_FOLDER = Path("/usr/share/games/fortunes")
INSTALL = {"chatterbot": 'pip install "chatterbot-corpus>=1.3,<2"',
           "fortunes": "apt-get install fortunes"}


class TopicSplit(NamedTuple):
    """A seeded, class-balanced train/test split of topic-labelled texts."""

    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    class_names: tuple[str, ...]


def topic_split(source: str = "chatterbot", classes: tuple[str, ...] | None = None,
                per_class: int | None = None, test_fraction: float = 0.3, seed: int = 0,
                min_words: int = 4, max_chars: int = 300,
                folder: str | Path | None = None) -> TopicSplit:
    """``per_class`` samples of each class (default: as many as the smallest chosen class has),
    of which ``round(per_class * test_fraction)`` are test samples. ``folder``: read the
    corpus from there instead of its installed location."""
    texts = topic_texts(source, folder, min_words=min_words, max_chars=max_chars)
    classes = tuple(classes or DEFAULT_CLASSES[source])
    missing = [name for name in classes if name not in texts]
    if missing:
        raise DataError(f"no topic {', '.join(missing)} in the {source} corpus; choose from "
                        f"{', '.join(sorted(texts))}.")
    smallest = min(len(texts[name]) for name in classes)
    per_class = smallest if per_class is None else per_class
    if per_class > smallest:
        raise DataError(f"per_class={per_class} but the smallest chosen topic has {smallest} "
                        "samples; ask for fewer or choose other topics.")
    n_test = round(per_class * test_fraction)
    if not 0 < n_test < per_class:
        raise DataError(f"test_fraction={test_fraction} leaves no train or no test sample of "
                        f"{per_class}; choose a fraction between 0 and 1.")
    rng = random.Random(seed)
    split = TopicSplit([], [], [], [], classes)
    for label, name in enumerate(classes):
        chosen = rng.sample(texts[name], per_class)
        split.test_texts.extend(chosen[:n_test])
        split.test_labels.extend([label] * n_test)
        split.train_texts.extend(chosen[n_test:])
        split.train_labels.extend([label] * (per_class - n_test))
    return split


def topic_texts(source: str = "chatterbot", folder: str | Path | None = None,
                min_words: int = 4, max_chars: int = 300) -> dict[str, list[str]]:
    """Every topic of the corpus with its distinct texts (sorted, so the split's seed alone
    fixes the order): texts in more than one topic, of fewer than ``min_words`` words or more
    than ``max_chars`` characters are left out."""
    if source not in READERS:
        raise DataError(f"unknown topic corpus {source!r}; choose from {', '.join(READERS)}.")
    raw = READERS[source](_folder(source, folder))
    topics_of: dict[str, set[str]] = {}
    for topic, texts in raw.items():
        for text in texts:
            text = " ".join(text.split())
            if len(text.split()) >= min_words and len(text) <= max_chars:
                topics_of.setdefault(text, set()).add(topic)
    out: dict[str, list[str]] = {topic: [] for topic in raw}
    for text, topics in sorted(topics_of.items()):
        if len(topics) == 1:
            out[next(iter(topics))].append(text)
    return out


def _folder(source: str, folder: str | Path | None) -> Path:
    if folder is not None:
        path = Path(folder)
    elif source == "chatterbot":
        spec = importlib.util.find_spec("chatterbot_corpus")
        if spec is None or not spec.submodule_search_locations:
            raise DataError(f"the chatterbot corpus is not installed; run `{INSTALL[source]}`.")
        path = Path(spec.submodule_search_locations[0]) / "data" / "english"
    else:
        path = FORTUNES_FOLDER
    if not path.is_dir():
        raise DataError(f"no {source} corpus at {path}; run `{INSTALL[source]}` or give the "
                        "folder that holds its topic files.")
    return path


def _read_chatterbot(folder: Path) -> dict[str, list[str]]:
    """Topic = the YAML file's name; texts = every statement of its conversations."""
    try:
        import yaml
    except ImportError as error:
        raise DataError("reading the chatterbot corpus needs PyYAML; run "
                        '`pip install "pyyaml>=6,<7"`.') from error
    out = {}
    for path in sorted(folder.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[path.stem] = [str(statement) for conversation in document.get("conversations", [])
                          for statement in conversation]
    return _nonempty(out, folder, "*.yml")


def _read_fortunes(folder: Path) -> dict[str, list[str]]:
    """Topic = the file's name; texts = its entries (separated by lines holding ``%``)."""
    out = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink() and not path.suffix:
            text = path.read_text(encoding="utf-8", errors="replace")
            out[path.name] = [entry for entry in text.split("\n%\n") if entry.strip("%\n ")]
    return _nonempty(out, folder, "topic")


def _nonempty(topics: dict[str, list[str]], folder: Path, kind: str) -> dict[str, list[str]]:
    if not topics:
        raise DataError(f"no {kind} files in {folder}; give the folder of the corpus's topic "
                        "files.")
    return topics


READERS = {"chatterbot": _read_chatterbot, "fortunes": _read_fortunes}
