// Neighbourhood sums and means over a CSR (graph_kernels.hpp): the memory-bound heart of
// GraphSAGE and GCN inference. Sources may be narrow integers (the first layer's exact sums of
// 0/1 features: a quarter of the float32 bytes to stream), rescaled on the fly; the bias and
// PReLU that follow are applied to each finished row. Vectorised across channels; every lane
// does the scalar reference's operations in the same order, so all levels give the same bits.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
// GCC 12's AVX-512 conversion intrinsics pass an "undefined" vector through, which its own
// flow analysis then reports as uninitialised (a false positive inside the system header).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "bingnn_core.hpp"
#include "graph_kernels.hpp"
#include "graph_rows.hpp"

namespace bingnn {
namespace {

template <class T>
inline const T* row_of(const AggSource& s, int64_t j, int64_t c) {
    return static_cast<const T*>(s.data) + j * (s.ld ? s.ld : c);
}

// The finished row: mean, the epilogue, then its bits / node scale (graph_rows.hpp). `v` is
// c floats of scratch.
BINGNN_INLINE void finish_row(float* o, int64_t r, int64_t c, int64_t deg, bool mean,
                              const RowEpilogue& ep, const RowOutput& ro, float* v) {
    if (mean) {
        const float d = static_cast<float>(std::max<int64_t>(1, deg));
        for (int64_t j = 0; j < c; ++j) o[j] = o[j] / d;
    }
    rows::finish(o, r, c, ep, v);
    rows::emit(o, r, c, ro, v);
}

// Per-thread scratch: the accumulated row when the float rows are not kept, and c floats for
// the epilogue.
struct Scratch {
    std::vector<float> row, v;
    Scratch(int64_t c) : row(static_cast<size_t>(c)), v(static_cast<size_t>(c)) {}
    float* at(const RowOutput& ro, int64_t r, int64_t c) {
        return ro.out ? ro.out + r * c : row.data();
    }
};

template <class T>
void rows_scalar(const AggSource& s, int64_t c, const int64_t* indptr, const int32_t* indices,
                 const float* weights, int64_t r0, int64_t r1, bool mean, const RowEpilogue& ep,
                 const RowOutput& ro) {
    Scratch sc(c);
    for (int64_t r = r0; r < r1; ++r) {
        float* o = sc.at(ro, r, c);
        for (int64_t j = 0; j < c; ++j) o[j] = 0.0f;
        for (int64_t e = indptr[r]; e < indptr[r + 1]; ++e) {
            const int64_t src = indices[e];
            const T* x = row_of<T>(s, src, c);
            const float rs = s.row_scale ? s.row_scale[src] : 1.0f;
            const float w = weights ? weights[e] : 1.0f;
            for (int64_t j = 0; j < c; ++j) {
                float v = static_cast<float>(x[j]);
                if (s.row_scale) v = v * rs;
                if (s.alpha) v = v * s.alpha[j];
                if (weights) v = w * v;
                o[j] = o[j] + v;
            }
        }
        finish_row(o, r, c, indptr[r + 1] - indptr[r], mean, ep, ro, sc.v.data());
    }
}

#if BINGNN_X86
// Whole rows at a time: each neighbour row is read once, front to back, and added into the
// output row, which stays in L1. The source rows kAhead entries ahead are prefetched, across
// the boundaries between output rows (on a power-law graph most rows have a handful of
// entries, so a prefetch within one row would rarely happen).
constexpr int64_t kAhead = 8;

template <class T>
inline void prefetch_source(const AggSource& s, const int32_t* indices, int64_t e, int64_t c) {
    const int64_t next = indices[e];
    const char* p = reinterpret_cast<const char*>(row_of<T>(s, next, c));
    const int64_t bytes = c * static_cast<int64_t>(sizeof(T));
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
    if (s.row_scale) _mm_prefetch(reinterpret_cast<const char*>(s.row_scale + next), _MM_HINT_T0);
}

// 16 values from p as float32 (exact for the integer types); the last partial block of a row
// goes through a zeroed buffer.
template <class T>
BINGNN_AVX512 inline __m512 load16(const T* p) {
    if constexpr (std::is_same_v<T, float>) {
        return _mm512_loadu_ps(p);
    } else if constexpr (sizeof(T) == 4) {
        return _mm512_cvtepi32_ps(_mm512_loadu_si512(p));
    } else if constexpr (sizeof(T) == 2) {
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
    } else {
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    }
}

template <class T>
BINGNN_AVX512 inline __m512 load16(const T* p, int64_t n) {
    if (n >= 16) return load16<T>(p);
    alignas(64) T buf[16] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * sizeof(T));
    return load16<T>(buf);
}

template <class T>
BINGNN_AVX512 void rows_avx512(const AggSource& s, int64_t c, const int64_t* indptr,
                               const int32_t* indices, const float* weights, int64_t r0,
                               int64_t r1, bool mean, const RowEpilogue& ep, const RowOutput& ro) {
    Scratch sc(c);
    const int64_t e_stop = indptr[r1];
    const int64_t full = c / 16 * 16;
    const __mmask16 tail = static_cast<__mmask16>((1u << (c - full)) - 1u);
    alignas(64) float alpha_tail[16] = {};
    if (s.alpha && full < c)
        std::memcpy(alpha_tail, s.alpha + full, static_cast<size_t>(c - full) * sizeof(float));
    for (int64_t r = r0; r < r1; ++r) {
        float* o = sc.at(ro, r, c);
        for (int64_t j = 0; j < c; ++j) o[j] = 0.0f;
        const int64_t b = indptr[r], e_end = indptr[r + 1];
        for (int64_t e = b; e < e_end; ++e) {
            if (e + kAhead < e_stop) prefetch_source<T>(s, indices, e + kAhead, c);
            const int64_t src = indices[e];
            const T* x = row_of<T>(s, src, c);
            const __m512 rs = _mm512_set1_ps(s.row_scale ? s.row_scale[src] : 1.0f);
            const __m512 w = _mm512_set1_ps(weights ? weights[e] : 1.0f);
            for (int64_t q = 0; q < c; q += 16) {
                const bool whole = q < full;
                __m512 v = load16<T>(x + q, c - q);
                if (s.row_scale) v = _mm512_mul_ps(v, rs);
                if (s.alpha)
                    v = _mm512_mul_ps(v, _mm512_loadu_ps(whole ? s.alpha + q : alpha_tail));
                if (weights) v = _mm512_mul_ps(w, v);
                if (whole) {
                    _mm512_storeu_ps(o + q, _mm512_add_ps(_mm512_loadu_ps(o + q), v));
                } else {
                    alignas(64) float acc[16] = {};
                    std::memcpy(acc, o + q, static_cast<size_t>(c - q) * sizeof(float));
                    _mm512_mask_storeu_ps(o + q, tail, _mm512_add_ps(_mm512_load_ps(acc), v));
                }
            }
        }
        finish_row(o, r, c, e_end - b, mean, ep, ro, sc.v.data());
    }
}

template <class T>
BINGNN_AVX2 inline __m256 load8(const T* p) {
    if constexpr (std::is_same_v<T, float>) {
        return _mm256_loadu_ps(p);
    } else if constexpr (sizeof(T) == 4) {
        return _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    } else if constexpr (sizeof(T) == 2) {
        return _mm256_cvtepi32_ps(
            _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    } else {
        return _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    }
}

template <class T>
BINGNN_AVX2 void rows_avx2(const AggSource& s, int64_t c, const int64_t* indptr,
                           const int32_t* indices, const float* weights, int64_t r0, int64_t r1,
                           bool mean, const RowEpilogue& ep, const RowOutput& ro) {
    Scratch sc(c);
    const int64_t e_stop = indptr[r1];
    const int64_t full = c / 8 * 8;
    for (int64_t r = r0; r < r1; ++r) {
        float* o = sc.at(ro, r, c);
        for (int64_t j = 0; j < c; ++j) o[j] = 0.0f;
        const int64_t b = indptr[r], e_end = indptr[r + 1];
        for (int64_t e = b; e < e_end; ++e) {
            if (e + kAhead < e_stop) prefetch_source<T>(s, indices, e + kAhead, c);
            const int64_t src = indices[e];
            const T* x = row_of<T>(s, src, c);
            const float rsf = s.row_scale ? s.row_scale[src] : 1.0f;
            const float wf = weights ? weights[e] : 1.0f;
            const __m256 rs = _mm256_set1_ps(rsf), w = _mm256_set1_ps(wf);
            for (int64_t q = 0; q < full; q += 8) {
                __m256 v = load8<T>(x + q);
                if (s.row_scale) v = _mm256_mul_ps(v, rs);
                if (s.alpha) v = _mm256_mul_ps(v, _mm256_loadu_ps(s.alpha + q));
                if (weights) v = _mm256_mul_ps(w, v);
                _mm256_storeu_ps(o + q, _mm256_add_ps(_mm256_loadu_ps(o + q), v));
            }
            for (int64_t j = full; j < c; ++j) {  // the last < 8 channels, as the scalar path
                float v = static_cast<float>(x[j]);
                if (s.row_scale) v = v * rsf;
                if (s.alpha) v = v * s.alpha[j];
                if (weights) v = wf * v;
                o[j] = o[j] + v;
            }
        }
        finish_row(o, r, c, e_end - b, mean, ep, ro, sc.v.data());
    }
}
#endif

template <class T>
void run_rows(Level level, const AggSource& s, int64_t c, const int64_t* indptr,
              const int32_t* indices, const float* weights, int64_t r0, int64_t r1, bool mean,
              const RowEpilogue& ep, const RowOutput& ro) {
#if BINGNN_X86
    if (level == Level::Avx512) {
        rows_avx512<T>(s, c, indptr, indices, weights, r0, r1, mean, ep, ro);
        return;
    }
    if (level == Level::Avx2) {
        rows_avx2<T>(s, c, indptr, indices, weights, r0, r1, mean, ep, ro);
        return;
    }
#endif
    (void)level;
    rows_scalar<T>(s, c, indptr, indices, weights, r0, r1, mean, ep, ro);
}

}  // namespace

void graph_aggregate(const AggSource& src, int64_t c, const int64_t* indptr,
                     const int32_t* indices, const float* weights, int64_t rows, bool mean,
                     const RowEpilogue& ep, const RowOutput& ro, int num_threads) {
    if (rows <= 0 || c == 0) return;
    const Level level = active_level();
    auto run = [&](int64_t r0, int64_t r1) {
        switch (src.elem) {
            case Elem::F32:
                run_rows<float>(level, src, c, indptr, indices, weights, r0, r1, mean, ep, ro);
                break;
            case Elem::I8:
                run_rows<int8_t>(level, src, c, indptr, indices, weights, r0, r1, mean, ep, ro);
                break;
            case Elem::I16:
                run_rows<int16_t>(level, src, c, indptr, indices, weights, r0, r1, mean, ep, ro);
                break;
            case Elem::I32:
                run_rows<int32_t>(level, src, c, indptr, indices, weights, r0, r1, mean, ep, ro);
                break;
        }
    };
    // Split the rows into chunks of equal work (in-edges + 1 per row), not of equal row
    // counts: on a power-law graph a few hubs hold a large share of the edges.
    const int threads = resolve_threads(num_threads);
    const int64_t work = (indptr[rows] - indptr[0]) + rows;
    if (threads <= 1 || work * c < (int64_t{1} << 16)) {
        run(0, rows);
        return;
    }
    parallel_edge_chunks(indptr, rows, threads, run);
}

}  // namespace bingnn
