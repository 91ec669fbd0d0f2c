// Hamming k-NN within each point set, self included, ordered by (distance, neighbour index).
//
// Distances are small integers in [0, C], so no sort is needed: the k-th smallest distance D is
// found by counting (a histogram in the scalar/AVX2 paths, a binary search over D with vector
// compare-and-count in the AVX-512 path); then the points with d < D (fewer than k) are collected
// in index order and stably ordered by distance, and the first k - #(d < D) points with d == D
// in index order fill the rest. That is exactly the (distance, index) order.
#include <cstring>

#include "knn_worker.hpp"
#include "popcount_tiles.hpp"

namespace bingnn {
namespace {

constexpr uint16_t kPad = 0xFFFF;  // larger than any distance (C <= kMaxKnnBits < 65535)

// Counting selection from a histogram of the distances (reference; also the AVX2 path).
void select_hist(const uint16_t* d, int64_t n, int64_t k, int64_t maxd, int32_t* hist,
                 int32_t* idx, int32_t* dist) {
    std::fill(hist, hist + maxd + 1, 0);
    for (int64_t j = 0; j < n; ++j) ++hist[d[j]];
    int64_t below = 0, cut = 0;
    for (; cut <= maxd; ++cut) {
        if (below + hist[cut] >= k) break;
        below += hist[cut];
    }
    // hist[v] becomes the first output slot of distance v < cut.
    int64_t pos = 0;
    for (int64_t v = 0; v < cut; ++v) {
        const int64_t c = hist[v];
        hist[v] = static_cast<int32_t>(pos);
        pos += c;
    }
    int64_t tie_slot = below;
    for (int64_t j = 0; j < n; ++j) {
        const int64_t dj = d[j];
        int64_t slot;
        if (dj < cut)
            slot = hist[dj]++;
        else if (dj == cut && tie_slot < k)
            slot = tie_slot++;
        else
            continue;
        idx[slot] = static_cast<int32_t>(j);
        if (dist) dist[slot] = static_cast<int32_t>(dj);
    }
}

// Stable insertion sort of the (fewer than k) candidates by distance; they arrive in index order.
void sort_candidates(int32_t* ci, uint16_t* cd, int64_t cnt) {
    for (int64_t a = 1; a < cnt; ++a) {
        const int32_t i = ci[a];
        const uint16_t v = cd[a];
        int64_t b = a;
        for (; b > 0 && cd[b - 1] > v; --b) {
            ci[b] = ci[b - 1];
            cd[b] = cd[b - 1];
        }
        ci[b] = i;
        cd[b] = v;
    }
}

#if BINGNN_X86
BINGNN_AVX512 void select_avx512(const uint16_t* d, int64_t ld, int64_t k, int64_t maxd,
                                 int32_t* ci, uint16_t* cd, int32_t* idx, int32_t* dist) {
    const int64_t nv = ld / 32;
    // Smallest D with #(d <= D) >= k, by binary search; each probe is one compare-and-count
    // pass over the row (32 distances per instruction).
    int64_t lo = 0, hi = maxd;
    while (lo < hi) {
        const int64_t mid = (lo + hi) >> 1;
        const __m512i t = _mm512_set1_epi16(static_cast<short>(mid));
        int64_t cnt = 0;
        for (int64_t v = 0; v < nv; ++v)
            cnt += __builtin_popcount(
                _mm512_cmple_epu16_mask(_mm512_loadu_si512(d + v * 32), t));
        if (cnt >= k)
            hi = mid;
        else
            lo = mid + 1;
    }
    const __m512i cut = _mm512_set1_epi16(static_cast<short>(lo));
    int64_t nl = 0;
    for (int64_t v = 0; v < nv; ++v) {
        uint32_t m = _mm512_cmplt_epu16_mask(_mm512_loadu_si512(d + v * 32), cut);
        while (m) {
            const int64_t j = v * 32 + __builtin_ctz(m);
            ci[nl] = static_cast<int32_t>(j);
            cd[nl] = d[j];
            ++nl;
            m &= m - 1;
        }
    }
    sort_candidates(ci, cd, nl);
    for (int64_t s = 0; s < nl; ++s) {
        idx[s] = ci[s];
        if (dist) dist[s] = cd[s];
    }
    int64_t slot = nl;
    for (int64_t v = 0; v < nv && slot < k; ++v) {
        uint32_t m = _mm512_cmpeq_epi16_mask(_mm512_loadu_si512(d + v * 32), cut);
        while (m && slot < k) {
            idx[slot] = static_cast<int32_t>(v * 32 + __builtin_ctz(m));
            if (dist) dist[slot] = static_cast<int32_t>(lo);
            ++slot;
            m &= m - 1;
        }
    }
}
#endif

}  // namespace

KnnWorker::KnnWorker(int64_t n, int64_t w, int64_t k, Level level)
    : n_(n), w_(w), k_(k), ld_((n + 31) / 32 * 32), maxd_(64 * w), level_(level) {
    d_.assign(static_cast<size_t>(kTile * ld_), kPad);
    hist_.assign(static_cast<size_t>(maxd_ + 1), 0);
    cand_idx_.assign(static_cast<size_t>(k_), 0);
    cand_d_.assign(static_cast<size_t>(k_), 0);
}

void KnnWorker::rows(const uint64_t* x, const uint64_t* bt, int64_t r, int cnt, int32_t* idx,
                     int32_t* dist) {
    uint16_t* d = d_.data();
#if BINGNN_X86
    if (level_ != Level::Scalar) {
        const uint64_t* a = x + r * w_;
        // Vector tiles write whole blocks of 8; distances of padding rows are overwritten below.
        auto tile = [&](auto rows_c) {
            constexpr int R = decltype(rows_c)::value;
            if (level_ == Level::Avx512)
                tile_avx512<R, uint16_t>(a, w_, bt, n_, w_, 0, 1, d, ld_);
            else
                tile_avx2<R, uint16_t>(a, w_, bt, n_, w_, 0, 1, d, ld_);
        };
        switch (cnt) {
            case 4: tile(std::integral_constant<int, 4>{}); break;
            case 3: tile(std::integral_constant<int, 3>{}); break;
            case 2: tile(std::integral_constant<int, 2>{}); break;
            default: tile(std::integral_constant<int, 1>{}); break;
        }
        for (int q = 0; q < cnt; ++q) std::fill(d + q * ld_ + n_, d + (q + 1) * ld_, kPad);
    } else
#endif
    {
        (void)bt;
        for (int q = 0; q < cnt; ++q)
            for (int64_t j = 0; j < n_; ++j)
                d[q * ld_ + j] = static_cast<uint16_t>(
                    xor_popcount_scalar(x + (r + q) * w_, x + j * w_, w_));
    }
    for (int q = 0; q < cnt; ++q) {
        int32_t* io = idx + q * k_;
        int32_t* dout = dist ? dist + q * k_ : nullptr;
#if BINGNN_X86
        if (level_ == Level::Avx512) {
            select_avx512(d + q * ld_, ld_, k_, maxd_, cand_idx_.data(), cand_d_.data(), io,
                          dout);
            continue;
        }
#endif
        select_hist(d + q * ld_, n_, k_, maxd_, hist_.data(), io, dout);
    }
}

void hamming_knn(const uint64_t* x, int64_t sets, int64_t n, int64_t w, int64_t k, int32_t* idx,
                 int32_t* dist, int num_threads) {
    if (sets == 0 || n == 0) return;
    const Level level = active_level();
    const int64_t set_words = n * w, set_bt = (n + 7) / 8 * w * 8;
    std::vector<uint64_t> bt;
    if (level != Level::Scalar) {
        bt.resize(static_cast<size_t>(sets * set_bt));
        for (int64_t s = 0; s < sets; ++s) {
            const std::vector<uint64_t> b = blocks8(x + s * set_words, n, w);
            std::copy(b.begin(), b.end(), bt.begin() + s * set_bt);
        }
    }
    const int64_t tiles_per_set = (n + KnnWorker::kTile - 1) / KnnWorker::kTile;
    const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, n * (w + 2)));
    parallel_for(sets * tiles_per_set, num_threads, grain, [&](int64_t u0, int64_t u1) {
        KnnWorker worker(n, w, k, level);
        for (int64_t u = u0; u < u1; ++u) {
            const int64_t s = u / tiles_per_set, r = (u % tiles_per_set) * KnnWorker::kTile;
            const int cnt = static_cast<int>(std::min<int64_t>(KnnWorker::kTile, n - r));
            const int64_t row = s * n + r;
            worker.rows(x + s * set_words, bt.empty() ? nullptr : bt.data() + s * set_bt, r,
                        cnt, idx + row * k, dist + row * k);
        }
    });
}

}  // namespace bingnn
