// Training-side kernels of the fast EdgeConv paths (train_float.hpp): neighbour extremes,
// transposed neighbour sums, and the statistics of a PReLU over edges with their backward.
// Each kernel has a scalar reference and an AVX-512 path (level Avx2 runs the scalar path).
// Work is split into fixed blocks; per-block partial sums are combined in block order, so the
// results do not depend on the thread count.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "bingnn_core.hpp"
#include "train_float.hpp"

namespace bingnn {
namespace {

constexpr int64_t kStatRows = 64;  // rows per block of the statistics' partial sums

inline const float* nbr_row(const float* src, const int64_t* idx, int64_t p, int64_t n,
                            int64_t k, int64_t c, int64_t r) {
    if (idx == nullptr) return src + (p * k + r) * c;
    return src + ((p / n) * n + idx[p * k + r]) * c;
}

// ---- neighbour extremes

void extremes_scalar(const float* src, int64_t p0, int64_t p1, int64_t n, int64_t c,
                     const int64_t* idx, int64_t k, float* mx, int64_t* rmx, float* mn,
                     int64_t* rmn, float* sum) {
    for (int64_t p = p0; p < p1; ++p) {
        float* hx = mx + p * c;
        float* lx = mn + p * c;
        int64_t* rh = rmx + p * c;
        int64_t* rl = rmn + p * c;
        float* sm = sum != nullptr ? sum + p * c : nullptr;
        const float* row0 = nbr_row(src, idx, p, n, k, c, 0);
        for (int64_t ch = 0; ch < c; ++ch) {
            hx[ch] = lx[ch] = row0[ch];
            rh[ch] = rl[ch] = 0;
            if (sm != nullptr) sm[ch] = row0[ch];
        }
        for (int64_t r = 1; r < k; ++r) {
            const float* row = nbr_row(src, idx, p, n, k, c, r);
            for (int64_t ch = 0; ch < c; ++ch) {
                const float v = row[ch];
                const bool nan_v = std::isnan(v);
                if (v > hx[ch] || (nan_v && !std::isnan(hx[ch]))) {
                    hx[ch] = v;
                    rh[ch] = r;
                }
                if (v < lx[ch] || (nan_v && !std::isnan(lx[ch]))) {
                    lx[ch] = v;
                    rl[ch] = r;
                }
                if (sm != nullptr) sm[ch] = sm[ch] + v;
            }
        }
    }
}

#if BINGNN_X86
BINGNN_AVX512 inline void store_ranks(int64_t* out, __m512i r32, __mmask16 keep) {
    _mm512_mask_storeu_epi64(out, static_cast<__mmask8>(keep & 0xFF),
                             _mm512_cvtepi32_epi64(_mm512_castsi512_si256(r32)));
    _mm512_mask_storeu_epi64(out + 8, static_cast<__mmask8>(keep >> 8),
                             _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(r32, 1)));
}

BINGNN_AVX512 void extremes_avx512(const float* src, int64_t p0, int64_t p1, int64_t n,
                                   int64_t c, const int64_t* idx, int64_t k, float* mx,
                                   int64_t* rmx, float* mn, int64_t* rmn, float* sum) {
    for (int64_t p = p0; p < p1; ++p) {
        for (int64_t cb = 0; cb < c; cb += 16) {
            const int64_t valid = std::min<int64_t>(16, c - cb);
            const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(keep, nbr_row(src, idx, p, n, k, c, 0) + cb);
            __m512 hx = v, lx = v, sm = v;
            __m512i rh = _mm512_setzero_si512(), rl = _mm512_setzero_si512();
            for (int64_t r = 1; r < k; ++r) {
                v = _mm512_maskz_loadu_ps(keep, nbr_row(src, idx, p, n, k, c, r) + cb);
                const __m512i rv = _mm512_set1_epi32(static_cast<int>(r));
                const __mmask16 nan_v = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                const __mmask16 up = _mm512_cmp_ps_mask(v, hx, _CMP_GT_OQ) |
                                     (nan_v & ~_mm512_cmp_ps_mask(hx, hx, _CMP_UNORD_Q));
                const __mmask16 down = _mm512_cmp_ps_mask(v, lx, _CMP_LT_OQ) |
                                       (nan_v & ~_mm512_cmp_ps_mask(lx, lx, _CMP_UNORD_Q));
                hx = _mm512_mask_mov_ps(hx, up, v);
                rh = _mm512_mask_mov_epi32(rh, up, rv);
                lx = _mm512_mask_mov_ps(lx, down, v);
                rl = _mm512_mask_mov_epi32(rl, down, rv);
                sm = _mm512_add_ps(sm, v);
            }
            _mm512_mask_storeu_ps(mx + p * c + cb, keep, hx);
            _mm512_mask_storeu_ps(mn + p * c + cb, keep, lx);
            store_ranks(rmx + p * c + cb, rh, keep);
            store_ranks(rmn + p * c + cb, rl, keep);
            if (sum != nullptr) _mm512_mask_storeu_ps(sum + p * c + cb, keep, sm);
        }
    }
}
#endif

// ---- transposed neighbour sum, one (set, block of 16 channels) per task

void scatter_task_scalar(const float* g, int64_t n, int64_t c, const int64_t* idx, int64_t k,
                         int64_t set, int64_t cb, float* out) {
    const int64_t ce = std::min<int64_t>(c, cb + 16);
    const float* gs = g + set * n * c;
    float* os = out + set * n * c;
    const int64_t* is = idx + set * n * k;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < k; ++r) {
            float* o = os + is[i * k + r] * c;
            for (int64_t ch = cb; ch < ce; ++ch) o[ch] = o[ch] + gs[i * c + ch];
        }
}

#if BINGNN_X86
BINGNN_AVX512 void scatter_task_avx512(const float* g, int64_t n, int64_t c, const int64_t* idx,
                                       int64_t k, int64_t set, int64_t cb, float* out) {
    const int64_t valid = std::min<int64_t>(16, c - cb);
    const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
    const float* gs = g + set * n * c + cb;
    float* os = out + set * n * c + cb;
    const int64_t* is = idx + set * n * k;
    for (int64_t i = 0; i < n; ++i) {
        const __m512 gi = _mm512_maskz_loadu_ps(keep, gs + i * c);
        for (int64_t r = 0; r < k; ++r) {
            float* o = os + is[i * k + r] * c;
            _mm512_mask_storeu_ps(o, keep, _mm512_add_ps(_mm512_maskz_loadu_ps(keep, o), gi));
        }
    }
}
#endif

// ---- statistics of h = prelu(alpha * (rel + v)) over edges

inline float act_h(float relv, float vv, float a, const float* slope, int64_t ch, float* z_out,
                   float* y_out) {
    const float y = relv + vv;
    const float z = y * a;
    *z_out = z;
    *y_out = y;
    return (slope == nullptr || z >= 0.0f) ? z : z * slope[ch];
}

// Partial sums of (h - shift) and (h - shift)^2 over the rows [b * kStatRows, ...) of one
// block, accumulated per row in float32 (k terms), then in float64.
void stats_block_scalar(const float* rel, const float* v, int64_t r0, int64_t r1, int64_t k,
                        int64_t c, const float* alpha, const float* slope, const float* shift,
                        double* s1, double* s2) {
    std::vector<float> f1(static_cast<size_t>(c)), f2(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) s1[ch] = s2[ch] = 0.0;
    for (int64_t p = r0; p < r1; ++p) {
        std::fill(f1.begin(), f1.end(), 0.0f);
        std::fill(f2.begin(), f2.end(), 0.0f);
        for (int64_t r = 0; r < k; ++r) {
            const float* row = rel + (p * k + r) * c;
            for (int64_t ch = 0; ch < c; ++ch) {
                float z, y;
                const float d =
                    act_h(row[ch], v[p * c + ch], alpha[ch], slope, ch, &z, &y) - shift[ch];
                f1[ch] = f1[ch] + d;
                f2[ch] = f2[ch] + d * d;
            }
        }
        for (int64_t ch = 0; ch < c; ++ch) {
            s1[ch] += static_cast<double>(f1[ch]);
            s2[ch] += static_cast<double>(f2[ch]);
        }
    }
}

