// Real-valued engine steps: 3-D L2 k-NN, row selection, first-layer edge max/min, pooling.
// Arithmetic contract in engine_float.hpp. Each kernel has a scalar reference and an AVX-512
// path (level Avx2 runs the scalar path: these steps are small next to the binary layers).
//
// Every product and sum of the contract is rounded on its own, as the training side computes
// it: the compiler must not contract a * b + c into a fused multiply-add (the AVX-512 functions
// are compiled for an ISA that has one). The only fused operations are the explicit std::fma /
// _mm512_fmadd_ps of BatchNorm, where PyTorch's kernel fuses too.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <cmath>
#include <cstring>
#include <utility>
#include <limits>
#include <new>
#include <vector>
#include <algorithm>
#include <atomic>

#include "bingnn_core.hpp"
#include "engine_float.hpp"

namespace bingnn {
namespace {

// The k best (distance, index) pairs of one query. Candidates arrive in increasing index
// order and are appended while strictly closer than the current k-th best (so a tie never
// displaces a smaller index); when the buffer holds 2k pairs it is cut back to the k best, which
// keeps the per-candidate cost constant instead of an insertion into a sorted list.
struct TopK {
    std::pair<float, int32_t>* buf;  // 2k slots
    int64_t k, m = 0;
    float worst = std::numeric_limits<float>::infinity();

