// Neighbourhood sums and means over a CSR (graph_kernels.hpp): the memory-bound heart of
// GraphSAGE and GCN inference. Vectorised across channels; every lane does the scalar
// reference's operations in the same order, so all levels give the same bits.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#include "bingnn_core.hpp"
#include "graph_kernels.hpp"

namespace bingnn {
namespace {

void rows_scalar(const float* h, int64_t c, const int64_t* indptr, const int32_t* indices,
                 const float* weights, int64_t r0, int64_t r1, bool mean, float* out) {
    for (int64_t r = r0; r < r1; ++r) {
        float* o = out + r * c;
        for (int64_t j = 0; j < c; ++j) o[j] = 0.0f;
        for (int64_t e = indptr[r]; e < indptr[r + 1]; ++e) {
            const float* x = h + static_cast<int64_t>(indices[e]) * c;
            if (weights) {
                const float w = weights[e];
                for (int64_t j = 0; j < c; ++j) {
                    const float m = w * x[j];
                    o[j] = o[j] + m;
                }
            } else {
                for (int64_t j = 0; j < c; ++j) o[j] = o[j] + x[j];
            }
        }
        if (mean) {
            const float d = static_cast<float>(std::max<int64_t>(1, indptr[r + 1] - indptr[r]));
            for (int64_t j = 0; j < c; ++j) o[j] = o[j] / d;
        }
    }
}

#if BINGNN_X86
// Whole rows at a time: each neighbour row is read once, front to back (the hardware
// prefetcher streams it), and added into the output row, which stays in L1. The rows of the
// next neighbours are prefetched (they are random accesses into h).
constexpr int64_t kAhead = 1 << 30;  // TEMP no prefetch

inline void prefetch_row(const float* x, int64_t c) {
    for (int64_t q = 0; q < c; q += 16) _mm_prefetch(reinterpret_cast<const char*>(x + q),
                                                      _MM_HINT_T0);
}

BINGNN_AVX2 void rows_avx2(const float* h, int64_t c, const int64_t* indptr,
                           const int32_t* indices, const float* weights, int64_t r0, int64_t r1,
                           bool mean, float* out) {
    const int64_t full = c / 8 * 8;
    alignas(32) int32_t mask_words[8];
    for (int l = 0; l < 8; ++l) mask_words[l] = l < c - full ? -1 : 0;
    const __m256i tail = _mm256_load_si256(reinterpret_cast<const __m256i*>(mask_words));
    for (int64_t r = r0; r < r1; ++r) {
        float* o = out + r * c;
        for (int64_t j = 0; j < c; ++j) o[j] = 0.0f;
        const int64_t b = indptr[r], e_end = indptr[r + 1];
        for (int64_t e = b; e < e_end; ++e) {
            if (e + kAhead < e_end)
                prefetch_row(h + static_cast<int64_t>(indices[e + kAhead]) * c, c);
            const float* x = h + static_cast<int64_t>(indices[e]) * c;
            if (weights) {
                const __m256 w = _mm256_set1_ps(weights[e]);
                for (int64_t q = 0; q < full; q += 8) {
                    const __m256 m = _mm256_mul_ps(w, _mm256_loadu_ps(x + q));
                    _mm256_storeu_ps(o + q, _mm256_add_ps(_mm256_loadu_ps(o + q), m));
                }
                if (full < c) {
                    const __m256 m = _mm256_mul_ps(w, _mm256_maskload_ps(x + full, tail));
                    _mm256_maskstore_ps(o + full, tail,
                                        _mm256_add_ps(_mm256_maskload_ps(o + full, tail), m));
                }
            } else {
                for (int64_t q = 0; q < full; q += 8)
                    _mm256_storeu_ps(o + q, _mm256_add_ps(_mm256_loadu_ps(o + q),
                                                          _mm256_loadu_ps(x + q)));
                if (full < c)
                    _mm256_maskstore_ps(o + full, tail,
                                        _mm256_add_ps(_mm256_maskload_ps(o + full, tail),
                                                      _mm256_maskload_ps(x + full, tail)));
            }
        }
        if (mean) {
            const float d = static_cast<float>(std::max<int64_t>(1, e_end - b));
            for (int64_t j = 0; j < c; ++j) o[j] = o[j] / d;
        }
    }
}

BINGNN_AVX512 void rows_avx512(const float* h, int64_t c, const int64_t* indptr,
                               const int32_t* indices, const float* weights, int64_t r0,
                               int64_t r1, bool mean, float* out) {
    const int64_t full = c / 16 * 16;
    const __mmask16 tail = static_cast<__mmask16>((1u << (c - full)) - 1u);
    for (int64_t r = r0; r < r1; ++r) {
        float* o = out + r * c;
        for (int64_t j = 0; j < c; ++j) o[j] = 0.0f;
        const int64_t b = indptr[r], e_end = indptr[r + 1];
        for (int64_t e = b; e < e_end; ++e) {
            if (e + kAhead < e_end)
                prefetch_row(h + static_cast<int64_t>(indices[e + kAhead]) * c, c);
            const float* x = h + static_cast<int64_t>(indices[e]) * c;
            if (weights) {
                const __m512 w = _mm512_set1_ps(weights[e]);
                for (int64_t q = 0; q < full; q += 16) {
                    const __m512 m = _mm512_mul_ps(w, _mm512_loadu_ps(x + q));
                    _mm512_storeu_ps(o + q, _mm512_add_ps(_mm512_loadu_ps(o + q), m));
                }
                if (full < c) {
                    const __m512 m = _mm512_mul_ps(w, _mm512_maskz_loadu_ps(tail, x + full));
                    _mm512_mask_storeu_ps(o + full, tail,
                                          _mm512_add_ps(_mm512_maskz_loadu_ps(tail, o + full),
                                                        m));
                }
            } else {
                for (int64_t q = 0; q < full; q += 16)
                    _mm512_storeu_ps(o + q, _mm512_add_ps(_mm512_loadu_ps(o + q),
                                                          _mm512_loadu_ps(x + q)));
                if (full < c)
                    _mm512_mask_storeu_ps(o + full, tail,
                                          _mm512_add_ps(_mm512_maskz_loadu_ps(tail, o + full),
                                                        _mm512_maskz_loadu_ps(tail, x + full)));
            }
        }
        if (mean) {
            const __m512 d = _mm512_set1_ps(static_cast<float>(std::max<int64_t>(1, e_end - b)));
            for (int64_t q = 0; q < full; q += 16)
                _mm512_storeu_ps(o + q, _mm512_div_ps(_mm512_loadu_ps(o + q), d));
            const float ds = static_cast<float>(std::max<int64_t>(1, e_end - b));
            for (int64_t j = full; j < c; ++j) o[j] = o[j] / ds;
        }
    }
}
#endif

}  // namespace

void graph_aggregate(const float* h, int64_t c, const int64_t* indptr, const int32_t* indices,
                     const float* weights, int64_t rows, bool mean, float* out, int num_threads) {
    if (rows <= 0 || c == 0) return;
    const Level level = active_level();
    auto run = [&](int64_t r0, int64_t r1) {
#if BINGNN_X86
        if (level == Level::Avx512) {
            rows_avx512(h, c, indptr, indices, weights, r0, r1, mean, out);
            return;
        }
        if (level == Level::Avx2) {
            rows_avx2(h, c, indptr, indices, weights, r0, r1, mean, out);
            return;
        }
#endif
        rows_scalar(h, c, indptr, indices, weights, r0, r1, mean, out);
    };
    // Split the rows into chunks of equal work (in-edges + 1 per row), not of equal row
    // counts: on a power-law graph a few hubs hold a large share of the edges.
    const int threads = resolve_threads(num_threads);
    const int64_t work = (indptr[rows] - indptr[0]) + rows;
    if (threads <= 1 || work * c < (int64_t{1} << 16)) {
        run(0, rows);
        return;
    }
    const int64_t chunks = std::min<int64_t>(rows, int64_t{8} * threads);
    std::vector<int64_t> bounds(static_cast<size_t>(chunks + 1), rows);
    bounds[0] = 0;
    for (int64_t q = 1; q < chunks; ++q) {
        const int64_t target = work * q / chunks;
        // first row r with (indptr[r] - indptr[0]) + r >= target
        int64_t lo = bounds[static_cast<size_t>(q - 1)], hi = rows;
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if ((indptr[mid] - indptr[0]) + mid < target)
                lo = mid + 1;
            else
                hi = mid;
        }
        bounds[static_cast<size_t>(q)] = lo;
    }
    parallel_for(chunks, threads, 1, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q)
            run(bounds[static_cast<size_t>(q)], bounds[static_cast<size_t>(q + 1)]);
    });
}

}  // namespace bingnn
