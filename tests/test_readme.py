"""The README's Python code runs as written and is reproducible: two runs, one matrix."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def run_block(code: str) -> dict:
    namespace: dict = {"__name__": "readme"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    return namespace


def test_the_readme_example_gives_the_same_matrix_every_time(capsys):
    blocks = python_blocks()
    assert blocks, "the README has no python example"
    example = next(b for b in blocks if "accuracy_matrix" in b)
    first, second = run_block(example), run_block(example)
    matrix = first["result"].accuracy_matrix
    assert len(matrix) == 5 and matrix[0][0] > 0.9  # it trained: task 1 learned
    assert matrix == second["result"].accuracy_matrix
    assert str(matrix) in capsys.readouterr().out  # and printed it
    for block in blocks:  # every other block runs too
        if block is not example:
            run_block(block)


def test_build_model_seed_fixes_the_weights_without_touching_the_global_rng():
    import torch

    import forgetless
    from forgetless import build_model

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("mlp", (1, 8, 8), 10, seed=7)
    after = torch.rand(1)
    b = build_model("mlp", (1, 8, 8), 10, seed=7)
    c = build_model("mlp", (1, 8, 8), 10, seed=8)
    assert torch.equal(before, after)  # the global RNG did not move
    weights = [torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    forgetless.seed(5)
    x = torch.rand(3)
    forgetless.seed(5)
    assert torch.equal(x, torch.rand(3))