#if BINGNN_X86
BINGNN_AVX512 inline void add_to_double(double* acc, __m512 f, __mmask16 keep) {
    const __mmask8 lo = static_cast<__mmask8>(keep & 0xFF), hi = static_cast<__mmask8>(keep >> 8);
    _mm512_mask_storeu_pd(acc, lo, _mm512_add_pd(_mm512_maskz_loadu_pd(lo, acc),
                                                 _mm512_cvtps_pd(_mm512_castps512_ps256(f))));
    const __m256 fh = _mm512_extractf32x8_ps(f, 1);
    _mm512_mask_storeu_pd(acc + 8, hi,
                          _mm512_add_pd(_mm512_maskz_loadu_pd(hi, acc + 8), _mm512_cvtps_pd(fh)));
}

BINGNN_AVX512 inline __m512 act_h16(__m512 relv, __m512 vv, __m512 a, __m512 sl, bool prelu,
                                    __m512* z_out, __m512* y_out, __mmask16* pos_out) {
    const __m512 y = _mm512_add_ps(relv, vv);
    const __m512 z = _mm512_mul_ps(y, a);
    const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ);
    *z_out = z;
    *y_out = y;
    *pos_out = pos;
    return prelu ? _mm512_mask_blend_ps(pos, _mm512_mul_ps(z, sl), z) : z;
}

BINGNN_AVX512 void stats_block_avx512(const float* rel, const float* v, int64_t r0, int64_t r1,
                                      int64_t k, int64_t c, const float* alpha,
                                      const float* slope, const float* shift, double* s1,
                                      double* s2) {
    for (int64_t ch = 0; ch < c; ++ch) s1[ch] = s2[ch] = 0.0;
    const bool prelu = slope != nullptr;
    for (int64_t cb = 0; cb < c; cb += 16) {
        const int64_t valid = std::min<int64_t>(16, c - cb);
        const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
        const __m512 a = _mm512_maskz_loadu_ps(keep, alpha + cb);
        const __m512 sl = prelu ? _mm512_maskz_loadu_ps(keep, slope + cb) : _mm512_setzero_ps();
        const __m512 sh = _mm512_maskz_loadu_ps(keep, shift + cb);
        for (int64_t p = r0; p < r1; ++p) {
            const __m512 vv = _mm512_maskz_loadu_ps(keep, v + p * c + cb);
            __m512 f1 = _mm512_setzero_ps(), f2 = _mm512_setzero_ps();
            for (int64_t r = 0; r < k; ++r) {
                __m512 z, y;
                __mmask16 pos;
                const __m512 h = act_h16(_mm512_maskz_loadu_ps(keep, rel + (p * k + r) * c + cb),
                                         vv, a, sl, prelu, &z, &y, &pos);
                const __m512 d = _mm512_sub_ps(h, sh);
                f1 = _mm512_add_ps(f1, d);
                f2 = _mm512_add_ps(f2, _mm512_mul_ps(d, d));
            }
            add_to_double(s1 + cb, f1, keep);
            add_to_double(s2 + cb, f2, keep);
        }
    }
}
#endif

// ---- backward of the statistics (+ optional selection gradient)

void stats_bwd_block_scalar(const float* rel, const float* v, int64_t r0, int64_t r1, int64_t k,
                            int64_t c, const float* alpha, const float* slope, const float* mean,
                            const float* c1, const float* c2, const int64_t* sel_rank,
                            const float* sel_grad, float* grad_rel, float* grad_v, double* ga,
                            double* gs) {
    std::vector<float> fa(static_cast<size_t>(c)), fs(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) ga[ch] = gs[ch] = 0.0;
    for (int64_t p = r0; p < r1; ++p) {
        std::fill(fa.begin(), fa.end(), 0.0f);
        std::fill(fs.begin(), fs.end(), 0.0f);
        for (int64_t ch = 0; ch < c; ++ch) grad_v[p * c + ch] = 0.0f;
        for (int64_t r = 0; r < k; ++r) {
            const float* row = rel + (p * k + r) * c;
            float* grow = grad_rel + (p * k + r) * c;
            for (int64_t ch = 0; ch < c; ++ch) {
                float z, y;
                const float h = act_h(row[ch], v[p * c + ch], alpha[ch], slope, ch, &z, &y);
                const bool pos = slope == nullptr || z >= 0.0f;
                const float dh = (h - mean[ch]) * c2[ch] + c1[ch];
                const float dz = pos ? dh : dh * slope[ch];
                if (!pos) fs[ch] = fs[ch] + dh * z;
                fa[ch] = fa[ch] + dz * y;
                float dy = dz * alpha[ch];
                grad_v[p * c + ch] = grad_v[p * c + ch] + dy;
                if (sel_rank != nullptr && sel_rank[p * c + ch] == r) dy = dy + sel_grad[p * c + ch];
                grow[ch] = dy;
            }
        }
        for (int64_t ch = 0; ch < c; ++ch) {
            ga[ch] += static_cast<double>(fa[ch]);
            gs[ch] += static_cast<double>(fs[ch]);
        }
    }
}

#if BINGNN_X86
BINGNN_AVX512 inline __m512i load_ranks(const int64_t* rk, __mmask16 keep) {
    const __m256i lo = _mm512_cvtepi64_epi32(
        _mm512_maskz_loadu_epi64(static_cast<__mmask8>(keep & 0xFF), rk));
    const __m256i hi = _mm512_cvtepi64_epi32(
        _mm512_maskz_loadu_epi64(static_cast<__mmask8>(keep >> 8), rk + 8));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

BINGNN_AVX512 void stats_bwd_block_avx512(const float* rel, const float* v, int64_t r0,
                                          int64_t r1, int64_t k, int64_t c, const float* alpha,
                                          const float* slope, const float* mean, const float* c1,
                                          const float* c2, const int64_t* sel_rank,
                                          const float* sel_grad, float* grad_rel, float* grad_v,
                                          double* ga, double* gs) {
    for (int64_t ch = 0; ch < c; ++ch) ga[ch] = gs[ch] = 0.0;
    const bool prelu = slope != nullptr;
    for (int64_t cb = 0; cb < c; cb += 16) {
        const int64_t valid = std::min<int64_t>(16, c - cb);
        const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
        const __m512 a = _mm512_maskz_loadu_ps(keep, alpha + cb);
        const __m512 sl = prelu ? _mm512_maskz_loadu_ps(keep, slope + cb) : _mm512_setzero_ps();
        const __m512 mu = _mm512_maskz_loadu_ps(keep, mean + cb);
        const __m512 k1 = _mm512_maskz_loadu_ps(keep, c1 + cb);
        const __m512 k2 = _mm512_maskz_loadu_ps(keep, c2 + cb);
        for (int64_t p = r0; p < r1; ++p) {
            const __m512 vv = _mm512_maskz_loadu_ps(keep, v + p * c + cb);
            __m512i rank = _mm512_set1_epi32(-1);
            __m512 sg = _mm512_setzero_ps();
            if (sel_rank != nullptr) {
                rank = load_ranks(sel_rank + p * c + cb, keep);
                sg = _mm512_maskz_loadu_ps(keep, sel_grad + p * c + cb);
            }
            __m512 fa = _mm512_setzero_ps(), fs = _mm512_setzero_ps(), gv = _mm512_setzero_ps();
            for (int64_t r = 0; r < k; ++r) {
                __m512 z, y;
                __mmask16 pos;
                const __m512 h = act_h16(_mm512_maskz_loadu_ps(keep, rel + (p * k + r) * c + cb),
                                         vv, a, sl, prelu, &z, &y, &pos);
                const __m512 dh = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(h, mu), k2), k1);
                __m512 dz = dh;
                if (prelu) {
                    dz = _mm512_mask_blend_ps(pos, _mm512_mul_ps(dh, sl), dh);
                    fs = _mm512_mask_add_ps(fs, static_cast<__mmask16>(~pos), fs,
                                            _mm512_mul_ps(dh, z));
                }
                fa = _mm512_add_ps(fa, _mm512_mul_ps(dz, y));
                __m512 dy = _mm512_mul_ps(dz, a);
                gv = _mm512_add_ps(gv, dy);
                const __mmask16 hit =
                    _mm512_cmpeq_epi32_mask(rank, _mm512_set1_epi32(static_cast<int>(r)));
                dy = _mm512_mask_add_ps(dy, hit, dy, sg);
                _mm512_mask_storeu_ps(grad_rel + (p * k + r) * c + cb, keep, dy);
            }
            _mm512_mask_storeu_ps(grad_v + p * c + cb, keep, gv);
            add_to_double(ga + cb, fa, keep);
            add_to_double(gs + cb, fs, keep);
        }
    }
}
#endif

