"""The frozen-feature learners (ncm, slda, ranpac): their statistics are exactly what the papers
define, computed in one go, whatever the split into tasks; the model is never trained; on
features of a pretrained (here: jointly trained, then frozen) MLP they beat naive fine-tuning by
far and come near joint training in class-incremental split digits; and the parts that make
SLDA and RanPAC more than a nearest mean (the learned covariance, the random projection) each
measurably help."""

from __future__ import annotations

import contextlib
import copy
import io
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from forgetless.data.stream import Stream, Task
from forgetless.errors import ConfigurationError
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import build_strategy
from forgetless.strategies.frozen.ranpac import RIDGES, choose_ridge, one_hot
from strategy_helpers import safe_roundtrip

DOUBLE = torch.float64


#: RanPAC with a narrower projection where the test is about the loop, not accuracy.
NARROW = {"ranpac": {"projection_size": 300}}


def fitted(model, stream, name, settings=None, epochs=5):
    learner = Learner(copy.deepcopy(model), build_strategy(name, settings or {}), epochs=epochs,
                      progress=False)
    fit = learner.fit(stream)
    return learner, fit


def all_training_data(stream):
    return torch.cat([t.train_x for t in stream]), torch.cat([t.train_y for t in stream])


def features_of(learner, x):
    with torch.no_grad():
        return learner.model.eval().features(x).to(DOUBLE)


def class_acc(fit):
    return sum(fit.accuracy_matrix[-1]) / len(fit.accuracy_matrix[-1])


@pytest.fixture(scope="module")
def pretrained(digits_streams):
    """An MLP trained jointly on every class of split digits, then frozen: the analogue of a
    pretrained backbone. Its own (jointly trained) head's accuracy is the joint reference.
    PyTorch's initialisation, which this module's figures were measured with: from Kaiming's
    trunk (the default since) the backbone is better and RanPAC's projection gains -0.3, 1.7 and
    2.5 points over plain ridge on pretraining seeds 0-2, against 5.3, 1.7 and 2.5 here."""
    stream = digits_streams["class"]
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(256,),
                        init="pytorch")
    joint = Learner(model, build_strategy("joint"), epochs=30, batch_size=64, progress=False)
    joint.bind(stream)
    joint.learn(stream[0])
    return model, sum(joint.evaluate(stream.tasks)) / len(stream.tasks)


# ---------------------------------------------------------------------- exact statistics
def test_ncm_prototypes_are_the_class_means_and_predictions_the_nearest(digits_streams,
                                                                        make_model):
    stream = digits_streams["class"]
    learner, _ = fitted(make_model(stream), stream, "ncm")
    x, y = all_training_data(stream)
    z = features_of(learner, x)
    means = torch.stack([z[y == c].mean(0) for c in range(stream.num_outputs)])
    torch.testing.assert_close(learner.strategy.parts[0].statistics.means(), means,
                               rtol=1e-12, atol=1e-12)
    test_x = torch.cat([t.test_x for t in stream])
    cosine = F.normalize(features_of(learner, test_x), dim=1) @ F.normalize(means, dim=1).T
    assert torch.equal(learner.predict(test_x), cosine.argmax(1))


def pooled_covariance(z, y):
    """The within-class covariance of all the data in one go: sum over classes of the scatter
    about the class mean, over the number of samples."""
    centred = torch.cat([z[y == c] - z[y == c].mean(0) for c in y.unique()])
    return centred.T @ centred / z.shape[0]


@pytest.mark.parametrize("scenario", ["class", "domain"])  # domain: every class in every task
def test_slda_covariance_is_the_pooled_covariance_whatever_the_split(digits_streams,
                                                                     make_model, scenario):
    stream = digits_streams[scenario]
    model = make_model(stream)
    x, y = all_training_data(stream)
    classes = tuple(sorted({c for t in stream for c in t.classes}))
    one_task = Stream([Task(0, x, y, stream[0].test_x, stream[0].test_y, classes)], scenario,
                      stream.num_outputs)
    covariances = []
    for split in (stream, one_task):
        learner, _ = fitted(model, split, "slda")
        covariances.append(learner.strategy.parts[0].covariance())
    expected = pooled_covariance(features_of(learner, x), y)
    for covariance in covariances:
        torch.testing.assert_close(covariance, expected, rtol=1e-9, atol=1e-10)