    inline void push(float dist, int32_t idx) {
        if (!(dist < worst)) return;
        buf[m++] = {dist, idx};
        if (m == 2 * k) cut();
    }
    void cut() {
        std::nth_element(buf, buf + (k - 1), buf + m);  // pair order = (distance, index)
        m = k;
        worst = buf[k - 1].first;
        for (int64_t q = 0; q < k - 1; ++q) worst = std::max(worst, buf[q].first);
    }
    void finish(int32_t* out) {
        std::sort(buf, buf + m);
        for (int64_t q = 0; q < k; ++q) out[q] = buf[q].second;
    }
};

// 64-byte aligned allocator (aligned vector loads and stores of distance rows).
template <class T>
struct AlignedAlloc {
    using value_type = T;
    AlignedAlloc() = default;
    template <class U>
    AlignedAlloc(const AlignedAlloc<U>&) {}
    T* allocate(size_t n) {
        return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
    }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
    bool operator==(const AlignedAlloc&) const { return true; }
    bool operator!=(const AlignedAlloc&) const { return false; }
};

// Structure of arrays of one set: x0, x1, x2, |x|^2 (padded to 16 with far-away points that
// are never selected because they are skipped by index).
void to_soa(const float* x, int64_t n, float* soa, int64_t stride) {
    for (int64_t i = 0; i < n; ++i) {
        const float a = x[3 * i], b = x[3 * i + 1], c = x[3 * i + 2];
        soa[i] = a;
        soa[stride + i] = b;
        soa[2 * stride + i] = c;
        soa[3 * stride + i] = (a * a + b * b) + c * c;
    }
}

void knn3_queries_scalar(const float* soa, int64_t stride, int64_t n, int64_t q0, int64_t q1,
                         int64_t k, int32_t* idx, std::pair<float, int32_t>* cand) {
    const float *x0 = soa, *x1 = soa + stride, *x2 = soa + 2 * stride, *sq = soa + 3 * stride;
    for (int64_t i = q0; i < q1; ++i) {
        TopK top{cand, k};
        for (int64_t j = 0; j < n; ++j) {
            const float dot = (x0[i] * x0[j] + x1[i] * x1[j]) + x2[i] * x2[j];
            const float t = sq[i] + sq[j];
            float d = t - 2.0f * dot;
            if (d < 0.0f) d = 0.0f;
            top.push(d, static_cast<int32_t>(j));
        }
        top.finish(idx + i * k);
    }
}

#if BINGNN_X86
// AVX-512 selection of the k smallest of a row d[0..n) (64-byte aligned, padded to a multiple
// of 16 with +inf). One pass keeps 16 * A running minima (lane l of accumulator a covers the
// entries 16 b + l with b = a mod A); the k-th smallest finite group minimum, tau, bounds the
// k-th smallest entry from above (k groups, hence k entries, lie at or below it), so the answer
// is among {j : d_j <= tau}: usually little more than k candidates, then sorted by
// (value, index).
BINGNN_AVX512 void select_row_avx512(const float* dbuf, int64_t n, int64_t k, int32_t* out,
                                     std::pair<float, int32_t>* cand) {
    constexpr int kMaxAcc = 8;
    const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    const int64_t nb = (n + 15) / 16;
    const int64_t acc_n = std::min<int64_t>(kMaxAcc, nb);
    __m512 acc[kMaxAcc];
    for (int q = 0; q < kMaxAcc; ++q) acc[q] = inf;
    for (int64_t b = 0; b < nb; ++b)
        acc[b % acc_n] = _mm512_min_ps(acc[b % acc_n], _mm512_load_ps(dbuf + 16 * b));
    alignas(64) float mins[16 * kMaxAcc] = {};
    int64_t g = 0;
    for (int64_t q = 0; q < acc_n; ++q) {
        alignas(64) float tmp[16];
        _mm512_store_ps(tmp, acc[q]);
        for (int l = 0; l < 16; ++l)
            if (tmp[l] < std::numeric_limits<float>::infinity()) mins[g++] = tmp[l];
    }
    float tau = std::numeric_limits<float>::infinity();
    if (g >= k) {
        std::nth_element(mins, mins + (k - 1), mins + g);
        tau = mins[k - 1];
    }
    const __m512 tv = _mm512_set1_ps(tau);
    int64_t m = 0;
    for (int64_t b = 0; b < nb; ++b) {
        __mmask16 mask = _mm512_cmp_ps_mask(_mm512_load_ps(dbuf + 16 * b), tv, _CMP_LE_OQ);
        const int64_t valid = std::min<int64_t>(16, n - 16 * b);
        mask &= static_cast<__mmask16>((1u << valid) - 1u);
        while (mask) {  // few candidates: most blocks have none
            const int l = __builtin_ctz(mask);
            mask &= static_cast<__mmask16>(mask - 1);
            cand[m++] = {dbuf[16 * b + l], static_cast<int32_t>(16 * b + l)};
        }
    }
    if (m > k)
        std::partial_sort(cand, cand + k, cand + m);
    else
        std::sort(cand, cand + m);
    for (int64_t q = 0; q < k; ++q) out[q] = cand[q].second;
}

// AVX-512: the distances of a query in one vector pass (same operations as the scalar path),
// then select_row_avx512.
BINGNN_AVX512 void knn3_queries_avx512(const float* soa, int64_t stride, int64_t n, int64_t q0,
                                       int64_t q1, int64_t k, int32_t* idx, float* dbuf,
                                       std::pair<float, int32_t>* cand) {
    const float *x0 = soa, *x1 = soa + stride, *x2 = soa + 2 * stride, *sq = soa + 3 * stride;
    const __m512 two = _mm512_set1_ps(2.0f), zero = _mm512_setzero_ps();
    const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    const int64_t nb = (n + 15) / 16;
    for (int64_t i = q0; i < q1; ++i) {
        const __m512 a0 = _mm512_set1_ps(x0[i]), a1 = _mm512_set1_ps(x1[i]),
                     a2 = _mm512_set1_ps(x2[i]), s = _mm512_set1_ps(sq[i]);
        for (int64_t b = 0; b < nb; ++b) {
            const int64_t j0 = 16 * b;
            const __m512 dot = _mm512_add_ps(
                _mm512_add_ps(_mm512_mul_ps(a0, _mm512_loadu_ps(x0 + j0)),
                              _mm512_mul_ps(a1, _mm512_loadu_ps(x1 + j0))),
                _mm512_mul_ps(a2, _mm512_loadu_ps(x2 + j0)));
            const __m512 t = _mm512_add_ps(s, _mm512_loadu_ps(sq + j0));
            __m512 dv = _mm512_max_ps(_mm512_sub_ps(t, _mm512_mul_ps(two, dot)), zero);
            const int64_t valid = std::min<int64_t>(16, n - j0);
            dv = _mm512_mask_blend_ps(static_cast<__mmask16>((1u << valid) - 1u), inf, dv);
            _mm512_store_ps(dbuf + j0, dv);
        }
        select_row_avx512(dbuf, n, k, idx + i * k, cand);
    }
}
#endif

// ---- first layer: y_ij = u_j + v_i, per-node parts of the linear map on [x_j - x_i, x_i]

// Folded weights of the contract (engine_float.hpp): a (c, 3), d (c, 3), bias (c) or empty.
struct Layer0Weights {
    std::vector<float> a, d, bias;
};

Layer0Weights fold_layer0(const float* w, int64_t c, const float* s, const float* t) {
    Layer0Weights f;
    f.a.resize(static_cast<size_t>(3 * c));
    f.d.resize(static_cast<size_t>(3 * c));
    if (s != nullptr) f.bias.resize(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) {
        const float* wc = w + ch * 6;
        for (int q = 0; q < 3; ++q) {
            const float a = s != nullptr ? wc[q] * s[q] : wc[q];
            const float b = s != nullptr ? wc[3 + q] * s[3 + q] : wc[3 + q];
            f.a[ch * 3 + q] = a;
            f.d[ch * 3 + q] = b - a;
        }
        if (s != nullptr) {
            float acc = wc[0] * t[0];
            for (int q = 1; q < 6; ++q) acc = acc + wc[q] * t[q];
            f.bias[ch] = acc;
        }
    }
    return f;
}

// u (n, c) and v (n, c) of the points [p0, p1) of all sets (x is (sets * n, 3)).
void layer0_parts(const float* x, int64_t p0, int64_t p1, int64_t c, const Layer0Weights& f,
                  float* u, float* v) {
    const bool has_bias = !f.bias.empty();
    for (int64_t p = p0; p < p1; ++p) {
        const float x0 = x[3 * p], x1 = x[3 * p + 1], x2 = x[3 * p + 2];
        for (int64_t ch = 0; ch < c; ++ch) {
            const float* a = f.a.data() + ch * 3;
            const float* d = f.d.data() + ch * 3;
            u[p * c + ch] = (x0 * a[0] + x1 * a[1]) + x2 * a[2];
            const float vv = (x0 * d[0] + x1 * d[1]) + x2 * d[2];
            v[p * c + ch] = has_bias ? vv + f.bias[ch] : vv;
        }
    }
}

// Rounding is monotone, so max_j fl(u_j + v_i) = fl(max_j u_j + v_i): the extremes of u over
// the neighbours, then one addition.
void edge0_rows_scalar(const float* u, const float* v, int64_t p0, int64_t p1, int64_t n,
                       const int32_t* idx, int64_t k, int64_t c, float* ymax, float* ymin) {
    for (int64_t p = p0; p < p1; ++p) {
        const float* us = u + (p / n) * n * c;
        float* mx = ymax + p * c;
        float* mn = ymin + p * c;
        for (int64_t r = 0; r < k; ++r) {
            const float* uj = us + static_cast<int64_t>(idx[p * k + r]) * c;
            for (int64_t ch = 0; ch < c; ++ch) {
                if (r == 0 || uj[ch] > mx[ch]) mx[ch] = uj[ch];
                if (r == 0 || uj[ch] < mn[ch]) mn[ch] = uj[ch];
            }
        }
        for (int64_t ch = 0; ch < c; ++ch) {
            mx[ch] = mx[ch] + v[p * c + ch];
            mn[ch] = mn[ch] + v[p * c + ch];
        }
    }
}

#if BINGNN_X86
BINGNN_AVX512 void edge0_rows_avx512(const float* u, const float* v, int64_t p0, int64_t p1,
                                     int64_t n, const int32_t* idx, int64_t k, int64_t c,
                                     float* ymax, float* ymin) {
    for (int64_t p = p0; p < p1; ++p) {
        const float* us = u + (p / n) * n * c;
        for (int64_t cb = 0; cb < c; cb += 16) {
            const int64_t valid = std::min<int64_t>(16, c - cb);
            const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
            __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
            __m512 mn = _mm512_set1_ps(std::numeric_limits<float>::infinity());
            for (int64_t r = 0; r < k; ++r) {
                const __m512 uj = _mm512_maskz_loadu_ps(
                    keep, us + static_cast<int64_t>(idx[p * k + r]) * c + cb);
                mx = _mm512_max_ps(mx, uj);
                mn = _mm512_min_ps(mn, uj);
            }
            const __m512 vi = _mm512_maskz_loadu_ps(keep, v + p * c + cb);
            _mm512_mask_storeu_ps(ymax + p * c + cb, keep, _mm512_add_ps(mx, vi));
            _mm512_mask_storeu_ps(ymin + p * c + cb, keep, _mm512_add_ps(mn, vi));
        }
    }
}
#endif

// ---- embedding pooling: h = bn(prelu(alpha * y)), max and mean over the points

// PyTorch's CPU sum over a non-contiguous dimension (ATen's cascade sum, the order its
// vectorized outer reduction uses): rows are added into level 0; every 2^p rows (p =
// max(4, ceil(log2 n) / 4)) level 0 is folded into level 1, and so on up to 4 levels; at the
// end the levels are added back into level 0. Reproducing it makes the mean pooling bit-exact.
struct Cascade {
    int64_t power, step;
    explicit Cascade(int64_t n) {
        int64_t lg = 0;
        while ((int64_t{1} << lg) < n) ++lg;
        power = std::max<int64_t>(4, lg / 4);
        step = int64_t{1} << power;
    }
};

inline float pool_h(int32_t y, float alpha, float slope, const float* s, const float* t,
                    int64_t ch) {
    const float v = static_cast<float>(y) * alpha;
    const float p = v >= 0.0f ? v : v * slope;
    return s != nullptr ? std::fma(p, s[ch], t[ch]) : p;
}

void pool_set_scalar(const int32_t* y, int64_t n, int64_t c, const float* alpha,
                     const float* slope, const float* s, const float* t, float* hmax,
                     float* hmean) {
    const Cascade cas(n);
    std::vector<float> acc(static_cast<size_t>(4 * c), 0.0f);
    for (int64_t ch = 0; ch < c; ++ch) hmax[ch] = -std::numeric_limits<float>::infinity();
    auto add_row = [&](int64_t r) {
        for (int64_t ch = 0; ch < c; ++ch) {
            const float h = pool_h(y[r * c + ch], alpha[ch], slope[ch], s, t, ch);
            hmax[ch] = std::max(hmax[ch], h);
            acc[ch] += h;
        }
    };
    int64_t i = 0;
    while (i + cas.step <= n) {
        for (int64_t j = 0; j < cas.step; ++j, ++i) add_row(i);
        for (int64_t lv = 1; lv < 4; ++lv) {
            for (int64_t ch = 0; ch < c; ++ch) {
                acc[lv * c + ch] += acc[(lv - 1) * c + ch];
                acc[(lv - 1) * c + ch] = 0.0f;
            }
            if ((i & ((cas.step - 1) << (lv * cas.power))) != 0) break;
        }
    }
    for (; i < n; ++i) add_row(i);
    for (int64_t ch = 0; ch < c; ++ch) {
        float sum = acc[ch];
        for (int64_t lv = 1; lv < 4; ++lv) sum += acc[lv * c + ch];
        hmean[ch] = sum / static_cast<float>(n);
    }
}

#if BINGNN_X86
BINGNN_AVX512 inline void pool_row_avx512(const int32_t* yr, __mmask16 keep, __m512 va, __m512 vs,
                                          __m512 bs, __m512 bt, bool bn, __m512& mx,
                                          __m512& acc) {
    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(keep, yr)), va);
    const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ);
    __m512 h = _mm512_mask_blend_ps(pos, _mm512_mul_ps(v, vs), v);
    if (bn) h = _mm512_fmadd_ps(h, bs, bt);
    mx = _mm512_max_ps(mx, h);
    acc = _mm512_add_ps(acc, h);
}

