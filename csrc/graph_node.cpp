// Node-wise steps of the graph models (graph_kernels.hpp): the +-1 gather-add of the first
// layer, threshold packing, per-node centring and scale, and the float32 epilogue. Every
// level does the scalar reference's float operations in the same order.
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
#include <atomic>
#include <cmath>
#include <type_traits>
#include <vector>

#include "bingnn_core.hpp"
#include "graph_kernels.hpp"
#include "graph_rows.hpp"

namespace bingnn {
namespace {

// +-1 table of the packed weights: t[f * c_out + o] = bit f of row o ? +1 : -1.
std::vector<float> sign_table(const uint64_t* w, int64_t c_out, int64_t f_in) {
    const int64_t words = n_words(f_in);
    std::vector<float> t(static_cast<size_t>(f_in * c_out));
    for (int64_t f = 0; f < f_in; ++f) {  // rows of the table written front to back
        float* tf = t.data() + f * c_out;
        const int64_t word = f / 64, bit = f % 64;
        for (int64_t o = 0; o < c_out; ++o)
            tf[o] = ((w[o * words + word] >> bit) & 1u) ? 1.0f : -1.0f;
    }
    return t;
}

// The stored entries of one input row: feature ids f[0..n) (increasing) and their values
// v[0..n) (v == nullptr: every value is 1).
struct Entries {
    const int32_t* f;
    const float* v;
    int64_t n;
};

// z_row = sum over the entries, in order, of v * t_f (v * +-1 is exact, then one rounding).
void gather_row_scalar(const float* t, int64_t c_out, const Entries& e, float* z) {
    for (int64_t o = 0; o < c_out; ++o) z[o] = 0.0f;
    for (int64_t q = 0; q < e.n; ++q) {
        const float* tf = t + static_cast<int64_t>(e.f[q]) * c_out;
        const float v = e.v ? e.v[q] : 1.0f;
        for (int64_t o = 0; o < c_out; ++o) {
            const float p = v * tf[o];
            z[o] = z[o] + p;
        }
    }
}

#if BINGNN_X86
// Blocks of 128 output channels held in eight registers over all the entries of the row.
BINGNN_AVX512 void gather_row_avx512(const float* t, int64_t c_out, const Entries& e,
                                     float* z) {
    const int64_t full = c_out / 16 * 16;
    const __mmask16 tail = static_cast<__mmask16>((1u << (c_out - full)) - 1u);
    for (int64_t j = 0; j < c_out; j += 128) {
        const int64_t stop = std::min(c_out, j + 128);
        __m512 acc[8];
        for (auto& a : acc) a = _mm512_setzero_ps();
        for (int64_t q = 0; q < e.n; ++q) {
            const float* tf = t + static_cast<int64_t>(e.f[q]) * c_out;
            const __m512 vv = _mm512_set1_ps(e.v ? e.v[q] : 1.0f);
            for (int64_t c = j, a = 0; c < stop; c += 16, ++a) {
                const __m512 s = c + 16 <= full ? _mm512_loadu_ps(tf + c)
                                                : _mm512_maskz_loadu_ps(tail, tf + c);
                acc[a] = _mm512_add_ps(acc[a], _mm512_mul_ps(vv, s));
            }
        }
        for (int64_t c = j, a = 0; c < stop; c += 16, ++a) {
            if (c + 16 <= full)
                _mm512_storeu_ps(z + c, acc[a]);
            else
                _mm512_mask_storeu_ps(z + c, tail, acc[a]);
        }
    }
}
#endif

// Integer version for exact-integer inputs: z += int(v) * s_f, exact in the accumulator type
// (int16 when every row's sum of |v| is at most 32767, so no partial sum can overflow).
// Returns false when a value is not an integer or the row's sum of |v| exceeds `limit`
// (checked before the value is used).
template <class Acc>
BINGNN_INLINE bool gather_int_body(const Acc* __restrict t, int64_t c_out, const Entries& e,
                                   Acc* __restrict acc, double limit) {
    for (int64_t o = 0; o < c_out; ++o) acc[o] = 0;
    double l1 = 0.0;
    for (int64_t q = 0; q < e.n; ++q) {
        const float v = e.v ? e.v[q] : 1.0f;
        const float iv = std::nearbyint(v);
        l1 += std::fabs(static_cast<double>(v));
        if (iv != v || l1 > limit) return false;
        const auto k = static_cast<Acc>(iv);
        const Acc* __restrict tf = t + static_cast<int64_t>(e.f[q]) * c_out;
        if (k == 1) {
            for (int64_t o = 0; o < c_out; ++o) acc[o] = static_cast<Acc>(acc[o] + tf[o]);
        } else {
            for (int64_t o = 0; o < c_out; ++o) acc[o] = static_cast<Acc>(acc[o] + k * tf[o]);
        }
    }
    return true;
}

template <class Acc>
bool gather_int_scalar(const Acc* t, int64_t c_out, const Entries& e, Acc* acc, double limit) {
    return gather_int_body(t, c_out, e, acc, limit);
}

#if BINGNN_X86
template <class Acc>
BINGNN_AVX2 bool gather_int_avx2(const Acc* t, int64_t c_out, const Entries& e, Acc* acc,
                                 double limit) {
    return gather_int_body(t, c_out, e, acc, limit);
}

template <class Acc>
BINGNN_AVX512 bool gather_int_avx512(const Acc* t, int64_t c_out, const Entries& e, Acc* acc,
                                     double limit) {
    if constexpr (!std::is_same_v<Acc, int16_t>) {
        return gather_int_body(t, c_out, e, acc, limit);
    } else {
        // int16: the entries are checked first (same verdict as gather_int_body), then blocks
        // of 512 channels stay in sixteen registers over all the entries of the row, instead
        // of a load and a store of the accumulator row per entry.
        double l1 = 0.0;
        bool unit = true;
        for (int64_t q = 0; q < e.n; ++q) {
            const float v = e.v ? e.v[q] : 1.0f;
            const float iv = std::nearbyint(v);
            l1 += std::fabs(static_cast<double>(v));
            if (iv != v || l1 > limit) return false;
            unit = unit && iv == 1.0f;
        }
        for (int64_t j = 0; j < c_out; j += 512) {
            const int64_t stop = std::min(c_out, j + 512);
            __m512i a[16];
            for (auto& x : a) x = _mm512_setzero_si512();
            for (int64_t q = 0; q < e.n; ++q) {
                const int16_t* tf = t + static_cast<int64_t>(e.f[q]) * c_out;
                const __m512i k = _mm512_set1_epi16(
                    unit ? 1 : static_cast<int16_t>(std::nearbyint(e.v[q])));
                for (int64_t c = j, i = 0; c < stop; c += 32, ++i) {
                    const __m512i s = _mm512_maskz_loadu_epi16(lanes32(stop - c), tf + c);
                    a[i] = _mm512_add_epi16(a[i], unit ? s : _mm512_mullo_epi16(k, s));
                }
            }
            for (int64_t c = j, i = 0; c < stop; c += 32, ++i)
                _mm512_mask_storeu_epi16(acc + c, lanes32(stop - c), a[i]);
        }
        return true;
    }
}

// The non-zero entries of a dense row, 16 floats per compare-and-compress.
BINGNN_AVX512 int64_t compact_avx512(const float* x, int64_t f_in, int32_t* f_buf,
                                     float* v_buf) {
    int64_t n = 0;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                           15);
    int64_t f = 0;
    for (; f + 16 <= f_in; f += 16) {
        const __m512 v = _mm512_loadu_ps(x + f);
        const __mmask16 nz = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        if (!nz) continue;
        const __m512i ids = _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int>(f)));
        // Compress in registers, then a full store (the buffers have 16 spare slots): the
        // compress-to-memory form is microcoded and slow on some CPUs.
        _mm512_storeu_si512(f_buf + n, _mm512_maskz_compress_epi32(nz, ids));
        _mm512_storeu_ps(v_buf + n, _mm512_maskz_compress_ps(nz, v));
        n += __builtin_popcount(nz);
    }
    for (; f < f_in; ++f)
        if (x[f] != 0.0f) {
            f_buf[n] = static_cast<int32_t>(f);
            v_buf[n++] = x[f];
        }
    return n;
}
#endif

