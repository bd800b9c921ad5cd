"""Reed-Solomon erasure coding: the only module that imports pyeclib.

Backend ``isa_l_rs_cauchy`` (ISA-L bundled in the pyeclib wheel). Never
``isa_l_rs_vand``: it fails to decode some loss patterns for m >= 5 (DESIGN §7).

Fragment format (liberasurecode): an 80-byte header, then ``ceil(L / k)`` payload
bytes. The code is systematic: data fragment ``i`` carries segment bytes
``[i*P, (i+1)*P)`` (``P`` = payload length, the last one zero-padded). The stream
layer relies on that to serve a range from the one or two data fragments that hold
it, without reading ``k`` fragments or running the decoder; ``_probe`` checks the
assumption once per driver, so a library change cannot silently corrupt reads.

pyeclib holds the GIL while it works: call it from a worker thread anyway (keeps
the event loop free of multi-millisecond stalls).

Speed depends on glibc malloc far more than on the maths, because every call
allocates multi-MiB fragment buffers. With the defaults, glibc's dynamic mmap
threshold and a trim threshold of twice that make the heap grow and shrink around
each segment (worker threads' arenas even unmap whole heaps), so every page of every
buffer is faulted in afresh. Measured on the 2-core dev VM (KVM Xeon, AVX-512,
shared with other jobs, so ranges are noisy), ``bench/codec.py`` and ad-hoc runs:

- ``ErasureCodec(4, 6).encode``, 4 MiB segments: ~400-680 MB/s with defaults,
  ~2600-3300 MB/s tuned (raw pyeclib on the same buffers: same within noise,
  ratio 0.9-1.06). 1 MiB segments: ~2900-3900 MB/s defaults, ~4000 tuned.
- decode with 2 parity fragments, 4 MiB: ~350-2800 MB/s (erratic) defaults,
  ~2700-3500 tuned. Systematic ``extract``: ~10-12 GB/s.
- the whole write+read pipeline (``stream.py``), bytes page-faulted per byte moved
  (in-memory sinks included): none 1.6 -> 1.1, ec(4,6) 2.0 -> 0.6-0.9; write cost
  per CPU-second: none ~207 -> ~235 MB, ec(4,6) ~170 -> ~205 MB.
- which settings matter: ``MALLOC_MMAP_THRESHOLD_`` + ``MALLOC_TRIM_THRESHOLD_``.
  ``MALLOC_TOP_PAD_`` alone fixes a single-threaded encode loop but not the
  threaded pipeline (2.1 bytes faulted per byte); ``MALLOC_ARENA_MAX=2`` on top
  changed nothing measurable. The same churn slows AES-GCM and joins on multi-MiB
  buffers, so the tuning pays off on the whole data path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import sys
from typing import Any

from pyeclib.ec_iface import ECDriver, ECDriverError, ECInsufficientFragments

from jointcloud.errors import BlockCorrupt, NotEnoughBlocks

EC_TYPE = "isa_l_rs_cauchy"
HEADER_LEN = 80

# glibc malloc settings for the server process (see module docstring).
# - mmap threshold at its maximum (32 MiB, glibc refuses more): multi-MiB buffers come
#   from the heap and are reused instead of being mmapped and page-faulted each time;
# - trim threshold and top pad large: freed space at the heap top is kept for the
#   next segment instead of being returned to the kernel and faulted back in;
# - setting any of them also switches off glibc's dynamic threshold, which is what
#   makes the default behaviour depend on the allocation history.
_MALLOC_SETTINGS = {
    # name: (env var, mallopt param, value)
    "mmap_threshold": ("MALLOC_MMAP_THRESHOLD_", -3, 32 * 1024 * 1024),
    "trim_threshold": ("MALLOC_TRIM_THRESHOLD_", -1, 64 * 1024 * 1024),
    "top_pad": ("MALLOC_TOP_PAD_", -2, 16 * 1024 * 1024),
    # Every worker thread would otherwise get its own arena, each keeping its
    # freed multi-MiB buffers: RSS crept up request after request.
    "arena_max": ("MALLOC_ARENA_MAX", -8, 2),
}


def tune_malloc_env() -> dict[str, str]:
    """Environment variables that tune glibc malloc for the data path.

    Set them in the environment of a process before it starts (the server launcher
    re-executes itself with them); glibc reads them at the first ``malloc``.
    """
    return {env: str(value) for env, _, value in _MALLOC_SETTINGS.values()}


def apply_malloc_tuning() -> bool:
    """Apply the same settings to the running process with ``mallopt``.

    For processes that cannot be re-executed (tests, benchmarks, embedding).
    Returns False where there is no glibc; harmless to call more than once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for _, param, value in _MALLOC_SETTINGS.values())