BINGNN_AVX512 void pool_set_avx512(const int32_t* y, int64_t n, int64_t c, const float* alpha,
                                   const float* slope, const float* s, const float* t,
                                   float* hmax, float* hmean) {
    const Cascade cas(n);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t cb = 0; cb < c; cb += 16) {
        const int64_t valid = std::min<int64_t>(16, c - cb);
        const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
        const __m512 va = _mm512_maskz_loadu_ps(keep, alpha + cb);
        const __m512 vs = _mm512_maskz_loadu_ps(keep, slope + cb);
        const __m512 bs = s != nullptr ? _mm512_maskz_loadu_ps(keep, s + cb) : zero;
        const __m512 bt = s != nullptr ? _mm512_maskz_loadu_ps(keep, t + cb) : zero;
        __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
        __m512 acc[4] = {zero, zero, zero, zero};
        const bool bn = s != nullptr;
        int64_t i = 0;
        while (i + cas.step <= n) {
            for (int64_t j = 0; j < cas.step; ++j, ++i)
                pool_row_avx512(y + i * c + cb, keep, va, vs, bs, bt, bn, mx, acc[0]);
            for (int64_t lv = 1; lv < 4; ++lv) {
                acc[lv] = _mm512_add_ps(acc[lv], acc[lv - 1]);
                acc[lv - 1] = zero;
                if ((i & ((cas.step - 1) << (lv * cas.power))) != 0) break;
            }
        }
        for (; i < n; ++i) pool_row_avx512(y + i * c + cb, keep, va, vs, bs, bt, bn, mx, acc[0]);
        __m512 sum = acc[0];
        for (int lv = 1; lv < 4; ++lv) sum = _mm512_add_ps(sum, acc[lv]);
        _mm512_mask_storeu_ps(hmax + cb, keep, mx);
        _mm512_mask_storeu_ps(hmean + cb, keep,
                              _mm512_div_ps(sum, _mm512_set1_ps(static_cast<float>(n))));
    }
}
#endif

