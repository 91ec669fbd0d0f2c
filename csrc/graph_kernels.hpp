// Graph kernels of the engine's node models (binary GraphSAGE / GCN), one file per group:
// graph_csr.cpp (edge lists -> CSR, GCN normalisation), graph_aggregate.cpp (neighbourhood
// sums and means), graph_node.cpp (node-wise steps: +-1 gather-add, thresholds, centring,
// node scale, the float32 epilogue). bingnn/engine/graph_reference.py is the specification;
// every kernel has a scalar reference here and, where it pays, AVX2 / AVX-512 paths chosen at
// run time (bingnn_core.hpp), all giving the same bits.
//
// Float32 contract (what makes the engine agree with PyTorch Geometric bit for bit):
//   * the messages of a node are added in CSR order (the edge order), from +0.0; a weighted
//     message is round(w * h) before it is added (never a fused multiply-add); a mean divides
//     the sum by max(1, degree) in float32;
//   * a per-node sum over channels follows ATen's CPU inner reduction with 8-float lanes
//     (aten_row_sum below); BatchNorm inside the node scale is fma(x, scale, shift);
//   * x * (+-1) is exact, so the gather-add of weight columns is exact for 0/1 inputs.
// These files are compiled with floating-point contraction off (see the pragma in each), so
// no compiler turns a separate multiply and add into an FMA.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel.hpp"

namespace bingnn {

// Runs run(r0, r1) over the rows of a CSR in 8 * threads chunks of about equal work (in-edges
// + 1 per row), not of equal row counts: on a power-law graph a few hubs hold a large share
// of the edges.
template <class Run>
void parallel_edge_chunks(const int64_t* indptr, int64_t rows, int threads, const Run& run) {
    const int64_t work = (indptr[rows] - indptr[0]) + rows;
    const int64_t chunks = std::min<int64_t>(rows, int64_t{8} * threads);
    std::vector<int64_t> bounds(static_cast<size_t>(chunks + 1), rows);
    bounds[0] = 0;
    for (int64_t q = 1; q < chunks; ++q) {
        const int64_t target = work * q / chunks;
        // first row r with (indptr[r] - indptr[0]) + r >= target
        int64_t lo = bounds[static_cast<size_t>(q - 1)], hi = rows;
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if ((indptr[mid] - indptr[0]) + mid < target)
                lo = mid + 1;
            else
                hi = mid;
        }
        bounds[static_cast<size_t>(q)] = lo;
    }
    parallel_for(chunks, threads, 1, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q)
            run(bounds[static_cast<size_t>(q)], bounds[static_cast<size_t>(q + 1)]);
    });
}

// In-edges grouped by target, edge order kept (a stable counting sort). src, dst (e) int64 in
// [0, n) (checked: returns false on an out-of-range index); indptr (n + 1) int64, indices (e)
// int32 (the sources).
bool graph_csr_by_target(const int64_t* src, const int64_t* dst, int64_t e, int64_t n,
                         int64_t* indptr, int32_t* indices);

// PyG's gcn_norm of an unweighted CSR (n rows): self-loops dropped, one self-loop of weight
// `fill` appended after each row, d_i = sum of the row's weights, weight of (j -> i) =
// (d_j^-1/2 * w) * d_i^-1/2 with d^-1/2 = 1 / sqrt(d), float32. Output sizes: indptr_out
// (n + 1); indices_out / weights_out (count given by graph_gcn_size).
int64_t graph_gcn_size(const int64_t* indptr, const int32_t* indices, int64_t n);
void graph_gcn_csr(const int64_t* indptr, const int32_t* indices, int64_t n, float fill,
                   int64_t* indptr_out, int32_t* indices_out, float* weights_out);

// Element types of node values: float32, or exact small integers stored narrow (the first
// layer's +-1 sums of 0/1 features, binary GEMM results).
enum class Elem : int { F32 = 0, I8 = 1, I16 = 2, I32 = 3 };

// One term of the float32 epilogue: value = ((x * row_scale[r]) + bias[c]) * alpha[c], each
// step rounded and skipped when its pointer is null; x (rows, c) of type `elem`.
struct AffineTerm {
    const void* x = nullptr;
    Elem elem = Elem::F32;
    int64_t ld = 0;  // elements from one row of x to the next (0: c)
    const float* row_scale = nullptr;
    const float* bias = nullptr;
    const float* alpha = nullptr;
};

// What follows an aggregated row o (row r): o = (o + t0_bias) * t0_alpha, plus the row-r
// value of `second` (when second.x is set), plus bias, then prelu(o, slope); each step rounded
// and skipped when its pointer is null.
struct RowEpilogue {
    const float* t0_bias = nullptr;
    const float* t0_alpha = nullptr;
    AffineTerm second{};
    const float* bias = nullptr;
    const float* slope = nullptr;
};

// Centring modes of center_sign / node_scale.
enum class Centering : int { None = 0, Mean = 1, BatchNorm = 2 };

// How a row's signs are taken: a per-channel threshold predicate
// negate_c XOR (v >= hi_c OR v <= lo_c), or v >= centre with the per-node centre (mean: ATen's
// row sum / c; none: 0).
enum class SignMode : int { Threshold = 0, Mean = 1, None = 2 };