int64_t compact_scalar(const float* x, int64_t f_in, int32_t* f_buf, float* v_buf) {
    int64_t n = 0;
    for (int64_t f = 0; f < f_in; ++f)
        if (x[f] != 0.0f) {
            f_buf[n] = static_cast<int32_t>(f);
            v_buf[n++] = x[f];
        }
    return n;
}

template <class Acc>
bool gather_int(Level level, const Acc* t, int64_t c_out, const Entries& e, Acc* acc,
                double limit) {
#if BINGNN_X86
    if (level == Level::Avx512) return gather_int_avx512(t, c_out, e, acc, limit);
    if (level == Level::Avx2) return gather_int_avx2(t, c_out, e, acc, limit);
#endif
    (void)level;
    return gather_int_scalar(t, c_out, e, acc, limit);
}

// Narrow the accumulated row into the output type.
template <class Acc>
void store_row(const Acc* acc, int64_t c_out, Elem elem, void* z, int64_t r) {
    if (elem == Elem::I8) {
        auto* o = static_cast<int8_t*>(z) + r * c_out;
        for (int64_t q = 0; q < c_out; ++q) o[q] = static_cast<int8_t>(acc[q]);
    } else if (elem == Elem::I16) {
        auto* o = static_cast<int16_t*>(z) + r * c_out;
        for (int64_t q = 0; q < c_out; ++q) o[q] = static_cast<int16_t>(acc[q]);
    } else {
        auto* o = static_cast<int32_t*>(z) + r * c_out;
        for (int64_t q = 0; q < c_out; ++q) o[q] = static_cast<int32_t>(acc[q]);
    }
}