def test_slda_predicts_with_the_shrunk_lda_discriminant(digits_streams, make_model):
    stream = digits_streams["class"]
    learner, _ = fitted(make_model(stream), stream, "slda", {"shrinkage": 0.1})
    x, y = all_training_data(stream)
    z = features_of(learner, x)
    means = torch.stack([z[y == c].mean(0) for c in range(stream.num_outputs)])
    shrunk = 0.9 * pooled_covariance(z, y) + 0.1 * torch.eye(z.shape[1], dtype=DOUBLE)
    precision = torch.linalg.inv(shrunk)
    test_x = torch.cat([t.test_x for t in stream])
    zt = features_of(learner, test_x)
    scores = zt @ precision @ means.T - 0.5 * ((means @ precision) * means).sum(1)
    assert torch.equal(learner.predict(test_x), scores.argmax(1))


def test_ranpac_gram_and_class_sums_accumulate_exactly(digits_streams, make_model):
    stream = digits_streams["class"]
    learner, _ = fitted(make_model(stream), stream, "ranpac", {"projection_size": 300})
    ranpac = learner.strategy.parts[0]
    x, y = all_training_data(stream)
    generator = torch.Generator().manual_seed(0)
    z = features_of(learner, x)
    projection = torch.randn(z.shape[1], 300, generator=generator, dtype=DOUBLE)
    h = torch.relu(z @ projection)
    torch.testing.assert_close(ranpac.statistics.gram, h.T @ h, rtol=1e-11, atol=1e-8)
    torch.testing.assert_close(ranpac.statistics.sums.T, h.T @ one_hot(y, 10), rtol=1e-11,
                               atol=1e-8)


def test_ranpac_without_projection_is_closed_form_ridge_regression(digits_streams, make_model):
    stream = digits_streams["class"]
    learner, _ = fitted(make_model(stream), stream, "ranpac",
                        {"projection_size": 0, "ridge": 0.5})
    x, y = all_training_data(stream)
    z = features_of(learner, x)
    weights = torch.linalg.solve(z.T @ z + 0.5 * torch.eye(z.shape[1], dtype=DOUBLE),
                                 z.T @ one_hot(y, 10))
    ranpac = learner.strategy.parts[0]
    torch.testing.assert_close(ranpac.fit_classifier(), weights, rtol=1e-9, atol=1e-10)
    test_x = torch.cat([t.test_x for t in stream])
    assert torch.equal(learner.predict(test_x), (features_of(learner, test_x) @ weights).argmax(1))


@pytest.mark.parametrize("samples, width", [(200, 30), (60, 300)])  # primal, then dual solve
def test_the_chosen_ridge_minimises_the_held_out_error(samples, width):
    generator = torch.Generator().manual_seed(1)
    h = torch.relu(torch.randn(samples, width, generator=generator, dtype=DOUBLE))
    truth = torch.randn(width, 3, generator=generator, dtype=DOUBLE) / width ** 0.5
    targets = h @ truth + torch.randn(samples, 3, generator=generator, dtype=DOUBLE)
    held = torch.arange(samples) % 5 == 4
    errors = []
    for ridge in RIDGES:
        fit_h, fit_y = h[~held], targets[~held]
        # the dual form, exact for either shape
        w = fit_h.T @ torch.linalg.solve(fit_h @ fit_h.T + ridge * torch.eye(len(fit_h),
                                                                              dtype=DOUBLE), fit_y)
        errors.append(float((h[held] @ w - targets[held]).pow(2).mean()))
    best = RIDGES[errors.index(min(errors))]
    assert RIDGES[0] < best < RIDGES[-1]  # an interior choice: the search itself matters
    assert choose_ridge(h, targets) == best


# ---------------------------------------------------------------------- the loop's side
@pytest.mark.parametrize("name", ["ncm", "slda", "ranpac"])
def test_the_model_is_never_trained(digits_streams, make_model, name):
    stream = digits_streams["class"]
    model = make_model(stream)
    learner, fit = fitted(model, stream, name, NARROW.get(name))
    assert fit.steps == [0] * len(stream.tasks)
    for before, after in zip(model.state_dict().values(), learner.model.state_dict().values(),
                             strict=True):
        assert torch.equal(before, after)


@pytest.mark.parametrize("name", ["ncm", "slda", "ranpac"])
def test_task_incremental_answers_stay_in_the_tasks_classes(digits_streams, make_model, name):
    stream = digits_streams["task"]
    learner, fit = fitted(make_model(stream), stream, name, NARROW.get(name))
    for task in stream:
        assert set(learner.predict(task.test_x, task.task_id).tolist()) <= set(task.classes)
    _, class_fit = fitted(make_model(stream), digits_streams["class"], name, NARROW.get(name))
    # the task id removes the other tasks' classes: never worse than class-incremental
    assert all(t >= c for t, c in zip(fit.accuracy_matrix[-1], class_fit.accuracy_matrix[-1],
                                      strict=True))


class RawFeatures(nn.Module):
    """A model whose features are its inputs."""

    def __init__(self, width: int, outputs: int) -> None:
        super().__init__()
        self.head = nn.Linear(width, outputs)

    def features(self, x):
        return x

    def forward(self, x):
        return self.head(x)


