"""int8 dot products for the fused generators: int8 weights (one scale per output channel)
and the matmuls' inputs quantised to int8 (per row, scale max |x| / 127, or a fixed scale
for an input known to lie in [-1, 1]), products summed exactly in int32 by AVX-512 VNNI
(``vpdpbusd``: 64 multiply-adds an instruction).

Why: one WaveNet stream split across two cores reads 1.5 MiB of bfloat16 weights per core
per sample, more than a core's 1 MiB of L2; in int8 they are 0.8 MiB and stay there.

``vpdpbusd`` multiplies unsigned bytes by signed ones, so an input q in [-127, 127] is
stored as q + 128 and each output subtracts 128 * sum(q_w) (``corr``). The sum of products is
exact (|sum| < 2^24 for k <= 1024), so the result equals float32 math on the dequantised
inputs and weights (``round_rows_int8`` and ``fused_int8.round_int8``: the reference) up to
the rounding of two scale products.

The layout (``pack_vnni``): W[..., n, k] becomes int8[..., nb, k4, 16, 4] (blocks of 16
outputs, groups of 4 inputs, zero-padded), with sw float32[..., nb * 16] and corr
int32[..., nb * 16]. Where the CPU lacks VNNI, the same layout and quantisation run through
plain loops (``matmul_vnni_plain``).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from tunelab.models.fused_bf16 import _IVEC, _VEC, LANES, _f32_bits, _pointer, bits_as_f32

HAS_VNNI = bool(binding.get_host_cpu_features().get("avx512vnni", False))


class _I32x16(types.Type):
    def __init__(self):
        super().__init__(name="i32x16")


i32x16 = _I32x16()


@register_model(_I32x16)
class _I32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _IVEC)


@intrinsic
def _izeros(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_IVEC, [0] * LANES)

    return i32x16(), codegen


@intrinsic
def _dpbusd(typingctx, acc, x, W, idx):
    """acc + lane l's four products u8(x.byte[b]) * s8(W[idx + 4l + b]) (x: four unsigned
    bytes, broadcast; W int8, 1-d)."""

    def codegen(context, builder, sig, args):
        acc, x, W, idx = args
        w = builder.load(_pointer(context, builder, sig.args[2], W, idx, _IVEC), align=1)
        zero = ir.Constant(ir.IntType(32), 0)
        xv = builder.insert_element(ir.Constant(_IVEC, ir.Undefined), x, zero)
        undef = ir.Constant(_IVEC, ir.Undefined)
        xv = builder.shuffle_vector(xv, undef, ir.Constant(_IVEC, [0] * LANES))
        fnty = ir.FunctionType(_IVEC, [_IVEC, _IVEC, _IVEC])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(fn, [acc, xv, w])

    return i32x16(i32x16, types.uint32, W, types.intp), codegen


@intrinsic
def _store_scaled(typingctx, acc, corr, sw, o, sx, Z, r):
    """Z[r : r + 16] = (acc - corr[o : o + 16]) * sw[o : o + 16] * sx."""

    def codegen(context, builder, sig, args):
        acc, corr, sw, o, sx, Z, r = args
        c = builder.load(_pointer(context, builder, sig.args[1], corr, o, _IVEC), align=4)
        s = builder.load(_pointer(context, builder, sig.args[2], sw, o, _VEC), align=4)
        v = builder.sitofp(builder.sub(acc, c), _VEC)
        sv = builder.insert_element(
            ir.Constant(_VEC, ir.Undefined), sx, ir.Constant(ir.IntType(32), 0)
        )
        sv = builder.shuffle_vector(
            sv, ir.Constant(_VEC, ir.Undefined), ir.Constant(_IVEC, [0] * LANES)
        )
        z = builder.fmul(builder.fmul(v, s), sv)
        builder.store(z, _pointer(context, builder, sig.args[5], Z, r, _VEC), align=4)
        return context.get_dummy_value()

    return types.none(i32x16, corr, sw, types.intp, types.float32, Z, types.intp), codegen


@intrinsic
def _quantise16(typingctx, X, idx, s, Xb, byte):
    """Bytes byte .. byte + 15 of Xb (uint32, 1-d, as bytes) = X[idx : idx + 16] / s rounded
    to even, clamped to [-127, 127], plus 128 (X float32, 1-d)."""

    def codegen(context, builder, sig, args):
        X, idx, s, Xb, byte = args
        x = builder.load(_pointer(context, builder, sig.args[0], X, idx, _VEC), align=4)
        i32 = ir.IntType(32)
        sv = builder.insert_element(ir.Constant(_VEC, ir.Undefined), s, ir.Constant(i32, 0))
        sv = builder.shuffle_vector(
            sv, ir.Constant(_VEC, ir.Undefined), ir.Constant(_IVEC, [0] * LANES)
        )
        fnty = ir.FunctionType(_VEC, [_VEC])
        rint = cgutils.get_or_insert_function(builder.module, fnty, "llvm.rint.v16f32")
        q = builder.call(rint, [builder.fdiv(x, sv)])
        two = ir.FunctionType(_VEC, [_VEC, _VEC])
        lo = cgutils.get_or_insert_function(builder.module, two, "llvm.maxnum.v16f32")
        hi = cgutils.get_or_insert_function(builder.module, two, "llvm.minnum.v16f32")
        q = builder.call(
            hi,
            [
                builder.call(lo, [q, ir.Constant(_VEC, [-127.0] * LANES)]),
                ir.Constant(_VEC, [127.0] * LANES),
            ],
        )
        b = builder.add(builder.fptosi(q, _IVEC), ir.Constant(_IVEC, [128] * LANES))
        b = builder.trunc(b, ir.VectorType(ir.IntType(8), LANES))
        data = cgutils.create_struct_proxy(sig.args[3])(context, builder, value=Xb).data
        ptr = builder.gep(builder.bitcast(data, ir.IntType(8).as_pointer()), [byte])
        builder.store(
            b, builder.bitcast(ptr, ir.VectorType(ir.IntType(8), LANES).as_pointer()), align=1
        )
        return context.get_dummy_value()

    return types.none(X, types.intp, types.float32, Xb, types.intp), codegen


@numba.njit(cache=True, fastmath={"nnan", "ninf", "nsz", "reassoc"})
def _absmax(x):
    m = np.float32(0)
    for v in x:
        m = max(m, abs(v))
    return m


@numba.njit(cache=True)
def quantise_rows(X, Xb, k4, fixed):
    """Xb[j, :k4] = row j of X float32[m, k] as int8 + 128 in groups of four bytes (the
    first input in the lowest byte), padded with 128 (0); Xb[j, k4] = the row's scale's
    bits: ``fixed`` when > 0 (an input known to lie in [-1, 1]: the same scale however the
    row is cut across cores), else max |x| / 127. Sixteen inputs at a time; the division as
    the reference divides."""
    m, k = X.shape
    w = Xb.shape[1]
    Xf, Bf = X.reshape(-1), Xb.reshape(-1)
    for j in range(m):
        amax = _absmax(X[j]) if fixed == 0 else np.float32(0)
        s = fixed if fixed > 0 else (amax / np.float32(127) if amax > 0 else np.float32(1))
        base = j * w * 4  # the row's first byte in Xb
        i = 0
        while i + LANES <= k:
            _quantise16(Xf, j * k + i, s, Bf, base + i)
            i += LANES
        for g in range(i // 4, k4):  # the rest one group at a time
            word = np.uint32(0)
            for b in range(4):
                q = np.int32(0)
                if 4 * g + b < k:
                    q = np.int32(
                        min(max(np.rint(X[j, 4 * g + b] / s), np.float32(-127)), np.float32(127))
                    )
                word |= np.uint32(q + 128) << np.uint32(8 * b)
            Xb[j, g] = word
        Xb[j, k4] = _f32_bits(s)


@numba.njit(cache=True, inline="always")
def _pair(a0, a1, a2, a3, c0, c1, c2, c3, x, y, Wf, o, blk):
    """Four blocks' sums of two streams after one more group of four inputs."""
    a0, c0 = _dpbusd(a0, x, Wf, o), _dpbusd(c0, y, Wf, o)
    a1, c1 = _dpbusd(a1, x, Wf, o + blk), _dpbusd(c1, y, Wf, o + blk)
    a2, c2 = _dpbusd(a2, x, Wf, o + 2 * blk), _dpbusd(c2, y, Wf, o + 2 * blk)
    a3, c3 = _dpbusd(a3, x, Wf, o + 3 * blk), _dpbusd(c3, y, Wf, o + 3 * blk)
    return a0, a1, a2, a3, c0, c1, c2, c3


