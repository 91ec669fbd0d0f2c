// pack_signs / unpack_signs: float rows <-> packed sign bits (layout in bingnn_core.hpp).
#include <atomic>
#include <cmath>
#include <cstring>

#include "bingnn_core.hpp"

namespace bingnn {
namespace {

// ---- scalar reference
// Each pack_rows_* returns false when it met a NaN or an infinity (checked in the same pass, so
// the Python face needs no extra pass over the input to reject them).
bool pack_rows_scalar(const float* x, int64_t r0, int64_t r1, int64_t c, uint64_t* out) {
    const int64_t w = n_words(c);
    bool finite = true;
    for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * c;
        uint64_t* o = out + r * w;
        for (int64_t j = 0; j < w; ++j) o[j] = 0;
        for (int64_t e = 0; e < c; ++e) {
            finite &= std::isfinite(xr[e]);
            if (xr[e] >= 0.0f) o[e / 64] |= uint64_t{1} << (e % 64);
        }
    }
    return finite;
}

void unpack_rows_scalar(const uint64_t* p, int64_t r0, int64_t r1, int64_t c, int8_t* out) {
    const int64_t w = n_words(c);
    for (int64_t r = r0; r < r1; ++r)
        for (int64_t e = 0; e < c; ++e)
            out[r * c + e] = ((p[r * w + e / 64] >> (e % 64)) & 1u) ? int8_t{1} : int8_t{-1};
}

#if BINGNN_X86
// ---- AVX2: 8 floats -> 8 bits with a compare and movemask.
BINGNN_AVX2 bool pack_rows_avx2(const float* x, int64_t r0, int64_t r1, int64_t c,
                                uint64_t* out) {
    const int64_t w = n_words(c);
    const __m256 zero = _mm256_setzero_ps();
    // A float is NaN or infinite exactly when its exponent bits are all ones.
    const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    bool finite = true;
    for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * c;
        uint64_t* o = out + r * w;
        for (int64_t j = 0; j < w; ++j) {
            const int64_t base = j * 64, cnt = std::min<int64_t>(64, c - base);
            uint64_t word = 0;
            int64_t e = 0;
            for (; e + 8 <= cnt; e += 8) {
                const __m256 v = _mm256_loadu_ps(xr + base + e);
                bad = _mm256_or_si256(
                    bad, _mm256_cmpeq_epi32(
                             _mm256_and_si256(_mm256_castps_si256(v), exp_mask), exp_mask));
                const auto bits = static_cast<uint64_t>(
                    _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ)));
                word |= bits << e;
            }
            for (; e < cnt; ++e) {
                finite &= std::isfinite(xr[base + e]);
                if (xr[base + e] >= 0.0f) word |= uint64_t{1} << e;
            }
            o[j] = word;
        }
    }
    return finite && _mm256_testz_si256(bad, bad);
}

