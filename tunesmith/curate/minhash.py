"""Word and character n-gram hashing and MinHash signatures on arrays: the engine of near_dedup and contamination.

No per-row Python loop on the hot path: pyarrow splits and dictionary-encodes the words of all rows at
once, n-gram hashes come from prefix sums, and signatures are minimum reductions over cache-sized blocks
of a 61-bit Mersenne-prime hash family. LSH banding lives in lsh.py (re-exported here). Only the few
candidate pairs are compared as sets.
"""

from __future__ import annotations

import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

# banding and candidate checks live in lsh.py; near_dedup and older callers reach them through this module
from tunesmith.curate.lsh import (  # noqa: F401
    band_buckets,
    band_keys,
    candidate_pairs,
    estimated_jaccard,
    exact_jaccard,
    optimal_bands,
)

_BASE = np.uint64(0xFF51AFD7ED558CCD)  # odd, so invertible mod 2^64
_BASE_INVERSE = np.uint64(pow(0xFF51AFD7ED558CCD, -1, 2**64))


@dataclass(frozen=True)
class Shingles:
    hashes: np.ndarray  # uint64, one per shingle, grouped by row
    row_of: np.ndarray  # int64 row index of each shingle (non-decreasing)


def _punctuation_table() -> dict[int, str]:
    """Every punctuation and symbol character of the Basic Multilingual Plane, mapped to a space."""
    return {c: " " for c in range(0x10000) if unicodedata.category(chr(c))[0] in "PS" and chr(c) != "_"}


_TO_SPACES = _punctuation_table()
_ROW_BREAK = "|"


def words(text: str) -> list[str]:
    """The words of a text as the shingles see them: lowercase runs between spaces and punctuation."""
    return text.translate(_TO_SPACES).lower().split()


