"""bfloat16 dot products for the fused WaveNet generator: weights and the matmuls' inputs in
bfloat16, products summed in float32, on AVX-512 BF16 (``vdpbf16ps``) where the CPU has it.

Why: with float32 arithmetic, 8 streams of ``wavenet-bench`` cannot pass about 55,000
samples/s on two cores (the multiply-adds alone, at this machine's float32 GEMM rate).
``vdpbf16ps`` does 32 multiply-adds per instruction where an FMA does 16, and its weights
are half the bytes. The price is that the activations entering each matmul are rounded to
bfloat16 too (8 bits of mantissa); the product of two bfloat16 numbers is exact in float32,
so the result equals float32 math on rounded inputs up to the order of the sums
(``round_bf16`` on both sides is the reference: ``WaveNet.round_input``).

The layout (``pack_dot``): a matrix W[..., n, k] becomes uint16[..., nb, k2, 16, 2], nb =
ceil(n / 16) blocks of 16 outputs, k2 = ceil(k / 2) pairs of inputs, zero-padded:
[b, i, l] holds the bfloat16 pair (W[16b + l, 2i], W[16b + l, 2i + 1]). One 64-byte load is
one instruction's weights for 16 outputs; the input pair is one 32-bit broadcast, so the 16
lanes accumulate 16 outputs and no horizontal sum is ever needed.

Where the CPU lacks AVX-512 BF16 (``HAS_DPBF16`` False; numba compiles for the host), the
same layout and the same rounding run through plain loops (``matmul_dot_plain``), so a seed
gives the same samples up to the order of the sums on any machine.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

HAS_DPBF16 = bool(binding.get_host_cpu_features().get("avx512bf16", False))
LANES = 16  # float32 lanes of a 512-bit register: outputs per block

_VEC = ir.VectorType(ir.FloatType(), LANES)
_IVEC = ir.VectorType(ir.IntType(32), LANES)


class _F32x16(types.Type):
    """Sixteen float32 lanes held in a register (numba has no vector types of its own)."""

    def __init__(self):
        super().__init__(name="f32x16")


f32x16 = _F32x16()


@register_model(_F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _pointer(context, builder, arrty, arr, idx, elt):
    """A pointer of type elt* to element idx of a C-contiguous 1-d array."""
    data = cgutils.create_struct_proxy(arrty)(context, builder, value=arr).data
    return builder.bitcast(builder.gep(data, [idx]), elt.as_pointer())


@intrinsic
def bits_as_f32(typingctx, u):
    """Reinterpret uint32 bits as float32 (numba has no scalar bit cast)."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _f32_bits(typingctx, v):
    """The bits of float32 v as a uint32."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _zeros(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, [0.0] * LANES)

    return f32x16(), codegen


@intrinsic
def _dot(typingctx, acc, x, W, idx):
    """acc + the 16 lanes' bfloat16 pair products: lane l adds x.lo * W[idx + 2l] +
    x.hi * W[idx + 2l + 1] (x: a uint32 holding two bfloat16, broadcast; W: uint16, 1-d)."""

    def codegen(context, builder, sig, args):
        acc, x, W, idx = args
        w = builder.load(_pointer(context, builder, sig.args[2], W, idx, _IVEC), align=2)
        zero = ir.Constant(ir.IntType(32), 0)
        xv = builder.insert_element(ir.Constant(_IVEC, ir.Undefined), x, zero)
        xv = builder.shuffle_vector(
            xv, ir.Constant(_IVEC, ir.Undefined), ir.Constant(_IVEC, [0] * LANES)
        )
        # LLVM's own signature takes <32 x bfloat>; llvmlite has no bfloat type, and LLVM
        # upgrades this older <16 x i32> form of the declaration on parsing.
        fnty = ir.FunctionType(_VEC, [_VEC, _IVEC, _IVEC])
        fn = cgutils.get_or_insert_function(
            builder.module, fnty, "llvm.x86.avx512bf16.dpbf16ps.512"
        )
        return builder.call(fn, [acc, xv, w])

    return f32x16(f32x16, types.uint32, W, types.intp), codegen


@intrinsic
def _add(typingctx, a, b):
    """a + b, lane by lane."""

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return f32x16(f32x16, f32x16), codegen


@intrinsic
def _store(typingctx, acc, A, idx):
    """A[idx : idx + 16] = acc (A float32, 1-d)."""

    def codegen(context, builder, sig, args):
        acc, A, idx = args
        builder.store(acc, _pointer(context, builder, sig.args[1], A, idx, _VEC), align=4)
        return context.get_dummy_value()

    return types.none(f32x16, A, types.intp), codegen


@numba.njit(cache=True, inline="always")
def _pair(a0, a1, a2, a3, c0, c1, c2, c3, x, y, Wf, o, blk):
    """Four blocks' sums of two streams (a: input pair x, c: y) after one more input pair,
    the weights at Wf[o + block * blk]. Two pairs inlined side by side load each weight once
    (LLVM merges the identical loads)."""
    a0, c0 = _dot(a0, x, Wf, o), _dot(c0, y, Wf, o)
    a1, c1 = _dot(a1, x, Wf, o + blk), _dot(c1, y, Wf, o + blk)
    a2, c2 = _dot(a2, x, Wf, o + 2 * blk), _dot(c2, y, Wf, o + 2 * blk)
    a3, c3 = _dot(a3, x, Wf, o + 3 * blk), _dot(c3, y, Wf, o + 3 * blk)
    return a0, a1, a2, a3, c0, c1, c2, c3


@numba.njit(cache=True, inline="always")
def _store4(a0, a1, a2, a3, Zf, r):
    """Zf[r : r + 64] = the four blocks' sums, in order."""
    _store(a0, Zf, r)
    _store(a1, Zf, r + LANES)
    _store(a2, Zf, r + 2 * LANES)
    _store(a3, Zf, r + 3 * LANES)