@numba.njit(cache=True, inline="always")
def _store4(a0, a1, a2, a3, corr, sw, o, sx, Zf, r):
    _store_scaled(a0, corr, sw, o, sx, Zf, r)
    _store_scaled(a1, corr, sw, o + LANES, sx, Zf, r + LANES)
    _store_scaled(a2, corr, sw, o + 2 * LANES, sx, Zf, r + 2 * LANES)
    _store_scaled(a3, corr, sw, o + 3 * LANES, sx, Zf, r + 3 * LANES)


@numba.njit(cache=True)
def matmul_vnni(X, W, sw, corr, fixed, Z, Xb):
    """Z[m, n] = q(X) @ (W * sw).T for W packed by ``pack_vnni`` (Z float32, C-contiguous;
    Xb uint32[>= m, >= k4 + 1] scratch; fixed: the inputs' scale, 0 for per row). Tiles of
    4 blocks x 2 streams (the blocks' weights stay in L1 from one pair to the next); a last
    odd stream runs 4 blocks alone."""
    m = X.shape[0]
    n = Z.shape[1]
    nb, k4 = W.shape[0], W.shape[1]
    quantise_rows(X, Xb, k4, fixed)
    Wf, Zf = W.reshape(-1), Z.reshape(-1)
    blk, step = k4 * 4 * LANES, 4 * LANES  # bytes per block, per group of a block
    full = n // LANES
    b = 0
    while b + 4 <= full:
        o = b * LANES
        j = 0
        while j + 2 <= m:
            a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = _izeros()
            for i in range(k4):
                x, y, p = Xb[j, i], Xb[j + 1, i], b * blk + i * step
                a0, a1, a2, a3, c0, c1, c2, c3 = _pair(
                    a0, a1, a2, a3, c0, c1, c2, c3, x, y, Wf, p, blk
                )
            _store4(a0, a1, a2, a3, corr, sw, o, bits_as_f32(Xb[j, k4]), Zf, j * n + o)
            _store4(c0, c1, c2, c3, corr, sw, o, bits_as_f32(Xb[j + 1, k4]), Zf, (j + 1) * n + o)
            j += 2
        if j < m:
            a0 = a1 = a2 = a3 = _izeros()
            for i in range(k4):
                x, p = Xb[j, i], b * blk + i * step
                a0, a1 = _dpbusd(a0, x, Wf, p), _dpbusd(a1, x, Wf, p + blk)
                a2, a3 = _dpbusd(a2, x, Wf, p + 2 * blk), _dpbusd(a3, x, Wf, p + 3 * blk)
            _store4(a0, a1, a2, a3, corr, sw, o, bits_as_f32(Xb[j, k4]), Zf, j * n + o)
        b += 4
    tail = np.empty(LANES, np.float32)
    while b < nb:  # the last blocks one at a time; a partial one through a scratch row
        for j in range(m):
            a0 = _izeros()
            for i in range(k4):
                a0 = _dpbusd(a0, Xb[j, i], Wf, b * blk + i * step)
            sx = bits_as_f32(Xb[j, k4])
            if b < full:
                _store_scaled(a0, corr, sw, b * LANES, sx, Zf, j * n + b * LANES)
            else:
                _store_scaled(a0, corr, sw, b * LANES, sx, tail, 0)
                for lane in range(n - b * LANES):
                    Z[j, b * LANES + lane] = tail[lane]
        b += 1


