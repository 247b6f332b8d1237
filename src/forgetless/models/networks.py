"""The networks: an MLP (784-400-400 by default, as in Hsu et al. 2018 and van de Ven & Tolias
2019) and a small ConvNet. Both expose ``features(x)`` (the last hidden layer) and ``head`` (the
output layer), which iCaRL, generative replay and the architecture strategies build on."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from forgetless.errors import ConfigurationError
from forgetless.registry import Registry

MODELS: Registry = Registry("model")

#: Initialisations of the MLP's Linear layers:
#: - "kaiming-trunk" (the default): He et al.'s normal for ReLU, zero biases, on the hidden
#:   layers, each of which a ReLU follows as He et al.'s gain assumes; nn.Linear's own on the
#:   output layer, which no ReLU follows;
#: - "kaiming": He et al.'s normal on every layer, the output layer too;
#: - "xavier": Glorot & Bengio's uniform with zero biases (Mammoth's MNIST MLP);
#: - "pytorch": nn.Linear's own (uniform with bound 1/sqrt(fan_in)), the default until commit
#:   767a607, with which the figures of benchmarks/ measured before then were made.
#: The scale matters for forgetting: on split MNIST, task-incremental naive fine-tuning keeps
#: far more of old tasks from the trunk's larger scale (97.7% with "kaiming", 96.7% with
#: "kaiming-trunk" against 90.0%, 5 seeds), and so do the class-incremental replay methods;
#: the head's larger scale is what the paper's A-GEM cannot take (43.5% under "kaiming"
#: against 71.0%, 74.5% under "kaiming-trunk"): benchmarks/issue12.md, "The default
#: initialisation".
INITIALISATIONS = ("kaiming-trunk", "kaiming", "xavier", "pytorch")
DEFAULT_INIT = "kaiming-trunk"

#: ``--model hf:PATH`` names a local Hugging Face folder (``models.pretrained``).
HF_PREFIX = "hf:"


def initialise_linear(layer: nn.Linear, scheme: str) -> None:
    """Re-initialise ``layer`` in place with one of ``INITIALISATIONS``."""
    if scheme == "xavier":
        nn.init.xavier_uniform_(layer.weight)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    else:
        return  # "pytorch": nn.Linear initialised itself
    nn.init.zeros_(layer.bias)


@MODELS.register("mlp")
class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs; ``init`` names the initialisation of
    its Linear layers (``INITIALISATIONS``; default Kaiming's on the hidden layers)."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int,
                 hidden: tuple[int, ...] | list[int] = (400, 400),
                 init: str = DEFAULT_INIT) -> None:
        super().__init__()
        if init not in INITIALISATIONS:
            raise ConfigurationError(
                f"unknown MLP initialisation {init!r}; choose one of "
                f"{', '.join(INITIALISATIONS)} (e.g. --init xavier).")
        self.init = init
        self.input_shape = tuple(input_shape)
        self.num_outputs = num_outputs
        self.hidden = tuple(int(h) for h in hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.feature_size = width
        self.head = nn.Linear(width, num_outputs)
        self._apply_initialisation()

    def _apply_initialisation(self) -> None:
        """Re-draw the Linear layers' weights of ``self.init`` over nn.Linear's own (drawn when
        each layer was built, or by ``reset_parameters``)."""
        trunk_only = self.init == "kaiming-trunk"
        for layer in self.modules():
            if isinstance(layer, nn.Linear) and not (trunk_only and layer is self.head):
                initialise_linear(layer, "kaiming" if trunk_only else self.init)

    def reset_parameters(self) -> None:
        """Re-initialise every layer as a new MLP of this ``init`` would be (GDumb's training
        from scratch), drawing from the global RNG."""
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        self._apply_initialisation()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@MODELS.register("convnet")
class ConvNet(nn.Module):
    """Two conv blocks (conv-BN-ReLU-maxpool) and one hidden linear layer: small enough for a
    laptop CPU, with BatchNorm so the Fisher's "leave BN statistics untouched" rule is tested."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int,
                 channels: tuple[int, int] | list[int] = (32, 64), hidden: int = 256) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigurationError(
                f"convnet needs image inputs (channels, height, width), got shape "
                f"{tuple(input_shape)}; use --model mlp for flat features."
            )
        self.input_shape = tuple(input_shape)
        self.num_outputs = num_outputs
        c_in, height, width = input_shape
        blocks: list[nn.Module] = []
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c_in, height, width = c_out, height // 2, width // 2
        blocks += [nn.Flatten(), nn.Linear(c_in * height * width, hidden), nn.ReLU()]
        self.body = nn.Sequential(*blocks)
        self.feature_size = hidden
        self.head = nn.Linear(hidden, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build_model(name: str, input_shape: tuple[int, ...], num_outputs: int,
                seed: int | None = None, **options) -> nn.Module:
    """Build a registered model by name, e.g. ``build_model("mlp", (1, 28, 28), 10, seed=0)``.

    ``seed`` fixes the initial weights (without touching the global RNG), so the same seed
    gives the same model; without it the weights come from torch's global RNG."""
    if name.startswith(HF_PREFIX):  # a local folder: the "hf" builder, given its path
        cls = functools.partial(MODELS.get("hf"), path=name[len(HF_PREFIX):])
    else:
        cls = MODELS.get(name)
    try:
        if seed is None:
            model = cls(input_shape, num_outputs, **options)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = cls(input_shape, num_outputs, **options)
    except TypeError as error:
        raise ConfigurationError(
            f"model '{name}': {error}; see its docstring for options.") from None
    # How it was built, so a checkpoint (``Learner.load``) can build it again.
    shape = None if input_shape is None else list(input_shape)
    model.build_spec = {"name": name, "input_shape": shape, "num_outputs": num_outputs,
                        "options": options}
    return model

