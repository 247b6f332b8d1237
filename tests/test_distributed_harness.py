"""The two-rank harness runs a process group again after a native crash, once, and never
after a Python exception: a rare abort outside forgetless's code must not fail the suite, a
real bug must."""

from __future__ import annotations

import os

import pytest
import torch.multiprocessing as mp

from distributed_harness import on_ranks


def _abort_once_on_rank_one(marker: str) -> str:
    import torch.distributed as dist

    if dist.get_rank() == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os.abort()  # a native crash, as CI's abort in a rank's teardown was
    return "done"


def _raise_after_signing_in(log: str) -> str:
    import torch.distributed as dist

    with open(log, "a") as f:  # one line per rank and attempt
        f.write("attempt\n")
    dist.barrier()  # both ranks have written before either raises
    raise ValueError("a bug")


def test_a_native_crash_is_run_again_once(tmp_path):
    marker = str(tmp_path / "crashed")
    with pytest.warns(UserWarning, match="crashed natively"):
        assert on_ranks([marker], job=_abort_once_on_rank_one) == ["done"]
    assert os.path.exists(marker)


def test_a_python_exception_is_not_run_again(tmp_path):
    log = tmp_path / "attempts"
    with pytest.raises(mp.ProcessRaisedException, match="a bug"):
        on_ranks([str(log)], job=_raise_after_signing_in)
    assert log.read_text().count("attempt") == 2  # two ranks, once: no second attempt
