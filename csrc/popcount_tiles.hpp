// XOR-popcount micro-kernels shared by GEMM, k-NN and XorEdgeConv, one per dispatch level.
//
// A tile computes, for R rows a_r (each w words, row stride lda) against n rows b_j given as
// blocks8() of b:   out[r * ldo + j] = base + scale * popcount(a_r XOR b_j),  j < n.
#pragma once

#include <type_traits>

#include "bingnn_core.hpp"

namespace bingnn {

inline int64_t xor_popcount_scalar(const uint64_t* a, const uint64_t* b, int64_t w) {
    int64_t s = 0;
    for (int64_t j = 0; j < w; ++j) s += __builtin_popcountll(a[j] ^ b[j]);
    return s;
}

#if BINGNN_X86

// ---------------------------------------------------------------- AVX-512 (VPOPCNTDQ)
// OutT = int32_t: out = base + scale * popcount, masked store of the last partial block.
// OutT = uint16_t: plain popcounts, full blocks (the caller pads the buffer to a multiple of 8).
template <int R, class OutT>
BINGNN_AVX512 inline void tile_avx512(const uint64_t* a, int64_t lda, const uint64_t* bt,
                                      int64_t n, int64_t w, int32_t base, int32_t scale,
                                      OutT* out, int64_t ldo) {
    const int64_t nb = (n + 7) / 8;
    const __m256i vbase = _mm256_set1_epi32(base), vscale = _mm256_set1_epi32(scale);
    for (int64_t blk = 0; blk < nb; ++blk) {
        __m512i acc[R];
        for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
        const uint64_t* bp = bt + blk * w * 8;
        for (int64_t j = 0; j < w; ++j) {
            const __m512i bv = _mm512_loadu_si512(bp + j * 8);
            for (int r = 0; r < R; ++r) {
                const __m512i av = _mm512_set1_epi64(static_cast<long long>(a[r * lda + j]));
                acc[r] = _mm512_add_epi64(acc[r], _mm512_popcnt_epi64(_mm512_xor_si512(av, bv)));
            }
        }
        if constexpr (sizeof(OutT) == 2) {
            for (int r = 0; r < R; ++r)
                _mm_storeu_si128(reinterpret_cast<__m128i*>(out + r * ldo + blk * 8),
                                 _mm512_cvtepi64_epi16(acc[r]));
        } else {
            const int64_t rem = n - blk * 8;
            const __mmask8 m = rem >= 8 ? __mmask8(0xFF) : __mmask8((1u << rem) - 1u);
            for (int r = 0; r < R; ++r) {
                const __m256i v = _mm256_add_epi32(
                    vbase, _mm256_mullo_epi32(vscale, _mm512_cvtepi64_epi32(acc[r])));
                _mm256_mask_storeu_epi32(out + r * ldo + blk * 8, m, v);
            }
        }
    }
}

// ---------------------------------------------------------------- AVX2 (nibble lookup)
BINGNN_AVX2 inline __m256i popcount_bytes_avx2(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                         2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

// Popcounts of 8 rows per block as two 4 x int64 halves. Byte counts (<= 8 per word) are summed
// over up to 31 words before the horizontal byte sum (vpsadbw), so they never overflow.
template <int R>
BINGNN_AVX2 inline void tile_i64_avx2(const uint64_t* a, int64_t lda, const uint64_t* bt,
                                      int64_t blk, int64_t w, int64_t* out8 /* R x 8 */) {
    const __m256i zero = _mm256_setzero_si256();
    __m256i acc_lo[R], acc_hi[R];
    for (int r = 0; r < R; ++r) acc_lo[r] = acc_hi[r] = zero;
    const uint64_t* bp = bt + blk * w * 8;
    for (int64_t j0 = 0; j0 < w; j0 += 31) {
        const int64_t j1 = std::min(w, j0 + 31);
        __m256i b_lo[R], b_hi[R];
        for (int r = 0; r < R; ++r) b_lo[r] = b_hi[r] = zero;
        for (int64_t j = j0; j < j1; ++j) {
            const __m256i v_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + j * 8));
            const __m256i v_hi =
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + j * 8 + 4));
            for (int r = 0; r < R; ++r) {
                const __m256i av = _mm256_set1_epi64x(static_cast<long long>(a[r * lda + j]));
                b_lo[r] = _mm256_add_epi8(b_lo[r], popcount_bytes_avx2(_mm256_xor_si256(av, v_lo)));
                b_hi[r] = _mm256_add_epi8(b_hi[r], popcount_bytes_avx2(_mm256_xor_si256(av, v_hi)));
            }
        }
        for (int r = 0; r < R; ++r) {
            acc_lo[r] = _mm256_add_epi64(acc_lo[r], _mm256_sad_epu8(b_lo[r], zero));
            acc_hi[r] = _mm256_add_epi64(acc_hi[r], _mm256_sad_epu8(b_hi[r], zero));
        }
    }
    for (int r = 0; r < R; ++r) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out8 + r * 8), acc_lo[r]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out8 + r * 8 + 4), acc_hi[r]);
    }
}

