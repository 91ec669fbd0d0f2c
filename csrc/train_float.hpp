// Kernels of the training library's fast EdgeConv paths (bingnn.nn), float32, CPU.
//
// They replace chains of PyTorch operations on (B, N, k, C) edge tensors by one pass each; the
// training library falls back to PyTorch operations (the same mathematics) elsewhere (other
// dtypes, GPUs, no extension). Results do not depend on the thread count: every reduction runs
// over fixed blocks combined in a fixed order.
#pragma once

#include <cstdint>

namespace bingnn {

// Extremes over the k neighbours of every (point, channel), with the first neighbour rank that
// reaches them (NaN counts as the largest and the smallest value, as in torch.max / torch.min).
// Factorized input (idx != null): the value of neighbour rank r of point p = (set, i) is
// src[(set * n + idx[p * k + r]) * c + ch], src (sets, n, c), idx (sets, n, k) int64 in [0, n).
// Edge input (idx == null): it is src[(p * k + r) * c + ch], src (sets * n, k, c).
// Outputs (sets * n, c): mx, rmx, mn, rmn; sum (sum over r in rank order) if not null.
void neighbor_extremes(const float* src, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                       int64_t k, float* mx, int64_t* rmx, float* mn, int64_t* rmn, float* sum,
                       int num_threads);

// Transposed aggregation: out (sets, n, c) = zeros; out[set, idx[set, i, r]] += g[set, i] for
// i = 0..n-1, r = 0..k-1 in that order.
void neighbor_scatter_sum(const float* g, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                          int64_t k, float* out, int num_threads);

// Mean and biased variance over all rows * k edges of h = prelu(alpha * (rel + v)), computed in
// float32 per edge (rel + v, times alpha, then z >= 0 ? z : z * slope; no PReLU when slope is
// null) and accumulated in float64: rel (rows, k, c), v (rows, c) -> mean, var (c) float64.
void edge_act_stats(const float* rel, const float* v, int64_t rows, int64_t k, int64_t c,
                    const float* alpha, const float* slope, double* mean, double* var,
                    int num_threads);

// Backward of edge_act_stats for the gradients g_mean, g_var of its outputs, given as
// c1 = g_mean / M and c2 = 2 g_var / M (M = rows * k) and the float32 mean: with h recomputed,
// dh = (h - mean) * c2 + c1, dz = z >= 0 ? dh : dh * slope, dy = dz * alpha:
//   grad_rel (rows, k, c) = dy (plus sel_grad[p, ch] at rank sel_rank[p, ch] when not null),
//   grad_v (rows, c) = sum over k of dy,
//   g_alpha (c) = sum of dz * y, g_slope (c) = sum over z < 0 of dh * z (float64).
void edge_act_stats_backward(const float* rel, const float* v, int64_t rows, int64_t k,
                             int64_t c, const float* alpha, const float* slope,
                             const float* mean, const float* c1, const float* c2,
                             const int64_t* sel_rank, const float* sel_grad, float* grad_rel,
                             float* grad_v, double* g_alpha, double* g_slope, int num_threads);

}  // namespace bingnn
