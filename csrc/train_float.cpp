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

void neighbor_scatter_sum(const float* g, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                          int64_t k, float* out, int num_threads) {
    if (sets == 0 || n == 0 || c == 0) return;
    std::memset(out, 0, static_cast<size_t>(sets * n * c) * sizeof(float));
    if (k == 0) return;
    const Level level = active_level();
    const int64_t ncb = (c + 15) / 16;
    parallel_for(sets * ncb, num_threads, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t set = t / ncb, cb = (t % ncb) * 16;
#if BINGNN_X86
            if (level == Level::Avx512) {
                scatter_task_avx512(g, n, c, idx, k, set, cb, out);
                continue;
            }
#endif
            scatter_task_scalar(g, n, c, idx, k, set, cb, out);
        }
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

}  // namespace bingnn
