"""benchmarks/collective_bytes.py: the bytes the negatives' gather sends, counted on two gloo processes."""

from __future__ import annotations

import pytest

from benchmarks.collective_bytes import expected_bytes, measure, payload_bytes

N, D = 64, 128  # 32 KiB a shard: the payloads dwarf gloo's headers (a few hundred bytes)


@pytest.fixture(scope="module")
def two_processes() -> dict:
    return measure(2, N, D)  # also checks that the three algorithms gather and differentiate alike


def test_the_counts_fit_the_formulas(two_processes: dict) -> None:
    """Every count is its collective's payload plus gloo's headers, within 1% (the counts are exact today)."""
    for algorithm, entry in two_processes["algorithms"].items():
        for phase, p in entry.items():
            for sent in p["bytes_per_rank"]:
                assert sent == pytest.approx(p["expected"], rel=0.01), (algorithm, phase, p)
                assert sent > p["payload"], (algorithm, phase, p)  # wchar saw the writes, headers and all


def test_the_gather_backward_sends_each_process_only_its_rows(two_processes: dict) -> None:
    """gather_with_grad's backward sends (W - 1) n d b bytes a process: half of what the all-reduce of every
    shard's gradient (the previous algorithm, and torch's reduce-scatter as gloo runs it) sends with two processes."""
    shard = N * D * 4
    library, old = two_processes["algorithms"]["library"], two_processes["algorithms"]["old"]
    assert payload_bytes("all_to_all", 2, shard) == shard
    backward = (library["backward"]["bytes_per_rank"], old["backward"]["bytes_per_rank"])
    for new_sent, old_sent in zip(*backward, strict=True):
        assert new_sent == pytest.approx(expected_bytes("all_to_all", 2, shard), rel=0.01)
        assert old_sent == pytest.approx(expected_bytes("all_reduce", 2, shard), rel=0.01)
        assert new_sent < 0.55 * old_sent
    for sent in library["forward"]["bytes_per_rank"]:  # the forward sends no more than the all-gather did
        assert sent <= max(old["forward"]["bytes_per_rank"])
