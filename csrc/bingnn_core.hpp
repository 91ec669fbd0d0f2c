// Core declarations of the bingnn native engine: bit layout, dispatch levels, threading.
//
// Bit layout (the one convention of the whole engine; docs/bit_layout.md says the same):
//   A vector of C signs is packed into W = ceil(C / 64) uint64 words. Element c goes to bit
//   (c % 64) of word (c / 64), least significant bit first. A set bit means +1, i.e. the real
//   value was >= 0 (sign(0) = +1, also for -0.0); a clear bit means -1. Padding bits (c >= C in
//   the last word) are always 0. For two packed +-1 vectors of C elements
//       <a, b> = C - 2 * popcount(a XOR b),
//   and padding bits, zero in both operands, never change a result.
//
// Dispatch: every kernel has a portable scalar reference implementation and, on x86-64, AVX2 and
// AVX-512 (F/BW/VL + VPOPCNTDQ) implementations compiled with per-function target attributes,
// so one build for baseline x86-64 runs on any x86-64 CPU; on AArch64, a NEON (Advanced SIMD,
// part of the base ISA) implementation. The level is picked at run time.
//
// Floating point: the extension is compiled with -ffp-contract=off (setup.py), so a * b + c is
// never fused behind the code's back (AArch64, -march=native, and every BINGNN_AVX512 function,
// whose target implies FMA, would otherwise do it, intrinsics included); every fused
// multiply-add of the engine is an explicit std::fma or FMA intrinsic.
//
// A lambda does not inherit its enclosing function's target attribute: one that calls
// AVX2/AVX-512 intrinsics needs the attribute itself ([&](...) BINGNN_AVX512 { ... }), or GCC
// fails with "inlining failed ... target specific option mismatch" (with -ffp-contract=off the
// early inliner no longer rescues it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel.hpp"

// BINGNN_PORTABLE_ONLY builds the scalar path alone (how a build without SIMD is checked on any
// machine; setup.py defines it when the environment has BINGNN_PORTABLE_ONLY=1).
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(BINGNN_PORTABLE_ONLY)
#define BINGNN_X86 1
#include <immintrin.h>
#define BINGNN_AVX2 __attribute__((target("avx2,popcnt")))
#define BINGNN_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,popcnt,bmi")))
#else
#define BINGNN_X86 0
#endif

#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(BINGNN_PORTABLE_ONLY)
#define BINGNN_NEON 1
#include <arm_neon.h>
#else
#define BINGNN_NEON 0
#endif

namespace bingnn {

#if BINGNN_X86
// AVX-512 masks of the first min(n, width) lanes (n >= 1): the tail of a row of n values.
inline __mmask16 lanes16(int64_t n) {
    return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}
inline __mmask32 lanes32(int64_t n) {
    return n >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((uint64_t{1} << n) - 1u);
}
#endif

enum class Level : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };
constexpr int kNumLevels = 4;

// Dispatch state (dispatch.cpp).
bool level_compiled(Level level);   // this build has the level's code
bool level_supported(Level level);  // ... and this CPU can run it
Level best_level();
// The level a kernel call runs at. Each call counts one use of the level (dispatch_calls), so a
// test run can report which levels it exercised; queries that run no kernel use current_level.
Level active_level();
Level current_level();
void set_level(Level level);
const char* level_name(Level level);
// Kernel calls per level since the process started (for the test summary).
int64_t dispatch_calls(Level level);

inline int64_t n_words(int64_t n_bits) { return (n_bits + 63) / 64; }

// Largest distance the k-NN kernels store (uint16 distances): C <= 65535 bits.
constexpr int64_t kMaxKnnBits = 65535;

// Transpose rows (n, w) into blocks of 8 rows, word-major inside a block:
//   out[(blk * w + word) * 8 + lane] = rows[(blk * 8 + lane) * w + word]   (0 past row n).
// One 512-bit load then holds the same word of 8 rows, so one broadcast word of the other operand
// is XOR-ed and popcounted against 8 rows at once, whatever w is.
inline std::vector<uint64_t> blocks8(const uint64_t* rows, int64_t n, int64_t w) {
    const int64_t nb = (n + 7) / 8;
    std::vector<uint64_t> out(static_cast<size_t>(nb * w * 8), 0);
    for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < w; ++j) out[((r / 8) * w + j) * 8 + (r % 8)] = rows[r * w + j];
    return out;
}

// ---- kernels (one file each); all pointers are C-contiguous, shapes validated by the caller.

// Returns false if x held a NaN or an infinity (the output is then meaningless).
bool pack_signs(const float* x, int64_t rows, int64_t c, uint64_t* out, int num_threads);
void unpack_signs(const uint64_t* packed, int64_t rows, int64_t c, int8_t* out, int num_threads);

// out (m, n) = n_bits - 2 * popcount(a_i XOR b_j).
void binary_gemm(const uint64_t* a, int64_t m, const uint64_t* b, int64_t n, int64_t w,
                 int64_t n_bits, int32_t* out, int num_threads);

// k nearest neighbours (Hamming) of each point within its set, self included, ordered by
// (distance, index). x (sets, n, w); idx, dist (sets, n, k).
void hamming_knn(const uint64_t* x, int64_t sets, int64_t n, int64_t w, int64_t k, int32_t* idx,
                 int32_t* dist, int num_threads);

struct XorConvParams {
    const uint64_t* w_rel;   // (c_out, w_in)
    const uint64_t* w_self;  // (c_out, w_in)
    int64_t c_in;
    int64_t c_out;
    const int32_t* t_hi;     // (c_out) or nullptr for the min/max variant
    const int32_t* t_lo;     // (c_out)
    const uint8_t* negate;   // (c_out)
};

// Fused XorEdgeConv: out bit c of point i = negate_c XOR (max_j y_ijc >= t_hi_c OR
// min_j y_ijc <= t_lo_c), out (sets, n, ceil(c_out / 64)).
void xor_edge_conv(const uint64_t* x, int64_t sets, int64_t n, const int32_t* idx, int64_t k,
                   const XorConvParams& p, uint64_t* out, int num_threads);
// Same neighbourhood maths, returning max_j y and min_j y as (sets, n, c_out) int32.
void xor_edge_conv_minmax(const uint64_t* x, int64_t sets, int64_t n, const int32_t* idx,
                          int64_t k, const XorConvParams& p, int32_t* ymax, int32_t* ymin,
                          int num_threads);
// Hamming k-NN and XorEdgeConv in one pass over the points; idx_out (sets, n, k) may be null.
void xor_edge_conv_knn(const uint64_t* x, int64_t sets, int64_t n, int64_t k,
                       const XorConvParams& p, uint64_t* out, int32_t* idx_out,
                       int num_threads);
// The same pass returning max_j y and min_j y as (sets, n, c_out) int32 (real-valued layers).
void xor_edge_conv_knn_minmax(const uint64_t* x, int64_t sets, int64_t n, int64_t k,
                              const XorConvParams& p, int32_t* ymax, int32_t* ymin,
                              int32_t* idx_out, int num_threads);

}  // namespace bingnn