// Runs block(b, r0, r1, partial_a, partial_b) over the fixed row blocks and sums the per-block
// float64 partials in block order into out_a, out_b.
template <class F>
void blocked_rows(int64_t rows, int64_t c, int num_threads, double* out_a, double* out_b,
                  F&& block) {
    const int64_t nb = (rows + kStatRows - 1) / kStatRows;
    std::vector<double> pa(static_cast<size_t>(nb * c)), pb(static_cast<size_t>(nb * c));
    parallel_for(nb, num_threads, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
            block(b * kStatRows, std::min(rows, (b + 1) * kStatRows), pa.data() + b * c,
                  pb.data() + b * c);
    });
    for (int64_t ch = 0; ch < c; ++ch) out_a[ch] = out_b[ch] = 0.0;
    for (int64_t b = 0; b < nb; ++b)
        for (int64_t ch = 0; ch < c; ++ch) {
            out_a[ch] += pa[b * c + ch];
            out_b[ch] += pb[b * c + ch];
        }
}

}  // namespace

void neighbor_extremes(const float* src, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                       int64_t k, float* mx, int64_t* rmx, float* mn, int64_t* rmn, float* sum,
                       int num_threads) {
    if (sets == 0 || n == 0 || c == 0 || k == 0) return;
    const Level level = active_level();
    const int64_t grain = std::max<int64_t>(8, 16384 / std::max<int64_t>(1, k * c));
    parallel_for(sets * n, num_threads, grain, [&](int64_t p0, int64_t p1) {
#if BINGNN_X86
        if (level == Level::Avx512) {
            extremes_avx512(src, p0, p1, n, c, idx, k, mx, rmx, mn, rmn, sum);
            return;
        }
#endif
        extremes_scalar(src, p0, p1, n, c, idx, k, mx, rmx, mn, rmn, sum);
    });
}

namespace {

// f(set, cb) for every set of points and block of 16 channels [cb, cb + 16), on the pool: the
// tasks of the scatters below, each of which writes only its own set's rows in its own block
// of columns, so the result does not depend on the thread count.
template <class F>
void for_set_blocks(int64_t sets, int64_t c, int num_threads, F&& f) {
    const int64_t ncb = (c + 15) / 16;
    parallel_for(sets * ncb, num_threads, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) f(t / ncb, (t % ncb) * 16);
    });
}

}  // namespace

void neighbor_scatter_sum(const float* g, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                          int64_t k, float* out, int num_threads) {
    if (sets == 0 || n == 0 || c == 0) return;
    std::memset(out, 0, static_cast<size_t>(sets * n * c) * sizeof(float));
    if (k == 0) return;
    const Level level = active_level();
    for_set_blocks(sets, c, num_threads, [&](int64_t set, int64_t cb) {
#if BINGNN_X86
        if (level == Level::Avx512) {
            scatter_task_avx512(g, n, c, idx, k, set, cb, out);
            return;
        }
#endif
        scatter_task_scalar(g, n, c, idx, k, set, cb, out);
    });
}

void edge_act_stats(const float* rel, const float* v, int64_t rows, int64_t k, int64_t c,
                    const float* alpha, const float* slope, double* mean, double* var,
                    int num_threads) {
    if (c == 0) return;
    const int64_t m = rows * k;
    if (m == 0) {
        for (int64_t ch = 0; ch < c; ++ch) mean[ch] = var[ch] = 0.0;
        return;
    }
    // Shift by the first edge's value: the float64 sums of (h - shift) keep no large offset.
    std::vector<float> shift(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) {
        float z, y;
        shift[ch] = act_h(rel[ch], v[ch], alpha[ch], slope, ch, &z, &y);
    }
    const Level level = active_level();
    std::vector<double> s1(static_cast<size_t>(c)), s2(static_cast<size_t>(c));
    blocked_rows(rows, c, num_threads, s1.data(), s2.data(),
                 [&](int64_t r0, int64_t r1, double* a, double* b) {
#if BINGNN_X86
                     if (level == Level::Avx512) {
                         stats_block_avx512(rel, v, r0, r1, k, c, alpha, slope, shift.data(), a,
                                            b);
                         return;
                     }
#endif
                     stats_block_scalar(rel, v, r0, r1, k, c, alpha, slope, shift.data(), a, b);
                 });
    for (int64_t ch = 0; ch < c; ++ch) {
        const double d = s1[ch] / static_cast<double>(m);
        mean[ch] = static_cast<double>(shift[ch]) + d;
        var[ch] = std::max(0.0, s2[ch] / static_cast<double>(m) - d * d);
    }
}

void edge_act_stats_backward(const float* rel, const float* v, int64_t rows, int64_t k,
                             int64_t c, const float* alpha, const float* slope,
                             const float* mean, const float* c1, const float* c2,
                             const int64_t* sel_rank, const float* sel_grad, float* grad_rel,
                             float* grad_v, double* g_alpha, double* g_slope, int num_threads) {
    if (c == 0) return;
    const Level level = active_level();
    blocked_rows(rows, c, num_threads, g_alpha, g_slope,
                 [&](int64_t r0, int64_t r1, double* a, double* b) {
#if BINGNN_X86
                     if (level == Level::Avx512) {
                         stats_bwd_block_avx512(rel, v, r0, r1, k, c, alpha, slope, mean, c1, c2,
                                                sel_rank, sel_grad, grad_rel, grad_v, a, b);
                         return;
                     }
#endif
                     stats_bwd_block_scalar(rel, v, r0, r1, k, c, alpha, slope, mean, c1, c2,
                                            sel_rank, sel_grad, grad_rel, grad_v, a, b);
                 });
}

void binary_gemm_f32(const uint64_t* a, int64_t m, const uint64_t* b, int64_t n, int64_t w,
                     int64_t n_bits, float* out, int num_threads) {
    if (m == 0 || n == 0) return;
    constexpr int64_t kRows = 64;
    const int64_t blocks = (m + kRows - 1) / kRows;
    parallel_for(blocks, num_threads, 1, [&](int64_t b0, int64_t b1) {
        std::vector<int32_t> tmp(static_cast<size_t>(kRows * n));
        for (int64_t blk = b0; blk < b1; ++blk) {
            const int64_t r0 = blk * kRows, rows = std::min(kRows, m - r0);
            binary_gemm(a + r0 * w, rows, b, n, w, n_bits, tmp.data(), 1);
            float* o = out + r0 * n;
            for (int64_t q = 0; q < rows * n; ++q) o[q] = static_cast<float>(tmp[q]);
        }
    });
}

void select_rank(const float* src, int64_t rows, int64_t k, int64_t c, const int64_t* rank,
                 float* out, int num_threads) {
    parallel_for(rows, num_threads, std::max<int64_t>(16, 65536 / std::max<int64_t>(1, c)),
                 [&](int64_t p0, int64_t p1) {
                     for (int64_t p = p0; p < p1; ++p)
                         for (int64_t ch = 0; ch < c; ++ch)
                             out[p * c + ch] = src[(p * k + rank[p * c + ch]) * c + ch];
                 });
}

void scatter_rank(const float* g, int64_t rows, int64_t k, int64_t c, const int64_t* rank,
                  float* out, int num_threads) {
    parallel_for(rows, num_threads, std::max<int64_t>(16, 8192 / std::max<int64_t>(1, k * c)),
                 [&](int64_t p0, int64_t p1) {
                     std::memset(out + p0 * k * c, 0,
                                 static_cast<size_t>((p1 - p0) * k * c) * sizeof(float));
                     for (int64_t p = p0; p < p1; ++p)
                         for (int64_t ch = 0; ch < c; ++ch)
                             out[(p * k + rank[p * c + ch]) * c + ch] = g[p * c + ch];
                 });
}

