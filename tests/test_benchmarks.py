"""Benchmark builders: partitions, permutations fixed by seed, no train/test overlap, labels and
masks per scenario, identical tensors for the same seed."""

import pytest
import torch

from forgetless.data.benchmarks import build_stream, rotate
from forgetless.data.sources import Source
from forgetless.data.stream import Scenario
from forgetless.errors import ConfigurationError
from forgetless.models.heads import OutputMask, apply_mask


@pytest.fixture(scope="module")
def digits():
    from forgetless.data.sources import load_source

    return load_source("digits")


def test_split_partitions_the_classes(digits):
    stream = build_stream("split", "class", tasks=5, source=digits)
    assert [t.classes for t in stream] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert sum(t.train_x.shape[0] for t in stream) == digits.train_x.shape[0]
    assert sum(t.test_x.shape[0] for t in stream) == digits.test_x.shape[0]
    for task in stream:
        assert set(task.train_y.tolist()) == set(task.classes)


def test_split_class_order_is_fixed_by_seed(digits):
    a = build_stream("split", "class", tasks=5, source=digits, seed=3, shuffle_classes=True)
    b = build_stream("split", "class", tasks=5, source=digits, seed=3, shuffle_classes=True)
    c = build_stream("split", "class", tasks=5, source=digits, seed=4, shuffle_classes=True)
    assert [t.description for t in a] == [t.description for t in b]
    assert [t.description for t in a] != [t.description for t in c]
    for ta, tb in zip(a, b, strict=True):
        assert torch.equal(ta.train_x, tb.train_x) and torch.equal(ta.train_y, tb.train_y)


def test_split_labels_per_scenario(digits):
    domain = build_stream("split", "domain", tasks=5, source=digits)
    assert domain.num_outputs == 2
    assert all(t.classes == (0, 1) for t in domain)
    task = build_stream("split", "task", tasks=5, source=digits)
    assert task.num_outputs == 10 and task[3].classes == (6, 7)


def test_classes_that_do_not_divide_are_refused(digits):
    with pytest.raises(ConfigurationError, match=r"do not divide into 3 .* \[1, 2, 5, 10\]"):
        build_stream("split", "class", tasks=3, source=digits)


def test_no_test_sample_appears_in_training():
    from forgetless.data.sources import load_source

    mnist = load_source("mnist")
    train = {bytes(x.numpy().tobytes()) for x in (mnist.train_x * 255).to(torch.uint8)}
    test = [bytes(x.numpy().tobytes()) for x in (mnist.test_x * 255).to(torch.uint8)]
    assert not train.intersection(test)
    assert mnist.train_x.shape[0] == 4000 and mnist.test_x.shape[0] == 1000
    assert torch.bincount(mnist.train_y).tolist() == [400] * 10
    assert torch.bincount(mnist.test_y).tolist() == [100] * 10


def test_permutations_are_fixed_by_seed_and_first_is_identity(digits):
    a = build_stream("permuted", "domain", tasks=3, source=digits, seed=1)
    b = build_stream("permuted", "domain", tasks=3, source=digits, seed=1)
    c = build_stream("permuted", "domain", tasks=3, source=digits, seed=2)
    assert torch.equal(a[0].train_x, digits.train_x)
    assert torch.equal(a[2].train_x, b[2].train_x)
    assert not torch.equal(a[2].train_x, c[2].train_x)
    # a permutation: same pixel multiset per image
    first = digits.train_x[0].flatten().sort().values
    assert torch.equal(a[1].train_x[0].flatten().sort().values, first)


def test_permuted_labels_per_scenario(digits):
    dom = build_stream("permuted", "domain", tasks=3, source=digits)
    assert dom.num_outputs == 10 and torch.equal(dom[2].train_y, digits.train_y)
    cls = build_stream("permuted", "class", tasks=3, source=digits)
    assert cls.num_outputs == 30 and torch.equal(cls[2].train_y, digits.train_y + 20)
    assert cls[2].classes == tuple(range(20, 30))


def test_rotation_by_90_degrees_matches_rot90():
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(rotate(x, 90), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)


def test_rotated_stream_angles(digits):
    stream = build_stream("rotated", "domain", tasks=4, source=digits)
    assert [t.description for t in stream] == [f"rotation {a} degrees" for a in (0, 45, 90, 135)]
    assert torch.equal(stream[0].train_x, digits.train_x)
    with pytest.raises(ConfigurationError, match="one angle per task"):
        build_stream("rotated", "domain", tasks=4, source=digits, angles=[0, 90])


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(ConfigurationError, match="Did you mean 'permuted'"):
        build_stream("permutted", "class")
    with pytest.raises(ConfigurationError, match="Did you mean 'class'"):
        build_stream("split", "clas")
    with pytest.raises(ConfigurationError, match="Did you mean 'mnist'"):
        build_stream("split", "class", source="mnst")


def test_masks_per_scenario(digits):
    logits = torch.zeros(2, 10)
    task_ids = torch.tensor([0, 3])
    stream = build_stream("split", "task", tasks=5, source=digits)
    mask = OutputMask(Scenario.TASK, 10)
    for t in stream:
        mask.add_task(t.task_id, t.classes)
    train = mask.for_training(task_ids)
    assert train[0].nonzero().flatten().tolist() == [0, 1]
    assert train[1].nonzero().flatten().tolist() == [6, 7]
    assert mask.for_test(2).nonzero().flatten().tolist() == [4, 5]
    masked = apply_mask(logits, train)
    assert masked[1].argmax() in (6, 7) and torch.isfinite(masked).all()

    cmask = OutputMask(Scenario.CLASS, 10)
    for t in stream:
        cmask.add_task(t.task_id, t.classes)
    assert cmask.for_test(None) is None  # nothing trained yet: the whole head
    cmask.mark_seen(torch.tensor([0, 1]))
    assert cmask.for_training(task_ids).nonzero().flatten().tolist() == [0, 1, 2, 3]
    # class-incremental tests answer over the classes learned so far, like training
    assert cmask.for_test(None).nonzero().flatten().tolist() == [0, 1, 2, 3]
    whole = OutputMask(Scenario.CLASS, 10, whole_head_training=True)
    for t in stream:
        whole.add_task(t.task_id, t.classes)
    whole.mark_seen(torch.tensor([0, 1]))
    assert whole.for_training(task_ids) is None
    assert whole.for_test(None).nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert OutputMask(Scenario.DOMAIN, 2).for_training(task_ids) is None


def test_user_tensors_become_a_source_and_stream():
    x = torch.rand(40, 6)
    y = torch.arange(40) % 4
    source = Source.from_tensors(x, y, x[:8], y[:8])
    assert source.num_classes == 4 and source.input_shape == (6,)
    stream = build_stream("split", "task", tasks=2, source=source)
    assert [t.classes for t in stream] == [(0, 1), (2, 3)]


def test_a_torch_dataset_becomes_a_source():
    data = torch.utils.data.TensorDataset(torch.rand(12, 1, 4, 4), torch.arange(12) % 3)
    source = Source.from_datasets(data, data)
    assert source.num_classes == 3 and source.train_x.shape == (12, 1, 4, 4)
