// Float matrix times a +-1 matrix by table lookup (the method of the Four Russians), for the
// backward passes of binary layers in training: the gradient of y = x W^T with +-1 weights W
// (input gradient g W) and with +-1 inputs x (weight gradient g^T x) are both products of a
// real matrix with a +-1 matrix.
//
// The +-1 matrix B (K, C) is given by group codes: codes (ceil(K / 5), C) uint8, where bit q of
// codes[grp, c] is set when B[5 grp + q, c] = +1 (rows past K have no bit). For every output
// row r and group, the 32 signed sums of the group's 5 values of A are tabulated once,
//     t = ((((s0 a0) + s1 a1) + s2 a2) + s3 a3) + s4 a4     (s_q = +-1 from code bit q),
// and each output channel adds the entry its code selects; groups are added in order, from 0.
// One lookup replaces 5 multiply-adds; every level computes that same order of float32
// additions, so the AVX-512 path equals the scalar reference exactly and results do not depend
// on the thread count.
#pragma once

#include <cstdint>

namespace bingnn {

constexpr int64_t kPm1Group = 5;  // rows of B per code (a 32-entry table: two AVX-512 registers)

inline int64_t pm1_groups(int64_t k) { return (k + kPm1Group - 1) / kPm1Group; }

// Codes of a +-1 matrix from packed rows bits (k, w) (bit c % 64 of word c / 64 set = +1, the
// engine's layout), c <= 64 w columns; invert: codes of -B. codes (pm1_groups(k), c).
void pm1_codes(const uint64_t* bits, int64_t k, int64_t w, int64_t c, bool invert,
               uint8_t* codes, int num_threads);

// out (r, c) = A (r, k) B (k, c), A read as a[i * sr + q * sk] (so both A and A^T of a
// row-major array can be passed), B given by codes (pm1_codes). out is overwritten.
void pm1_matmul(const float* a, int64_t r, int64_t k, int64_t sr, int64_t sk,
                const uint8_t* codes, int64_t c, float* out, int num_threads);

// y (m, c_out) = Q W^T for a +-1 matrix Q (m, c) given by packed rows bits (m, w) (bit set =
// +1, the engine's layout; bits past c are ignored) and real weights W (c_out, c): the forward
// of a layer with binary activations and real weights (distillation stage 2), as nibble
// tables. For every group g of 4 channels the 16 signed sums of each output channel's 4 weights
// are tabulated once,
//     T[g][v][o] = (((0 + s0 w0) + s1 w1) + s2 w2) + s3 w3   (s_j = +-1 from bit j of v,
//                                                            channels past c left out),
// and each row adds the entries its nibbles select, y[i][o] = ((0 + T[0][v0][o]) +
// T[1][v1][o]) + ..., groups in order. The tables of 16 output channels and 64 input channels
// (16 KiB) stay in L1 while a tile of rows goes by: one 64-byte load and one addition replace
// 4 x 16 multiply-adds. Every level computes that same
// order of float32 additions, so the AVX-512 path equals the scalar reference exactly and the
// result does not depend on the thread count.
void pm1_rows_linear(const uint64_t* bits, int64_t m, int64_t w, int64_t c, const float* weight,
                     int64_t c_out, float* y, int num_threads);

}  // namespace bingnn
