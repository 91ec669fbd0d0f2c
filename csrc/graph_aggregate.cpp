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
// Channels in blocks of 8 (AVX2) / 16 (AVX-512) floats, the remainder with masked loads.
BINGNN_AVX2 void rows_avx2(const float* h, int64_t c, const int64_t* indptr,
                           const int32_t* indices, const float* weights, int64_t r0, int64_t r1,
                           bool mean, float* out) {
    const int64_t full = c / 8 * 8;
    const int rem = static_cast<int>(c - full);
    alignas(32) int32_t mask_words[8];
    for (int l = 0; l < 8; ++l) mask_words[l] = l < rem ? -1 : 0;
    const __m256i tail = _mm256_load_si256(reinterpret_cast<const __m256i*>(mask_words));
    for (int64_t r = r0; r < r1; ++r) {
        float* o = out + r * c;
        const int64_t b = indptr[r], e_end = indptr[r + 1];
        for (int64_t j = 0; j < c; j += 32) {
            // Up to four 8-float accumulators kept in registers over the whole row.
            const int64_t stop = std::min(c, j + 32);
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                             _mm256_setzero_ps()};
            for (int64_t e = b; e < e_end; ++e) {
                const float* x = h + static_cast<int64_t>(indices[e]) * c;
                const __m256 w = weights ? _mm256_set1_ps(weights[e]) : _mm256_set1_ps(1.0f);
                for (int64_t q = j, a = 0; q < stop; q += 8, ++a) {
                    __m256 v = q + 8 <= full ? _mm256_loadu_ps(x + q)
                                             : _mm256_maskload_ps(x + q, tail);
                    if (weights) v = _mm256_mul_ps(w, v);
                    acc[a] = _mm256_add_ps(acc[a], v);
                }
            }
            const __m256 d = _mm256_set1_ps(
                static_cast<float>(std::max<int64_t>(1, e_end - b)));
            for (int64_t q = j, a = 0; q < stop; q += 8, ++a) {
                const __m256 v = mean ? _mm256_div_ps(acc[a], d) : acc[a];
                if (q + 8 <= full)
                    _mm256_storeu_ps(o + q, v);
                else
                    _mm256_maskstore_ps(o + q, tail, v);
            }
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
        const int64_t b = indptr[r], e_end = indptr[r + 1];
        for (int64_t j = 0; j < c; j += 64) {
            const int64_t stop = std::min(c, j + 64);
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                             _mm512_setzero_ps()};
            for (int64_t e = b; e < e_end; ++e) {
                const float* x = h + static_cast<int64_t>(indices[e]) * c;
                if (e + 4 < e_end)  // the rows of the next neighbours are random accesses
                    _mm_prefetch(reinterpret_cast<const char*>(
                                     h + static_cast<int64_t>(indices[e + 4]) * c + j),
                                 _MM_HINT_T0);
                const __m512 w = weights ? _mm512_set1_ps(weights[e]) : _mm512_set1_ps(1.0f);
                for (int64_t q = j, a = 0; q < stop; q += 16, ++a) {
                    __m512 v = q + 16 <= full ? _mm512_loadu_ps(x + q)
                                              : _mm512_maskz_loadu_ps(tail, x + q);
                    if (weights) v = _mm512_mul_ps(w, v);
                    acc[a] = _mm512_add_ps(acc[a], v);
                }
            }
            const __m512 d = _mm512_set1_ps(
                static_cast<float>(std::max<int64_t>(1, e_end - b)));
            for (int64_t q = j, a = 0; q < stop; q += 16, ++a) {
                const __m512 v = mean ? _mm512_div_ps(acc[a], d) : acc[a];
                if (q + 16 <= full)
                    _mm512_storeu_ps(o + q, v);
                else
                    _mm512_mask_storeu_ps(o + q, tail, v);
            }
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