@pytest.mark.parametrize("name", ["ncm", "slda", "ranpac"])
def test_a_class_without_statistics_is_never_answered(name):
    """Domain-incremental, the first task showing one class only: every answer is that class,
    even for a sample unlike it (an empty class would score 0 there, above its score)."""
    generator = torch.Generator().manual_seed(0)
    train_x = torch.tensor([1.0, 0.0]) + 0.1 * torch.randn(40, 2, generator=generator)
    test_x = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    task = Task(0, train_x, torch.zeros(40, dtype=torch.long), test_x[1:2],
                torch.zeros(1, dtype=torch.long), (0, 1))
    plain = {"ranpac": {"projection_size": 0}}  # a linear score, negative on the far side
    learner = Learner(RawFeatures(2, 2), build_strategy(name, plain.get(name)), progress=False)
    learner.fit(Stream([task], "domain", 2))
    assert learner.predict(test_x).eq(0).all()


def test_ranpac_regenerates_its_projection_instead_of_storing_it(digits_streams, make_model):
    stream = digits_streams["class"]
    learner, _ = fitted(make_model(stream), stream, "ranpac", {"projection_size": 500})
    ranpac = learner.strategy.parts[0]
    state = safe_roundtrip(learner.strategy.state_dict())
    assert all(t.numel() != 64 * 500 for t in state["0:ranpac"]["statistics"].values()
               if t is not None)
    fresh = Learner(copy.deepcopy(learner.model), build_strategy("ranpac",
                                                                 {"projection_size": 500}))
    fresh.bind(stream)
    fresh.load_state_dict(safe_roundtrip(learner.state_dict()))
    test_x = torch.cat([t.test_x for t in stream])
    assert torch.equal(fresh.predict(test_x), learner.predict(test_x))
    # what it holds while predicting counts: G (500 x 500), C, counts, the projection and W_out
    expected = 8 * (500 * 500 + 10 * 500 + 10 + 64 * 500 + 500 * 10)
    assert ranpac.footprint().bytes_held == expected


def test_a_model_without_features_is_refused_naming_the_fix(digits_streams):
    stream = digits_streams["class"]
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, stream.num_outputs))
    with pytest.raises(ConfigurationError, match=r"'slda' classifies the model's features, but "
                       r"Sequential has no features\(x\) method; use a model that has one"):
        Learner(model, build_strategy("slda"))


# ---------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("name", ["ncm", "slda", "ranpac"])
def test_on_pretrained_features_far_above_naive_and_near_joint(digits_streams, pretrained,
                                                               name):
    """Measured (seed 0): joint 0.900, naive 0.717, ncm 0.883, slda 0.913, ranpac 0.947."""
    stream = digits_streams["class"]
    model, joint = pretrained
    _, naive = fitted(model, stream, "naive")
    _, frozen = fitted(model, stream, name)
    assert class_acc(frozen) >= joint - 0.05
    assert class_acc(frozen) >= class_acc(naive) + 0.10


def test_slda_learned_covariance_beats_the_identity(digits_streams, make_model):
    """Random ReLU features of the pixels, correlated and unequally scaled: the shared
    covariance matters there (measured over model seeds 0-2: 0.933/0.919/0.930 with it,
    0.821/0.838/0.835 with the identity, shrinkage 1). On the pretrained features the gap is
    smaller (2.7-3.9 points)."""
    stream = digits_streams["class"]
    model = make_model(stream, hidden=(256,))
    _, learned = fitted(model, stream, "slda")
    _, identity = fitted(model, stream, "slda", {"shrinkage": 1.0})
    assert class_acc(learned) >= class_acc(identity) + 0.05


def test_ranpac_random_projection_beats_plain_ridge(digits_streams, pretrained):
    """Measured over pretraining seeds 0-2: 0.947/0.939/0.944 with M=2000, 0.894/0.922/0.919
    without the projection (gaps 5.3, 1.7, 2.5 points); this checks seed 0."""
    stream = digits_streams["class"]
    model, _ = pretrained
    _, projected = fitted(model, stream, "ranpac")
    _, plain = fitted(model, stream, "ranpac", {"projection_size": 0})
    assert class_acc(projected) >= class_acc(plain) + 0.015


def test_the_documented_example_prints_the_figure_it_states():
    page = (Path(__file__).resolve().parents[1] / "docs" / "frozen_features.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    stated = re.search(r"# (\d\.\d{3});", code).group(1)
    printed = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/frozen_features.md", "exec"), namespace)  # noqa: S102
    assert printed.getvalue().strip() == stated
    assert namespace["fit"].steps == [0] * 5