void xor_edge_features(const float* x, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                       int64_t k, float* out, int num_threads) {
    parallel_for(sets * n, num_threads, std::max<int64_t>(8, 8192 / std::max<int64_t>(1, k * c)),
                 [&](int64_t p0, int64_t p1) {
                     for (int64_t p = p0; p < p1; ++p) {
                         const float* xi = x + p * c;
                         const float* xs = x + (p / n) * n * c;
                         for (int64_t r = 0; r < k; ++r) {
                             const float* xj = xs + idx[p * k + r] * c;
                             float* o = out + (p * k + r) * c;
                             for (int64_t ch = 0; ch < c; ++ch) o[ch] = xj[ch] * xi[ch];
                         }
                     }
                 });
}

void xor_edge_features_backward(const float* g, const float* x, int64_t sets, int64_t n,
                                int64_t c, const int64_t* idx, int64_t k, float* out,
                                int num_threads) {
    if (sets == 0 || n == 0 || c == 0) return;
    std::memset(out, 0, static_cast<size_t>(sets * n * c) * sizeof(float));
    constexpr int64_t kCh = 16;
    const int64_t ncb = (c + kCh - 1) / kCh;
    parallel_for(sets * ncb, num_threads, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t set = t / ncb, cb = (t % ncb) * kCh, ce = std::min(c, cb + kCh);
            const float* xs = x + set * n * c;
            float* os = out + set * n * c;
            const float* gs = g + set * n * k * c;
            const int64_t* is = idx + set * n * k;
            for (int64_t i = 0; i < n; ++i)
                for (int64_t r = 0; r < k; ++r) {
                    const int64_t j = is[i * k + r];
                    const float* gr = gs + (i * k + r) * c;
                    for (int64_t ch = cb; ch < ce; ++ch) {
                        os[i * c + ch] = os[i * c + ch] + gr[ch] * xs[j * c + ch];
                        os[j * c + ch] = os[j * c + ch] + gr[ch] * xs[i * c + ch];
                    }
                }
        }
    });
}

namespace {

inline float quant_value(float z, int mode) {
    if (mode == 0) return z >= 0.0f ? 1.0f : -1.0f;
    return std::tanh(z);
}

inline float quant_grad(float z, int mode, float clip) {
    if (mode == 0) return (z <= clip && z >= -clip) ? 1.0f : 0.0f;
    const float th = std::tanh(z);
    return 1.0f - th * th;
}

#if BINGNN_X86
// exp(y) on 16 lanes for y in [0, 20]: y = n ln2 + r with ln2 split in two (Cody-Waite), so
// r is exact to float32 rounding, |r| <= ln2 / 2; exp(r) by its Taylor polynomial to r^7
// (truncation below 6e-9 relative); 2^n applied by scalef.
BINGNN_AVX512 inline __m512 exp16_nonneg(__m512 y) {
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(1.44269504088896f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), y);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

// tanh on 16 lanes, within a few float32 ulps of std::tanh (the scalar path; tested against
// it). The scalar path calls std::tanh per element, which made RF's pseudo-quantized stage
// slower than PyTorch's vectorised tanh. |z| < 0.4: the odd Taylor series to z^13 (next term
// below 2e-9); above, 1 - 2 / (exp(2|z|) + 1) with |z| clamped at 10 (tanh rounds to 1 in
// float32 there); the sign is copied back.
BINGNN_AVX512 inline __m512 tanh16(__m512 z) {
    const __m512 a = _mm512_abs_ps(z);
    const __m512 a2 = _mm512_mul_ps(a, a);
    __m512 p = _mm512_set1_ps(21844.0f / 6081075.0f);
    p = _mm512_fmadd_ps(p, a2, _mm512_set1_ps(-1382.0f / 155925.0f));
    p = _mm512_fmadd_ps(p, a2, _mm512_set1_ps(62.0f / 2835.0f));
    p = _mm512_fmadd_ps(p, a2, _mm512_set1_ps(-17.0f / 315.0f));
    p = _mm512_fmadd_ps(p, a2, _mm512_set1_ps(2.0f / 15.0f));
    p = _mm512_fmadd_ps(p, a2, _mm512_set1_ps(-1.0f / 3.0f));
    const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, a2), a, a);
    const __m512 e = exp16_nonneg(_mm512_min_ps(_mm512_add_ps(a, a), _mm512_set1_ps(20.0f)));
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 big = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    const __m512 mag =
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(0.4f), _CMP_LT_OQ), big, small);
    // |tanh| >= 0 (+0 at 0): or-ing z's sign bit gives tanh(z), -0 at -0 included.
    const __m512 out = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(mag),
        _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(static_cast<int>(0x80000000u)))));
    return _mm512_mask_mov_ps(out, _mm512_cmp_ps_mask(z, z, _CMP_UNORD_Q), z);  // NaN stays NaN
}

// The quantizer on 16 lanes: sign (mode 0, +1 at >= 0) or tanh (mode 1).
BINGNN_AVX512 inline __m512 quant16(__m512 z, int mode) {
    if (mode == 1) return tanh16(z);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ),
                                _mm512_set1_ps(-1.0f), _mm512_set1_ps(1.0f));
}

// The quantizer's derivative times g on 16 lanes: the straight-through mask |z| <= clip
// (mode 0) or 1 - tanh(z)^2 (mode 1).
BINGNN_AVX512 inline __m512 quant_grad16(__m512 g, __m512 z, int mode, __m512 clip) {
    if (mode == 1) {
        const __m512 th = tanh16(z);
        return _mm512_mul_ps(g, _mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_mul_ps(th, th)));
    }
    const __mmask16 in = _mm512_cmp_ps_mask(z, clip, _CMP_LE_OQ) &
                         _mm512_cmp_ps_mask(z, _mm512_sub_ps(_mm512_setzero_ps(), clip), _CMP_GE_OQ);
    return _mm512_maskz_mov_ps(in, g);
}
#endif

// Sums over the edges of the points [p0, p1) of (d - shift) and (d - shift)^2, per channel:
// float32 over the k neighbours of a point, float64 across points.
void diff_stats_rows(const float* x, int64_t p0, int64_t p1, int64_t n, int64_t c,
                     const int64_t* idx, int64_t k, const float* shift, double* s1, double* s2) {
    std::vector<float> f1(static_cast<size_t>(c)), f2(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) s1[ch] = s2[ch] = 0.0;
    for (int64_t p = p0; p < p1; ++p) {
        const float* xi = x + p * c;
        const float* xs = x + (p / n) * n * c;
        std::fill(f1.begin(), f1.end(), 0.0f);
        std::fill(f2.begin(), f2.end(), 0.0f);
        for (int64_t r = 0; r < k; ++r) {
            const float* xj = xs + idx[p * k + r] * c;
            for (int64_t ch = 0; ch < c; ++ch) {
                const float d = (xj[ch] - xi[ch]) - shift[ch];
                f1[ch] = f1[ch] + d;
                f2[ch] = f2[ch] + d * d;
            }
        }
        for (int64_t ch = 0; ch < c; ++ch) {
            s1[ch] += static_cast<double>(f1[ch]);
            s2[ch] += static_cast<double>(f2[ch]);
        }
    }
}

}  // namespace

void edge_diff_stats(const float* x, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                     int64_t k, double* mean, double* var, int num_threads) {
    if (c == 0) return;
    const int64_t rows = sets * n, m = rows * k;
    if (m == 0) {
        for (int64_t ch = 0; ch < c; ++ch) mean[ch] = var[ch] = 0.0;
        return;
    }
    std::vector<float> shift(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) shift[ch] = x[idx[0] * c + ch] - x[ch];
    std::vector<double> s1(static_cast<size_t>(c)), s2(static_cast<size_t>(c));
    blocked_rows(rows, c, num_threads, s1.data(), s2.data(),
                 [&](int64_t r0, int64_t r1, double* a, double* b) {
                     diff_stats_rows(x, r0, r1, n, c, idx, k, shift.data(), a, b);
                 });
    for (int64_t ch = 0; ch < c; ++ch) {
        const double d = s1[ch] / static_cast<double>(m);
        mean[ch] = static_cast<double>(shift[ch]) + d;
        var[ch] = std::max(0.0, s2[ch] / static_cast<double>(m) - d * d);
    }
}

