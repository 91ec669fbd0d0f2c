// Kernels of the engine's real-valued steps (first layer on xyz, pooling statistics).
//
// Exactness contract. The training library (bingnn.nn) computes the same float32 operations, in
// the same order, explicitly and elementwise (no BLAS, no reduction whose order a library
// picks), so the graphs and bits that follow them are equal by construction on every platform.
// Every product and sum is rounded on its own: no fused multiply-add except where stated.
//   * squared L2 distance of 3-D points:
//       |x|^2 = (x0*x0 + x1*x1) + x2*x2,   <x_i, x_j> = (xi0*xj0 + xi1*xj1) + xi2*xj2,
//       d_ij = max(0, (|x_i|^2 + |x_j|^2) - 2 <x_i, x_j>);
//     neighbours ordered by (distance, index), self included;
//   * first-layer pre-activations of the linear map W (c, 6) on e = [x_j - x_i, x_i], optionally
//     after a per-channel affine map e*s + t (BatchNorm in eval mode), in their per-node form:
//       a_cq = w_cq s_q,  b_cq = w_c(3+q) s_(3+q),  d_cq = b_cq - a_cq   (q = 0, 1, 2;
//         without the affine map a_cq = w_cq, b_cq = w_c(3+q)),
//       bias_c = ((((w_c0 t_0 + w_c1 t_1) + w_c2 t_2) + w_c3 t_3) + w_c4 t_4) + w_c5 t_5,
//       u_jc = (x_j0 a_c0 + x_j1 a_c1) + x_j2 a_c2,
//       v_ic = ((x_i0 d_c0 + x_i1 d_c1) + x_i2 d_c2) [+ bias_c],
//       y_ijc = u_jc + v_ic;
//     since rounding is monotone, max_j y_ijc = max_j u_jc + v_ic exactly (likewise the min).
//   * embedding pooling: BatchNorm as fma(h, scale, shift) (PyTorch's fused CPU kernel), mean in
//     ATen's cascade-sum order.
#pragma once

#include <cstdint>

namespace bingnn {

// k nearest neighbours in squared L2 of each 3-D point within its set.
// x (sets, n, 3) float32 -> idx (sets, n, k) int32.
void l2_knn3(const float* x, int64_t sets, int64_t n, int64_t k, int32_t* idx, int num_threads);

// k smallest entries of each row, ordered by (value, index): d (rows, m) float32 (no NaN)
// -> idx (rows, k) int32.
void select_k_rows(const float* d, int64_t rows, int64_t m, int64_t k, int32_t* idx,
                   int num_threads);

// Max and min over the k neighbours of the first-layer pre-activations y_ijc (contract above).
// x (sets, n, 3), idx (sets, n, k), weight (c, 6), bn_scale/bn_shift (6) or null
// -> ymax, ymin (sets, n, c) float32.
void edge_conv0_minmax(const float* x, int64_t sets, int64_t n, const int32_t* idx, int64_t k,
                       const float* weight, int64_t c, const float* bn_scale,
                       const float* bn_shift, float* ymax, float* ymin, int num_threads);

// RF layer >= 1 on real features h (sets, n, c): edge bits e_ij = packed per-channel predicate
// negate XOR (d >= hi OR d <= lo) of d = h_j - h_i (float32), self bits (sets * n, W) given;
// ymax, ymin (sets, n, c_out) int32 = max / min over the k neighbours of
// <e_ij, w_rel_o> + <self_i, w_self_o> (+-1 dot products, W = ceil(c / 64) words).
void rf_edge_minmax(const float* h, int64_t sets, int64_t n, int64_t c, const int32_t* idx,
                    int64_t k, const float* lo, const float* hi, const uint8_t* negate,
                    const uint64_t* self_bits, const uint64_t* w_rel, const uint64_t* w_self,
                    int64_t c_out, int32_t* ymax, int32_t* ymin, int num_threads);

// Embedding pooling of integer pre-activations y (sets, n, c): h = prelu(y * alpha) (slope per
// channel), then fma(h, bn_scale, bn_shift) when bn_scale is not null; out (sets, 2c) =
// [max over points, mean over points], the mean summed in PyTorch's CPU order (cascade sum of
// float32 values) and divided by n.
void embed_pool(const int32_t* y, int64_t sets, int64_t n, int64_t c, const float* alpha,
                const float* slope, const float* bn_scale, const float* bn_shift, float* out,
                int num_threads);

// Real outputs of a binary layer from tabulated values: for row r and channel c,
// a = table[c][(ymax_rc + n_bits) / 2], b = table[c][(ymin_rc + n_bits) / 2] (table (c, n_bits + 1)
// float32, its columns the pre-activations -n_bits, -n_bits + 2, ..., n_bits), out_rc = min(a, b)
// where use_min[c], else max(a, b). Returns false (and writes nothing further) at the first y
// outside [-n_bits, n_bits] or of the wrong parity.
bool table_minmax(const int32_t* ymax, const int32_t* ymin, int64_t rows, int64_t c,
                  const float* table, int64_t n_bits, const uint8_t* use_min, float* out,
                  int num_threads);

}  // namespace bingnn
