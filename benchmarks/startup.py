"""Start-up cost: `import forgetless` and `forgetless --help` beyond importing torch.

Each command runs in a fresh interpreter, alternately, and the medians are reported
(target: under 0.5 s beyond torch).

    python benchmarks/startup.py --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'import forgetless'": [sys.executable, "-c", "import forgetless"],
    "python -c 'import forgetless; forgetless.Learner'":
        [sys.executable, "-c", "import forgetless; forgetless.Learner"],
    "forgetless --help": [sys.executable, "-m", "forgetless.cli", "--help"],
    # PyTorch's own one-off cost that every training process pays, forgetless or not:
    # the first optimiser imports torch._dynamo.
    "python -c 'import torch; <first optimiser>'":
        [sys.executable, "-c",
         "import torch; torch.optim.Adam(torch.nn.Linear(2, 2).parameters())"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    times = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    torch_median = statistics.median(times["python -c 'import torch'"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<52} median {median:.3f} s  ({median - torch_median:+.3f} s vs torch)")


if __name__ == "__main__":
    main()