@functools.lru_cache(maxsize=64)
def _driver(k: int, n: int) -> Any:
    driver = ECDriver(k=k, m=n - k, ec_type=EC_TYPE)
    _probe(driver, k)
    return driver


def _probe(driver: Any, k: int) -> None:
    """Check the systematic fragment layout that ``extract`` relies on."""
    seg = bytes(i * 7 % 251 for i in range(k * 37 - 3))
    payload = math.ceil(len(seg) / k)
    frags = driver.encode(seg)
    joined = b"".join(f[HEADER_LEN : HEADER_LEN + payload] for f in frags[:k])
    if len(frags[0]) != HEADER_LEN + payload or joined[: len(seg)] != seg:
        raise RuntimeError(f"unexpected {EC_TYPE} fragment layout from pyeclib")


class ErasureCodec:
    """Encode/decode one segment at a time for a ``k``-of-``n`` code."""

    __slots__ = ("_driver", "k", "n")

    def __init__(self, k: int, n: int) -> None:
        if not 1 <= k < n <= 32:
            raise ValueError("erasure code needs 1 <= k < n <= 32")
        self.k = k
        self.n = n
        self._driver = _driver(k, n)

    def fragment_len(self, segment_len: int) -> int:
        """Bytes of each of the ``n`` fragments of a ``segment_len``-byte segment."""
        if segment_len <= 0:
            raise ValueError("segment length must be positive")
        return HEADER_LEN + self.payload_len(segment_len)

    def payload_len(self, segment_len: int) -> int:
        """Segment bytes carried by each data fragment (after its header)."""
        return -(-segment_len // self.k)

    def encode(self, segment: bytes) -> list[bytes]:
        """The ``n`` fragments of a non-empty segment, by fragment index."""
        if not segment:
            raise ValueError("cannot encode an empty segment")
        frags: list[bytes] = self._driver.encode(bytes(segment))
        return frags

    def decode(self, fragments: dict[int, bytes]) -> bytes:
        """The segment from any ``k`` fragments (data fragments are preferred)."""
        if len(fragments) < self.k:
            raise NotEnoughBlocks(
                f"erasure decode found {len(fragments)} of {self.k} blocks needed",
                len(fragments),
                self.k,
            )
        chosen = [fragments[i] for i in sorted(fragments)[: self.k]]
        try:
            data: bytes = self._driver.decode(chosen)
        except ECInsufficientFragments:
            raise NotEnoughBlocks(
                f"erasure decode found {len(fragments)} of {self.k} blocks needed",
                len(fragments),
                self.k,
            ) from None
        except ECDriverError as exc:
            raise BlockCorrupt(f"erasure decode failed: {exc}") from None
        return data

    def reconstruct(self, fragments: dict[int, bytes], missing: list[int]) -> dict[int, bytes]:
        """Rebuild the fragments ``missing`` from any ``k`` others (for repair)."""
        if len(fragments) < self.k:
            raise NotEnoughBlocks(
                f"erasure reconstruct found {len(fragments)} of {self.k} blocks needed",
                len(fragments),
                self.k,
            )
        wanted = sorted(set(missing))
        if any(not 0 <= i < self.n for i in wanted):
            raise ValueError("fragment index out of range")
        chosen = [fragments[i] for i in sorted(fragments)[: self.k]]
        try:
            rebuilt: list[bytes] = self._driver.reconstruct(chosen, list(wanted))
        except ECDriverError as exc:
            raise BlockCorrupt(f"erasure reconstruct failed: {exc}") from None
        return dict(zip(wanted, rebuilt, strict=True))

    def data_fragments(self, segment_len: int, lo: int, hi: int) -> range:
        """Indexes of the data fragments holding segment bytes ``[lo, hi)``."""
        p = self.payload_len(segment_len)
        return range(lo // p, -(-hi // p))

    def extract(self, fragments: dict[int, bytes], segment_len: int, lo: int, hi: int) -> bytes:
        """Segment bytes ``[lo, hi)`` read straight from the data fragments holding
        them (``data_fragments``), without decoding: the code is systematic."""
        p = self.payload_len(segment_len)
        parts = []
        for i in self.data_fragments(segment_len, lo, hi):
            start = max(lo - i * p, 0)
            end = min(hi - i * p, p)
            parts.append(memoryview(fragments[i])[HEADER_LEN + start : HEADER_LEN + end])
        return b"".join(parts)