@numba.njit(cache=True)
def matmul_vnni_plain(X, W, sw, corr, fixed, Z, Xb):
    """matmul_vnni without the instruction: the same layout and quantisation in plain loops."""
    m = X.shape[0]
    n = Z.shape[1]
    nb, k4 = W.shape[0], W.shape[1]
    quantise_rows(X, Xb, k4, fixed)
    acc = np.empty(LANES, np.int32)
    for j in range(m):
        sx = bits_as_f32(Xb[j, k4])
        for b in range(nb):
            acc[:] = 0
            for g in range(k4):
                word = Xb[j, g]
                for t in range(4):
                    u = np.int32((word >> np.uint32(8 * t)) & np.uint32(255))
                    for lane in range(LANES):
                        acc[lane] += u * np.int32(W[b, g, lane, t])
            for lane in range(min(LANES, n - b * LANES)):
                o = b * LANES + lane
                Z[j, o] = np.float32(acc[lane] - corr[o]) * sw[o] * sx


MATMUL = matmul_vnni if HAS_VNNI else matmul_vnni_plain  # what ``fused.mm`` calls


GATE_SCALE = 1.0 / 127  # WaveNet's gate output lies in (-1, 1): a fixed scale


def _at_scale(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """x quantised to int8 at scale s (rounded to even, clamped to +-127) and back, as
    ``quantise_rows`` quantises."""
    return torch.round(x / s).clamp_(-127, 127) * s


def round_rows_int8(x: torch.Tensor) -> torch.Tensor:
    """x with each row quantised to int8 (scale max |x| / 127) and back: the inputs the int8
    matmuls multiply by (the reference models' ``round_input``)."""
    s = x.abs().amax(dim=-1, keepdim=True) / 127.0
    return _at_scale(x, torch.where(s > 0, s, torch.ones_like(s)))


def round_input_int8(x: torch.Tensor, site: str) -> torch.Tensor:
    """A reference model's int8 ``round_input``: "rows" per row, "gate" at GATE_SCALE (the
    1x1's input, cut by columns across cores), "post" as it is (int8 weights, float math)."""
    if site == "post":
        return x
    if site == "gate":
        return _at_scale(x, torch.tensor(GATE_SCALE, dtype=torch.float32))
    return round_rows_int8(x)


def pack_vnni(q: torch.Tensor, s: torch.Tensor, fixed: float = 0.0) -> tuple:
    """int8 values q[..., n, k] (any float dtype) and row scales s[..., n] -> (W int8[...,
    nb, k4, 16, 4], sw float32[..., nb * 16], corr int32[..., nb * 16], float32[1]: the
    inputs' fixed scale, 0 for per row) (module doc)."""
    q = q.detach().cpu().float()
    *lead, n, k = q.shape
    nb, k4 = -(-n // LANES), -(-k // 4)
    p = torch.zeros(*lead, nb * LANES, k4 * 4)
    p[..., :n, :k] = q
    sw = torch.ones(*lead, nb * LANES)
    sw[..., :n] = s.detach().cpu().float()
    corr = (128 * p.sum(-1)).to(torch.int32)
    w = p.to(torch.int8).numpy().reshape(*lead, nb, LANES, k4, 4)
    w = np.ascontiguousarray(np.moveaxis(w, -3, -2))
    sw, corr = np.ascontiguousarray(sw.numpy()), np.ascontiguousarray(corr.numpy())
    return w, sw, corr, np.array([fixed], np.float32)