def nfkc(text: str) -> str:
    """NFKC form (full-width letters, ligatures, compatibility digits made plain); ASCII is already NFKC."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def fold_text(text: str) -> str:
    """The text-dedup normal form: NFKC, lower case, punctuation and symbols blanked, whitespace runs one space."""
    return " ".join(nfkc(text).translate(_TO_SPACES).lower().split())


@dataclass(frozen=True)
class Words:
    """The word hashes of many texts, flat, with offsets: text i has hashes[offsets[i]:offsets[i + 1]]."""

    hashes: np.ndarray  # uint64
    offsets: np.ndarray  # int64, one more than there are texts

    def row_of(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))


def text_words(texts: list[str], fold: bool = True) -> Words:
    """Hash the words of every text at once (fold=False: words are whitespace runs, case and punctuation kept).

    One big string with a row-break word between texts is far cheaper to hand to pyarrow than many
    strings. The break is "|": punctuation is blanked before joining, so no word of a text can be "|".
    Unfolded texts use NUL instead, read as a space inside a text.
    """
    if fold:
        joined, row_break = " | ".join(text.translate(_TO_SPACES) for text in texts).lower(), _ROW_BREAK
    else:
        joined, row_break = " \0 ".join(text.replace("\0", " ") for text in texts), "\0"
    split = pc.ascii_split_whitespace if joined.isascii() else pc.utf8_split_whitespace
    all_words = pc.list_flatten(split(pa.array([joined], type=pa.large_string())))
    is_break = pc.equal(all_words, row_break).to_numpy(zero_copy_only=False)
    keep = ~is_break & pc.not_equal(all_words, "").to_numpy(zero_copy_only=False)  # trailing space: ""
    row_of = np.cumsum(is_break)[keep]
    encoded = pc.dictionary_encode(all_words.filter(pa.array(keep)))
    vocab = encoded.dictionary.to_pylist()
    vocab_hash = np.fromiter((xxhash.xxh64_intdigest(w.encode("utf-8", "surrogatepass")) for w in vocab), np.uint64,
                             count=len(vocab))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=len(texts)), out=offsets[1:])
    return Words(vocab_hash[encoded.indices.to_numpy()], offsets)


class WordCache:
    """Words of the texts seen earlier in one run, so a later stage hashes only texts it has not seen.

    near_dedup and contamination both read the whole conversation; rows that pii masked in between
    simply count as new texts.
    """

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._words: Words | None = None

    def words(self, texts: list[str]) -> Words:
        if self._words is None:
            self._words = text_words(texts)
            self._index = {text: i for i, text in enumerate(texts)}
            return self._words
        known = np.fromiter((self._index.get(t, -1) for t in texts), dtype=np.int64, count=len(texts))
        new = np.flatnonzero(known < 0)
        fresh = text_words([texts[i] for i in new])
        pool = np.concatenate([self._words.hashes, fresh.hashes])
        starts = np.where(known >= 0, self._words.offsets[np.maximum(known, 0)], 0)
        lengths = np.where(known >= 0, np.diff(self._words.offsets)[np.maximum(known, 0)], 0)
        starts[new] = len(self._words.hashes) + fresh.offsets[:-1]
        lengths[new] = np.diff(fresh.offsets)
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Words(pool[gather], offsets)


def word_shingles(texts: list[str], ngram: int, cache: WordCache | None = None, fold: bool = True) -> Shingles:
    """Hash every word n-gram of every text; a text shorter than `ngram` words gives one shingle.

    The cache holds folded words, so it serves only fold=True.
    """
    words = cache.words(texts) if cache is not None and fold else text_words(texts, fold)
    return _ngram_hashes(words.hashes, words.row_of(), ngram)


def char_shingles(texts: list[str], ngram: int) -> Shingles:
    """Hash every character n-gram of every text as given (fold it first); a shorter text gives one shingle.

    For scripts written without spaces (Chinese, Japanese, Thai), where a whole clause is one "word".
    """
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    row_of = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    return _ngram_hashes(_mix64(codes.astype(np.uint64)), row_of, ngram)


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: code points are small and close together, the n-gram polynomial wants random words."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _ngram_hashes(word_hash: np.ndarray, row_of: np.ndarray, ngram: int) -> Shingles:
    """Polynomial hashes of word n-grams from prefix sums (mod 2^64), in a fixed number of passes for any n.

    hash(i..j) = (P[j] - P[i]) * B^-i with P[t] = sum of word_hash[s] * B^s for s < t; B is odd, so its
    inverse mod 2^64 exists. An n-gram never crosses a row end; a row shorter than n gives one shingle.
    """
    n_words = len(word_hash)
    if n_words == 0:
        return Shingles(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    boundaries = np.flatnonzero(np.diff(row_of)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [n_words]])
    is_long = ends - starts >= ngram
    mask = np.ones(n_words, dtype=bool)
    for k in range(1, ngram):  # the last n-1 positions of a long row start no full n-gram
        mask[ends[is_long] - k] = False
    short_starts, short_ends = starts[~is_long], ends[~is_long]
    if len(short_starts):  # a short row keeps one shingle: all its words, from its first position
        inside = np.repeat(short_starts, short_ends - short_starts)
        mask[inside + _ranks(short_ends - short_starts)] = False
        mask[short_starts] = True
    keep = np.flatnonzero(mask)
    end = keep + ngram
    if len(short_starts):
        end[np.searchsorted(keep, short_starts)] = short_ends
    power, inverse = _powers(n_words + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(n_words + 1, dtype=np.uint64)
        np.cumsum(word_hash * power[:n_words], out=prefix[1:])
        hashes = (prefix[end] - prefix[keep]) * inverse[keep]
    return Shingles(hashes, row_of[keep])


def _ranks(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., len-1 for each length, concatenated."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


_POWER_CACHE: list[np.ndarray] = [np.ones(1, np.uint64), np.ones(1, np.uint64)]


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """B^t and B^-t for t < n (mod 2^64), cached and grown as needed."""
    if len(_POWER_CACHE[0]) < n:
        size = max(n, 2 * len(_POWER_CACHE[0]))
        with np.errstate(over="ignore"):
            for k, base in enumerate((_BASE, _BASE_INVERSE)):
                values = np.empty(size, dtype=np.uint64)
                values[0] = 1
                np.cumprod(np.full(size - 1, base, dtype=np.uint64), out=values[1:])
                _POWER_CACHE[k] = values
    return _POWER_CACHE[0], _POWER_CACHE[1]


MERSENNE = (1 << 61) - 1
_P = np.uint64(MERSENNE)
_LOW32, _LOW31 = np.uint64(0xFFFFFFFF), np.uint64(0x7FFFFFFF)
_30, _31, _61 = np.uint64(30), np.uint64(31), np.uint64(61)
SHINGLES_PER_BLOCK = 512  # 3 blocks of 128 x 512 uint64 stay in cache; measured faster than 2048 or 8192


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded parameters of h(x) = (a*x + b) mod (2^61 - 1): a in [1, p), b in [0, p), as datasketch draws them."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, MERSENNE, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, MERSENNE, size=num_perm, dtype=np.uint64)
    return a, b


def shingle_keys(hashes: np.ndarray) -> np.ndarray:
    """The 32-bit x that the hash family permutes: the two halves of a 64-bit shingle hash folded together."""
    return (hashes >> np.uint64(32)) ^ (hashes & _LOW32)


def mersenne_hash(x: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(a*x + b) mod (2^61 - 1) exactly, for x < 2^32 (shape 1 x m) and a, b < 2^61 (shape k x 1): k x m uint64.

    a*x needs 93 bits, so a is split as a_hi*2^31 + a_lo: a_lo*x < 2^63 and a_hi*x < 2^62 both fit, and
    multiplying by 2^31 modulo 2^61 - 1 is a 61-bit rotation, so the sum stays below 2^64. (datasketch and
    datatrove multiply a*x in uint64 and let it wrap mod 2^64 before taking mod p: a different function.)
    `out` (3 x k x m, reused across calls) saves the page faults of fresh temporaries.
    """
    shape = (a.shape[0], x.shape[1])
    r, hi, t = np.empty((3, *shape), dtype=np.uint64) if out is None else out[:, :, : shape[1]]
    np.multiply(a & _LOW31, x, out=r)
    r += b
    np.multiply(a >> _31, x, out=hi)
    np.right_shift(hi, _30, out=t)
    r += t
    hi <<= _31
    hi &= _P
    r += hi  # < 2^63 + 2^62 + 2^32
    np.right_shift(r, _61, out=t)
    r &= _P
    r += t  # r mod p, or r mod p + p when that is below 8
    np.subtract(r, _P, out=t)  # wraps to a huge value where r < p
    np.minimum(r, t, out=r)
    return r