// Runs the gather-add over all rows; entries_of(r, f_buf, v_buf) returns row r's entries
// (dense rows are compacted into the per-thread buffers).
template <class EntriesOf>
bool signed_linear_rows(const uint64_t* w, int64_t c_out, int64_t f_in, int64_t rows,
                        Elem elem, void* z, int num_threads, int64_t grain,
                        EntriesOf&& entries_of) {
    const std::vector<float> table = sign_table(w, c_out, f_in);
    const float* t = table.data();
    const Level level = active_level();
    const bool narrow = elem == Elem::I8 || elem == Elem::I16;
    std::vector<int16_t> t16(narrow ? table.size() : 0);
    std::vector<int32_t> t32(elem == Elem::I32 ? table.size() : 0);
    for (size_t q = 0; q < t16.size(); ++q) t16[q] = static_cast<int16_t>(table[q]);
    for (size_t q = 0; q < t32.size(); ++q) t32[q] = static_cast<int32_t>(table[q]);
    const double limit = elem == Elem::I8 ? 127.0 : elem == Elem::I16 ? 32767.0 : 2147483647.0;
    std::atomic<bool> ok{true};
    parallel_for(rows, num_threads, grain, [&](int64_t r0, int64_t r1) {
        std::vector<int32_t> f_buf(static_cast<size_t>(f_in + 16));  // + 16: see compact_avx512
        std::vector<float> v_buf(static_cast<size_t>(f_in + 16));
        std::vector<int16_t> a16(narrow ? static_cast<size_t>(c_out) : 0);
        std::vector<int32_t> a32(elem == Elem::I32 ? static_cast<size_t>(c_out) : 0);
        for (int64_t r = r0; r < r1; ++r) {
            const Entries e = entries_of(r, level, f_buf.data(), v_buf.data());
            if (elem == Elem::F32) {
                float* zr = static_cast<float*>(z) + r * c_out;
#if BINGNN_X86
                if (level == Level::Avx512) {
                    gather_row_avx512(t, c_out, e, zr);
                    continue;
                }
#endif
                gather_row_scalar(t, c_out, e, zr);
                continue;
            }
            const bool row_ok = narrow ? gather_int(level, t16.data(), c_out, e, a16.data(), limit)
                                       : gather_int(level, t32.data(), c_out, e, a32.data(),
                                                    limit);
            if (!row_ok) {
                ok = false;
                return;
            }
            if (narrow)
                store_row(a16.data(), c_out, elem, z, r);
            else
                store_row(a32.data(), c_out, elem, z, r);
        }
    });
    return ok;
}

