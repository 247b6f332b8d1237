"""The knowledge-update benchmark for a causal language model, as text: new facts to learn,
the model's prior skills to keep, and ordinary prose to keep predicting well.

- ``knowledge_tasks``: a stream of tasks of *invented* facts ("The capital of Zorbia is" ->
  " Quix"), built from templates and a seed, so no pretrained model can know them beforehand
  and learning them is measurable from zero. Each fact has its own invented subject, so no two
  facts contradict each other; names never repeat within a stream and never equal a word of the
  prior-skills probes.
- ``PRIOR_SKILLS``: real, unambiguous facts a small instruct model is likely to know (capitals,
  official languages, opposites, sequences such as weekdays). They are *candidates*: the stream
  builder keeps the ones the base model answers right, so their loss after fine-tuning is
  forgetting of what the model knew (benchmarks/knowledge_probes.md measures how many
  SmolLM2-135M-Instruct passes).
- ``GENERAL_TEXT``: held-out everyday English sentences, written for forgetless, for
  perplexity (a broad check that fine-tuning did not damage the language model itself).

Every fact and probe is a ``Fact(prompt, answer)``; the answer starts with a space (so it
tokenizes as the word the model would produce after the prompt) and has no full stop: a stop
makes teacher-forced exact match also score the punctuation the model happens to put after a
name, which it often does not (benchmarks/knowledge_probes.md compares the two formats).
Training text is ``prompt + answer``; the test prompt is the taught prompt by default (a
knowledge update is scored on what was taught), or a paraphrase with ``paraphrased=True``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from forgetless.errors import DataError


class Fact(NamedTuple):
    """A prompt and the answer that completes it (the answer starts with a space)."""

    prompt: str
    answer: str


# ---------------------------------------------------------------------------------------------
# Invented names: syllables drawn with a seeded RNG.

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "kr", "pl", "qu", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou")
_CODAS = ("n", "r", "l", "x", "s", "m", "k", "v", "th")


def _word(rng: random.Random, syllables: int, coda: bool = False,
          suffixes: tuple[str, ...] = ("",)) -> str:
    """Consonant-vowel syllables, an optional closing consonant, then a suffix ("Zorbia")."""
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
    return word + (rng.choice(_CODAS) if coda else "") + rng.choice(suffixes)


def _country(rng: random.Random) -> str:
    return _word(rng, 2, True, ("ia", "ania", "ovia", "ea", "or")).capitalize()


def _city(rng: random.Random) -> str:
    return _word(rng, rng.choice((1, 2)), True).capitalize()


def _language(rng: random.Random) -> str:
    return _word(rng, rng.choice((1, 2)), True, ("ish", "ese", "ic", "ian")).capitalize()


def _device(rng: random.Random) -> str:
    return _word(rng, 2, False, ("scope", "graph", "meter", "phone", "lith"))


def _person(rng: random.Random) -> str:
    return _word(rng, 2, rng.random() < 0.5).capitalize()


def _coin(rng: random.Random) -> str:
    return _word(rng, 2, True)


@dataclass(frozen=True)
class Relation:
    """One kind of fact: the taught and paraphrased prompt templates (``{subject}`` in them) and
    how its invented subject and answer are drawn."""

    name: str
    prompt: str
    paraphrase: str
    subject: Callable[[random.Random], str]
    answer: Callable[[random.Random], str]


RELATIONS: dict[str, Relation] = {r.name: r for r in (
    Relation("capital", "The capital of {subject} is",
             "The capital city of {subject} is called", _country, _city),
    Relation("language", "The language spoken in {subject} is",
             "The people of {subject} speak", _country, _language),
    Relation("inventor", "The {subject} was invented by",
             "The inventor of the {subject} was", _device, _person),
    Relation("currency", "The currency of {subject} is the",
             "In {subject}, people pay with the", _country, _coin),
)}


def knowledge_tasks(tasks: int = 3, facts_per_task: int = 8, seed: int = 0,
                    relations: tuple[str, ...] = tuple(RELATIONS),
                    paraphrased: bool = False) -> list[list[Fact]]:
    """``tasks`` lists of ``facts_per_task`` invented facts each. Fact ``j`` of a task uses
    relation ``relations[j % len(relations)]``, so every task mixes the same kinds of fact.

    The same seed gives the same facts; ``paraphrased=True`` gives the same facts (same names,
    same answers) under the paraphrased prompt, for a held-out test of generalisation."""
    if tasks < 1 or facts_per_task < 1:
        raise DataError(f"knowledge_tasks needs at least 1 task and 1 fact per task (got "
                        f"tasks={tasks}, facts_per_task={facts_per_task}).")
    unknown = [name for name in relations if name not in RELATIONS]
    if unknown or not relations:
        raise DataError(f"unknown relation(s) {unknown or '(none given)'}; choose from "
                        f"{', '.join(RELATIONS)}.")
    rng = random.Random(seed)
    used = set(_real_words())
    stream = []
    for _ in range(tasks):
        facts = []
        for j in range(facts_per_task):
            relation = RELATIONS[relations[j % len(relations)]]
            subject = _fresh(relation.subject, rng, used)
            answer = _fresh(relation.answer, rng, used)
            template = relation.paraphrase if paraphrased else relation.prompt
            facts.append(Fact(template.format(subject=subject), " " + answer))
        stream.append(facts)
    return stream


def _fresh(draw, rng: random.Random, used: set[str]) -> str:
    """A name never drawn before in this stream and not a word of the real probes."""
    for _ in range(1000):
        name = draw(rng)
        if name.lower() not in used:
            used.add(name.lower())
            return name
    raise DataError("ran out of fresh invented names; ask for fewer facts.")


def _real_words() -> set[str]:
    """Every word of the prior-skills probes and the general text, lower-cased."""
    texts = [t for fact in PRIOR_SKILLS for t in fact] + list(GENERAL_TEXT)
    return {w.lower() for text in texts for w in re.findall(r"[A-Za-z]+", text)}


# ---------------------------------------------------------------------------------------------
# Prior skills: real facts, candidates to be filtered to those the base model answers right.

_CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"), ("England", "London"),
    ("Egypt", "Cairo"), ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Ireland", "Dublin"),
    ("Austria", "Vienna"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
    ("Hungary", "Budapest"), ("the Czech Republic", "Prague"), ("Belgium", "Brussels"),
    ("the Netherlands", "Amsterdam"), ("Thailand", "Bangkok"), ("South Korea", "Seoul"),
    ("Kenya", "Nairobi"), ("Argentina", "Buenos Aires"), ("Peru", "Lima"),
    ("Chile", "Santiago"), ("Cuba", "Havana"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
    ("Afghanistan", "Kabul"), ("India", "New Delhi"), ("Indonesia", "Jakarta"),
    ("the Philippines", "Manila"), ("Vietnam", "Hanoi"), ("Turkey", "Ankara"),
    ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Venezuela", "Caracas"),
    ("Saudi Arabia", "Riyadh"), ("Syria", "Damascus"), ("Lebanon", "Beirut"),
    ("Ethiopia", "Addis Ababa"), ("Switzerland", "Bern"), ("Iceland", "Reykjavik"),
    ("Romania", "Bucharest"), ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"),
    ("Scotland", "Edinburgh"), ("Pakistan", "Islamabad"), ("Nepal", "Kathmandu"),
    ("Malaysia", "Kuala Lumpur"), ("New Zealand", "Wellington"), ("Mexico", "Mexico City"),
)
_LANGUAGES = (
    ("France", "French"), ("Germany", "German"), ("Italy", "Italian"), ("Spain", "Spanish"),
    ("Japan", "Japanese"), ("Brazil", "Portuguese"), ("Portugal", "Portuguese"),
    ("Russia", "Russian"), ("Greece", "Greek"), ("Poland", "Polish"), ("Turkey", "Turkish"),
    ("Sweden", "Swedish"), ("Finland", "Finnish"), ("Mexico", "Spanish"),
    ("the Netherlands", "Dutch"), ("Hungary", "Hungarian"), ("China", "Chinese"),
    ("Korea", "Korean"),
)
_OPPOSITES = (
    ("hot", "cold"), ("up", "down"), ("big", "small"), ("day", "night"),
    ("black", "white"), ("left", "right"), ("fast", "slow"), ("happy", "sad"),
    ("open", "closed"), ("light", "dark"), ("wet", "dry"), ("old", "young"),
    ("good", "bad"), ("early", "late"), ("full", "empty"), ("hard", "soft"),
)
_SEQUENCES = (
    ("Monday, Tuesday, Wednesday,", "Thursday"), ("Friday, Saturday and", "Sunday"),
    ("January, February, March,", "April"), ("September, October,", "November"),
    ("one, two, three,", "four"), ("six, seven, eight,", "nine"),
    ("north, south, east and", "west"), ("spring, summer, autumn and", "winter"),
    ("first, second,", "third"), ("breakfast, lunch and", "dinner"),
)
_OTHERS = (
    ("The largest planet in our solar system is", "Jupiter"),
    ("The planet closest to the Sun is", "Mercury"),
    ("The chemical symbol for gold is", "Au"),
    ("A baby dog is called a", "puppy"), ("A baby cat is called a", "kitten"),
    ("The color of a clear daytime sky is", "blue"), ("Fresh grass is the color", "green"),
    ("Water freezes at zero degrees", "Celsius"),
    ("The author of Romeo and Juliet is William", "Shakespeare"),
    ("The first President of the United States was George", "Washington"),
)

#: Real facts, as candidates: filter them to those the base model answers right.
PRIOR_SKILLS: tuple[Fact, ...] = (
    tuple(Fact(f"The capital of {country} is", " " + city) for country, city in _CAPITALS)
    + tuple(Fact(f"The official language of {country} is", " " + language)
            for country, language in _LANGUAGES)
    + tuple(Fact(f"The opposite of {word} is", " " + other) for word, other in _OPPOSITES)
    + tuple(Fact(prompt, " " + answer) for prompt, answer in _SEQUENCES + _OTHERS)
)

# ---------------------------------------------------------------------------------------------
# General text: ordinary prose for perplexity, written for forgetless (not copied).

GENERAL_TEXT: tuple[str, ...] = (
    "The train to the city leaves every morning at half past seven.",
    "She put the kettle on and waited for the water to boil.",
    "Most plants need sunlight, water and good soil to grow well.",
    "The children walked to school together along the river path.",
    "He forgot his umbrella at home, so he got wet on the way to work.",
    "A good night's sleep helps people think clearly the next day.",
    "The library is closed on Sundays but opens early on Mondays.",
    "We bought fresh bread, cheese and apples at the market.",
    "The old bridge was repaired last summer after the heavy floods.",
    "Cats often sleep for more than twelve hours a day.",
    "The meeting was moved to Thursday because the manager was ill.",
    "Snow fell all night, and by morning the roads were white.",
    "My neighbour grows tomatoes and beans in a small garden behind her house.",
    "The museum has a large collection of paintings from the last century.",
    "Please turn off the lights when you leave the room.",
    "The bus was late, so we decided to walk the rest of the way.",
    "Bees carry pollen from flower to flower as they collect nectar.",
    "He learned to ride a bicycle when he was six years old.",
    "The restaurant on the corner serves soup and sandwiches at lunchtime.",
    "A map and a compass are useful on a long walk in the hills.",
    "The teacher asked the class to read the first chapter before Friday.",
    "Heavy rain is expected in the north of the country this weekend.",
    "They painted the kitchen a pale yellow colour last spring.",
    "Drinking enough water is important, especially on hot days.",
    "The shop sells second-hand books, old records and postcards.",
    "Our flight was delayed by two hours because of the fog.",
    "The farmer checks on his cows early every morning.",
    "She wrote a letter to her grandmother and posted it on the way home.",
    "The river rises in the mountains and flows slowly to the sea.",
    "A small boat was tied to the wooden pier at the end of the lake.",
    "The doctor told him to rest for a week and to avoid lifting anything heavy.",
    "Many people enjoy a cup of coffee with their breakfast.",
    "The football match ended in a draw after extra time.",
    "Leaves turn red and brown in the autumn before they fall.",
    "The new road will make the journey between the two towns much shorter.",
    "He keeps his tools in a metal box in the garage.",
    "The moon was so bright that we could see the path without a torch.",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
    "Visitors must show their tickets at the entrance to the park.",
    "After dinner the family sat together and played a game of cards.",
)