def signatures(shingles: Shingles, num_rows: int, num_perm: int, seed: int = 1, workers: int | None = None) -> np.ndarray:
    """MinHash signatures (num_rows x num_perm, uint32): per permutation, the minimum of the 61-bit hash family
    over a row's shingles, stored as its low 32 bits (as datasketch stores 32-bit values; two different minima
    agree by chance with probability 2^-32). Rows without shingles keep all-max values.

    The blocks are spread over threads (numpy releases the GIL), each thread owning whole rows.
    """
    a, b = permutations(num_perm, seed)
    x = shingle_keys(shingles.hashes)
    sig = np.full((num_rows, num_perm), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    workers = workers or min(os.cpu_count() or 1, 8)
    parts = _row_ranges(shingles.row_of, max(len(x) // workers + 1, 64 * SHINGLES_PER_BLOCK))
    args = (sig, x, shingles.row_of, a[:, None], b[:, None])
    if len(parts) == 1:
        _fill(*args, *parts[0])
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda part: _fill(*args, *part), parts))
    return sig


def _fill(sig, x, row_of, a, b, lo: int, hi: int) -> None:
    """Signatures of the rows whose shingles are x[lo:hi]; blocks may cut a row, so minima merge into `best`."""
    first_row = int(row_of[lo])
    best = np.full((int(row_of[hi - 1]) - first_row + 1, a.shape[0]), np.uint64(2**64 - 1))
    scratch = np.empty((3, a.shape[0], SHINGLES_PER_BLOCK), dtype=np.uint64)
    for start in range(lo, hi, SHINGLES_PER_BLOCK):
        stop = min(start + SHINGLES_PER_BLOCK, hi)
        hv = mersenne_hash(x[None, start:stop], a, b, scratch)  # permutation-major: each minimum reads contiguous memory
        rows = row_of[start:stop] - first_row
        firsts = np.concatenate([[0], np.flatnonzero(np.diff(rows)) + 1])
        at = rows[firsts]
        best[at] = np.minimum(best[at], np.minimum.reduceat(hv, firsts, axis=1).T)
    rows = row_of[lo:hi]
    present = rows[np.concatenate([[True], rows[1:] != rows[:-1]])]
    sig[present] = (best[present - first_row] & _LOW32).astype(np.uint32)


def _row_ranges(row_of: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Shingle ranges of about `size`, cut at row boundaries so each row's shingles stay together."""
    bounds, start, total = [], 0, len(row_of)
    while start < total:
        stop = min(start + size, total)
        if stop < total:
            # move the cut back to the first shingle of the row it falls in (or forward if that is start)
            cut = int(np.searchsorted(row_of, row_of[stop], side="left"))
            stop = cut if cut > start else int(np.searchsorted(row_of, row_of[stop], side="right"))
        bounds.append((start, stop))
        start = stop
    return bounds
