"""``forgetless run --nproc N``: start N processes of the same command on this machine, as
``torchrun --standalone --nproc-per-node N`` would, and wait for them.

Each child gets the variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and joins the process group
(``forgetless.distributed.init_from_environment``). Rank 0 prints, stores and checkpoints;
the other ranks are silent unless they fail. One launcher for both paths keeps them the same
run: ``torchrun -m forgetless.cli run ...`` on several machines reaches the same code.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from forgetless.errors import ConfigurationError

#: Seconds between looks at the children while they run.
POLL_SECONDS = 0.2
#: The arguments ``forgetless`` was invoked with (set by ``cli.main``; kept here, not in the
#: cli module, which runs as ``__main__`` under ``python -m forgetless.cli``).
invoked_args: list[str] = []


def free_port() -> int:
    """A TCP port nothing listens on now (the process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def without_nproc(argv: list[str]) -> list[str]:
    """The command line without its ``--nproc`` option (the children are single ranks)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def check_nproc(nproc: int) -> int:
    if not isinstance(nproc, int) or nproc < 1:
        raise ConfigurationError(f"--nproc must be a positive whole number, got {nproc!r}.")
    cores = os.cpu_count() or 1
    if nproc > 4 * cores:
        raise ConfigurationError(f"--nproc {nproc} starts {nproc} processes on a machine with "
                                 f"{cores} cores; use at most {4 * cores}, better {cores} (or "
                                 "torchrun across machines, docs/distributed.md).")
    return nproc


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``forgetless <argv>`` as ``nproc`` ranks; the exit status of the run (the first
    failing rank's, the others then stopped)."""
    port = free_port()
    threads = max(1, (os.cpu_count() or 1) // nproc)
    children = []
    for rank in range(nproc):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        env.setdefault("OMP_NUM_THREADS", str(threads))  # the cores shared, as torchrun does
        quiet = subprocess.DEVNULL if rank else None
        # the other ranks' messages, shown only when one fails (a file: a pipe could fill)
        errors = tempfile.TemporaryFile() if rank else None
        children.append(subprocess.Popen(
            [sys.executable, "-m", "forgetless.cli", *argv], env=env, stdout=quiet,
            stderr=errors))
        children[-1].stderr_file = errors
    try:
        return _wait(children)
    except KeyboardInterrupt:
        _stop(children)
        raise


def _wait(children: list[subprocess.Popen]) -> int:
    while True:
        codes = [child.poll() for child in children]
        failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            rank, code = failed[0]
            _stop(children)
            if rank:  # rank 0's own error is already on the terminal
                children[rank].stderr_file.seek(0)
                message = children[rank].stderr_file.read().decode(errors="replace").strip()
                sys.stderr.write(f"rank {rank} of {len(children)} failed (exit {code})"
                                 f"{': ' + message.splitlines()[-1] if message else ''}\n")
            return code
        if all(code == 0 for code in codes):
            return 0
        time.sleep(POLL_SECONDS)


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