#if BINGNN_X86
namespace {
BINGNN_AVX512 void diff_quant_rows_avx512(const float* x, int64_t p0, int64_t p1, int64_t n,
                                          int64_t c, const int64_t* idx, int64_t k,
                                          const float* s, const float* t, int mode,
                                          bool fma, float* out_f, uint64_t* out_bits) {
    const int64_t w = n_words(c);
    for (int64_t p = p0; p < p1; ++p) {
        const float* xi = x + p * c;
        const float* xs = x + (p / n) * n * c;
        for (int64_t r = 0; r < k; ++r) {
            const float* xj = xs + idx[p * k + r] * c;
            const int64_t e = p * k + r;
            uint64_t* bits = out_bits != nullptr ? out_bits + e * w : nullptr;
            if (bits != nullptr)
                for (int64_t q = 0; q < w; ++q) bits[q] = 0;
            for (int64_t ch = 0; ch < c; ch += 16) {
                const int64_t valid = std::min<int64_t>(16, c - ch);
                const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
                const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(keep, xj + ch),
                                               _mm512_maskz_loadu_ps(keep, xi + ch));
                const __m512 vs = _mm512_maskz_loadu_ps(keep, s + ch);
                const __m512 vt = _mm512_maskz_loadu_ps(keep, t + ch);
                const __m512 z = fma ? _mm512_fmadd_ps(d, vs, vt)
                                     : _mm512_add_ps(_mm512_mul_ps(d, vs), vt);
                const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ);
                if (out_f != nullptr)
                    _mm512_mask_storeu_ps(out_f + e * c + ch, keep, quant16(z, mode));
                if (bits != nullptr)
                    bits[ch / 64] |= static_cast<uint64_t>(pos & keep) << (ch % 64);
            }
        }
    }
}
}  // namespace
#endif

void edge_diff_quant(const float* x, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                     int64_t k, const float* s, const float* t, int mode, bool fma,
                     float* out_f, uint64_t* out_bits, int num_threads) {
    const int64_t w = n_words(c);
    const bool vec = active_level() == Level::Avx512;
    parallel_for(sets * n, num_threads, std::max<int64_t>(8, 8192 / std::max<int64_t>(1, k * c)),
                 [&](int64_t p0, int64_t p1) {
#if BINGNN_X86
                     if (vec) {
                         diff_quant_rows_avx512(x, p0, p1, n, c, idx, k, s, t, mode, fma, out_f,
                                                out_bits);
                         return;
                     }
#endif
                     for (int64_t p = p0; p < p1; ++p) {
                         const float* xi = x + p * c;
                         const float* xs = x + (p / n) * n * c;
                         for (int64_t r = 0; r < k; ++r) {
                             const float* xj = xs + idx[p * k + r] * c;
                             const int64_t e = p * k + r;
                             uint64_t* bits = out_bits != nullptr ? out_bits + e * w : nullptr;
                             if (bits != nullptr)
                                 for (int64_t q = 0; q < w; ++q) bits[q] = 0;
                             for (int64_t ch = 0; ch < c; ++ch) {
                                 const float d = xj[ch] - xi[ch];
                                 const float z = fma ? std::fma(d, s[ch], t[ch]) : d * s[ch] + t[ch];
                                 if (out_f != nullptr) out_f[e * c + ch] = quant_value(z, mode);
                                 if (bits != nullptr && z >= 0.0f)
                                     bits[ch / 64] |= uint64_t{1} << (ch % 64);
                             }
                         }
                     }
                 });
}

namespace {

#if BINGNN_X86
// dst[0..c) += a * src[0..c) (mul then add, like the scalar loop).
BINGNN_AVX512 inline void axpy16(float* dst, float a, const float* src, int64_t c) {
    const __m512 va = _mm512_set1_ps(a);
    for (int64_t ch = 0; ch < c; ch += 16) {
        const int64_t valid = std::min<int64_t>(16, c - ch);
        const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
        _mm512_mask_storeu_ps(dst + ch, keep,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(keep, dst + ch),
                                            _mm512_mul_ps(va, _mm512_maskz_loadu_ps(keep, src + ch))));
    }
}

// XOR edge features of one point's k edges, x_j * x_i, into q (k, c).
BINGNN_AVX512 void edge_q_avx512(const float* xi, const float* xs, const int64_t* nbr, int64_t k,
                                 int64_t c, float* q) {
    for (int64_t r = 0; r < k; ++r) {
        const float* xj = xs + nbr[r] * c;
        for (int64_t ch = 0; ch < c; ch += 16) {
            const int64_t valid = std::min<int64_t>(16, c - ch);
            const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
            _mm512_mask_storeu_ps(q + r * c + ch, keep,
                                  _mm512_mul_ps(_mm512_maskz_loadu_ps(keep, xj + ch),
                                                _mm512_maskz_loadu_ps(keep, xi + ch)));
        }
    }
}
#endif

void edge_q_scalar(const float* xi, const float* xs, const int64_t* nbr, int64_t k, int64_t c,
                   float* q) {
    for (int64_t r = 0; r < k; ++r) {
        const float* xj = xs + nbr[r] * c;
        for (int64_t ch = 0; ch < c; ++ch) q[r * c + ch] = xj[ch] * xi[ch];
    }
}

inline void axpy_scalar(float* dst, float a, const float* src, int64_t c) {
    for (int64_t ch = 0; ch < c; ++ch) dst[ch] = dst[ch] + a * src[ch];
}

}  // namespace

void edge_select_backward(const float* x, int64_t sets, int64_t n, int64_t c_in,
                          const int64_t* idx, int64_t k, const float* gsel, const int64_t* rank,
                          int64_t c_out, const float* w, float* g_q, float* g_w,
                          int num_threads) {
    const int64_t rows = sets * n;
    if (rows == 0 || c_in == 0) return;
    // Fixed row blocks, each with its own partial g_w, summed in block order: the result does
    // not depend on the thread count.
    constexpr int64_t kBlocks = 8;
    const int64_t per = (rows + kBlocks - 1) / kBlocks;
    std::vector<float> partial(
        g_w != nullptr ? static_cast<size_t>(kBlocks * c_out * c_in) : size_t{0}, 0.0f);
    const bool vec = active_level() == Level::Avx512;
    parallel_for(kBlocks, num_threads, 1, [&](int64_t b0, int64_t b1) {
        std::vector<float> q(static_cast<size_t>(k * c_in));
        for (int64_t blk = b0; blk < b1; ++blk) {
            float* gw = g_w != nullptr ? partial.data() + blk * c_out * c_in : nullptr;
            for (int64_t p = blk * per; p < std::min(rows, (blk + 1) * per); ++p) {
                const float* xi = x + p * c_in;
                const float* xs = x + (p / n) * n * c_in;
#if BINGNN_X86
                if (vec)
                    edge_q_avx512(xi, xs, idx + p * k, k, c_in, q.data());
                else
#endif
                    edge_q_scalar(xi, xs, idx + p * k, k, c_in, q.data());
                float* gq = g_q != nullptr ? g_q + p * k * c_in : nullptr;
                if (gq != nullptr) std::memset(gq, 0, static_cast<size_t>(k * c_in) * sizeof(float));
                for (int64_t o = 0; o < c_out; ++o) {
                    const float gs = gsel[p * c_out + o];
                    if (gs == 0.0f) continue;  // adds nothing (and -0.0 + 0 keeps +0 stored)
                    const int64_t r = rank[p * c_out + o];
                    const float* wo = w + o * c_in;
                    const float* qr = q.data() + r * c_in;
#if BINGNN_X86
                    if (vec) {
                        if (gq != nullptr) axpy16(gq + r * c_in, gs, wo, c_in);
                        if (gw != nullptr) axpy16(gw + o * c_in, gs, qr, c_in);
                        continue;
                    }
#endif
                    if (gq != nullptr) axpy_scalar(gq + r * c_in, gs, wo, c_in);
                    if (gw != nullptr) axpy_scalar(gw + o * c_in, gs, qr, c_in);
                }
            }
        }
    });
    if (g_w == nullptr) return;
    std::memset(g_w, 0, static_cast<size_t>(c_out * c_in) * sizeof(float));
    for (int64_t blk = 0; blk < kBlocks; ++blk)
        for (int64_t q = 0; q < c_out * c_in; ++q) g_w[q] = g_w[q] + partial[blk * c_out * c_in + q];
}