// ---- RF layers >= 1: edge bits from per-channel predicates on real differences

// bit_ch = negate_ch XOR (d >= hi_ch OR d <= lo_ch) with d = h_j[ch] - h_i[ch] (float32), packed.
void rf_edge_bits_scalar(const float* hj, const float* hi_pt, int64_t c, const float* lo,
                         const float* hi, const uint8_t* negate, uint64_t* e) {
    for (int64_t q = 0; q < n_words(c); ++q) e[q] = 0;
    for (int64_t ch = 0; ch < c; ++ch) {
        const float d = hj[ch] - hi_pt[ch];
        const bool bit = (negate[ch] != 0) != (d >= hi[ch] || d <= lo[ch]);
        if (bit) e[ch / 64] |= uint64_t{1} << (ch % 64);
    }
}

void rf_rows_scalar(const float* h, int64_t p0, int64_t p1, int64_t n, int64_t c,
                    const int32_t* idx, int64_t k, const float* lo, const float* hi,
                    const uint8_t* negate, const uint64_t* self_bits, const uint64_t* w_rel,
                    const uint64_t* w_self, int64_t c_out, int32_t* ymax, int32_t* ymin) {
    const int64_t w = n_words(c);
    std::vector<uint64_t> e(static_cast<size_t>(w));
    std::vector<int32_t> ys(static_cast<size_t>(c_out));
    for (int64_t p = p0; p < p1; ++p) {
        const float* hs = h + (p / n) * n * c;
        const int64_t i = p % n;
        for (int64_t o = 0; o < c_out; ++o) {
            int64_t pc = 0;
            for (int64_t q = 0; q < w; ++q)
                pc += __builtin_popcountll(self_bits[p * w + q] ^ w_self[o * w + q]);
            ys[o] = static_cast<int32_t>(c - 2 * pc);
        }
        for (int64_t r = 0; r < k; ++r) {
            rf_edge_bits_scalar(hs + idx[p * k + r] * c, hs + i * c, c, lo, hi, negate, e.data());
            for (int64_t o = 0; o < c_out; ++o) {
                int64_t pc = 0;
                for (int64_t q = 0; q < w; ++q) pc += __builtin_popcountll(e[q] ^ w_rel[o * w + q]);
                const auto y = static_cast<int32_t>(c - 2 * pc) + ys[o];
                if (r == 0 || y > ymax[p * c_out + o]) ymax[p * c_out + o] = y;
                if (r == 0 || y < ymin[p * c_out + o]) ymin[p * c_out + o] = y;
            }
        }
    }
}

