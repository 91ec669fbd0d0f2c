// Row-wise float32 steps shared by the graph kernels (graph_aggregate.cpp, graph_node.cpp):
// the affine epilogue of a node row, written as plain loops that the compiler vectorises with
// whatever ISA the calling function is compiled for (the dispatch wrappers carry the target
// attributes; these helpers are always inlined into them). Every loop does one IEEE operation
// per element, in the order of graph_kernels.hpp, and the files that include this header
// compile with floating-point contraction off, so every ISA gives the same bits.
#pragma once

#include <cmath>
#include <cstdint>

#include "graph_kernels.hpp"

#if defined(__GNUC__)
#define BINGNN_INLINE inline __attribute__((always_inline))
#else
#define BINGNN_INLINE inline
#endif

namespace bingnn {
namespace rows {

template <class T>
BINGNN_INLINE void to_float(const T* __restrict x, int64_t c, float* __restrict v) {
    for (int64_t j = 0; j < c; ++j) v[j] = static_cast<float>(x[j]);
}

// v = ((v * rs) + bias) * alpha, each step when given (rs is per row, bias/alpha per channel).
BINGNN_INLINE void scale_shift(float* __restrict v, int64_t c, const float* rs,
                               const float* __restrict bias, const float* __restrict alpha) {
    if (rs) {
        const float s = *rs;
        for (int64_t j = 0; j < c; ++j) v[j] = v[j] * s;
    }
    if (bias)
        for (int64_t j = 0; j < c; ++j) v[j] = v[j] + bias[j];
    if (alpha)
        for (int64_t j = 0; j < c; ++j) v[j] = v[j] * alpha[j];
}

BINGNN_INLINE void add_into(float* __restrict o, const float* __restrict v, int64_t c) {
    for (int64_t j = 0; j < c; ++j) o[j] = o[j] + v[j];
}

BINGNN_INLINE void prelu(float* __restrict o, int64_t c, const float* __restrict slope) {
    for (int64_t j = 0; j < c; ++j) {
        const float neg = o[j] * slope[j];
        o[j] = o[j] >= 0.0f ? o[j] : neg;
    }
}

// One affine term of row r as float32 into v (scratch of c floats).
BINGNN_INLINE void term_row(const AffineTerm& t, int64_t r, int64_t c, float* __restrict v) {
    const int64_t at = r * (t.ld ? t.ld : c);
    switch (t.elem) {
        case Elem::I8:
            to_float(static_cast<const int8_t*>(t.x) + at, c, v);
            break;
        case Elem::I16:
            to_float(static_cast<const int16_t*>(t.x) + at, c, v);
            break;
        case Elem::I32:
            to_float(static_cast<const int32_t*>(t.x) + at, c, v);
            break;
        default:
            to_float(static_cast<const float*>(t.x) + at, c, v);
            break;
    }
    scale_shift(v, c, t.row_scale ? t.row_scale + r : nullptr, t.bias, t.alpha);
}

// The end of a row whose first term is already in o: o = ((o + t0_bias) * t0_alpha), plus the
// second term, plus bias, then PReLU (each when given). `v` is scratch of c floats.
BINGNN_INLINE void finish(float* __restrict o, int64_t r, int64_t c, const RowEpilogue& ep,
                          float* __restrict v) {
    scale_shift(o, c, nullptr, ep.t0_bias, ep.t0_alpha);
    if (ep.second.x) {
        term_row(ep.second, r, c, v);
        add_into(o, v, c);
    }
    if (ep.bias)
        for (int64_t j = 0; j < c; ++j) o[j] = o[j] + ep.bias[j];
    if (ep.slope) prelu(o, c, ep.slope);
}

// Packed signs of one row (see SignMode) into words[0 .. ceil(c / 64)).
BINGNN_INLINE void pack_row(const float* __restrict o, int64_t c, const SignOutput& ro,
                            uint64_t* __restrict words) {
    const int64_t nw = (c + 63) / 64;
    for (int64_t q = 0; q < nw; ++q) words[q] = 0;
    if (ro.sign == SignMode::Threshold) {
        for (int64_t j = 0; j < c; ++j) {
            const bool bit = ((o[j] >= ro.hi[j]) || (o[j] <= ro.lo[j])) != (ro.negate[j] != 0);
            words[j / 64] |= static_cast<uint64_t>(bit) << (j % 64);
        }
        return;
    }
    const float m = ro.sign == SignMode::Mean ? aten_row_sum(o, c) / static_cast<float>(c)
                                              : 0.0f;
    for (int64_t j = 0; j < c; ++j)
        words[j / 64] |= static_cast<uint64_t>(o[j] >= m) << (j % 64);
}

// Bi-GCN's node scale of one row: ATen's sum of |centre(x)| / c; BatchNorm as an explicit fma
// (one rounding). `a` is c floats of scratch.
BINGNN_INLINE float node_scale_row(const float* __restrict x, int64_t c, Centering mode,
                                   const float* __restrict s, const float* __restrict t,
                                   float* __restrict a) {
    if (mode == Centering::BatchNorm) {
        for (int64_t j = 0; j < c; ++j) a[j] = std::fabs(std::fma(x[j], s[j], t[j]));
    } else if (mode == Centering::Mean) {
        const float m = aten_row_sum(x, c) / static_cast<float>(c);
        for (int64_t j = 0; j < c; ++j) a[j] = std::fabs(x[j] - m);
    } else {
        for (int64_t j = 0; j < c; ++j) a[j] = std::fabs(x[j]);
    }
    return aten_row_sum(a, c) / static_cast<float>(c);
}

// The plain packer of emit: pack_row.
struct PackRow {
    BINGNN_INLINE void operator()(const float* o, int64_t c, const SignOutput& so,
                                  uint64_t* words) const {
        pack_row(o, c, so, words);
    }
};

// Writes the bits and the node scale of finished row r (the float row was written in place
// when ro.out is set). `a` is c floats of scratch. `pack` packs a row's signs as pack_row
// does (an ISA's own packer may replace it; it must give the same bits).
template <class Pack = PackRow>
BINGNN_INLINE void emit(const float* o, int64_t r, int64_t c, const RowOutput& ro, float* a,
                        Pack pack = Pack{}) {
    for (const SignOutput& so : ro.signs)
        if (so.bits) pack(o, c, so, so.bits + r * ((c + 63) / 64));
    if (ro.beta) ro.beta[r] = node_scale_row(o, c, ro.scale, ro.bn_scale, ro.bn_shift, a);
}

}  // namespace rows
}  // namespace bingnn