// ---- AVX-512: 16 floats -> 16 bits per compare; byte masks -> +-1 bytes for unpacking.
BINGNN_AVX512 bool pack_rows_avx512(const float* x, int64_t r0, int64_t r1, int64_t c,
                                    uint64_t* out) {
    const int64_t w = n_words(c);
    const __m512 zero = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * c;
        uint64_t* o = out + r * w;
        for (int64_t j = 0; j < w; ++j) {
            const int64_t base = j * 64, cnt = std::min<int64_t>(64, c - base);
            uint64_t word = 0;
            int64_t e = 0;
            if (cnt == 64) {
                // A full word: plain loads (masked loads are much slower on some cores), the four
                // 16-bit compare masks joined in mask registers.
                const float* p = xr + base;
                const __m512 v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16);
                const __m512 v2 = _mm512_loadu_ps(p + 32), v3 = _mm512_loadu_ps(p + 48);
                const __mmask32 lo = _mm512_kunpackw(_mm512_cmp_ps_mask(v1, zero, _CMP_GE_OQ),
                                                     _mm512_cmp_ps_mask(v0, zero, _CMP_GE_OQ));
                const __mmask32 hi = _mm512_kunpackw(_mm512_cmp_ps_mask(v3, zero, _CMP_GE_OQ),
                                                     _mm512_cmp_ps_mask(v2, zero, _CMP_GE_OQ));
                bad |= _mm512_fpclass_ps_mask(v0, 0x99) | _mm512_fpclass_ps_mask(v1, 0x99) |
                       _mm512_fpclass_ps_mask(v2, 0x99) | _mm512_fpclass_ps_mask(v3, 0x99);
                word = static_cast<uint64_t>(_mm512_kunpackd(hi, lo));
                e = 64;
            }
            for (; e < cnt; e += 16) {
                const int64_t left = cnt - e;
                const __mmask16 lm =
                    left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
                const __m512 v = _mm512_maskz_loadu_ps(lm, xr + base + e);
                // Masked-off lanes are excluded from the compare, so padding bits stay 0.
                const __mmask16 m = _mm512_mask_cmp_ps_mask(lm, v, zero, _CMP_GE_OQ);
                // fpclass 0x99: quiet NaN | +inf | -inf | signalling NaN.
                bad |= _mm512_mask_fpclass_ps_mask(lm, v, 0x99);
                word |= static_cast<uint64_t>(m) << e;
            }
            o[j] = word;
        }
    }
    return bad == 0;
}

BINGNN_AVX512 void unpack_rows_avx512(const uint64_t* p, int64_t r0, int64_t r1, int64_t c,
                                      int8_t* out) {
    const int64_t w = n_words(c);
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    for (int64_t r = r0; r < r1; ++r) {
        for (int64_t j = 0; j < w; ++j) {
            const int64_t base = j * 64, cnt = std::min<int64_t>(64, c - base);
            const __mmask64 store = cnt >= 64 ? ~__mmask64(0) : ((__mmask64(1) << cnt) - 1);
            const __m512i v = _mm512_mask_blend_epi8(p[r * w + j], minus, plus);
            _mm512_mask_storeu_epi8(out + r * c + base, store, v);
        }
    }
}
#endif

#if BINGNN_NEON
// ---- NEON: 16 floats -> 16 bits (compare, narrow the lane masks to bytes, weight each byte
// with its bit and add across the two halves); bytes of +-1 from each byte of bits.
inline uint32_t bits16_neon(const float* p, uint32x4_t& bad) {
    const float32x4_t zero = vdupq_n_f32(0.0f);
    const uint32x4_t exp_mask = vdupq_n_u32(0x7f800000u);
    uint32x4_t ge[4];
    for (int q = 0; q < 4; ++q) {
        const float32x4_t v = vld1q_f32(p + 4 * q);
        ge[q] = vcgeq_f32(v, zero);  // false for NaN, like the scalar >= 0
        // A float is NaN or infinite exactly when its exponent bits are all ones.
        bad = vorrq_u32(bad, vceqq_u32(vandq_u32(vreinterpretq_u32_f32(v), exp_mask), exp_mask));
    }
    const uint8x16_t bytes = vcombine_u8(
        vmovn_u16(vcombine_u16(vmovn_u32(ge[0]), vmovn_u32(ge[1]))),
        vmovn_u16(vcombine_u16(vmovn_u32(ge[2]), vmovn_u32(ge[3]))));
    static const uint8_t kWeights[16] = {1, 2, 4, 8, 16, 32, 64, 128,
                                         1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t weighted = vandq_u8(bytes, vld1q_u8(kWeights));
    return static_cast<uint32_t>(vaddv_u8(vget_low_u8(weighted))) |
           (static_cast<uint32_t>(vaddv_u8(vget_high_u8(weighted))) << 8);
}

bool pack_rows_neon(const float* x, int64_t r0, int64_t r1, int64_t c, uint64_t* out) {
    const int64_t w = n_words(c);
    uint32x4_t bad = vdupq_n_u32(0);
    bool finite = true;
    for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * c;
        uint64_t* o = out + r * w;
        for (int64_t j = 0; j < w; ++j) {
            const int64_t base = j * 64, cnt = std::min<int64_t>(64, c - base);
            uint64_t word = 0;
            int64_t e = 0;
            for (; e + 16 <= cnt; e += 16)
                word |= static_cast<uint64_t>(bits16_neon(xr + base + e, bad)) << e;
            for (; e < cnt; ++e) {
                finite &= std::isfinite(xr[base + e]);
                if (xr[base + e] >= 0.0f) word |= uint64_t{1} << e;
            }
            o[j] = word;
        }
    }
    return finite && vmaxvq_u32(bad) == 0;
}