#if BINGNN_X86
// Popcount dot products of one packed row against 8 weight rows at a time (weights in blocks8
// layout: word-major within a block of 8 rows), as int64 lanes: c - 2 * popcount(row ^ w).
BINGNN_AVX512 inline __m512i dot8_avx512(const uint64_t* row, int64_t w, const uint64_t* blk,
                                         int64_t c) {
    __m512i acc = _mm512_setzero_si512();
    for (int64_t q = 0; q < w; ++q)
        acc = _mm512_add_epi64(
            acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                     _mm512_set1_epi64(static_cast<long long>(row[q])),
                     _mm512_loadu_si512(blk + q * 8))));
    return _mm512_sub_epi64(_mm512_set1_epi64(c), _mm512_slli_epi64(acc, 1));
}

BINGNN_AVX512 void rf_rows_avx512(const float* h, int64_t p0, int64_t p1, int64_t n, int64_t c,
                                  const int32_t* idx, int64_t k, const float* lo,
                                  const float* hi, const uint8_t* negate,
                                  const uint64_t* self_bits, const uint64_t* rel_blocks,
                                  const uint64_t* self_blocks, int64_t c_out, int32_t* ymax,
                                  int32_t* ymin) {
    const int64_t w = n_words(c), nblk = (c_out + 7) / 8;
    std::vector<uint64_t> e(static_cast<size_t>(w));
    // Per block of 8 outputs: self part, running max and min (int64 lanes, 64-byte aligned).
    std::vector<int64_t, AlignedAlloc<int64_t>> ys(static_cast<size_t>(8 * nblk)),
        mx(static_cast<size_t>(8 * nblk)), mn(static_cast<size_t>(8 * nblk));
    for (int64_t p = p0; p < p1; ++p) {
        const float* hs = h + (p / n) * n * c;
        const float* hi_pt = hs + (p % n) * c;
        for (int64_t b = 0; b < nblk; ++b) {
            _mm512_store_si512(ys.data() + 8 * b,
                               dot8_avx512(self_bits + p * w, w, self_blocks + b * w * 8, c));
            _mm512_store_si512(mx.data() + 8 * b,
                               _mm512_set1_epi64(std::numeric_limits<int64_t>::min()));
            _mm512_store_si512(mn.data() + 8 * b,
                               _mm512_set1_epi64(std::numeric_limits<int64_t>::max()));
        }
        for (int64_t r = 0; r < k; ++r) {
            const float* hj = hs + idx[p * k + r] * c;
            for (int64_t q = 0; q < w; ++q) e[q] = 0;
            for (int64_t ch = 0; ch < c; ch += 16) {
                const int64_t valid = std::min<int64_t>(16, c - ch);
                const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
                const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(keep, hj + ch),
                                               _mm512_maskz_loadu_ps(keep, hi_pt + ch));
                const __mmask16 out =
                    _mm512_cmp_ps_mask(d, _mm512_maskz_loadu_ps(keep, hi + ch), _CMP_GE_OQ) |
                    _mm512_cmp_ps_mask(d, _mm512_maskz_loadu_ps(keep, lo + ch), _CMP_LE_OQ);
                const __mmask16 neg = _mm512_test_epi32_mask(
                    _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(keep, negate + ch)),
                    _mm512_set1_epi32(1));
                const auto bits = static_cast<uint64_t>((out ^ neg) & keep);
                e[ch / 64] |= bits << (ch % 64);
            }
            for (int64_t b = 0; b < nblk; ++b) {
                const __m512i y =
                    _mm512_add_epi64(dot8_avx512(e.data(), w, rel_blocks + b * w * 8, c),
                                     _mm512_load_si512(ys.data() + 8 * b));
                _mm512_store_si512(mx.data() + 8 * b,
                                   _mm512_max_epi64(_mm512_load_si512(mx.data() + 8 * b), y));
                _mm512_store_si512(mn.data() + 8 * b,
                                   _mm512_min_epi64(_mm512_load_si512(mn.data() + 8 * b), y));
            }
        }
        for (int64_t b = 0; b < nblk; ++b) {
            const int64_t valid = std::min<int64_t>(8, c_out - 8 * b);
            const __mmask8 keep = static_cast<__mmask8>((1u << valid) - 1u);
            _mm512_mask_cvtepi64_storeu_epi32(ymax + p * c_out + 8 * b, keep,
                                              _mm512_load_si512(mx.data() + 8 * b));
            _mm512_mask_cvtepi64_storeu_epi32(ymin + p * c_out + 8 * b, keep,
                                              _mm512_load_si512(mn.data() + 8 * b));
        }
    }
}
#endif

}  // namespace

