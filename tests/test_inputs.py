"""Inputs through the Python API: each wrong one gets a DataError (or ConfigurationError) that
names the fix; awkward but valid ones (HF-style outputs, a one-sample tail under BatchNorm,
labels stored as whole floats) just work."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from forgetless.config import load_config_file
from forgetless.data.benchmarks import build_stream
from forgetless.data.sources import Source
from forgetless.data.stream import Stream, Task
from forgetless.errors import ConfigurationError, DataError, TrainingDivergedError
from forgetless.learner import Learner, batches_per_epoch
from forgetless.strategies import build_strategy

X = torch.rand(4, 3)


class Pairs(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def pairs(labels, shapes=None):
    shapes = shapes or [(3,)] * len(labels)
    return Pairs([(torch.rand(s), y) for s, y in zip(shapes, labels, strict=True)])


# ---------------------------------------------------------------- labels: one gate, two paths
BAD_LABELS = [
    (["a", "b", "a", "b"], r"label 'a' \(sample 0\) is not a class number.*mapping class names"),
    ([0, None, 1, 0], r"label None \(sample 1\) is not a class number"),
    ([0, 3.7, 1, 0], r"holds 3.7 \(sample 1\), not a whole number.*round or map them"),
    ([True, False, True, False], r"are booleans.*y.long\(\) if False and True are the classes"),
    ([torch.tensor([1.0, 0.0])] * 4, r"shape \(4, 2\).*For one-hot labels use y.argmax\(1\)"),
]


@pytest.mark.parametrize("labels, message", BAD_LABELS)
def test_from_tensors_and_from_datasets_refuse_the_same_labels(labels, message):
    as_tensor_input = (np.array(labels) if isinstance(labels[0], str)
                       else torch.stack(labels) if isinstance(labels[0], torch.Tensor)
                       else labels)
    with pytest.raises(DataError, match="tensors train labels.*" + message):
        Source.from_tensors(X, as_tensor_input, X, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(DataError, match="dataset labels.*" + message):
        Source.from_datasets(pairs(labels), pairs([0, 1, 0, 1]))


def test_stream_from_tasks_refuses_string_labels_and_accepts_whole_floats():
    with pytest.raises(DataError, match=r"task 0 train labels: label 'cat' \(sample 0\)"):
        Stream.from_tasks([(X, ["cat", "dog", "cat", "dog"], X, [0, 1, 0, 1])], "domain")
    stream = Stream.from_tasks([(X, np.array([0.0, 1.0, 0.0, 1.0]), X, [1.0, 0.0, 1.0, 0.0])],
                               "domain")
    assert stream[0].train_y.dtype == torch.long and stream[0].classes == (0, 1)


def test_stream_from_tasks_takes_arrays_and_refuses_a_list_of_samples_with_the_fix():
    stream = Stream.from_tasks([(X.numpy(), [0, 1, 0, 1], X, [0, 1, 0, 1])], "domain")
    assert torch.equal(stream[0].train_x, X)
    with pytest.raises(DataError, match=r"task 0 train inputs must be a torch.Tensor or a NumPy "
                                        r"array, got list.*torch.stack\(samples\)"):
        Stream.from_tasks([(list(X), [0, 1, 0, 1], X, [0, 1, 0, 1])], "domain")


def test_whole_float_labels_are_accepted_alike_by_both_paths():
    labels = [0.0, 3.0, 1.0, 3.0]
    from_tensors = Source.from_tensors(X, torch.tensor(labels), X, torch.tensor(labels))
    from_datasets = Source.from_datasets(pairs(labels), pairs(labels))
    for source in (from_tensors, from_datasets):
        assert source.train_y.tolist() == [0, 3, 1, 3] and source.num_classes == 4


def test_dataset_items_of_different_shapes_are_refused_naming_the_item():
    with pytest.raises(DataError, match=r"item 2 has an input of shape \(4,\) but item 0 \(3,\);"
                                        r" every item must have one shape"):
        Source.from_datasets(pairs([0, 1, 0], [(3,), (3,), (4,)]), pairs([0, 1]))


def test_dataset_inputs_that_are_not_arrays_are_refused():
    with pytest.raises(DataError, match="input of item 0 is a object, not an array.*ToTensor"):
        Source.from_datasets(Pairs([(object(), 0)]), pairs([0]))


# ---------------------------------------------------------------- test labels
def test_test_labels_outside_the_tasks_classes_are_refused():
    with pytest.raises(DataError, match=r"task 0: test labels \[5\] are not among the task's "
                                        r"classes \[0, 1\].*drop those test samples"):
        Stream.from_tasks([(X, [0, 1, 0, 1], X, [0, 1, 5, 1])], "class", num_outputs=6)


def test_a_test_class_absent_from_training_is_refused():
    task = Task(0, X, torch.tensor([0, 0, 0, 0]), X, torch.tensor([0, 1, 0, 1]), (0, 1))
    with pytest.raises(DataError, match=r"task 0: test classes \[1\] have no training samples"):
        Stream([task], "class", 2)


# ---------------------------------------------------------------- model outputs
class Outputs(nn.Module):
    """An MLP whose forward wraps its logits as ``wrap`` says."""

    def __init__(self, stream, wrap):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, stream.num_outputs))
        self.wrap = wrap

    def forward(self, x):
        return self.wrap(self.net(x))


@pytest.mark.parametrize("wrap, message", [
    (lambda z: (z, z.detach()), r"returns a tuple of 2 values; the learner needs the logits"),
    (lambda z: {"scores": z}, r"returns a dict with keys \['scores'\] and no 'logits'"),
])
def test_a_model_returning_a_tuple_or_dict_is_told_what_is_expected(digits_streams, wrap,
                                                                    message):
    stream = digits_streams["domain"]
    with pytest.raises(DataError, match=message + r".*an output object with a .logits tensor"):
        Learner(Outputs(stream, wrap)).fit(stream)


@pytest.mark.parametrize("strategy", ["naive", "ewc", "lwf"])  # EWC's Fisher and LwF's
@pytest.mark.parametrize("wrap", [lambda z: SimpleNamespace(logits=z, hidden=None),  # teacher
                                  lambda z: {"logits": z, "loss": None}])  # call the model
def test_hugging_face_style_outputs_train_like_plain_logits(digits_streams, wrap, strategy):
    stream = Stream(digits_streams["domain"].tasks[:2], "domain", 2)
    plain = Learner(Outputs(stream, lambda z: z), build_strategy(strategy), iterations=5,
                    progress=False)
    wrapped = Learner(Outputs(stream, wrap), build_strategy(strategy), iterations=5,
                      progress=False)
    wrapped.model.load_state_dict(plain.model.state_dict())
    assert plain.fit(stream).accuracy_matrix == wrapped.fit(stream).accuracy_matrix


# ---------------------------------------------------------------- BatchNorm and a 1-sample tail
def test_a_one_sample_tail_joins_the_previous_batch_under_batchnorm():
    torch.manual_seed(0)
    x = torch.rand(33, 4)
    y = torch.arange(33) % 2
    stream = Stream.from_tasks([(x, y, x, y)], "domain")
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    sizes = []
    model[1].register_forward_pre_hook(
        lambda module, args: sizes.append(args[0].shape[0]) if module.training else None)
    fit = Learner(model, epochs=2, batch_size=16, progress=False).fit(stream)
    assert fit.steps == [4] and batches_per_epoch(33, 16) == 2
    assert sizes == [16, 17, 16, 17]  # two epochs of two batches, no batch of one


def test_batches_of_one_sample_stay_one_sample_without_batchnorm():
    x = torch.rand(5, 4)
    y = torch.arange(5) % 2
    stream = Stream.from_tasks([(x, y, x, y)], "domain")
    model = nn.Linear(4, 2)
    sizes = []
    model.register_forward_pre_hook(
        lambda module, args: sizes.append(args[0].shape[0]) if module.training else None)
    fit = Learner(model, epochs=2, batch_size=1, progress=False).fit(stream)
    assert fit.steps == [10] and batches_per_epoch(5, 1) == 5
    assert sizes == [1] * 10  # the batch size asked for: no tail is merged


def test_batchnorm_with_batches_of_one_sample_is_explained():
    x, y = torch.rand(6, 4), torch.tensor([0, 1] * 3)
    stream = Stream.from_tasks([(x, y, x, y)], "domain")
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ConfigurationError, match=r"BatchNorm, which cannot train on a batch of 1 "
                                                 r"sample \(task 0\); use a batch size of at "
                                                 "least 2"):
        Learner(model, batch_size=1, progress=False).fit(stream)


# ---------------------------------------------------------------- config files
@pytest.mark.parametrize("text, message", [
    ('epochs = "3"', r"epochs = '3' is a str, but epochs must be a whole number"),
    ("lr = true", r"lr = True is a bool, but lr must be a number"),
    ("reset_optimizer = 1", r"reset_optimizer = 1 is a int, but reset_optimizer must be true "
                            r"or false"),
])
def test_config_values_of_the_wrong_type_are_refused(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigurationError, match=f"config file '{path}': {message}"):
        load_config_file(path)


def test_a_quoted_boolean_benchmark_option_is_refused_not_read_as_true():
    with pytest.raises(ConfigurationError, match=r"benchmark 'split' option: shuffle_classes = "
                                                 r"'false' is a str, but shuffle_classes must "
                                                 r"be true or false \(a boolean, without quotes"):
        build_stream("split", "class", source="digits", shuffle_classes="false")


# ---------------------------------------------------------------- the model's mode
@pytest.mark.parametrize("fails", [False, True])
def test_fit_leaves_every_module_in_the_mode_it_was_given(digits_streams, make_model, fails):
    stream = digits_streams["domain"]
    model = make_model(stream).eval()
    model.body[1].train()  # a mixed model: each module's own flag must come back
    given = [m.training for m in model.modules()]
    learner = Learner(model, lr=1e9 if fails else 1e-3, iterations=3, progress=False)
    if fails:
        with pytest.raises(TrainingDivergedError):
            learner.fit(stream)
    else:
        learner.fit(stream)
    assert [m.training for m in model.modules()] == given
