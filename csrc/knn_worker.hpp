// Per-thread Hamming k-NN of up to 4 query rows at a time (used by hamming_knn and by the fused
// XorEdgeConv layer).
#pragma once

#include "bingnn_core.hpp"

namespace bingnn {

class KnnWorker {
   public:
    static constexpr int kTile = 4;  // query rows per distance tile

    KnnWorker(int64_t n, int64_t w, int64_t k, Level level);

    // Neighbours of points r .. r+cnt-1 (cnt <= kTile) of one set: x (n, w) rows, bt =
    // blocks8(x) (ignored by the scalar level). Writes idx/dist rows (cnt, k); dist may be null.
    void rows(const uint64_t* x, const uint64_t* bt, int64_t r, int cnt, int32_t* idx,
              int32_t* dist);

   private:
    int64_t n_, w_, k_, ld_, maxd_;
    Level level_;
    int64_t last_cut_ = -1;  // previous row's cut-off distance: the next row's first guess
    std::vector<uint16_t> d_;  // kTile distance rows of ld_ entries, padded with 0xFFFF
    std::vector<int32_t> hist_;
    std::vector<int32_t> cand_idx_, cand_d_, cand_key_, cand_eq_;  // k + 32 entries (vector slack)
};

}  // namespace bingnn