// ---- ATen's inner sum (8-float lanes): the cascade of multi_row_sum / row_sum.
constexpr int kLanes = 8;

struct Lanes {
    float v[kLanes];
};

inline void add_to(float* acc, const float* x, int n) {
    for (int l = 0; l < n; ++l) acc[l] = acc[l] + x[l];
}

// row_sum over `size` consecutive vectors of `width` floats (width 1 or kLanes), 4-way ILP,
// each of the 4 partial sums a 4-level cascade (ATen's multi_row_sum).
void row_sum(const float* x, int64_t size, int width, float* out) {
    constexpr int levels = 4;
    const int64_t groups = size / 4;
    float acc[levels][4][kLanes] = {};
    int64_t power = 4;
    {
        const int64_t ceil_log2 = groups <= 2 ? 1 : 64 - __builtin_clzll(
                                                         static_cast<uint64_t>(groups - 1));
        power = std::max<int64_t>(4, ceil_log2 / levels);
    }
    const int64_t step = int64_t{1} << power, mask = step - 1;
    int64_t i = 0;
    for (; i + step <= groups;) {
        for (int64_t j = 0; j < step; ++j, ++i)
            for (int k = 0; k < 4; ++k) add_to(acc[0][k], x + (4 * i + k) * width, width);
        for (int j = 1; j < levels; ++j) {
            for (int k = 0; k < 4; ++k) {
                add_to(acc[j][k], acc[j - 1][k], width);
                for (int l = 0; l < width; ++l) acc[j - 1][k][l] = 0.0f;
            }
            if ((i & (mask << (j * power))) != 0) break;
        }
    }
    for (; i < groups; ++i)
        for (int k = 0; k < 4; ++k) add_to(acc[0][k], x + (4 * i + k) * width, width);
    for (int j = 1; j < levels; ++j)
        for (int k = 0; k < 4; ++k) add_to(acc[0][k], acc[j][k], width);
    for (int l = 0; l < width; ++l) out[l] = acc[0][0][l];
    for (int64_t q = groups * 4; q < size; ++q) add_to(out, x + q * width, width);
    for (int k = 1; k < 4; ++k) add_to(out, acc[0][k], width);
}

}  // namespace

float aten_row_sum(const float* x, int64_t c) {
    float out[kLanes];
    if (c < kLanes) {
        row_sum(x, c, 1, out);
        return out[0];
    }
    const int64_t nv = c / kLanes;
    row_sum(x, nv, kLanes, out);
    float fin = 0.0f;
    for (int64_t q = nv * kLanes; q < c; ++q) fin = fin + x[q];
    for (int l = 0; l < kLanes; ++l) fin = fin + out[l];
    return fin;
}

bool graph_signed_linear_csr(const int64_t* indptr, const int32_t* indices, const float* data,
                             int64_t rows, const uint64_t* w, int64_t c_out, int64_t f_in,
                             Elem out, void* z, int num_threads) {
    const int64_t nnz = indptr[rows] - indptr[0];
    const int64_t grain = std::max<int64_t>(16, rows * 2048 / std::max<int64_t>(1, nnz * c_out));
    return signed_linear_rows(w, c_out, f_in, rows, out, z, num_threads, grain,
                              [&](int64_t r, Level, int32_t*, float*) {
                                  const int64_t b = indptr[r];
                                  return Entries{indices + b, data ? data + b : nullptr,
                                                 indptr[r + 1] - b};
                              });
}