void rf_edge_minmax(const float* h, int64_t sets, int64_t n, int64_t c, const int32_t* idx,
                    int64_t k, const float* lo, const float* hi, const uint8_t* negate,
                    const uint64_t* self_bits, const uint64_t* w_rel, const uint64_t* w_self,
                    int64_t c_out, int32_t* ymax, int32_t* ymin, int num_threads) {
    if (sets == 0 || n == 0 || c_out == 0) return;
    const Level level = active_level();
    const int64_t w = n_words(c);
    const int64_t grain = std::max<int64_t>(8, 2048 / std::max<int64_t>(1, k * c_out / 8));
#if BINGNN_X86
    if (level == Level::Avx512) {
        const std::vector<uint64_t> rel_blocks = blocks8(w_rel, c_out, w);
        const std::vector<uint64_t> self_blocks = blocks8(w_self, c_out, w);
        parallel_for(sets * n, num_threads, grain, [&](int64_t p0, int64_t p1) {
            rf_rows_avx512(h, p0, p1, n, c, idx, k, lo, hi, negate, self_bits,
                           rel_blocks.data(), self_blocks.data(), c_out, ymax, ymin);
        });
        return;
    }
#endif
    parallel_for(sets * n, num_threads, grain, [&](int64_t p0, int64_t p1) {
        rf_rows_scalar(h, p0, p1, n, c, idx, k, lo, hi, negate, self_bits, w_rel, w_self, c_out,
                       ymax, ymin);
    });
}