void unpack_rows_neon(const uint64_t* p, int64_t r0, int64_t r1, int64_t c, int8_t* out) {
    const int64_t w = n_words(c);
    static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128,
                                      1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bits = vld1q_u8(kBits);
    const int8x16_t plus = vdupq_n_s8(1), minus = vdupq_n_s8(-1);
    for (int64_t r = r0; r < r1; ++r) {
        int8_t* o = out + r * c;
        int64_t e = 0;
        for (; e + 16 <= c; e += 16) {
            // Elements e .. e+15 are the 16 bits starting at bit e % 64 (a multiple of 16).
            const uint64_t word = p[r * w + e / 64] >> (e % 64);
            const uint8x16_t byte = vcombine_u8(vdup_n_u8(static_cast<uint8_t>(word)),
                                                vdup_n_u8(static_cast<uint8_t>(word >> 8)));
            vst1q_s8(o + e, vbslq_s8(vtstq_u8(byte, bits), plus, minus));
        }
        for (; e < c; ++e)
            o[e] = ((p[r * w + e / 64] >> (e % 64)) & 1u) ? int8_t{1} : int8_t{-1};
    }
}
#endif

}  // namespace

bool pack_signs(const float* x, int64_t rows, int64_t c, uint64_t* out, int num_threads) {
    if (n_words(c) == 0) return true;
    const int64_t grain = std::max<int64_t>(1, (1 << 18) / std::max<int64_t>(1, c));
    const Level level = active_level();
    std::atomic<bool> finite{true};
    parallel_for(rows, num_threads, grain, [&](int64_t r0, int64_t r1) {
        bool ok;
        switch (level) {
#if BINGNN_X86
            case Level::Avx512:
                ok = pack_rows_avx512(x, r0, r1, c, out);
                break;
            case Level::Avx2:
                ok = pack_rows_avx2(x, r0, r1, c, out);
                break;
#endif
#if BINGNN_NEON
            case Level::Neon:
                ok = pack_rows_neon(x, r0, r1, c, out);
                break;
#endif
            default:
                ok = pack_rows_scalar(x, r0, r1, c, out);
        }
        (void)level;
        if (!ok) finite.store(false, std::memory_order_relaxed);
    });
    return finite.load();
}

void unpack_signs(const uint64_t* packed, int64_t rows, int64_t c, int8_t* out,
                  int num_threads) {
    if (c == 0) return;
    const int64_t grain = std::max<int64_t>(1, (1 << 18) / std::max<int64_t>(1, c));
    const Level level = active_level();
    parallel_for(rows, num_threads, grain, [&](int64_t r0, int64_t r1) {
#if BINGNN_X86
        // AVX2 has no mask-to-bytes instruction worth the detour: it uses the scalar loop.
        if (level == Level::Avx512) return unpack_rows_avx512(packed, r0, r1, c, out);
#endif
#if BINGNN_NEON
        if (level == Level::Neon) return unpack_rows_neon(packed, r0, r1, c, out);
#endif
        (void)level;
        unpack_rows_scalar(packed, r0, r1, c, out);
    });
}

}  // namespace bingnn
