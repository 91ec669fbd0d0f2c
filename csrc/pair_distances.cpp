// Distances between every point and its listed neighbours, for the LSP loss
// (bingnn/distill/lsp.py), and their backward: pair by pair, so no (B, N, N) matrix or
// (B, N, K, C) gather is built. A scalar reference and an AVX-512 path with the same order of
// float32 operations (16 lane-strided partial sums, combined in a fixed order), so both give
// equal bits and the result does not depend on the thread count.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <algorithm>
#include <cstring>

#include "bingnn_core.hpp"
#include "train_float.hpp"

namespace bingnn {
namespace {

// The 16 partial sums in a fixed pairwise order.
inline float combine16(const float* p) {
    float a[8];
    for (int l = 0; l < 8; ++l) a[l] = p[l] + p[l + 8];
    for (int l = 0; l < 4; ++l) a[l] = a[l] + a[l + 4];
    for (int l = 0; l < 2; ++l) a[l] = a[l] + a[l + 2];
    return a[0] + a[1];
}

float pair_scalar(const float* xi, const float* xj, int64_t c, int mode) {
    float part[16] = {0.0f};
    for (int64_t ch = 0; ch < c; ++ch) {
        float v;
        if (mode == 0) {
            const float d = xi[ch] - xj[ch];
            v = d * d;
        } else {
            v = xi[ch] * xj[ch];
        }
        part[ch % 16] = part[ch % 16] + v;
    }
    return combine16(part);
}

// gi += a * (mode 0: xi - xj, mode 1: xj), gj += b * (mode 0: xi - xj, mode 1: xi).
void pair_grad_scalar(const float* xi, const float* xj, int64_t c, int mode, float a, float b,
                      float* gi, float* gj) {
    for (int64_t ch = 0; ch < c; ++ch) {
        if (mode == 0) {
            const float d = xi[ch] - xj[ch];
            gi[ch] = gi[ch] + a * d;
            gj[ch] = gj[ch] + b * d;
        } else {
            gi[ch] = gi[ch] + a * xj[ch];
            gj[ch] = gj[ch] + b * xi[ch];
        }
    }
}

#if BINGNN_X86
BINGNN_AVX512 float pair_avx512(const float* xi, const float* xj, int64_t c, int mode) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t ch = 0; ch < c; ch += 16) {
        const __mmask16 keep = lanes16(c - ch);
        const __m512 a = _mm512_maskz_loadu_ps(keep, xi + ch);
        const __m512 b = _mm512_maskz_loadu_ps(keep, xj + ch);
        __m512 v;
        if (mode == 0) {
            const __m512 d = _mm512_sub_ps(a, b);
            v = _mm512_mul_ps(d, d);
        } else {
            v = _mm512_mul_ps(a, b);
        }
        acc = _mm512_add_ps(acc, v);  // masked-off lanes add +0, as the scalar loop adds none
    }
    alignas(64) float part[16];
    _mm512_store_ps(part, acc);
    return combine16(part);
}

BINGNN_AVX512 void pair_grad_avx512(const float* xi, const float* xj, int64_t c, int mode,
                                    float a, float b, float* gi, float* gj) {
    const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    for (int64_t ch = 0; ch < c; ch += 16) {
        const __mmask16 keep = lanes16(c - ch);
        const __m512 pi = _mm512_maskz_loadu_ps(keep, xi + ch);
        const __m512 pj = _mm512_maskz_loadu_ps(keep, xj + ch);
        const __m512 ui = mode == 0 ? _mm512_sub_ps(pi, pj) : pj;
        const __m512 uj = mode == 0 ? ui : pi;
        _mm512_mask_storeu_ps(gi + ch, keep,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(keep, gi + ch),
                                            _mm512_mul_ps(va, ui)));
        _mm512_mask_storeu_ps(gj + ch, keep,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(keep, gj + ch),
                                            _mm512_mul_ps(vb, uj)));
    }
}
#endif

}  // namespace

void pair_distances(const float* x, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                    int64_t k, int mode, float* out, int num_threads) {
    const bool vec = active_level() == Level::Avx512;
    parallel_for(sets * n, num_threads, std::max<int64_t>(16, 4096 / std::max<int64_t>(1, k * c)),
                 [&](int64_t p0, int64_t p1) {
                     for (int64_t p = p0; p < p1; ++p) {
                         const float* xi = x + p * c;
                         const float* xs = x + (p / n) * n * c;
                         for (int64_t r = 0; r < k; ++r) {
                             const float* xj = xs + idx[p * k + r] * c;
#if BINGNN_X86
                             if (vec) {
                                 out[p * k + r] = pair_avx512(xi, xj, c, mode);
                                 continue;
                             }
#endif
                             out[p * k + r] = pair_scalar(xi, xj, c, mode);
                         }
                     }
                 });
}

void pair_distances_backward(const float* x, int64_t sets, int64_t n, int64_t c,
                             const int64_t* idx, int64_t k, int mode, const float* g, float* gx,
                             int num_threads) {
    const bool vec = active_level() == Level::Avx512;
    // A neighbour's gradient row is written by every point that lists it: one set per task.
    parallel_for(sets, num_threads, 1, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s) {
            float* gs = gx + s * n * c;
            std::memset(gs, 0, static_cast<size_t>(n * c) * sizeof(float));
            const float* xs = x + s * n * c;
            for (int64_t i = 0; i < n; ++i) {
                const int64_t p = s * n + i;
                for (int64_t r = 0; r < k; ++r) {
                    const float gv = g[p * k + r];
                    if (gv == 0.0f) continue;  // masked pairs (repeats in a neighbour union)
                    const int64_t j = idx[p * k + r];
                    const float a = mode == 0 ? 2.0f * gv : gv;
                    const float b = mode == 0 ? -a : gv;
#if BINGNN_X86
                    if (vec) {
                        pair_grad_avx512(xs + i * c, xs + j * c, c, mode, a, b, gs + i * c,
                                         gs + j * c);
                        continue;
                    }
#endif
                    pair_grad_scalar(xs + i * c, xs + j * c, c, mode, a, b, gs + i * c,
                                     gs + j * c);
                }
            }
        }
    });
}

}  // namespace bingnn