bool graph_signed_linear_dense(const float* x, int64_t rows, int64_t f_in, const uint64_t* w,
                               int64_t c_out, Elem out, void* z, int num_threads) {
    const int64_t grain = std::max<int64_t>(16, 4096 / std::max<int64_t>(1, f_in));
    return signed_linear_rows(w, c_out, f_in, rows, out, z, num_threads, grain,
                              [&](int64_t r, Level level, int32_t* f_buf, float* v_buf) {
                                  const float* xr = x + r * f_in;
#if BINGNN_X86
                                  if (level == Level::Avx512)
                                      return Entries{f_buf, v_buf,
                                                     compact_avx512(xr, f_in, f_buf, v_buf)};
#endif
                                  (void)level;
                                  return Entries{f_buf, v_buf,
                                                 compact_scalar(xr, f_in, f_buf, v_buf)};
                              });
}

namespace {

// Statistics of rows [r0, r1): finite, integral, and the largest row sum of |x| when every value
// is an integer below 2^23 in magnitude (exact, in int64), else HUGE_VAL. Branch-free per value
// so the compiler vectorises it.
BINGNN_INLINE FeatureStats stats_body(const float* x, int64_t r0, int64_t r1, int64_t f) {
    FeatureStats st;
    for (int64_t r = r0; r < r1; ++r) {
        const float* __restrict xr = x + r * f;
        int64_t l1 = 0;
        int finite = 1, integral = 1, small = 1;
        for (int64_t q = 0; q < f; ++q) {
            const float v = xr[q];
            const float a = std::fabs(v);
            finite &= (v - v) == 0.0f;  // NaN and +-inf give NaN
            const int fits = a < 8388608.0f;
            small &= fits;
            const float t = fits ? a : 0.0f;
            const auto it = static_cast<int32_t>(t);
            integral &= static_cast<float>(it) == t;
            l1 += it;
        }
        st.finite &= finite != 0;
        st.integral &= finite != 0 && integral != 0;
        const double row = (finite && integral && small) ? static_cast<double>(l1) : HUGE_VAL;
        st.max_l1 = std::max(st.max_l1, row);
    }
    return st;
}

FeatureStats stats_scalar(const float* x, int64_t r0, int64_t r1, int64_t f) {
    return stats_body(x, r0, r1, f);
}

#if BINGNN_X86
BINGNN_AVX512 FeatureStats stats_avx512(const float* x, int64_t r0, int64_t r1, int64_t f) {
    return stats_body(x, r0, r1, f);
}

BINGNN_AVX2 FeatureStats stats_avx2(const float* x, int64_t r0, int64_t r1, int64_t f) {
    return stats_body(x, r0, r1, f);
}
#endif

}  // namespace

FeatureStats graph_feature_stats(const float* x, int64_t rows, int64_t f, int num_threads) {
    const int threads = resolve_threads(num_threads);
    std::vector<FeatureStats> part(static_cast<size_t>(std::max(1, threads)));
    const int64_t chunk = (rows + threads - 1) / std::max(1, threads);
    const Level level = active_level();
    parallel_for(threads, threads, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t r0 = std::min(rows, t * chunk), r1 = std::min(rows, (t + 1) * chunk);
#if BINGNN_X86
            if (level == Level::Avx512) {
                part[static_cast<size_t>(t)] = stats_avx512(x, r0, r1, f);
                continue;
            }
            if (level == Level::Avx2) {
                part[static_cast<size_t>(t)] = stats_avx2(x, r0, r1, f);
                continue;
            }
#endif
            part[static_cast<size_t>(t)] = stats_scalar(x, r0, r1, f);
        }
    });
    (void)level;
    FeatureStats all;
    for (const auto& p : part) {
        all.finite &= p.finite;
        all.integral &= p.integral;
        all.max_l1 = std::max(all.max_l1, p.max_l1);
    }
    return all;
}