@numba.njit(cache=True, inline="always")
def bf16_bits(v):
    """The bfloat16 nearest float32 v (ties to even, as torch rounds), as its 16 bits in a uint32."""
    b = _f32_bits(np.float32(v))
    return (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)


@numba.njit(cache=True)
def round_pairs(X, Xb, k2):
    """Xb[:m, :k2] = X float32[m, k] rounded to bfloat16 in pairs, the even input in the low
    half of each uint32 (zero-padded to k2 pairs)."""
    m, k = X.shape
    for j in range(m):
        for i in range(k // 2):
            Xb[j, i] = bf16_bits(X[j, 2 * i]) | (bf16_bits(X[j, 2 * i + 1]) << np.uint32(16))
        for i in range(k // 2, k2):
            Xb[j, i] = bf16_bits(X[j, k - 1]) if 2 * i == k - 1 else np.uint32(0)


@numba.njit(cache=True)
def matmul_dot(X, W, Z, Xb):
    """Z[m, n] = bf16(X)[m, k] @ W.T for W packed by ``pack_dot`` as uint16[nb, k2, 16, 2]
    (Z float32, C-contiguous; Xb uint32[>= m, >= k2] scratch for the rounded inputs).

    Register tiles of 4 blocks (64 outputs) x 4 streams: sixteen independent sums hide the
    instruction's latency, every weight load feeds four streams (blocks of streams read
    their weights from L3, once per tile row), every broadcast input four blocks; a pair
    left runs 2 x 4 (the weights then come from L1, 16 KiB at k = 128, as they were just
    read). A last odd stream runs alone with two sums per block over alternate input
    pairs, eight in all (one stream split across the cores is the latency-bound case)."""
    m = X.shape[0]
    n = Z.shape[1]
    nb, k2 = W.shape[0], W.shape[1]
    round_pairs(X, Xb, k2)
    Wf, Zf = W.reshape(-1), Z.reshape(-1)
    blk = k2 * 2 * LANES  # uint16s per block
    step = 2 * LANES  # uint16s per input pair of a block
    full = n // LANES  # blocks whose 16 outputs all exist in Z
    b = 0
    while b + 4 <= full:
        j = 0
        while j + 4 <= m:  # 4 streams x 4 blocks: the two pairs share each weight load
            a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = _zeros()
            e0 = e1 = e2 = e3 = g0 = g1 = g2 = g3 = _zeros()
            for i in range(k2):
                o = b * blk + i * step
                a0, a1, a2, a3, c0, c1, c2, c3 = _pair(
                    a0, a1, a2, a3, c0, c1, c2, c3, Xb[j, i], Xb[j + 1, i], Wf, o, blk
                )
                e0, e1, e2, e3, g0, g1, g2, g3 = _pair(
                    e0, e1, e2, e3, g0, g1, g2, g3, Xb[j + 2, i], Xb[j + 3, i], Wf, o, blk
                )
            r = j * n + b * LANES
            _store4(a0, a1, a2, a3, Zf, r)
            _store4(c0, c1, c2, c3, Zf, r + n)
            _store4(e0, e1, e2, e3, Zf, r + 2 * n)
            _store4(g0, g1, g2, g3, Zf, r + 3 * n)
            j += 4
        if j + 2 <= m:  # a pair left: 2 streams x 4 blocks
            a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = _zeros()
            for i in range(k2):
                x, y, o = Xb[j, i], Xb[j + 1, i], b * blk + i * step
                a0, a1, a2, a3, c0, c1, c2, c3 = _pair(
                    a0, a1, a2, a3, c0, c1, c2, c3, x, y, Wf, o, blk
                )
            _store4(a0, a1, a2, a3, Zf, j * n + b * LANES)
            _store4(c0, c1, c2, c3, Zf, (j + 1) * n + b * LANES)
            j += 2
        while j < m:  # the last streams alone: two sums per block, even and odd input pairs
            a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = _zeros()
            for i in range(0, k2 - 1, 2):
                x, y = Xb[j, i], Xb[j, i + 1]
                o = b * blk + i * step
                a0, c0 = _dot(a0, x, Wf, o), _dot(c0, y, Wf, o + step)
                a1, c1 = _dot(a1, x, Wf, o + blk), _dot(c1, y, Wf, o + blk + step)
                a2, c2 = _dot(a2, x, Wf, o + 2 * blk), _dot(c2, y, Wf, o + 2 * blk + step)
                a3, c3 = _dot(a3, x, Wf, o + 3 * blk), _dot(c3, y, Wf, o + 3 * blk + step)
            if k2 % 2:
                x, o = Xb[j, k2 - 1], b * blk + (k2 - 1) * step
                a0, a1 = _dot(a0, x, Wf, o), _dot(a1, x, Wf, o + blk)
                a2, a3 = _dot(a2, x, Wf, o + 2 * blk), _dot(a3, x, Wf, o + 3 * blk)
            r = j * n + b * LANES
            _store4(_add(a0, c0), _add(a1, c1), _add(a2, c2), _add(a3, c3), Zf, r)
            j += 1
        b += 4
    tail = np.empty(LANES, np.float32)
    while b < nb:  # the last blocks one at a time; a partial one through a scratch row
        for j in range(m):
            a0 = _zeros()
            for i in range(k2):
                a0 = _dot(a0, Xb[j, i], Wf, b * blk + i * step)
            if b < full:
                _store(a0, Zf, j * n + b * LANES)
            else:
                _store(a0, tail, 0)
                for lane in range(n - b * LANES):
                    Z[j, b * LANES + lane] = tail[lane]
        b += 1


@numba.njit(cache=True, fastmath={"contract", "reassoc"})
def matmul_dot_plain(X, W, Z, Xb):
    """matmul_dot without the instruction: the same layout and rounding in plain loops
    (the 16 lanes vectorise), for CPUs without AVX-512 BF16."""
    m = X.shape[0]
    n = Z.shape[1]
    nb, k2 = W.shape[0], W.shape[1]
    round_pairs(X, Xb, k2)
    acc = np.empty(LANES, np.float32)
    mask, shift = np.uint32(0xFFFF0000), np.uint32(16)
    for j in range(m):
        for b in range(nb):
            acc[:] = 0
            for i in range(k2):
                x = Xb[j, i]
                lo, hi = bits_as_f32(x << shift), bits_as_f32(x & mask)
                for lane in range(LANES):
                    w0 = bits_as_f32(np.uint32(W[b, i, lane, 0]) << shift)
                    w1 = bits_as_f32(np.uint32(W[b, i, lane, 1]) << shift)
                    acc[lane] += lo * w0 + hi * w1
            for lane in range(min(LANES, n - b * LANES)):
                Z[j, b * LANES + lane] = acc[lane]


MATMUL = matmul_dot if HAS_DPBF16 else matmul_dot_plain  # what ``fused.mm`` calls


def pack_dot(t: torch.Tensor) -> np.ndarray:
    """t[..., n, k] -> uint16[..., ceil(n/16), ceil(k/2), 16, 2], rounded to bfloat16 (the
    module doc's layout)."""
    t = t.detach().to("cpu", torch.float32)
    *lead, n, k = t.shape
    nb, k2 = -(-n // LANES), -(-k // 2)
    p = torch.zeros(*lead, nb * LANES, k2 * 2)
    p[..., :n, :k] = t
    b = p.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    b = b.reshape(*lead, nb, LANES, k2, 2)
    return np.ascontiguousarray(np.moveaxis(b, -3, -2))
