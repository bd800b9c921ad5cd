"""ErasureCodec over pyeclib isa_l_rs_cauchy."""

from __future__ import annotations

import itertools
import os
import random
import sys

import pytest

from jointcloud.errors import NotEnoughBlocks
from jointcloud.redundancy.erasure import (
    ErasureCodec,
    apply_malloc_tuning,
    tune_malloc_env,
)

SIZES = [1, 2, 15, 16, 17, 63, 100, 4095, 4096, 4097, 3 * 4096 + 5, 65536]


@pytest.mark.parametrize(("k", "n"), [(4, 6), (2, 3), (1, 2), (3, 5)])
def test_decode_from_every_k_subset(k: int, n: int) -> None:
    codec = ErasureCodec(k, n)
    for size in SIZES:
        seg = os.urandom(size)
        frags = codec.encode(seg)
        assert len(frags) == n
        assert all(len(f) == codec.fragment_len(size) for f in frags)
        for subset in itertools.combinations(range(n), k):
            assert codec.decode({i: frags[i] for i in subset}) == seg


@pytest.mark.parametrize(("k", "n"), [(6, 12), (10, 16), (8, 13)])
def test_wide_codes_decode_random_loss_patterns(k: int, n: int) -> None:
    # isa_l_rs_vand fails some of these patterns for m >= 5; cauchy must not.
    codec = ErasureCodec(k, n)
    rng = random.Random(k * 100 + n)
    seg = os.urandom(k * 4096 - 7)
    frags = codec.encode(seg)
    for subset in itertools.islice(itertools.combinations(range(n), k), 0, None, 7):
        assert codec.decode({i: frags[i] for i in subset}) == seg
    for _ in range(50):
        subset = rng.sample(range(n), k)
        assert codec.decode({i: frags[i] for i in subset}) == seg


def test_reconstruct_rebuilds_missing_fragments() -> None:
    codec = ErasureCodec(4, 6)
    frags = codec.encode(os.urandom(50_000))
    for missing in itertools.combinations(range(6), 2):
        have = {i: frags[i] for i in range(6) if i not in missing}
        rebuilt = codec.reconstruct(have, list(missing))
        assert rebuilt == {i: frags[i] for i in missing}


def test_too_few_fragments() -> None:
    codec = ErasureCodec(4, 6)
    frags = codec.encode(b"z" * 1000)
    with pytest.raises(NotEnoughBlocks) as info:
        codec.decode({0: frags[0], 1: frags[1], 5: frags[5]})
    assert (info.value.found, info.value.needed) == (3, 4)
    with pytest.raises(NotEnoughBlocks):
        codec.reconstruct({0: frags[0]}, [1])


def test_extract_reads_data_fragments_directly() -> None:
    rng = random.Random(1)
    for k, n in [(4, 6), (3, 5), (2, 3), (1, 2)]:
        codec = ErasureCodec(k, n)
        for size in SIZES:
            seg = os.urandom(size)
            frags = dict(enumerate(codec.encode(seg)))
            for _ in range(30):
                lo = rng.randrange(size)
                hi = rng.randrange(lo + 1, size + 1)
                needed = codec.data_fragments(size, lo, hi)
                assert 0 <= needed.start < needed.stop <= k
                only = {i: frags[i] for i in needed}
                assert codec.extract(only, size, lo, hi) == seg[lo:hi]
            assert codec.extract(frags, size, 0, size) == seg


def test_drivers_are_cached_and_validated() -> None:
    assert ErasureCodec(4, 6)._driver is ErasureCodec(4, 6)._driver
    with pytest.raises(ValueError):
        ErasureCodec(4, 4)
    with pytest.raises(ValueError):
        ErasureCodec(4, 6).encode(b"")


def test_malloc_tuning() -> None:
    env = tune_malloc_env()
    assert set(env) == {
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
        "MALLOC_TOP_PAD_",
        "MALLOC_ARENA_MAX",
    }
    assert all(v.isdigit() for v in env.values())
    assert apply_malloc_tuning() is sys.platform.startswith("linux")
