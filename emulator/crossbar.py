"""Exact crossbar products: the fast engine's ``spikes @ weights`` for one edge, on the fastest
kernel that is provably exact.

A crossbar product ``y = x @ W`` multiplies spike counts ``x`` (``[m, pre]``, ``0 <= x <= c``) by
a matrix of integer increments ``W`` (``[pre, post]``). Every output is an integer with
``|y| <= B``, where ``B = max_post Σ_pre |W| · c`` (:attr:`Crossbar.bound`). Three kernels
compute it exactly:

``int8``
    ``W = 2^s · Σ_k W_k · 2^(7k)`` with int8 digits ``W_k`` (``s`` the power of two common to
    all weights, e.g. Xylo's ``weight_shift``; one digit for ``|W| <= 127·2^s``, up to three),
    each product an int8 × int8 → int32 matrix multiply (torch's ``_int_mm``, oneDNN's VNNI
    kernels on x86: about 7× the float32 BLAS throughput on this machine kind). Exact while
    ``c <= 127`` (counts fit int8) and no int32 partial sum can wrap: ``B < 2^31`` and
    ``B/2^s + (2^(7(D-1)) - 1) · c · pre < 2^31`` for ``D`` digits. Output int32.
``dense``
    float32 BLAS while ``B < 2^24`` (every partial sum an exact float32 integer), float64 while
    ``B < 2^53`` (DESIGN.md, "Performance notes"). Output float32/float64 holding integers.
``sparse``
    a CSR matrix (a convolution expanded into a crossbar): the same integers are added, exact
    under the same bound. Output float32/float64.

:func:`crossbar` picks the kernel: int8 whenever it is exact and available and the dense matrix
is affordable (:data:`INT8_DENSE_ENTRIES`), else sparse for big matrices with few non-zero entries,
else dense float. All three take ``x`` in any integer or float dtype holding the counts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["Crossbar", "crossbar", "int8_available", "kernels", "keep_sparse", "KERNELS", "INT8_DENSE_ENTRIES",
           "SPARSE_DENSITY", "SPARSE_MIN_ENTRIES"]

#: the kernels :func:`crossbar` may choose from (tests narrow it to exercise each one)
KERNELS: tuple[str, ...] = ("int8", "dense", "sparse")

#: a matrix is kept sparse (CSR) when at most this share of its entries is non-zero ...
SPARSE_DENSITY = 0.05
#: ... and it has at least this many entries (small matrices are fastest dense)
SPARSE_MIN_ENTRIES = 1 << 18
#: a sparse matrix still runs as dense int8 digits while it has at most this many entries and at
#: least 1/INT8_SPARSE_RATIO of them are non-zero: int8 VNNI multiplies ~300 G entries/s on
#: 2 cores, CSR ~1 G non-zeros/s, so dense wins down to a density of ~1/300
INT8_DENSE_ENTRIES = 1 << 26
INT8_SPARSE_RATIO = 256
#: int8 products of fewer multiply-adds than this run on one thread (~1 ms of one core's VNNI)
SINGLE_THREAD_MACS = 1 << 28
#: int8 digits: 7 bits each below the sign
_DIGIT = 7
_INT8_MAX = 127
#: at most this many digits (|w| < 2^21 after the common power of two)
_MAX_DIGITS = 3

_int_mm: Any = None
_checked = False


def int8_available() -> bool:
    """Whether an exact int8 × int8 → int32 matrix multiply is available (torch's ``_int_mm``,
    checked once on a small product against numpy's int64 result). Set the environment variable
    ``SPIKEFORGE_EMULATOR_INT8=0`` to use only the float kernels."""
    global _int_mm, _checked
    if _checked:
        return _int_mm is not None
    _checked = True
    import os

    if os.environ.get("SPIKEFORGE_EMULATOR_INT8", "1") == "0":
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    mm = getattr(torch, "_int_mm", None)
    if mm is None:  # pragma: no cover - present in the supported torch releases
        return False
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (37, 45)).astype(np.int8)
    b = rng.integers(-128, 128, (45, 29)).astype(np.int8)
    try:
        got = mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    except RuntimeError:  # pragma: no cover - a build without the CPU kernel
        return False
    if not np.array_equal(got, a.astype(np.int64) @ b.astype(np.int64)):  # pragma: no cover
        return False
    _int_mm = mm
    return True


class Crossbar:
    """One exact product ``x @ W`` (module docstring). ``shape`` ``(pre, post)``; ``bound`` the
    largest ``|y|`` any output can take; ``kind`` ``"int8" | "dense" | "sparse"``; ``dtype`` the
    output dtype (int32, float32 or float64)."""

    def __init__(self, kind: str, shape: tuple[int, int], bound: int, dtype: np.dtype[Any],
                 parts: Sequence[Any], nnz: int, shift: int = 0) -> None:
        self.kind = kind
        self.shape = shape
        self.bound = bound
        self.dtype = dtype
        self.nnz = nnz
        self.shift = shift  # int8: W = 2^shift · Σ_k digit_k · 2^(7k)
        self._parts = tuple(parts)  # int8: torch digits, least significant first; else (matrix,)
        self.nbytes = sum(_nbytes(p) for p in self._parts)
        # int8: the digits as numpy arrays too (views of the same memory)
        self._digits = tuple(p.numpy() for p in self._parts) if kind == "int8" else ()

    def __call__(self, x: NDArray[Any]) -> NDArray[Any]:
        """``x @ W`` for counts ``x`` ``[m, pre]`` (or ``[pre]``): ``[m, post]`` (or ``[post]``)."""
        if self.kind == "int8":
            return self._int8(x)
        m = self._parts[0]
        xf = x if x.dtype == self.dtype else x.astype(self.dtype)
        if self.kind == "sparse":
            if xf.ndim == 1:
                return np.asarray(m.T @ xf)
            return np.asarray((m.T @ xf.T).T)
        return xf @ m

    def rows(self, index: NDArray[np.intp], counts: NDArray[Any]) -> NDArray[Any]:
        """``Σ_i counts[i] · W[index[i]]`` ``[post]``: one step's product from its few active rows."""
        if self.kind == "int8":
            # a few rows: a gather and an int32 sum in numpy beat a threaded product call
            c = counts.astype(np.int32)
            ones = bool((c == 1).all())
            out = np.zeros(self.shape[1], dtype=np.int32)
            for k, digit in enumerate(self._digits):
                rows = digit[index]
                part = rows.sum(axis=0, dtype=np.int32) if ones else c @ rows.astype(np.int32)
                out += part << (_DIGIT * k)
            return out << self.shift if self.shift else out
        m = self._parts[0]
        if self.kind == "sparse":
            return np.asarray(m.T @ _dense_row(index, counts, self.shape[0]).astype(self.dtype))
        return counts.astype(self.dtype) @ m[index]

    def _int8(self, x: NDArray[Any]) -> NDArray[np.int32]:
        import torch

        flat = x.reshape(1, -1) if x.ndim == 1 else x
        x8 = flat if flat.dtype == np.int8 else flat.astype(np.int8)
        xt = torch.from_numpy(np.ascontiguousarray(x8))
        # a small product runs on one thread: a parallel region's barrier costs more than it
        # saves there, and on a busy machine it waits a whole scheduler slice (~8 ms measured)
        small = x8.shape[0] * self.shape[0] * self.shape[1] < SINGLE_THREAD_MACS
        with _one_thread(small):
            # the digits' sum and the shift in numpy: element-wise work on torch's thread pool
            # only adds synchronisation for these sizes
            y = _int_mm(xt, self._parts[0]).numpy()
            for k, digit in enumerate(self._parts[1:], start=1):
                high = _int_mm(xt, digit).numpy()
                high <<= _DIGIT * k
                y += high
        if self.shift:
            y <<= self.shift
        return y[0] if x.ndim == 1 else y

    def dense(self) -> NDArray[np.int64]:
        """``W`` as an int64 array (tests and inspection)."""
        if self.kind == "int8":
            w = sum((p.numpy().astype(np.int64) << (_DIGIT * k) for k, p in enumerate(self._parts)),
                    start=np.zeros(self.shape, dtype=np.int64))
            return w << self.shift
        m = self._parts[0]
        arr = m.toarray() if sp.issparse(m) else m
        return np.rint(arr).astype(np.int64)


def kernels() -> tuple[str, ...]:
    """The kernels :func:`crossbar` may choose from now (:data:`KERNELS`)."""
    return KERNELS


def keep_sparse(nnz: int, entries: int) -> bool:
    """Whether a matrix with ``nnz`` non-zero of ``entries`` is built (and, unless int8 takes it,
    multiplied) as CSR: big and at most :data:`SPARSE_DENSITY` full, or only sparse allowed."""
    if KERNELS == ("sparse",):
        return True
    return "sparse" in KERNELS and nnz < SPARSE_DENSITY * entries and entries >= SPARSE_MIN_ENTRIES


_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_thread(wanted: bool) -> Iterator[None]:
    """Torch's intra-op threads set to one while the block runs (when ``wanted``), restored after;
    a lock keeps concurrent callers from restoring each other's setting."""
    if not wanted:
        yield
        return
    import torch

    with _THREADS_LOCK:
        before = torch.get_num_threads()
        if before == 1:
            yield
            return
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _dense_row(index: NDArray[np.intp], counts: NDArray[Any], n: int) -> NDArray[Any]:
    row = np.zeros(n, dtype=counts.dtype)
    row[index] = counts
    return row


def _nbytes(part: Any) -> int:
    if sp.issparse(part):
        return int(part.data.nbytes + part.indices.nbytes + part.indptr.nbytes)
    if hasattr(part, "numpy"):
        return int(part.element_size() * part.nelement())
    return int(part.nbytes)


def crossbar(matrix: NDArray[Any] | sp.csr_matrix, max_count: int) -> Crossbar:
    """The exact product of ``matrix`` (``[pre, post]`` integer increments, dense integer-valued
    float/int array or CSR) for counts up to ``max_count`` per step, on the kernel the module
    docstring's rules pick. The matrix may be consumed (converted in place of a copy)."""
    shape = (int(matrix.shape[0]), int(matrix.shape[1]))
    count = max(1, int(max_count))
    if sp.issparse(matrix):
        csr = sp.csr_matrix(matrix)
        csr.sum_duplicates()
        nnz = int(csr.nnz)
        col_abs = np.bincount(csr.indices, weights=np.abs(csr.data), minlength=shape[1])
        amax = float(np.abs(csr.data).max(initial=0.0))
    else:
        csr = None
        absm = np.abs(matrix)
        nnz = int(np.count_nonzero(matrix))
        col_abs = absm.sum(axis=0, dtype=np.float64)
        amax = float(absm.max(initial=0.0))
        del absm
    bound = int(col_abs.max(initial=0.0)) * count
    entries = shape[0] * shape[1]
    if _int8_wanted(max_count, amax, entries, nnz, csr is not None):
        # the digits are made from the non-zero values of a sparse matrix (linear in them) and
        # scattered into zeroed int8 matrices; a dense one is converted whole
        w = _as_int32(csr.data if csr is not None else matrix)
        # a common power of two (Xylo's weight << shift) leaves the digits and returns as a shift
        shift = _trailing_zeros(int(np.bitwise_or.reduce(w, axis=None)))
        if shift:
            w >>= shift
        digits = max(1, -(-int(np.abs(w).max(initial=0)).bit_length() // _DIGIT))
        # the products with the low digits add up to < 2^(7(D-1)) · c per pre unit, the top
        # digit's to at most Σ (|w| + 2^(7(D-1))) · c: every int32 partial sum stays below
        widest = (bound >> shift) + ((1 << (_DIGIT * (digits - 1))) - 1) * count * shape[0]
        affordable = csr is None or entries * digits <= INT8_DENSE_ENTRIES
        if digits <= _MAX_DIGITS and bound < 1 << 31 and widest < 1 << 31 and affordable:
            where = None
            if csr is not None:
                rows = np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(csr.indptr))
                where = rows * shape[1] + csr.indices
            return Crossbar("int8", shape, bound, np.dtype(np.int32), _int8_digits(w, digits, shape, where),
                            nnz, shift)
        del w
    dtype = np.dtype(np.float32 if bound < 1 << 24 else np.float64)
    if csr is None and not keep_sparse(nnz, entries):
        return Crossbar("dense", shape, bound, dtype, (np.ascontiguousarray(matrix, dtype=dtype),), nnz)
    if csr is None:
        csr = sp.csr_matrix(matrix)
    csr.sum_duplicates()
    return Crossbar("sparse", shape, bound, dtype, (csr.astype(dtype),), nnz)


def _int8_wanted(max_count: int, amax: float, entries: int, nnz: int, sparse: bool) -> bool:
    """The cheap tests for the int8 kernel, before any digit is made: allowed and available,
    counts fit int8, weights fit :data:`_MAX_DIGITS` digits, a dense form is affordable and (for
    a sparse matrix) full enough to beat CSR."""
    return ("int8" in KERNELS and max_count <= _INT8_MAX and amax < 1 << (_DIGIT * _MAX_DIGITS)
            and (not sparse or (entries <= INT8_DENSE_ENTRIES and nnz * INT8_SPARSE_RATIO >= entries))
            and int8_available())


def _trailing_zeros(x: int) -> int:
    """Trailing zero bits of ``x`` (0 for ``x == 0``)."""
    return (x & -x).bit_length() - 1 if x else 0


def _as_int32(values: NDArray[Any]) -> NDArray[np.int32]:
    """Integer-valued ``values`` as int32 (callers have checked ``|values| < 2^21``)."""
    return np.rint(values).astype(np.int32) if values.dtype.kind == "f" else values.astype(np.int32)


def _int8_digits(w: NDArray[np.int32], digits: int, shape: tuple[int, int], where: NDArray[np.int64] | None
                 ) -> list[Any]:
    """Integers ``w`` as int8 torch matrices ``W_k`` ``[pre, post]``, ``w = Σ_k W_k 2^(7k)``: the
    lower digits in ``[0, 127]``, the top one signed (``|W_top| <= 127`` as ``|w| < 2^(7·digits)``).
    ``w`` is the whole matrix, or (``where`` given: flat positions) its non-zero entries."""
    import torch

    def place(digit: NDArray[np.int32]) -> Any:
        if where is None:
            return torch.from_numpy(digit.astype(np.int8).reshape(shape))
        full = np.zeros(shape[0] * shape[1], dtype=np.int8)
        full[where] = digit
        return torch.from_numpy(full.reshape(shape))

    out = []
    rest = w
    for _ in range(digits - 1):
        low = rest & _INT8_MAX
        out.append(place(low))
        rest = (rest - low) >> _DIGIT
    out.append(place(rest))
    return out