namespace {

void threshold_rows_scalar(const float* v, int64_t c, const float* lo, const float* hi,
                           const uint8_t* negate, int64_t r0, int64_t r1, uint64_t* out) {
    const int64_t words = n_words(c);
    for (int64_t r = r0; r < r1; ++r) {
        const float* x = v + r * c;
        uint64_t* o = out + r * words;
        for (int64_t q = 0; q < words; ++q) o[q] = 0;
        for (int64_t j = 0; j < c; ++j) {
            const bool bit = ((x[j] >= hi[j]) || (x[j] <= lo[j])) != (negate[j] != 0);
            if (bit) o[j / 64] |= uint64_t{1} << (j % 64);
        }
    }
}

#if BINGNN_X86
BINGNN_AVX512 void threshold_rows_avx512(const float* v, int64_t c, const float* lo,
                                         const float* hi, const uint64_t* neg_words, int64_t r0,
                                         int64_t r1, uint64_t* out) {
    const int64_t words = n_words(c);
    for (int64_t r = r0; r < r1; ++r) {
        const float* x = v + r * c;
        uint64_t* o = out + r * words;
        for (int64_t q = 0; q < words; ++q) {
            uint64_t word = 0;
            for (int part = 0; part < 4; ++part) {
                const int64_t j = q * 64 + part * 16;
                if (j >= c) break;
                const int64_t cnt = std::min<int64_t>(16, c - j);
                const __mmask16 m = static_cast<__mmask16>(cnt == 16 ? 0xFFFFu
                                                                     : (1u << cnt) - 1u);
                const __m512 xv = _mm512_maskz_loadu_ps(m, x + j);
                const __mmask16 ge = _mm512_mask_cmp_ps_mask(m, xv, _mm512_maskz_loadu_ps(
                                                                        m, hi + j), _CMP_GE_OQ);
                const __mmask16 le = _mm512_mask_cmp_ps_mask(m, xv, _mm512_maskz_loadu_ps(
                                                                        m, lo + j), _CMP_LE_OQ);
                word |= static_cast<uint64_t>(static_cast<uint16_t>(ge | le)) << (part * 16);
            }
            o[q] = word ^ neg_words[q];
        }
    }
}
#endif

}  // namespace

void graph_threshold_pack(const float* v, int64_t rows, int64_t c, const float* lo,
                          const float* hi, const uint8_t* negate, uint64_t* out,
                          int num_threads) {
    const int64_t words = n_words(c);
    std::vector<uint64_t> neg_words(static_cast<size_t>(words), 0);
    for (int64_t j = 0; j < c; ++j)
        if (negate[j]) neg_words[static_cast<size_t>(j / 64)] |= uint64_t{1} << (j % 64);
    const Level level = active_level();
    const int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(1, c));
    parallel_for(rows, num_threads, grain, [&](int64_t r0, int64_t r1) {
#if BINGNN_X86
        if (level == Level::Avx512) {
            threshold_rows_avx512(v, c, lo, hi, neg_words.data(), r0, r1, out);
            return;
        }
#endif
        threshold_rows_scalar(v, c, lo, hi, negate, r0, r1, out);
    });
}

void graph_center_sign(const float* v, int64_t rows, int64_t c, Centering mode, uint64_t* out,
                       int num_threads) {
    const int64_t words = n_words(c);
    const int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(1, c));
    parallel_for(rows, num_threads, grain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* x = v + r * c;
            const float m = mode == Centering::Mean
                                ? aten_row_sum(x, c) / static_cast<float>(c)
                                : 0.0f;
            uint64_t* o = out + r * words;
            for (int64_t q = 0; q < words; ++q) o[q] = 0;
            for (int64_t j = 0; j < c; ++j)
                if (x[j] >= m) o[j / 64] |= uint64_t{1} << (j % 64);
        }
    });
}

