// Neighbourhood sums and means over a CSR (graph_kernels.hpp): the memory-bound heart of
// GraphSAGE and GCN inference. Sources may be narrow integers (the first layer's exact sums of
// 0/1 features: a quarter of the float32 bytes to stream), rescaled on the fly; the bias and
// PReLU that follow are applied to each finished row. Vectorised across channels; every lane
// does the scalar reference's operations in the same order, so all levels give the same bits.
// Integer sources without per-row scales or edge weights are summed exactly in integers and
// converted (then rescaled) once per row: exact sums have no order to keep, and the per-edge
// float conversion and multiply were most of the kernel's work above its memory bound.
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

// The finished row: mean, the epilogue, then its bits / node scale (graph_rows.hpp, packed by
// `pack`). `v` is c floats of scratch.
template <class Pack = rows::PackRow>
BINGNN_INLINE void finish_row(float* o, int64_t r, int64_t c, int64_t deg, bool mean,
                              const RowEpilogue& ep, const RowOutput& ro, float* v,
                              Pack pack = Pack{}) {
    if (mean) {
        const float d = static_cast<float>(std::max<int64_t>(1, deg));
        for (int64_t j = 0; j < c; ++j) o[j] = o[j] / d;
    }
    rows::finish(o, r, c, ep, v);
    rows::emit(o, r, c, ro, v, pack);
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

// Exact integer sums (see the header comment): int8/int16 sources, no row_scale, no weights.
template <class T>
constexpr bool kNarrowInt = std::is_integral_v<T> && sizeof(T) <= 2;

inline bool exact_sums(const AggSource& s, const float* weights) {
    return !s.row_scale && !weights;
}

// The row's float values from its exact sums: one rounding to float32, then alpha.
template <class A>
BINGNN_INLINE void sums_to_row(const A* __restrict acc, int64_t c, const float* alpha,
                               float* __restrict o) {
    for (int64_t j = 0; j < c; ++j) o[j] = static_cast<float>(acc[j]);
    if (alpha)
        for (int64_t j = 0; j < c; ++j) o[j] = o[j] * alpha[j];
}

// The portable (and AVX2, where the compiler vectorises it) exact kernel.
template <class T>
BINGNN_INLINE void exact_rows_body(const AggSource& s, int64_t c, const int64_t* indptr,
                                   const int32_t* indices, int64_t r0, int64_t r1, bool mean,
                                   const RowEpilogue& ep, const RowOutput& ro) {
    Scratch sc(c);
    std::vector<int64_t> acc(static_cast<size_t>(c));  // no degree can overflow it
    int64_t* __restrict a = acc.data();
    for (int64_t r = r0; r < r1; ++r) {
        for (int64_t j = 0; j < c; ++j) a[j] = 0;
        for (int64_t e = indptr[r]; e < indptr[r + 1]; ++e) {
            const T* __restrict x = row_of<T>(s, indices[e], c);
            for (int64_t j = 0; j < c; ++j) a[j] += static_cast<int64_t>(x[j]);
        }
        float* o = sc.at(ro, r, c);
        sums_to_row(a, c, s.alpha, o);
        finish_row(o, r, c, indptr[r + 1] - indptr[r], mean, ep, ro, sc.v.data());
    }
}

template <class T>
void exact_rows_scalar(const AggSource& s, int64_t c, const int64_t* indptr,
                       const int32_t* indices, int64_t r0, int64_t r1, bool mean,
                       const RowEpilogue& ep, const RowOutput& ro) {
    exact_rows_body<T>(s, c, indptr, indices, r0, r1, mean, ep, ro);
}

#if BINGNN_X86
template <class T>
BINGNN_AVX2 void exact_rows_avx2(const AggSource& s, int64_t c, const int64_t* indptr,
                                 const int32_t* indices, int64_t r0, int64_t r1, bool mean,
                                 const RowEpilogue& ep, const RowOutput& ro) {
    exact_rows_body<T>(s, c, indptr, indices, r0, r1, mean, ep, ro);
}

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

// rows::pack_row with the threshold signs packed 16 channels per compare: bit = ((o >= hi) |
// (o <= lo)) != negate, false for NaN as in the scalar code.
struct PackRowAvx512 {
    BINGNN_AVX512 void operator()(const float* o, int64_t c, const SignOutput& so,
                                  uint64_t* words) const {
        if (so.sign != SignMode::Threshold) {
            rows::pack_row(o, c, so, words);
            return;
        }
        const int64_t nw = (c + 63) / 64;
        for (int64_t q = 0; q < nw; ++q) words[q] = 0;
        for (int64_t q = 0; q < c; q += 16) {
            const __mmask16 m = lanes16(c - q);
            const __m512 v = _mm512_maskz_loadu_ps(m, o + q);
            const __mmask16 ge = _mm512_mask_cmp_ps_mask(
                m, v, _mm512_maskz_loadu_ps(m, so.hi + q), _CMP_GE_OQ);
            const __mmask16 le = _mm512_mask_cmp_ps_mask(
                m, v, _mm512_maskz_loadu_ps(m, so.lo + q), _CMP_LE_OQ);
            const __mmask16 neg = _mm_mask_test_epi8_mask(
                m, _mm_maskz_loadu_epi8(m, so.negate + q), _mm_set1_epi8(-1));
            const uint64_t bits = static_cast<uint16_t>((ge | le) ^ neg) & m;
            words[q / 64] |= bits << (q % 64);
        }
    }
};

// Exact sums with AVX-512: int8 rows of targets with at most 255 entries add up in int16 lanes
// (|sum| <= 255 * 128 < 2^15: 32 channels per add), other rows in int32 lanes while
// entries * 2^(bits - 1) < 2^31, and the rare hub beyond that in int64 (portable loop).
template <class T>
BINGNN_AVX512 void exact_rows_avx512(const AggSource& s, int64_t c, const int64_t* indptr,
                                     const int32_t* indices, int64_t r0, int64_t r1, bool mean,
                                     const RowEpilogue& ep, const RowOutput& ro) {
    Scratch sc(c);
    const int64_t c32 = (c + 31) / 32 * 32;
    std::vector<int32_t> acc32(static_cast<size_t>(c32));
    std::vector<int16_t> acc16(static_cast<size_t>(c32));
    std::vector<int64_t> acc64;
    int32_t* a32 = acc32.data();
    int16_t* a16 = acc16.data();
    constexpr int64_t kMaxInt32Entries = int64_t{1} << (32 - 8 * sizeof(T));
    const int64_t e_stop = indptr[r1];
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = indptr[r], e_end = indptr[r + 1];
        if (std::is_same_v<T, int8_t> && e_end - b <= 255) {
            for (int64_t q = 0; q < c32; q += 32)
                _mm512_storeu_si512(a16 + q, _mm512_setzero_si512());
            for (int64_t e = b; e < e_end; ++e) {
                if (e + kAhead < e_stop) prefetch_source<T>(s, indices, e + kAhead, c);
                const int8_t* x = reinterpret_cast<const int8_t*>(row_of<T>(s, indices[e], c));
                for (int64_t q = 0; q < c; q += 32) {
                    const __m512i v =
                        _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(lanes32(c - q), x + q));
                    _mm512_storeu_si512(a16 + q, _mm512_add_epi16(_mm512_loadu_si512(a16 + q), v));
                }
            }
            for (int64_t q = 0; q < c32; q += 16)
                _mm512_storeu_si512(a32 + q, _mm512_cvtepi16_epi32(_mm256_loadu_si256(
                                                 reinterpret_cast<const __m256i*>(a16 + q))));
        } else if (e_end - b >= kMaxInt32Entries) {
            acc64.assign(static_cast<size_t>(c), 0);
            for (int64_t e = b; e < e_end; ++e) {
                const T* x = row_of<T>(s, indices[e], c);
                for (int64_t j = 0; j < c; ++j) acc64[j] += static_cast<int64_t>(x[j]);
            }
        } else {
            for (int64_t q = 0; q < c32; q += 16) _mm512_storeu_si512(a32 + q, _mm512_setzero_si512());
            for (int64_t e = b; e < e_end; ++e) {
                if (e + kAhead < e_stop) prefetch_source<T>(s, indices, e + kAhead, c);
                const T* x = row_of<T>(s, indices[e], c);
                for (int64_t q = 0; q < c; q += 16) {
                    const __mmask16 m = lanes16(c - q);
                    __m512i v;
                    if constexpr (sizeof(T) == 1)
                        v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, x + q));
                    else
                        v = _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(m, x + q));
                    _mm512_storeu_si512(a32 + q, _mm512_add_epi32(_mm512_loadu_si512(a32 + q), v));
                }
            }
        }
        float* o = sc.at(ro, r, c);
        if (e_end - b < kMaxInt32Entries) {
            sums_to_row(a32, c, s.alpha, o);
        } else {
            sums_to_row(acc64.data(), c, s.alpha, o);
        }
        finish_row(o, r, c, e_end - b, mean, ep, ro, sc.v.data(), PackRowAvx512{});
    }
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
    if constexpr (kNarrowInt<T>) {
        if (exact_sums(s, weights)) {
#if BINGNN_X86
            if (level == Level::Avx512) {
                exact_rows_avx512<T>(s, c, indptr, indices, r0, r1, mean, ep, ro);
                return;
            }
            if (level == Level::Avx2) {
                exact_rows_avx2<T>(s, c, indptr, indices, r0, r1, mean, ep, ro);
                return;
            }
#endif
            exact_rows_scalar<T>(s, c, indptr, indices, r0, r1, mean, ep, ro);
            return;
        }
    }
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
