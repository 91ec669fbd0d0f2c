// Hamming k-NN within each point set, self included, ordered by (distance, neighbour index).
//
// Distances are small integers in [0, C], so no sort is needed: the k-th smallest distance D is
// found by counting (a histogram in the scalar/AVX2 paths, a search over D with vector
// compare-and-count passes in the AVX-512 path); then the points with d < D (fewer than k) are collected
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

#if BINGNN_X86
// counts[t] = #(d <= thr[t]) for 4 thresholds in one pass: compare, then a masked add of 1 in
// 16-bit lanes (no mask-to-register traffic); lanes are summed once at the end. A chunk of at
// most 32767 vectors keeps every lane count within int16 for the final madd.
BINGNN_AVX512 void count_le4(const uint16_t* d, int64_t nv, const int64_t* thr, int64_t* counts) {
    const __m512i ones = _mm512_set1_epi16(1);
    __m512i t[4];
    for (int q = 0; q < 4; ++q) {
        t[q] = _mm512_set1_epi16(static_cast<short>(thr[q]));
        counts[q] = 0;
    }
    for (int64_t v0 = 0; v0 < nv; v0 += 32767) {
        const int64_t v1 = std::min(nv, v0 + 32767);
        __m512i acc[4];
        for (int q = 0; q < 4; ++q) acc[q] = _mm512_setzero_si512();
        for (int64_t v = v0; v < v1; ++v) {
            const __m512i x = _mm512_loadu_si512(d + v * 32);
            for (int q = 0; q < 4; ++q)
                acc[q] = _mm512_mask_add_epi16(acc[q], _mm512_cmple_epu16_mask(x, t[q]), acc[q],
                                               ones);
        }
        for (int q = 0; q < 4; ++q)
            counts[q] += _mm512_reduce_add_epi32(_mm512_madd_epi16(acc[q], ones));
    }
}

// Cut-off distance D = smallest t with #(d <= t) >= k, in [0, maxd]. Each pass tests 4
// thresholds: a window around `guess` (the previous row's D: rows of one set have similar
// neighbour distances) first, then 5-way splits of what is left.
BINGNN_AVX512 int64_t cutoff_avx512(const uint16_t* d, int64_t nv, int64_t k, int64_t maxd,
                                    int64_t guess) {
    int64_t lo = 0, hi = maxd;  // invariant: #(d <= hi) >= k and #(d <= lo - 1) < k
    int64_t thr[4], cnt[4];
    while (lo < hi) {
        const int64_t span = hi - lo;
        if (span <= 4) {
            for (int q = 0; q < 4; ++q) thr[q] = std::min(lo + q, hi - 1);
        } else if (guess >= lo && guess < hi) {
            const int64_t start = std::clamp(guess - 1, lo, hi - 4);
            for (int q = 0; q < 4; ++q) thr[q] = start + q;
        } else {
            for (int q = 0; q < 4; ++q) thr[q] = lo + span * (q + 1) / 5;
        }
        guess = -1;
        count_le4(d, nv, thr, cnt);
        for (int q = 3; q >= 0; --q)
            if (cnt[q] >= k) hi = std::min(hi, thr[q]);
        for (int q = 0; q < 4; ++q)
            if (cnt[q] < k) lo = std::max(lo, thr[q] + 1);
    }
    return lo;
}

// One pass, without a branch per neighbour: the (fewer than k) points closer than the cut-off go
// to ci (then their distances to cd) and the points at the cut-off to ce, all in index order, with
// register compresses. ce keeps only its first k entries: its write position saturates at k.
// Every buffer has 16 entries of slack for the full-vector stores.
BINGNN_AVX512 int64_t collect_avx512(const uint16_t* d, int64_t nv, int64_t cut, int64_t k,
                                     int32_t* ci, int32_t* cd, int32_t* ce, int64_t* n_eq) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i cutv = _mm512_set1_epi16(static_cast<short>(cut));
    int64_t nl = 0, ne = 0;
    for (int64_t v = 0; v < nv; ++v) {
        const __m512i x = _mm512_loadu_si512(d + v * 32);
        const uint32_t lt = _mm512_cmplt_epu16_mask(x, cutv);
        const uint32_t eq = _mm512_cmpeq_epi16_mask(x, cutv);
        for (int h = 0; h < 2; ++h) {
            const auto ml = static_cast<__mmask16>(lt >> (16 * h));
            const auto me = static_cast<__mmask16>(eq >> (16 * h));
            const __m512i iv =
                _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(v * 32 + 16 * h)), iota);
            _mm512_storeu_si512(ci + nl, _mm512_maskz_compress_epi32(ml, iv));
            _mm512_storeu_si512(ce + ne, _mm512_maskz_compress_epi32(me, iv));
            nl += __builtin_popcount(ml);
            ne = std::min<int64_t>(ne + __builtin_popcount(me), k);
        }
    }
    *n_eq = ne;
    for (int64_t a = 0; a < nl; ++a) cd[a] = d[ci[a]];  // fewer than k gathers
    return nl;
}