namespace {

// One (set, block of up to 16 channels [cb, ce)) of edge_diff_select_backward, per channel
// (the reference of the AVX-512 path, same operations in the same order). gq_r and the edge
// values live in k x 16 scratch rows; sums go to a (set)'s doubles, g_w's rows to the set's
// partial block.
void dsb_block_scalar(const float* x, int64_t set, int64_t cb, int64_t n, int64_t c,
                      const int64_t* idx, int64_t k, const float* s, const float* t,
                      const float* mean, const float* invstd, int mode, float clip,
                      const float* gsel, const int64_t* rank, int64_t c_out, const float* w,
                      float* gx, float* gw_part, double* a, double* b, float* scratch) {
    const int64_t ce = std::min<int64_t>(c, cb + 16);
    float* dv = scratch;            // d, k x 16
    float* zv = dv + k * 16;        // z
    float* qv = zv + k * 16;        // q(z), only with g_w
    float* gq = qv + k * 16;        // gradient of q
    const float* xs = x + set * n * c;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t p = set * n + i;
        const int64_t* nbr = idx + p * k;
        for (int64_t r = 0; r < k; ++r)
            for (int64_t ch = cb; ch < ce; ++ch) {
                const int64_t l = r * 16 + (ch - cb);
                const float d = xs[nbr[r] * c + ch] - xs[i * c + ch];
                const float z = d * s[ch] + t[ch];
                dv[l] = d;
                zv[l] = z;
                if (gw_part != nullptr) qv[l] = quant_value(z, mode);
                gq[l] = 0.0f;
            }
        for (int64_t o = 0; o < c_out; ++o) {
            const float g = gsel[p * c_out + o];
            if (g == 0.0f) continue;  // adds nothing (and -0.0 + 0 keeps +0 stored)
            const int64_t r = rank[p * c_out + o];
            for (int64_t ch = cb; ch < ce; ++ch) {
                const int64_t l = r * 16 + (ch - cb);
                gq[l] = gq[l] + g * w[o * c + ch];
                if (gw_part != nullptr)
                    gw_part[o * c + ch] = gw_part[o * c + ch] + g * qv[l];
            }
        }
        for (int64_t ch = cb; ch < ce; ++ch) {
            float f1 = 0.0f, f2 = 0.0f, gi = 0.0f;
            for (int64_t r = 0; r < k; ++r) {
                const int64_t l = r * 16 + (ch - cb);
                const float gz = gq[l] * quant_grad(zv[l], mode, clip);
                f1 = f1 + gz;
                f2 = f2 + gz * ((dv[l] - mean[ch]) * invstd[ch]);
                if (gx == nullptr) continue;
                const int64_t j = nbr[r];
                const float gd = s[ch] * gz;
                float* os = gx + set * n * c;
                os[j * c + ch] = os[j * c + ch] + gd;
                gi = gi + gd;
                // The centre may be its own neighbour: apply its share after the edges that
                // precede it (the AVX-512 path's order).
                if (j == i) {
                    os[i * c + ch] = os[i * c + ch] - gi;
                    gi = 0.0f;
                }
            }
            if (gx != nullptr) gx[(set * n + i) * c + ch] = gx[(set * n + i) * c + ch] - gi;
            a[ch] += static_cast<double>(f1);
            b[ch] += static_cast<double>(f2);
        }
    }
}

// The correction of edge_diff_bn_correction for one (set, channel block), per channel.
void dbc_block_scalar(const float* x, int64_t set, int64_t cb, int64_t n, int64_t c,
                      const int64_t* idx, int64_t k, const float* s, const float* mean,
                      const float* invstd, const float* c1, const float* c2, float* gx) {
    const int64_t ce = std::min<int64_t>(c, cb + 16);
    const float* xs = x + set * n * c;
    float* os = gx + set * n * c;
    const int64_t* is = idx + set * n * k;
    for (int64_t ch = cb; ch < ce; ++ch)
        for (int64_t i = 0; i < n; ++i) {
            float gi = 0.0f;
            for (int64_t r = 0; r < k; ++r) {
                const int64_t j = is[i * k + r];
                const float xhat = ((xs[j * c + ch] - xs[i * c + ch]) - mean[ch]) * invstd[ch];
                const float corr = s[ch] * (c1[ch] + xhat * c2[ch]);
                os[j * c + ch] = os[j * c + ch] - corr;
                gi = gi + corr;
                if (j == i) {
                    os[i * c + ch] = os[i * c + ch] + gi;
                    gi = 0.0f;
                }
            }
            os[i * c + ch] = os[i * c + ch] + gi;
        }
}

#if BINGNN_X86
BINGNN_AVX512 void dsb_block_avx512(const float* x, int64_t set, int64_t cb, int64_t n,
                                    int64_t c, const int64_t* idx, int64_t k, const float* s,
                                    const float* t, const float* mean, const float* invstd,
                                    int mode, float clip, const float* gsel,
                                    const int64_t* rank, int64_t c_out, const float* w,
                                    float* gx, float* gw_part, double* a, double* b,
                                    float* scratch) {
    const int64_t valid = std::min<int64_t>(16, c - cb);
    const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
    const __m512 vclip = _mm512_set1_ps(clip);
    const __m512 vs = _mm512_maskz_loadu_ps(keep, s + cb);
    const __m512 vt = _mm512_maskz_loadu_ps(keep, t + cb);
    const __m512 vm = _mm512_maskz_loadu_ps(keep, mean + cb);
    const __m512 vi = _mm512_maskz_loadu_ps(keep, invstd + cb);
    float* dv = scratch;
    float* zv = dv + k * 16;
    float* qv = zv + k * 16;
    float* gq = qv + k * 16;
    const float* xs = x + set * n * c + cb;
    float* os = gx != nullptr ? gx + set * n * c + cb : nullptr;
    const float* wb = w + cb;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t p = set * n + i;
        const int64_t* nbr = idx + p * k;
        const __m512 xi = _mm512_maskz_loadu_ps(keep, xs + i * c);
        for (int64_t r = 0; r < k; ++r) {
            const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(keep, xs + nbr[r] * c), xi);
            const __m512 z = _mm512_add_ps(_mm512_mul_ps(d, vs), vt);
            _mm512_storeu_ps(dv + r * 16, d);
            _mm512_storeu_ps(zv + r * 16, z);
            if (gw_part != nullptr) _mm512_storeu_ps(qv + r * 16, quant16(z, mode));
            _mm512_storeu_ps(gq + r * 16, _mm512_setzero_ps());
        }
        const float* gp = gsel + p * c_out;
        const int64_t* rp = rank + p * c_out;
        for (int64_t o = 0; o < c_out; ++o) {
            const float g = gp[o];
            if (g == 0.0f) continue;
            const __m512 vg = _mm512_set1_ps(g);
            float* gr = gq + rp[o] * 16;
            _mm512_storeu_ps(gr, _mm512_add_ps(_mm512_loadu_ps(gr),
                                               _mm512_mul_ps(vg, _mm512_maskz_loadu_ps(keep, wb + o * c))));
            if (gw_part != nullptr) {
                float* go = gw_part + o * c + cb;
                _mm512_mask_storeu_ps(go, keep, _mm512_add_ps(_mm512_maskz_loadu_ps(keep, go),
                                                              _mm512_mul_ps(vg, _mm512_loadu_ps(qv + rp[o] * 16))));
            }
        }
        __m512 f1 = _mm512_setzero_ps(), f2 = _mm512_setzero_ps(), gi = _mm512_setzero_ps();
        for (int64_t r = 0; r < k; ++r) {
            const __m512 gz = quant_grad16(_mm512_loadu_ps(gq + r * 16),
                                           _mm512_loadu_ps(zv + r * 16), mode, vclip);
            f1 = _mm512_add_ps(f1, gz);
            f2 = _mm512_add_ps(f2, _mm512_mul_ps(gz, _mm512_mul_ps(
                                       _mm512_sub_ps(_mm512_loadu_ps(dv + r * 16), vm), vi)));
            if (os == nullptr) continue;
            const int64_t j = nbr[r];
            const __m512 gd = _mm512_mul_ps(vs, gz);
            float* oj = os + j * c;
            _mm512_mask_storeu_ps(oj, keep, _mm512_add_ps(_mm512_maskz_loadu_ps(keep, oj), gd));
            gi = _mm512_add_ps(gi, gd);
            if (j == i) {
                float* oi = os + i * c;
                _mm512_mask_storeu_ps(oi, keep, _mm512_sub_ps(_mm512_maskz_loadu_ps(keep, oi), gi));
                gi = _mm512_setzero_ps();
            }
        }
        if (os != nullptr) {
            float* oi = os + i * c;
            _mm512_mask_storeu_ps(oi, keep, _mm512_sub_ps(_mm512_maskz_loadu_ps(keep, oi), gi));
        }
        add_to_double(a + cb, f1, keep);
        add_to_double(b + cb, f2, keep);
    }
}

