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

// +-1 dot products as float32: out (m, n) = n_bits - 2 popcount(a_i XOR b_j), a (m, w) and
// b (n, w) packed (bingnn_core.hpp layout); the engine's binary GEMM on blocks of rows, each
// converted while it is in cache.
void binary_gemm_f32(const uint64_t* a, int64_t m, const uint64_t* b, int64_t n, int64_t w,
                     int64_t n_bits, float* out, int num_threads);

// out (rows, c) = src[p, rank[p, ch], ch] for edge values src (rows, k, c), rank (rows, c).
void select_rank(const float* src, int64_t rows, int64_t k, int64_t c, const int64_t* rank,
                 float* out, int num_threads);

// Transpose of select_rank: out (rows, k, c) = 0 except out[p, rank[p, ch], ch] = g[p, ch].
void scatter_rank(const float* g, int64_t rows, int64_t k, int64_t c, const int64_t* rank,
                  float* out, int num_threads);

// XOR edge features of +-1 (or real) points as products: out (sets, n, k, c) =
// x[set, idx[set, i, r]] * x[set, i].
void xor_edge_features(const float* x, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                       int64_t k, float* out, int num_threads);

// Backward of xor_edge_features for gradient g (sets, n, k, c): out (sets, n, c) with
// out[i] += g[i, r] * x[idx[i, r]] (the centre's factor) and out[idx[i, r]] += g[i, r] * x[i]
// (the neighbour's), accumulated in the order (i, r) per channel.
void xor_edge_features_backward(const float* g, const float* x, int64_t sets, int64_t n,
                                int64_t c, const int64_t* idx, int64_t k, float* out,
                                int num_threads);

// Relative edge features d = x[idx[i, r]] - x[i] of points x (sets, n, c), idx (sets, n, k):
// mean and biased variance over all edges, per channel (float64; shifted sums, fixed blocks).
void edge_diff_stats(const float* x, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                     int64_t k, double* mean, double* var, int num_threads);

// Quantized normalised edge features q = quant(d * s + t), quant = sign (mode 0, +1 at >= 0)
// or tanh (mode 1): as float32 (sets, n, k, c) into out_f and/or, for mode 0, as packed bits
// (sets * n * k, ceil(c / 64)) into out_bits (either may be null). d * s + t is rounded after
// the product and after the sum (training), or once, as a fused multiply-add, with fma: the
// arithmetic of PyTorch's CPU BatchNorm in eval mode, so that signs equal its signs.
void edge_diff_quant(const float* x, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                     int64_t k, const float* s, const float* t, int mode, bool fma,
                     float* out_f, uint64_t* out_bits, int num_threads);

// Backward of a linear map y_r = q_r W^T applied to the k XOR edge features q_r = x_j * x_i of
// every point, when only one edge per (point, output channel) is used afterwards (a max over
// neighbours): given gsel (rows, c_out) at the ranks rank (rows, c_out),
//   g_q (rows, k, c_in): g_q[p, rank[p, o]] += gsel[p, o] * w[o]   (zero elsewhere),
//   g_w (c_out, c_in)  = sum over p, o of gsel[p, o] * q[p, rank[p, o]],
// i.e. 1/k of the dense products' work. x (sets, n, c_in), idx (sets, n, k); rows = sets * n;
// either output may be null.
void edge_select_backward(const float* x, int64_t sets, int64_t n, int64_t c_in,
                          const int64_t* idx, int64_t k, const float* gsel, const int64_t* rank,
                          int64_t c_out, const float* w, float* g_q, float* g_w,
                          int num_threads);