// How one set of a row's packed signs is taken (mode and threshold predicate, see SignMode)
// and where it goes (`bits`, rows x ceil(c / 64); null: not wanted).
struct SignOutput {
    uint64_t* bits = nullptr;
    SignMode sign = SignMode::Threshold;
    const float* lo = nullptr;
    const float* hi = nullptr;
    const uint8_t* negate = nullptr;
};

// Where a finished row goes: the float row (`out`, rows x c), and/or up to two sets of its
// packed signs (two layers may binarize one value with their own thresholds) and Bi-GCN's node
// scale of it (`beta`, rows). Without `out` the float rows are never stored (a per-thread
// scratch row holds them).
struct RowOutput {
    float* out = nullptr;
    SignOutput signs[2]{};
    float* beta = nullptr;
    Centering scale = Centering::None;
    const float* bn_scale = nullptr;
    const float* bn_shift = nullptr;
};

// A source of messages: h (m, c) of type `elem`; each value enters as
// u = ((float(h) * row_scale[j]) * alpha[c]) (each step rounded, skipped when null).
struct AggSource {
    const void* data = nullptr;
    Elem elem = Elem::F32;
    int64_t ld = 0;  // elements from one row of h to the next (0: c)
    const float* row_scale = nullptr;  // (m) per source node
    const float* alpha = nullptr;      // (c) per channel
};

// Row r (of rows): the sum over its entries e, in order and from +0.0, of
// (weights ? round(weights[e] * u[indices[e]]) : u[indices[e]]); with `mean`, divided by
// max(1, entries of the row); then the epilogue `ep`; then written as `ro` says.
// indices in [0, m).
void graph_aggregate(const AggSource& src, int64_t c, const int64_t* indptr,
                     const int32_t* indices, const float* weights, int64_t rows, bool mean,
                     const RowEpilogue& ep, const RowOutput& ro, int num_threads);

// Majority vote of packed signs over in-neighbours: bit c of out row r is set where
// 2 * (number of entries e of row r with bit c of bits[indices[e]] set) >= (entries of row r),
// i.e. the sign of the mean of the +-1 messages with sign(0) = +1 (an empty row gives all
// ones). bits (m, ceil(c / 64)), out (rows, ceil(c / 64)); bits of a row past c stay 0.
void graph_majority(const uint64_t* bits, int64_t c, const int64_t* indptr,
                    const int32_t* indices, int64_t rows, uint64_t* out, int num_threads);

// Statistics of dense features x (rows, f) in one pass: whether every value is finite, whether
// every value is an integer, and the largest row sum of |x| when every value is an integer
// below 2^23 in magnitude (exact), else HUGE_VAL (it only decides the narrow integer types).
struct FeatureStats {
    bool finite = true;
    bool integral = true;
    double max_l1 = 0.0;
};
FeatureStats graph_feature_stats(const float* x, int64_t rows, int64_t f, int num_threads);

// z (rows, c_out) = x @ sign(W)^T as a gather-add: for each stored entry (f, v) of a row in
// order, z += v * s_f, s_f the +-1 column f of the packed weights w (c_out, ceil(f_in / 64)).
// `out` is F32 (float32 sums) or, when every value is an integer and every row's sum of |v|
// fits the type, I8 / I16 (int32 sums, exact; returns false if a row breaks that promise).
// CSR form: indptr (rows + 1), indices (sorted within a row) in [0, f_in), data (nnz) or null
// for all ones.
bool graph_signed_linear_csr(const int64_t* indptr, const int32_t* indices, const float* data,
                             int64_t rows, const uint64_t* w, int64_t c_out, int64_t f_in,
                             Elem out, void* z, int num_threads);
// Dense form: x (rows, f_in), zeros skipped (adding +-0.0 to a sum that starts at +0.0 changes
// nothing).
bool graph_signed_linear_dense(const float* x, int64_t rows, int64_t f_in, const uint64_t* w,
                               int64_t c_out, Elem out, void* z, int num_threads);

// Packed bits (rows, ceil(c / 64)) of negate_c XOR (v >= hi_c OR v <= lo_c); v (rows, c).
void graph_threshold_pack(const float* v, int64_t rows, int64_t c, const float* lo,
                          const float* hi, const uint8_t* negate, uint64_t* out,
                          int num_threads);

// ATen's sum of one row of c floats (vectorized_inner_sum with 8-float lanes).
float aten_row_sum(const float* x, int64_t c);


// Packed signs of v - centre(v) per row: bit set where v >= centre (Mean: aten_row_sum / c;
// None: 0).
void graph_center_sign(const float* v, int64_t rows, int64_t c, Centering mode, uint64_t* out,
                       int num_threads);

// Bi-GCN's node scale beta (rows) = aten_row_sum(|centre(v)|) / c, centre(v) = v - mean (Mean),
// fma(v, scale, shift) (BatchNorm), v (None).
void graph_node_scale(const float* v, int64_t rows, int64_t c, Centering mode,
                      const float* bn_scale, const float* bn_shift, float* beta,
                      int num_threads);

// out (rows, c) = prelu(((term0 + term1) + bias), slope) with up to two terms (n_terms 1 or 2);
// bias / slope null to skip; prelu(v) = v >= 0 ? v : round(v * slope).
void graph_affine(const AffineTerm* terms, int n_terms, int64_t rows, int64_t c,
                  const float* bias, const float* slope, float* out, int num_threads);

}  // namespace bingnn