BINGNN_AVX512 void dbc_block_avx512(const float* x, int64_t set, int64_t cb, int64_t n,
                                    int64_t c, const int64_t* idx, int64_t k, const float* s,
                                    const float* mean, const float* invstd, const float* c1,
                                    const float* c2, float* gx) {
    const int64_t valid = std::min<int64_t>(16, c - cb);
    const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
    const __m512 vs = _mm512_maskz_loadu_ps(keep, s + cb);
    const __m512 vm = _mm512_maskz_loadu_ps(keep, mean + cb);
    const __m512 vi = _mm512_maskz_loadu_ps(keep, invstd + cb);
    const __m512 v1 = _mm512_maskz_loadu_ps(keep, c1 + cb);
    const __m512 v2 = _mm512_maskz_loadu_ps(keep, c2 + cb);
    const float* xs = x + set * n * c + cb;
    float* os = gx + set * n * c + cb;
    const int64_t* is = idx + set * n * k;
    for (int64_t i = 0; i < n; ++i) {
        const __m512 xi = _mm512_maskz_loadu_ps(keep, xs + i * c);
        __m512 gi = _mm512_setzero_ps();
        for (int64_t r = 0; r < k; ++r) {
            const int64_t j = is[i * k + r];
            const __m512 xhat = _mm512_mul_ps(
                _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(keep, xs + j * c), xi), vm), vi);
            const __m512 corr = _mm512_mul_ps(vs, _mm512_add_ps(v1, _mm512_mul_ps(xhat, v2)));
            float* oj = os + j * c;
            _mm512_mask_storeu_ps(oj, keep, _mm512_sub_ps(_mm512_maskz_loadu_ps(keep, oj), corr));
            gi = _mm512_add_ps(gi, corr);
            if (j == i) {
                float* oi = os + i * c;
                _mm512_mask_storeu_ps(oi, keep, _mm512_add_ps(_mm512_maskz_loadu_ps(keep, oi), gi));
                gi = _mm512_setzero_ps();
            }
        }
        float* oi = os + i * c;
        _mm512_mask_storeu_ps(oi, keep, _mm512_add_ps(_mm512_maskz_loadu_ps(keep, oi), gi));
    }
}
#endif

}  // namespace

void edge_diff_select_backward(const float* x, int64_t sets, int64_t n, int64_t c,
                               const int64_t* idx, int64_t k, const float* s, const float* t,
                               const float* mean, const float* invstd, int mode, float clip,
                               const float* gsel, const int64_t* rank, int64_t c_out,
                               const float* w, float* gx, float* g_w, double* sum_gz,
                               double* sum_gzx, int num_threads) {
    for (int64_t ch = 0; ch < c; ++ch) sum_gz[ch] = sum_gzx[ch] = 0.0;
    if (gx != nullptr) std::memset(gx, 0, static_cast<size_t>(sets * n * c) * sizeof(float));
    if (g_w != nullptr) std::memset(g_w, 0, static_cast<size_t>(c_out * c) * sizeof(float));
    if (sets * n == 0 || c == 0) return;
    // Per-set partial sums and g_w, added in set order afterwards: tasks (set, channel block)
    // write disjoint parts, and the result does not depend on the thread count.
    std::vector<double> part_a(static_cast<size_t>(sets * c), 0.0), part_b(part_a.size(), 0.0);
    std::vector<float> part_w(g_w != nullptr ? static_cast<size_t>(sets * c_out * c) : 0, 0.0f);
    const bool vec = active_level() == Level::Avx512;
    for_set_blocks(sets, c, num_threads, [&](int64_t set, int64_t cb) {
        std::vector<float> scratch(static_cast<size_t>(4 * k * 16));
        float* gw = g_w != nullptr ? part_w.data() + set * c_out * c : nullptr;
        double* a = part_a.data() + set * c;
        double* b = part_b.data() + set * c;
#if BINGNN_X86
        if (vec) {
            dsb_block_avx512(x, set, cb, n, c, idx, k, s, t, mean, invstd, mode, clip, gsel, rank,
                             c_out, w, gx, gw, a, b, scratch.data());
            return;
        }
#endif
        dsb_block_scalar(x, set, cb, n, c, idx, k, s, t, mean, invstd, mode, clip, gsel, rank,
                         c_out, w, gx, gw, a, b, scratch.data());
    });
    for (int64_t set = 0; set < sets; ++set)
        for (int64_t ch = 0; ch < c; ++ch) {
            sum_gz[ch] += part_a[set * c + ch];
            sum_gzx[ch] += part_b[set * c + ch];
        }
    if (g_w == nullptr) return;
    for (int64_t set = 0; set < sets; ++set)
        for (int64_t q = 0; q < c_out * c; ++q) g_w[q] = g_w[q] + part_w[set * c_out * c + q];
}

void edge_diff_bn_correction(const float* x, int64_t sets, int64_t n, int64_t c,
                             const int64_t* idx, int64_t k, const float* s, const float* mean,
                             const float* invstd, const float* c1, const float* c2, float* gx,
                             int num_threads) {
    if (sets * n == 0 || c == 0) return;
    const bool vec = active_level() == Level::Avx512;
    for_set_blocks(sets, c, num_threads, [&](int64_t set, int64_t cb) {
#if BINGNN_X86
        if (vec) {
            dbc_block_avx512(x, set, cb, n, c, idx, k, s, mean, invstd, c1, c2, gx);
            return;
        }
#endif
        dbc_block_scalar(x, set, cb, n, c, idx, k, s, mean, invstd, c1, c2, gx);
    });
}

namespace {

#if BINGNN_X86
BINGNN_AVX512 inline __mmask16 keep16(int64_t c, int64_t ch) {
    const int64_t valid = std::min<int64_t>(16, c - ch);
    return static_cast<__mmask16>((1u << valid) - 1u);
}

BINGNN_AVX512 void rp_rows_avx512(const float* x, int64_t r0, int64_t r1, int64_t c,
                                  const float* alpha, const float* slope, float* y) {
    for (int64_t p = r0; p < r1; ++p)
        for (int64_t ch = 0; ch < c; ch += 16) {
            const __mmask16 keep = keep16(c, ch);
            const __m512 z = _mm512_mul_ps(_mm512_maskz_loadu_ps(keep, x + p * c + ch),
                                           _mm512_maskz_loadu_ps(keep, alpha + ch));
            __m512 out = z;
            if (slope != nullptr) {
                const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ);
                out = _mm512_mask_blend_ps(
                    pos, _mm512_mul_ps(z, _mm512_maskz_loadu_ps(keep, slope + ch)), z);
            }
            _mm512_mask_storeu_ps(y + p * c + ch, keep, out);
        }
}

