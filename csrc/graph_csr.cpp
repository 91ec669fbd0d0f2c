// Edge lists -> CSR by target, and GCN's normalised graph (graph_kernels.hpp). Integer and
// memory-bound work: one portable implementation.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <cmath>
#include <vector>

#include "graph_kernels.hpp"

namespace bingnn {

bool graph_csr_by_target(const int64_t* src, const int64_t* dst, int64_t e, int64_t n,
                         int64_t* indptr, int32_t* indices) {
    for (int64_t i = 0; i <= n; ++i) indptr[i] = 0;
    for (int64_t q = 0; q < e; ++q) {
        if (src[q] < 0 || src[q] >= n || dst[q] < 0 || dst[q] >= n) return false;
        ++indptr[dst[q] + 1];
    }
    for (int64_t i = 0; i < n; ++i) indptr[i + 1] += indptr[i];
    std::vector<int64_t> cursor(indptr, indptr + n);
    for (int64_t q = 0; q < e; ++q) indices[cursor[dst[q]]++] = static_cast<int32_t>(src[q]);
    return true;
}

int64_t graph_gcn_size(const int64_t* indptr, const int32_t* indices, int64_t n) {
    int64_t total = n;  // one self-loop per node
    for (int64_t i = 0; i < n; ++i)
        for (int64_t q = indptr[i]; q < indptr[i + 1]; ++q) total += indices[q] != i;
    return total;
}

void graph_gcn_csr(const int64_t* indptr, const int32_t* indices, int64_t n, float fill,
                   int64_t* indptr_out, int32_t* indices_out, float* weights_out) {
    std::vector<float> dis(static_cast<size_t>(n));
    indptr_out[0] = 0;
    for (int64_t i = 0; i < n; ++i) {
        int64_t o = indptr_out[i];
        float deg = 0.0f;  // PyG: scatter-sum of the weights in edge order (loop last)
        for (int64_t q = indptr[i]; q < indptr[i + 1]; ++q) {
            if (indices[q] == i) continue;
            indices_out[o++] = indices[q];
            deg += 1.0f;
        }
        indices_out[o++] = static_cast<int32_t>(i);
        deg += fill;
        indptr_out[i + 1] = o;
        dis[static_cast<size_t>(i)] = 1.0f / std::sqrt(deg);  // deg >= fill > 0
    }
    for (int64_t i = 0; i < n; ++i) {
        const float di = dis[static_cast<size_t>(i)];
        const int64_t last = indptr_out[i + 1] - 1;
        for (int64_t q = indptr_out[i]; q < last; ++q) {
            const float dj = dis[static_cast<size_t>(indices_out[q])];
            weights_out[q] = dj * di;  // (d_j^-1/2 * 1) * d_i^-1/2
        }
        const float loop = di * fill;
        weights_out[last] = loop * di;
    }
}

}  // namespace bingnn