namespace {

void node_scale_scalar(const float* v, int64_t r0, int64_t r1, int64_t c, Centering mode,
                       const float* s, const float* t, float* beta, float* a) {
    for (int64_t r = r0; r < r1; ++r) beta[r] = rows::node_scale_row(v + r * c, c, mode, s, t, a);
}

#if BINGNN_X86
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))) void node_scale_avx512(
    const float* v, int64_t r0, int64_t r1, int64_t c, Centering mode, const float* s,
    const float* t, float* beta, float* a) {
    for (int64_t r = r0; r < r1; ++r) beta[r] = rows::node_scale_row(v + r * c, c, mode, s, t, a);
}
#endif

}  // namespace

void graph_node_scale(const float* v, int64_t rows, int64_t c, Centering mode,
                      const float* bn_scale, const float* bn_shift, float* beta,
                      int num_threads) {
    const int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(1, c));
    const Level level = active_level();
    parallel_for(rows, num_threads, grain, [&](int64_t r0, int64_t r1) {
        std::vector<float> a(static_cast<size_t>(c));
#if BINGNN_X86
        if (level == Level::Avx512) {
            node_scale_avx512(v, r0, r1, c, mode, bn_scale, bn_shift, beta, a.data());
            return;
        }
#endif
        (void)level;
        node_scale_scalar(v, r0, r1, c, mode, bn_scale, bn_shift, beta, a.data());
    });
}

namespace {

BINGNN_INLINE void affine_body(const AffineTerm* terms, int n_terms, int64_t r0, int64_t r1,
                               int64_t c, const float* bias, const float* slope, float* out,
                               float* v) {
    for (int64_t r = r0; r < r1; ++r) {
        float* o = out + r * c;
        rows::term_row(terms[0], r, c, o);
        for (int t = 1; t < n_terms; ++t) {
            rows::term_row(terms[t], r, c, v);
            rows::add_into(o, v, c);
        }
        if (bias)
            for (int64_t j = 0; j < c; ++j) o[j] = o[j] + bias[j];
        if (slope) rows::prelu(o, c, slope);
    }
}

void affine_scalar(const AffineTerm* terms, int n_terms, int64_t r0, int64_t r1, int64_t c,
                   const float* bias, const float* slope, float* out, float* v) {
    affine_body(terms, n_terms, r0, r1, c, bias, slope, out, v);
}

#if BINGNN_X86
BINGNN_AVX2 void affine_avx2(const AffineTerm* terms, int n_terms, int64_t r0, int64_t r1,
                             int64_t c, const float* bias, const float* slope, float* out,
                             float* v) {
    affine_body(terms, n_terms, r0, r1, c, bias, slope, out, v);
}

BINGNN_AVX512 void affine_avx512(const AffineTerm* terms, int n_terms, int64_t r0, int64_t r1,
                                 int64_t c, const float* bias, const float* slope, float* out,
                                 float* v) {
    affine_body(terms, n_terms, r0, r1, c, bias, slope, out, v);
}
#endif

}  // namespace

void graph_affine(const AffineTerm* terms, int n_terms, int64_t rows, int64_t c,
                  const float* bias, const float* slope, float* out, int num_threads) {
    const int64_t grain = std::max<int64_t>(16, 32768 / std::max<int64_t>(1, c));
    const Level level = active_level();
    parallel_for(rows, num_threads, grain, [&](int64_t r0, int64_t r1) {
        std::vector<float> v(static_cast<size_t>(c));
#if BINGNN_X86
        if (level == Level::Avx512) {
            affine_avx512(terms, n_terms, r0, r1, c, bias, slope, out, v.data());
            return;
        }
        if (level == Level::Avx2) {
            affine_avx2(terms, n_terms, r0, r1, c, bias, slope, out, v.data());
            return;
        }
#endif
        (void)level;
        affine_scalar(terms, n_terms, r0, r1, c, bias, slope, out, v.data());
    });
}

}  // namespace bingnn