BINGNN_AVX512 int64_t select_avx512(const uint16_t* d, int64_t ld, int64_t k, int64_t maxd,
                                    int64_t guess, int32_t* ci, int32_t* cd, int32_t* ce,
                                    int32_t* key, int32_t* idx, int32_t* dist) {
    const int64_t nv = ld / 32;
    const int64_t cut = cutoff_avx512(d, nv, k, maxd, guess);
    int64_t ne = 0;
    const int64_t nl = collect_avx512(d, nv, cut, k, ci, cd, ce, &ne);
    // Slots of the closer points: rank of the key (distance, position) among them, counted with
    // vector compares; positions keep the index order among equal distances.
    if (nl < 32768) {
        const __m512i iota =
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (int64_t c = 0; c < nl; c += 16)
            _mm512_storeu_si512(key + c, _mm512_add_epi32(
                                             _mm512_slli_epi32(_mm512_loadu_si512(cd + c), 15),
                                             _mm512_add_epi32(iota, _mm512_set1_epi32(int(c)))));
        for (int64_t a = 0; a < nl; ++a) {
            const __m512i ka = _mm512_set1_epi32(key[a]);
            int64_t r = 0;
            for (int64_t c = 0; c < nl; c += 16) {
                const int64_t left = nl - c;
                const __mmask16 valid = left >= 16 ? __mmask16(0xFFFF)
                                                   : static_cast<__mmask16>((1u << left) - 1u);
                r += __builtin_popcount(
                    _mm512_mask_cmplt_epi32_mask(valid, _mm512_loadu_si512(key + c), ka));
            }
            idx[r] = ci[a];
            if (dist) dist[r] = cd[a];
        }
    } else {
        std::vector<int64_t> order(static_cast<size_t>(nl));
        for (int64_t a = 0; a < nl; ++a) order[a] = a;
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t p, int64_t q) { return cd[p] < cd[q]; });
        for (int64_t r = 0; r < nl; ++r) {
            idx[r] = ci[order[r]];
            if (dist) dist[r] = cd[order[r]];
        }
    }
    // The first k - nl points at exactly the cut-off distance fill the rest.
    (void)ne;  // ne >= k - nl by the choice of the cut-off
    for (int64_t s = nl; s < k; ++s) {
        idx[s] = ce[s - nl];
        if (dist) dist[s] = static_cast<int32_t>(cut);
    }
    return cut;
}
#endif

}  // namespace

KnnWorker::KnnWorker(int64_t n, int64_t w, int64_t k, Level level)
    : n_(n), w_(w), k_(k), ld_((n + 31) / 32 * 32), maxd_(64 * w), level_(level) {
    d_.assign(static_cast<size_t>(kTile * ld_), kPad);
    hist_.assign(static_cast<size_t>(maxd_ + 1), 0);
    cand_idx_.assign(static_cast<size_t>(k_ + 32), 0);
    cand_d_.assign(static_cast<size_t>(k_ + 32), 0);
    cand_key_.assign(static_cast<size_t>(k_ + 32), 0);
    cand_eq_.assign(static_cast<size_t>(k_ + 32), 0);
}

void KnnWorker::rows(const uint64_t* x, const uint64_t* bt, int64_t r, int cnt, int32_t* idx,
                     int32_t* dist) {
    uint16_t* d = d_.data();
#if BINGNN_X86 || BINGNN_NEON
    if (level_ != Level::Scalar) {
        const uint64_t* a = x + r * w_;
        // Vector tiles write whole blocks of 8; distances of padding rows are overwritten below.
        auto tile = [&](auto rows_c) {
            constexpr int R = decltype(rows_c)::value;
#if BINGNN_X86
            if (level_ == Level::Avx512)
                tile_avx512<R, uint16_t>(a, w_, bt, n_, w_, 0, 1, d, ld_);
            else
                tile_avx2<R, uint16_t>(a, w_, bt, n_, w_, 0, 1, d, ld_);
#else
            tile_neon<R, uint16_t>(a, w_, bt, n_, w_, 0, 1, d, ld_);
#endif
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
            last_cut_ = select_avx512(d + q * ld_, ld_, k_, maxd_, last_cut_, cand_idx_.data(),
                                      cand_d_.data(), cand_eq_.data(), cand_key_.data(), io,
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
