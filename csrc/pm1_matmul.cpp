// Float matrix times a +-1 matrix by table lookup (pm1_matmul.hpp): a scalar reference and an
// AVX-512 path that adds the same float32 values in the same order. Level Avx2 runs the scalar
// path, but the training library calls these kernels only at level Avx512: an 8-lane permute
// selects from 8 entries, so with AVX2 a 32-entry lookup costs more than the five
// multiply-adds it replaces, and PyTorch's matmul is the faster path there.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "pm1_matmul.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "bingnn_core.hpp"

namespace bingnn {
namespace {

// Codes of one K-chunk (all its groups, every channel) are read by every output row: about
// this many bytes stay in the L2 cache while the rows go by.
constexpr int64_t kChunkBytes = 96 * 1024;
constexpr int64_t kRowsPerTask = 32;

inline float a_at(const float* a, int64_t i, int64_t q, int64_t k, int64_t sr, int64_t sk) {
    return q < k ? a[i * sr + q * sk] : 0.0f;
}

// ------------------------------------------------------------------------------ scalar

void rows_scalar(const float* a, int64_t i0, int64_t i1, int64_t sr, int64_t sk, int64_t k,
                 const uint8_t* codes, int64_t c, int64_t g0, int64_t g1, float* out) {
    float tab[32];
    for (int64_t i = i0; i < i1; ++i) {
        float* o = out + i * c;
        if (g0 == 0) std::fill(o, o + c, 0.0f);
        for (int64_t grp = g0; grp < g1; ++grp) {
            const int64_t q0 = grp * kPm1Group;
            float av[kPm1Group];
            for (int q = 0; q < kPm1Group; ++q) av[q] = a_at(a, i, q0 + q, k, sr, sk);
            for (int s = 0; s < 32; ++s) {
                float t = 0.0f;
                for (int q = 0; q < kPm1Group; ++q) t = t + ((s >> q) & 1 ? av[q] : -av[q]);
                tab[s] = t;
            }
            const uint8_t* code = codes + grp * c;
            for (int64_t ch = 0; ch < c; ++ch) o[ch] = o[ch] + tab[code[ch]];
        }
    }
}

void codes_scalar(const uint64_t* bits, int64_t k, int64_t w, int64_t c, bool invert,
                  int64_t g0, int64_t g1, uint8_t* codes) {
    for (int64_t grp = g0; grp < g1; ++grp)
        for (int64_t ch = 0; ch < c; ++ch) {
            uint8_t code = 0;
            for (int q = 0; q < kPm1Group; ++q) {
                const int64_t row = grp * kPm1Group + q;
                if (row >= k) break;
                const bool plus = ((bits[row * w + ch / 64] >> (ch % 64)) & 1u) != invert;
                code = static_cast<uint8_t>(code | (plus ? 1u << q : 0u));
            }
            codes[grp * c + ch] = code;
        }
}

// ------------------------------------------------------------------------------ AVX-512

#if BINGNN_X86
// Entries 0-15 (t0, sign of a4 negative) and 16-31 (t1) of one row's table; entry s takes the
// sign of a_q from bit q of s, as the codes do. FULL: all 5 rows of the group exist.
template <bool FULL>
BINGNN_AVX512 inline void table16(const float* a, int64_t i, int64_t q0, int64_t k, int64_t sr,
                                  int64_t sk, const __m512* sgn, __m512& t0, __m512& t1) {
    const float* ai = a + i * sr + q0 * sk;
    __m512 t = _mm512_setzero_ps();
    for (int q = 0; q < 4; ++q)
        t = _mm512_fmadd_ps(sgn[q],
                            _mm512_set1_ps(FULL || q0 + q < k ? ai[q * sk] : 0.0f), t);
    const __m512 a4 = _mm512_set1_ps(FULL || q0 + 4 < k ? ai[4 * sk] : 0.0f);
    t0 = _mm512_sub_ps(t, a4);
    t1 = _mm512_add_ps(t, a4);
}

// 16 channels' codes as int32 lanes: a plain load where the block is whole.
template <bool PART>
BINGNN_AVX512 inline __m512i load_codes(const uint8_t* p, __mmask16 keep) {
    return _mm512_cvtepu8_epi32(PART ? _mm_maskz_loadu_epi8(keep, p)
                                     : _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Rows i .. i + RB - 1, channel blocks cb0 .. cb0 + NB - 1 (16 channels each; with PART the
// last one is partial), groups g0 .. g1 - 1 added to out (or written, from group 0).
template <int NB, int RB, bool PART>
BINGNN_AVX512 void block_avx512(const float* a, int64_t i, int64_t sr, int64_t sk, int64_t k,
                                const uint8_t* codes, int64_t c, int64_t cb0, int64_t g0,
                                int64_t g1, float* out, const __m512* sgn) {
    __m512 acc[RB][NB];
    const __mmask16 tail = lanes16(c - (cb0 + NB - 1) * 16);
#pragma GCC unroll 2
    for (int rb = 0; rb < RB; ++rb)
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j)
            acc[rb][j] = g0 == 0 ? _mm512_setzero_ps()
                                 : _mm512_maskz_loadu_ps(j == NB - 1 ? tail : 0xFFFF,
                                                         out + (i + rb) * c + (cb0 + j) * 16);
    // every group but a partial last one reads its 5 values of A without a bounds check
    const int64_t whole = std::min(g1, k / kPm1Group);
    for (int64_t grp = g0; grp < g1; ++grp) {
        __m512 t0[RB], t1[RB];
        if (grp < whole) {
#pragma GCC unroll 2
            for (int rb = 0; rb < RB; ++rb)
                table16<true>(a, i + rb, grp * kPm1Group, k, sr, sk, sgn, t0[rb], t1[rb]);
        } else {
#pragma GCC unroll 2
            for (int rb = 0; rb < RB; ++rb)
                table16<false>(a, i + rb, grp * kPm1Group, k, sr, sk, sgn, t0[rb], t1[rb]);
        }
        const uint8_t* code = codes + grp * c + cb0 * 16;
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j) {
            const __m512i ix = PART && j == NB - 1 ? load_codes<true>(code + 16 * j, tail)
                                                   : load_codes<false>(code + 16 * j, 0);
#pragma GCC unroll 2
            for (int rb = 0; rb < RB; ++rb)
                acc[rb][j] = _mm512_add_ps(acc[rb][j], _mm512_permutex2var_ps(t0[rb], ix, t1[rb]));
        }
    }
#pragma GCC unroll 2
    for (int rb = 0; rb < RB; ++rb)
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j)
            _mm512_mask_storeu_ps(out + (i + rb) * c + (cb0 + j) * 16,
                                  j == NB - 1 ? tail : 0xFFFF, acc[rb][j]);
}

template <int RB>
BINGNN_AVX512 void rows_block_avx512(const float* a, int64_t i, int64_t sr, int64_t sk,
                                     int64_t k, const uint8_t* codes, int64_t c, int64_t g0,
                                     int64_t g1, float* out, const __m512* sgn) {
    const int64_t cbs = (c + 15) / 16;
    for (int64_t cb0 = 0; cb0 < cbs; cb0 += 8) {
        const int64_t nb = std::min<int64_t>(8, cbs - cb0);
        const bool part = (cb0 + nb) * 16 > c;
        switch (nb * 2 + (part ? 1 : 0)) {
#define BINGNN_PM1_CASE(N)                                                              \
    case 2 * N:                                                                         \
        block_avx512<N, RB, false>(a, i, sr, sk, k, codes, c, cb0, g0, g1, out, sgn);   \
        break;                                                                          \
    case 2 * N + 1:                                                                     \
        block_avx512<N, RB, true>(a, i, sr, sk, k, codes, c, cb0, g0, g1, out, sgn);    \
        break;
            BINGNN_PM1_CASE(1) BINGNN_PM1_CASE(2) BINGNN_PM1_CASE(3) BINGNN_PM1_CASE(4)
            BINGNN_PM1_CASE(5) BINGNN_PM1_CASE(6) BINGNN_PM1_CASE(7) BINGNN_PM1_CASE(8)
#undef BINGNN_PM1_CASE
        }
    }
}

BINGNN_AVX512 void rows_avx512(const float* a, int64_t i0, int64_t i1, int64_t sr, int64_t sk,
                               int64_t k, const uint8_t* codes, int64_t c, int64_t g0,
                               int64_t g1, float* out) {
    __m512 sgn[4];
    for (int q = 0; q < 4; ++q) {
        alignas(64) float v[16];
        for (int s = 0; s < 16; ++s) v[s] = (s >> q) & 1 ? 1.0f : -1.0f;
        sgn[q] = _mm512_load_ps(v);
    }
    int64_t i = i0;
    for (; i + 2 <= i1; i += 2) rows_block_avx512<2>(a, i, sr, sk, k, codes, c, g0, g1, out, sgn);
    if (i < i1) rows_block_avx512<1>(a, i, sr, sk, k, codes, c, g0, g1, out, sgn);
}

BINGNN_AVX512 void codes_avx512(const uint64_t* bits, int64_t k, int64_t w, int64_t c,
                                bool invert, int64_t g0, int64_t g1, uint8_t* codes) {
    for (int64_t grp = g0; grp < g1; ++grp)
        for (int64_t wi = 0; wi * 64 < c; ++wi) {
            __m512i code = _mm512_setzero_si512();
            for (int q = 0; q < kPm1Group; ++q) {
                const int64_t row = grp * kPm1Group + q;
                if (row >= k) break;
                const uint64_t m = invert ? ~bits[row * w + wi] : bits[row * w + wi];
                code = _mm512_or_si512(code, _mm512_maskz_set1_epi8(m, static_cast<char>(1 << q)));
            }
            const int64_t left = c - wi * 64;
            const __mmask64 keep = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
            _mm512_mask_storeu_epi8(codes + grp * c + wi * 64, keep, code);
        }
}
#endif

// ------------------------------------------------------------------------------ nibble tables

constexpr int64_t kNibble = 4;           // channels per table
constexpr int64_t kWordNibbles = 16;     // tables per 64-bit word of a row: one pass
constexpr int64_t kRowTile = 128;

// Table of output block ob (16 channels), nibble group g: 16 entries of 16 floats, contiguous
// per block so that one pass (16 groups, 16 KiB) stays in L1.
inline int64_t table_at(int64_t ob, int64_t groups, int64_t g, int64_t v) {
    return ((ob * groups + g) * 16 + v) * 16;
}

// T for output blocks [b0, b1): entry v of group g, lane l = sum over the group's channels j
// (in order, from 0) of s_j w[o][4 g + j], o = 16 ob + l (0 past c_out).
void build_tables(const float* weight, int64_t c, int64_t c_out, int64_t groups, int64_t b0,
                  int64_t b1, float* tab) {
    for (int64_t ob = b0; ob < b1; ++ob)
        for (int64_t g = 0; g < groups; ++g)
            for (int v = 0; v < 16; ++v) {
                float* t = tab + table_at(ob, groups, g, v);
                for (int l = 0; l < 16; ++l) {
                    const int64_t o = ob * 16 + l;
                    float acc = 0.0f;
                    if (o < c_out)
                        for (int64_t j = 0; j < kNibble && g * kNibble + j < c; ++j) {
                            const float wj = weight[o * c + g * kNibble + j];
                            acc = acc + ((v >> j) & 1 ? wj : -wj);
                        }
                    t[l] = acc;
                }
            }
}

inline int nibble(const uint64_t* row, int64_t g) {
    return static_cast<int>((row[g / kWordNibbles] >> (4 * (g % kWordNibbles))) & 15u);
}

void rows_linear_scalar(const uint64_t* bits, int64_t i0, int64_t i1, int64_t w, int64_t groups,
                        const float* tab, int64_t c_out, float* y) {
    for (int64_t i = i0; i < i1; ++i) {
        const uint64_t* row = bits + i * w;
        for (int64_t o = 0; o < c_out; ++o) {
            float acc = 0.0f;
            for (int64_t g = 0; g < groups; ++g)
                acc = acc + tab[table_at(o / 16, groups, g, nibble(row, g)) + o % 16];
            y[i * c_out + o] = acc;
        }
    }
}

#if BINGNN_X86
// Rows i .. i + R - 1 of a tile, output block ob, the nibble groups of word wi added to their
// accumulators acc (kRowTile, 16), contiguous so that they share L1 with the pass's tables (the
// rows of y are c_out floats apart, a stride that would map them onto a few L1 sets); R
// independent sums hide the additions' latency.
template <int R>
BINGNN_AVX512 inline void rows_word(const uint64_t* bits, int64_t i, int64_t w, int64_t wi,
                                    int64_t groups, const float* tab, int64_t ob, float* acc) {
    __m512 a[R];
    uint64_t word[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
        a[r] = wi == 0 ? _mm512_setzero_ps() : _mm512_load_ps(acc + r * 16);
        word[r] = bits[(i + r) * w + wi];
    }
    const int64_t g0 = wi * kWordNibbles, g1 = std::min(groups, g0 + kWordNibbles);
    const float* t = tab + table_at(ob, groups, g0, 0);
    for (int64_t g = g0; g < g1; ++g, t += 256) {
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
            a[r] = _mm512_add_ps(a[r], _mm512_loadu_ps(t + (word[r] & 15u) * 16));
            word[r] >>= 4;
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) _mm512_store_ps(acc + r * 16, a[r]);
}

BINGNN_AVX512 void rows_linear_avx512(const uint64_t* bits, int64_t i0, int64_t i1, int64_t w,
                                      int64_t groups, const float* tab, int64_t c_out, float* y) {
    const int64_t blocks = (c_out + 15) / 16, words = (groups + kWordNibbles - 1) / kWordNibbles;
    alignas(64) float acc[kRowTile * 16];
    for (int64_t r0 = i0; r0 < i1; r0 += kRowTile) {
        const int64_t r1 = std::min(i1, r0 + kRowTile);
        for (int64_t ob = 0; ob < blocks; ++ob) {
            for (int64_t wi = 0; wi < words; ++wi) {
                int64_t i = r0;
                for (; i + 4 <= r1; i += 4)
                    rows_word<4>(bits, i, w, wi, groups, tab, ob, acc + (i - r0) * 16);
                for (; i < r1; ++i) rows_word<1>(bits, i, w, wi, groups, tab, ob, acc + (i - r0) * 16);
            }
            const __mmask16 keep = lanes16(c_out - ob * 16);
            for (int64_t i = r0; i < r1; ++i)
                _mm512_mask_storeu_ps(y + i * c_out + ob * 16, keep,
                                      _mm512_load_ps(acc + (i - r0) * 16));
        }
    }
}
#endif

}  // namespace

void pm1_codes(const uint64_t* bits, int64_t k, int64_t w, int64_t c, bool invert,
               uint8_t* codes, int num_threads) {
    const int64_t groups = pm1_groups(k);
    if (groups == 0 || c == 0) return;
    const Level level = active_level();
    parallel_for(groups, num_threads, std::max<int64_t>(64, 65536 / c),
                 [&](int64_t g0, int64_t g1) {
#if BINGNN_X86
                     if (level == Level::Avx512) {
                         codes_avx512(bits, k, w, c, invert, g0, g1, codes);
                         return;
                     }
#endif
                     codes_scalar(bits, k, w, c, invert, g0, g1, codes);
                 });
}

void pm1_matmul(const float* a, int64_t r, int64_t k, int64_t sr, int64_t sk,
                const uint8_t* codes, int64_t c, float* out, int num_threads) {
    if (r == 0 || c == 0) return;
    const int64_t groups = pm1_groups(k);
    if (groups == 0) {
        std::memset(out, 0, static_cast<size_t>(r * c) * sizeof(float));
        return;
    }
    const int64_t chunk = std::max<int64_t>(1, kChunkBytes / c);
    const Level level = active_level();
    const int64_t tasks = (r + kRowsPerTask - 1) / kRowsPerTask;
    parallel_for(tasks, num_threads, 1, [&](int64_t t0, int64_t t1) {
        const int64_t i0 = t0 * kRowsPerTask, i1 = std::min(r, t1 * kRowsPerTask);
        for (int64_t g0 = 0; g0 < groups; g0 += chunk) {
            const int64_t g1 = std::min(groups, g0 + chunk);
#if BINGNN_X86
            if (level == Level::Avx512) {
                rows_avx512(a, i0, i1, sr, sk, k, codes, c, g0, g1, out);
                continue;
            }
#endif
            rows_scalar(a, i0, i1, sr, sk, k, codes, c, g0, g1, out);
        }
    });
}

void pm1_rows_linear(const uint64_t* bits, int64_t m, int64_t w, int64_t c, const float* weight,
                     int64_t c_out, float* y, int num_threads) {
    if (m == 0 || c_out == 0) return;
    const int64_t groups = (c + kNibble - 1) / kNibble;
    if (groups == 0) {
        std::memset(y, 0, static_cast<size_t>(m * c_out) * sizeof(float));
        return;
    }
    const int64_t blocks = (c_out + 15) / 16;
    std::vector<float> tab(static_cast<size_t>(blocks * groups * 256));
    parallel_for(blocks, num_threads, 1, [&](int64_t b0, int64_t b1) {
        build_tables(weight, c, c_out, groups, b0, b1, tab.data());
    });
    const Level level = active_level();
    parallel_for(m, num_threads, kRowTile, [&](int64_t i0, int64_t i1) {
#if BINGNN_X86
        if (level == Level::Avx512) {
            rows_linear_avx512(bits, i0, i1, w, groups, tab.data(), c_out, y);
            return;
        }
#endif
        rows_linear_scalar(bits, i0, i1, w, groups, tab.data(), c_out, y);
    });
}

}  // namespace bingnn