// The backward of EdgeDiffSelect (bingnn/nn/edge_diff_quant.py): edge features
// q = quant(z), z = d * s + t = gamma * xhat + beta, d = x_j - x_i, xhat = (d - mean) * invstd,
// s = gamma * invstd, mapped by w (c_out, c) and read at one rank per (point, output channel).
// For the gradient gsel (sets, n, c_out) at the ranks rank (sets, n, c_out):
//   gq[p, rank[p, o]] += gsel[p, o] * w[o],  gz = gq * quant'(z) (sign: 1 where |z| <= clip;
//   tanh: 1 - tanh(z)^2), and the BatchNorm backward gd = s * (gz - c1 - xhat * c2) with
//   c1 = mean gz, c2 = mean gz * xhat over all edges, scattered as gx[j] += gd, gx[i] -= gd.
// gq is built per point in a k x 16 block and consumed at once, never stored for all edges.
// edge_diff_select_backward returns sum_gz, sum_gzx (c doubles), g_w (c_out, c) =
// sum gsel[p, o] * q[p, rank[p, o]] if not null, and, if gx (sets, n, c) is not null, the
// part s * gz of the scatter, which needs no batch sums; edge_diff_bn_correction adds the
// rest, -s * (c1 + xhat * c2), once the sums are known (over every process, for synchronised
// statistics). Modes 0 (sign) and 1 (tanh).
void edge_diff_select_backward(const float* x, int64_t sets, int64_t n, int64_t c,
                               const int64_t* idx, int64_t k, const float* s, const float* t,
                               const float* mean, const float* invstd, int mode, float clip,
                               const float* gsel, const int64_t* rank, int64_t c_out,
                               const float* w, float* gx, float* g_w, double* sum_gz,
                               double* sum_gzx, int num_threads);
void edge_diff_bn_correction(const float* x, int64_t sets, int64_t n, int64_t c,
                             const int64_t* idx, int64_t k, const float* s, const float* mean,
                             const float* invstd, const float* c1, const float* c2, float* gx,
                             int num_threads);

// Channel-last per-channel operations on x (rows, c):
// rescale + PReLU: y = z >= 0 ? z : z * slope with z = x * alpha (slope null: y = z).
void rows_rescale_prelu(const float* x, int64_t rows, int64_t c, const float* alpha,
                        const float* slope, float* y, int num_threads);
// Its backward for gradient g: gx = gz * alpha with gz = z >= 0 ? g : g * slope;
// g_alpha = sum gz * x, g_slope = sum over z < 0 of g * z (float64).
void rows_rescale_prelu_backward(const float* g, const float* x, int64_t rows, int64_t c,
                                 const float* alpha, const float* slope, float* gx,
                                 double* g_alpha, double* g_slope, int num_threads);
// Mean and biased variance of every column (float64, shifted by the first row, fixed blocks).
void rows_stats(const float* x, int64_t rows, int64_t c, double* mean, double* var,
                int num_threads);
// Training BatchNorm from the statistics: xhat = (x - mean) * invstd (one rounding each),
// y = xhat * weight + bias (weight/bias may be null).
void rows_bn_forward(const float* x, int64_t rows, int64_t c, const float* mean,
                     const float* invstd, const float* weight, const float* bias, float* y,
                     int num_threads);
// Its backward: sums sum_g, sum_gx (= sum g * xhat) (float64), then, if gx is not null,
// gx = scale * ((g - c1) - xhat * c2) with scale = invstd * weight, c1 = sum_g / rows,
// c2 = sum_gx / rows.
void rows_bn_backward(const float* g, const float* x, int64_t rows, int64_t c, const float* mean,
                      const float* invstd, const float* weight, float* gx, double* sum_g,
                      double* sum_gx, int num_threads);

// Distances of every point to its listed neighbours (pair_distances.cpp), for the LSP loss:
// out (sets, n, k)[p, r] = ||x_i - x_j||^2 (mode 0) or <x_i, x_j> (mode 1), x (sets, n, c),
// j = idx[p, r] in [0, n) within the point's set; per pair, 16 lane-strided float32 partial
// sums over the channels combined in a fixed order.
void pair_distances(const float* x, int64_t sets, int64_t n, int64_t c, const int64_t* idx,
                    int64_t k, int mode, float* out, int num_threads);

// Its backward for the gradient g (sets, n, k): gx (sets, n, c) (overwritten) = the sum over
// pairs of g times the distance's gradient (mode 0: 2 (x_i - x_j) to i, its negative to j;
// mode 1: x_j to i, x_i to j), pairs in point and rank order; pairs with g = 0 are skipped.
void pair_distances_backward(const float* x, int64_t sets, int64_t n, int64_t c,
                             const int64_t* idx, int64_t k, int mode, const float* g, float* gx,
                             int num_threads);

}  // namespace bingnn