BINGNN_AVX512 void rp_bwd_avx512(const float* g, const float* x, int64_t r0, int64_t r1,
                                 int64_t c, const float* alpha, const float* slope, float* gx,
                                 double* ga, double* gs) {
    for (int64_t ch = 0; ch < c; ++ch) ga[ch] = gs[ch] = 0.0;
    for (int64_t ch = 0; ch < c; ch += 16) {
        const __mmask16 keep = keep16(c, ch);
        const __m512 va = _mm512_maskz_loadu_ps(keep, alpha + ch);
        const __m512 vs = slope != nullptr ? _mm512_maskz_loadu_ps(keep, slope + ch)
                                           : _mm512_set1_ps(1.0f);
        __m512 fa = _mm512_setzero_ps(), fs = _mm512_setzero_ps();
        int64_t since = 0;
        for (int64_t p = r0; p < r1; ++p) {
            const __m512 xv = _mm512_maskz_loadu_ps(keep, x + p * c + ch);
            const __m512 gv = _mm512_maskz_loadu_ps(keep, g + p * c + ch);
            const __m512 z = _mm512_mul_ps(xv, va);
            __m512 gz = gv;
            if (slope != nullptr) {
                const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ);
                gz = _mm512_mask_blend_ps(pos, _mm512_mul_ps(gv, vs), gv);
                fs = _mm512_mask_add_ps(fs, static_cast<__mmask16>(~pos), fs,
                                        _mm512_mul_ps(gv, z));
            }
            fa = _mm512_add_ps(fa, _mm512_mul_ps(gz, xv));
            _mm512_mask_storeu_ps(gx + p * c + ch, keep, _mm512_mul_ps(gz, va));
            if (++since == 16) {  // float32 partial sums over 16 rows, then float64
                add_to_double(ga + ch, fa, keep);
                add_to_double(gs + ch, fs, keep);
                fa = fs = _mm512_setzero_ps();
                since = 0;
            }
        }
        add_to_double(ga + ch, fa, keep);
        add_to_double(gs + ch, fs, keep);
    }
}
#endif

void rp_bwd_scalar(const float* g, const float* x, int64_t r0, int64_t r1, int64_t c,
                   const float* alpha, const float* slope, float* gx, double* ga, double* gs) {
    std::vector<float> fa(static_cast<size_t>(c), 0.0f), fs(static_cast<size_t>(c), 0.0f);
    for (int64_t ch = 0; ch < c; ++ch) ga[ch] = gs[ch] = 0.0;
    int64_t since = 0;
    for (int64_t p = r0; p < r1; ++p) {
        for (int64_t ch = 0; ch < c; ++ch) {
            const float xv = x[p * c + ch], gv = g[p * c + ch];
            const float z = xv * alpha[ch];
            float gz = gv;
            if (slope != nullptr && !(z >= 0.0f)) {
                gz = gv * slope[ch];
                fs[ch] = fs[ch] + gv * z;
            }
            fa[ch] = fa[ch] + gz * xv;
            gx[p * c + ch] = gz * alpha[ch];
        }
        if (++since == 16) {
            for (int64_t ch = 0; ch < c; ++ch) {
                ga[ch] += static_cast<double>(fa[ch]);
                gs[ch] += static_cast<double>(fs[ch]);
                fa[ch] = fs[ch] = 0.0f;
            }
            since = 0;
        }
    }
    for (int64_t ch = 0; ch < c; ++ch) {
        ga[ch] += static_cast<double>(fa[ch]);
        gs[ch] += static_cast<double>(fs[ch]);
    }
}

}  // namespace

void rows_rescale_prelu(const float* x, int64_t rows, int64_t c, const float* alpha,
                        const float* slope, float* y, int num_threads) {
    const bool vec = active_level() == Level::Avx512;
    parallel_for(rows, num_threads, std::max<int64_t>(16, 65536 / std::max<int64_t>(1, c)),
                 [&](int64_t r0, int64_t r1) {
#if BINGNN_X86
                     if (vec) {
                         rp_rows_avx512(x, r0, r1, c, alpha, slope, y);
                         return;
                     }
#endif
                     for (int64_t p = r0; p < r1; ++p)
                         for (int64_t ch = 0; ch < c; ++ch) {
                             const float z = x[p * c + ch] * alpha[ch];
                             y[p * c + ch] = (slope == nullptr || z >= 0.0f) ? z : z * slope[ch];
                         }
                 });
}

void rows_rescale_prelu_backward(const float* g, const float* x, int64_t rows, int64_t c,
                                 const float* alpha, const float* slope, float* gx,
                                 double* g_alpha, double* g_slope, int num_threads) {
    const bool vec = active_level() == Level::Avx512;
    blocked_rows(rows, c, num_threads, g_alpha, g_slope,
                 [&](int64_t r0, int64_t r1, double* a, double* b) {
#if BINGNN_X86
                     if (vec) {
                         rp_bwd_avx512(g, x, r0, r1, c, alpha, slope, gx, a, b);
                         return;
                     }
#endif
                     rp_bwd_scalar(g, x, r0, r1, c, alpha, slope, gx, a, b);
                 });
}

void rows_stats(const float* x, int64_t rows, int64_t c, double* mean, double* var,
                int num_threads) {
    if (c == 0) return;
    if (rows == 0) {
        for (int64_t ch = 0; ch < c; ++ch) mean[ch] = var[ch] = 0.0;
        return;
    }
    std::vector<double> s1(static_cast<size_t>(c)), s2(static_cast<size_t>(c));
    blocked_rows(rows, c, num_threads, s1.data(), s2.data(),
                 [&](int64_t r0, int64_t r1, double* a, double* b) {
                     for (int64_t ch = 0; ch < c; ++ch) a[ch] = b[ch] = 0.0;
                     for (int64_t p = r0; p < r1; ++p)
                         for (int64_t ch = 0; ch < c; ++ch) {
                             const double d = static_cast<double>(x[p * c + ch]) - x[ch];
                             a[ch] += d;
                             b[ch] += d * d;
                         }
                 });
    for (int64_t ch = 0; ch < c; ++ch) {
        const double d = s1[ch] / static_cast<double>(rows);
        mean[ch] = static_cast<double>(x[ch]) + d;
        var[ch] = std::max(0.0, s2[ch] / static_cast<double>(rows) - d * d);
    }
}

void rows_bn_forward(const float* x, int64_t rows, int64_t c, const float* mean,
                     const float* invstd, const float* weight, const float* bias, float* y,
                     int num_threads) {
    parallel_for(rows, num_threads, std::max<int64_t>(16, 65536 / std::max<int64_t>(1, c)),
                 [&](int64_t r0, int64_t r1) {
                     for (int64_t p = r0; p < r1; ++p)
                         for (int64_t ch = 0; ch < c; ++ch) {
                             float v = (x[p * c + ch] - mean[ch]) * invstd[ch];
                             if (weight != nullptr) v = v * weight[ch];
                             if (bias != nullptr) v = v + bias[ch];
                             y[p * c + ch] = v;
                         }
                 });
}

void rows_bn_backward(const float* g, const float* x, int64_t rows, int64_t c, const float* mean,
                      const float* invstd, const float* weight, float* gx, double* sum_g,
                      double* sum_gx, int num_threads) {
    blocked_rows(rows, c, num_threads, sum_g, sum_gx,
                 [&](int64_t r0, int64_t r1, double* a, double* b) {
                     std::vector<float> f1(static_cast<size_t>(c), 0.0f),
                         f2(static_cast<size_t>(c), 0.0f);
                     for (int64_t ch = 0; ch < c; ++ch) a[ch] = b[ch] = 0.0;
                     for (int64_t p = r0; p < r1; ++p)
                         for (int64_t ch = 0; ch < c; ++ch) {
                             const float gv = g[p * c + ch];
                             f1[ch] = f1[ch] + gv;
                             f2[ch] = f2[ch] + gv * ((x[p * c + ch] - mean[ch]) * invstd[ch]);
                         }
                     for (int64_t ch = 0; ch < c; ++ch) {
                         a[ch] = static_cast<double>(f1[ch]);
                         b[ch] = static_cast<double>(f2[ch]);
                     }
                 });
    if (gx == nullptr) return;
    std::vector<float> c1(static_cast<size_t>(c)), c2(static_cast<size_t>(c)),
        sc(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) {
        c1[ch] = static_cast<float>(sum_g[ch] / static_cast<double>(rows));
        c2[ch] = static_cast<float>(sum_gx[ch] / static_cast<double>(rows));
        sc[ch] = weight != nullptr ? invstd[ch] * weight[ch] : invstd[ch];
    }
    parallel_for(rows, num_threads, std::max<int64_t>(16, 65536 / std::max<int64_t>(1, c)),
                 [&](int64_t r0, int64_t r1) {
                     for (int64_t p = r0; p < r1; ++p)
                         for (int64_t ch = 0; ch < c; ++ch) {
                             const float xhat = (x[p * c + ch] - mean[ch]) * invstd[ch];
                             gx[p * c + ch] =
                                 sc[ch] * ((g[p * c + ch] - c1[ch]) - xhat * c2[ch]);
                         }
                 });
}

}  // namespace bingnn