template <int R, class T>
BINGNN_AVX2 inline void tile_avx2(const uint64_t* a, int64_t lda, const uint64_t* bt, int64_t n,
                                  int64_t w, int32_t base, int32_t scale, T* out, int64_t ldo) {
    const int64_t nb = (n + 7) / 8;
    alignas(32) int64_t pc[R * 8];
    for (int64_t blk = 0; blk < nb; ++blk) {
        tile_i64_avx2<R>(a, lda, bt, blk, w, pc);
        const int64_t cnt = std::min<int64_t>(8, n - blk * 8);
        for (int r = 0; r < R; ++r)
            for (int64_t l = 0; l < cnt; ++l)
                out[r * ldo + blk * 8 + l] = static_cast<T>(base + scale * pc[r * 8 + l]);
    }
}

#endif  // BINGNN_X86

#if BINGNN_NEON

// ---------------------------------------------------------------- NEON (CNT + UADALP)
// Popcounts of R rows of a against the 8 rows of one block of blocks8(b) (bp points at the
// block), added into out8 (R x 8 uint64). Per word: XOR, CNT (vcntq_u8: a count per byte), then
// UADALP (vpadalq_u8: pairwise add into 16-bit lanes). A 16-bit lane gains at most 16 per word,
// so every 4095 words the lanes are widened (UADDLP to 32, UADALP to 64 bits) into out8. Lane
// pairs never mix 64-bit lanes, so each 64-bit lane holds the count of one row of b.
template <int R>
inline void tile_u64_neon(const uint64_t* a, int64_t lda, const uint64_t* bp, int64_t w,
                          uint64_t* out8) {
    for (int64_t j0 = 0; j0 < w; j0 += 4095) {
        const int64_t j1 = std::min(w, j0 + 4095);
        uint16x8_t s[R][4];
        for (int r = 0; r < R; ++r)
            for (int q = 0; q < 4; ++q) s[r][q] = vdupq_n_u16(0);
        for (int64_t j = j0; j < j1; ++j) {
            uint64x2_t bv[4];
            for (int q = 0; q < 4; ++q) bv[q] = vld1q_u64(bp + j * 8 + 2 * q);
            for (int r = 0; r < R; ++r) {
                const uint64x2_t av = vdupq_n_u64(a[r * lda + j]);
                for (int q = 0; q < 4; ++q)
                    s[r][q] = vpadalq_u8(
                        s[r][q], vcntq_u8(vreinterpretq_u8_u64(veorq_u64(av, bv[q]))));
            }
        }
        for (int r = 0; r < R; ++r)
            for (int q = 0; q < 4; ++q) {
                uint64_t* o = out8 + r * 8 + 2 * q;
                vst1q_u64(o, vpadalq_u32(vld1q_u64(o), vpaddlq_u16(s[r][q])));
            }
    }
}

// out[r * ldo + j] = base + scale * popcount(a_r XOR b_j) for j < n (bt = blocks8(b)).
template <int R, class T>
inline void tile_neon(const uint64_t* a, int64_t lda, const uint64_t* bt, int64_t n, int64_t w,
                      int32_t base, int32_t scale, T* out, int64_t ldo) {
    const int64_t nb = (n + 7) / 8;
    uint64_t pc[R * 8];
    for (int64_t blk = 0; blk < nb; ++blk) {
        std::fill(pc, pc + R * 8, uint64_t{0});
        tile_u64_neon<R>(a, lda, bt + blk * w * 8, w, pc);
        const int64_t cnt = std::min<int64_t>(8, n - blk * 8);
        for (int r = 0; r < R; ++r)
            for (int64_t l = 0; l < cnt; ++l)
                out[r * ldo + blk * 8 + l] =
                    static_cast<T>(base + scale * static_cast<int64_t>(pc[r * 8 + l]));
    }
}

#endif  // BINGNN_NEON

// Run a tile function over rows [r0, r1) in tiles of 4 rows, with a 1..3-row tail.
template <class TileFn>
inline void over_row_tiles(int64_t r0, int64_t r1, TileFn&& fn) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) fn(std::integral_constant<int, 4>{}, r);
    switch (r1 - r) {
        case 3:
            fn(std::integral_constant<int, 3>{}, r);
            break;
        case 2:
            fn(std::integral_constant<int, 2>{}, r);
            break;
        case 1:
            fn(std::integral_constant<int, 1>{}, r);
            break;
        default:
            break;
    }
}

}  // namespace bingnn