void embed_pool(const int32_t* y, int64_t sets, int64_t n, int64_t c, const float* alpha,
                const float* slope, const float* bn_scale, const float* bn_shift, float* out,
                int num_threads) {
    if (sets == 0 || n == 0) return;
    const Level level = active_level();
    parallel_for(sets, num_threads, 1, [&](int64_t s0, int64_t s1) {
        for (int64_t q = s0; q < s1; ++q) {
            float* o = out + q * 2 * c;
#if BINGNN_X86
            if (level == Level::Avx512) {
                pool_set_avx512(y + q * n * c, n, c, alpha, slope, bn_scale, bn_shift, o, o + c);
                continue;
            }
#endif
            pool_set_scalar(y + q * n * c, n, c, alpha, slope, bn_scale, bn_shift, o, o + c);
        }
    });
}

bool table_minmax(const int32_t* ymax, const int32_t* ymin, int64_t rows, int64_t c,
                  const float* table, int64_t n_bits, const uint8_t* use_min, float* out,
                  int num_threads) {
    // Two table reads per value: gather-bound, so one portable loop serves every CPU (no
    // dispatch level would change its speed much).
    if (rows == 0 || c == 0) return true;
    const int64_t cols = n_bits + 1;
    std::atomic<bool> ok{true};
    parallel_for(rows, num_threads, std::max<int64_t>(1, 4096 / c), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const int32_t* hi = ymax + r * c;
            const int32_t* lo = ymin + r * c;
            float* o = out + r * c;
            for (int64_t q = 0; q < c; ++q) {
                const int64_t ia = static_cast<int64_t>(hi[q]) + n_bits;
                const int64_t ib = static_cast<int64_t>(lo[q]) + n_bits;
                if (ia < 0 || ia > 2 * n_bits || (ia & 1) || ib < 0 || ib > 2 * n_bits ||
                    (ib & 1)) {
                    ok.store(false, std::memory_order_relaxed);
                    return;
                }
                const float a = table[q * cols + ia / 2], b = table[q * cols + ib / 2];
                o[q] = use_min[q] ? std::min(a, b) : std::max(a, b);
            }
        }
    });
    return ok.load();
}

