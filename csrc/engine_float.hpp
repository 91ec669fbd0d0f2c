// Kernels of the engine's real-valued steps (first layer on xyz, pooling statistics).
//
// They reproduce PyTorch's float32 arithmetic of BinDGCNN.eval() operation for operation, so the
// bits that follow them match PyTorch's exactly:
//   * squared L2 distance of 3-D points d_ij = max(0, (|x_i|^2 + |x_j|^2) - 2 <x_i, x_j>), with
//     |x|^2 = (x0*x0 + x1*x1) + x2*x2 (no fused multiply-add, like torch's sum) and the dot
//     product as the fused chain fma(x2, y2, fma(x1, y1, x0*y0)) (like torch's matmul on x86-64);
//     neighbours ordered by (distance, index), self included;
//   * first-layer edge pre-activations y_ijc = sum_q e_q w_cq over e = [x_j - x_i, x_i], summed
//     left to right (the +-1 weights make every product exact), with an optional BatchNorm
//     applied to e as fma(e, scale, shift).
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

// Max and min over the k neighbours of the first-layer pre-activations.
// x (sets, n, 3), idx (sets, n, k), weight (c, 6) (+-1 values), bn_scale/bn_shift (6) or null
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

}  // namespace bingnn
