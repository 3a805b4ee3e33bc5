"""The ordered map over worker processes that bake's key generation and node rendering use."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from builder import parallel


def _slow_square(shared: dict[str, Any], item: int) -> tuple[int, int, int]:
    time.sleep(shared["delay"](item))  # a lambda: reaches the worker by fork, never pickled
    return item, item * item, os.getpid()


def test_results_come_in_item_order_from_other_processes() -> None:
    items = list(range(12))
    shared = {"delay": lambda i: 0.02 * (i % 3 == 0)}  # every third item finishes last
    got = list(parallel.ordered_map(_slow_square, shared, items, jobs=3, window=2))
    assert [(i, sq) for i, sq, _ in got] == [(i, i * i) for i in items]
    assert os.getpid() not in {pid for _, _, pid in got}


def test_one_job_runs_here_with_the_same_results() -> None:
    shared = {"delay": lambda i: 0}
    got = list(parallel.ordered_map(_slow_square, shared, [3, 1, 2], jobs=1))
    assert got == [(3, 9, os.getpid()), (1, 1, os.getpid()), (2, 4, os.getpid())]


def _fail_on_two(shared: None, item: int) -> int:
    if item == 2:
        raise ValueError("two")
    return item


def test_a_worker_error_reaches_the_caller_and_the_pool_stops() -> None:
    with pytest.raises(ValueError, match="two"):
        list(parallel.ordered_map(_fail_on_two, None, list(range(8)), jobs=2))
    assert parallel._shared is parallel._UNSET


@pytest.mark.parametrize("text", ["0", "-1", "two"])
def test_jobs_must_be_a_positive_integer(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parallel.jobs_arg(text)