void l2_knn3(const float* x, int64_t sets, int64_t n, int64_t k, int32_t* idx, int num_threads) {
    if (sets == 0 || n == 0) return;
    const Level level = active_level();
    const int64_t stride = (n + 15) / 16 * 16;
    // Work is split over (set, block of queries) so one large set still uses every thread.
    const int64_t qblock = 64, nqb = (n + qblock - 1) / qblock;
    std::vector<float> soa(static_cast<size_t>(sets * 4 * stride), 0.0f);
    for (int64_t s = 0; s < sets; ++s) to_soa(x + s * n * 3, n, soa.data() + s * 4 * stride, stride);
    parallel_for(sets * nqb, num_threads, 1, [&](int64_t b0, int64_t b1) {
        std::vector<std::pair<float, int32_t>> cand(static_cast<size_t>(2 * k));
        // AVX-512 path: distances of one query, and candidate buffers (up to every point).
        std::vector<float, AlignedAlloc<float>> dbuf(static_cast<size_t>(stride));
        std::vector<std::pair<float, int32_t>> big(static_cast<size_t>(stride));
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t s = b / nqb, q0 = (b % nqb) * qblock, q1 = std::min(n, q0 + qblock);
            const float* base = soa.data() + s * 4 * stride;
            int32_t* out = idx + s * n * k;
#if BINGNN_X86
            if (level == Level::Avx512) {
                knn3_queries_avx512(base, stride, n, q0, q1, k, out, dbuf.data(), big.data());
                continue;
            }
#endif
            knn3_queries_scalar(base, stride, n, q0, q1, k, out, cand.data());
        }
    });
}

void select_k_rows(const float* d, int64_t rows, int64_t m, int64_t k, int32_t* idx,
                   int num_threads) {
    if (rows == 0 || m == 0) return;
    const Level level = active_level();
    const int64_t stride = (m + 15) / 16 * 16;
    parallel_for(rows, num_threads, std::max<int64_t>(1, 65536 / stride), [&](int64_t r0,
                                                                              int64_t r1) {
        std::vector<std::pair<float, int32_t>> cand(
            static_cast<size_t>(std::max(stride, 2 * k)));
        std::vector<float, AlignedAlloc<float>> dbuf(static_cast<size_t>(stride),
                                                     std::numeric_limits<float>::infinity());
        for (int64_t r = r0; r < r1; ++r) {
            const float* row = d + r * m;
#if BINGNN_X86
            if (level == Level::Avx512) {
                std::memcpy(dbuf.data(), row, static_cast<size_t>(m) * sizeof(float));
                select_row_avx512(dbuf.data(), m, k, idx + r * k, cand.data());
                continue;
            }
#endif
            TopK top{cand.data(), k};
            for (int64_t j = 0; j < m; ++j) top.push(row[j], static_cast<int32_t>(j));
            top.finish(idx + r * k);
        }
    });
}

void edge_conv0_minmax(const float* x, int64_t sets, int64_t n, const int32_t* idx, int64_t k,
                       const float* weight, int64_t c, const float* bn_scale,
                       const float* bn_shift, float* ymax, float* ymin, int num_threads) {
    if (sets == 0 || n == 0 || c == 0) return;
    const Level level = active_level();
    const Layer0Weights f = fold_layer0(weight, c, bn_scale, bn_shift);
    const int64_t points = sets * n;
    std::vector<float> u(static_cast<size_t>(points * c)), v(static_cast<size_t>(points * c));
    parallel_for(points, num_threads, std::max<int64_t>(16, 8192 / c), [&](int64_t p0,
                                                                          int64_t p1) {
        layer0_parts(x, p0, p1, c, f, u.data(), v.data());
    });
    const int64_t grain = std::max<int64_t>(16, 4096 / std::max<int64_t>(1, k * c / 16));
#if BINGNN_X86
    if (level == Level::Avx512) {
        parallel_for(points, num_threads, grain, [&](int64_t p0, int64_t p1) {
            edge0_rows_avx512(u.data(), v.data(), p0, p1, n, idx, k, c, ymax, ymin);
        });
        return;
    }
#endif
    parallel_for(points, num_threads, grain, [&](int64_t p0, int64_t p1) {
        edge0_rows_scalar(u.data(), v.data(), p0, p1, n, idx, k, c, ymax, ymin);
    });
}

}  // namespace bingnn
