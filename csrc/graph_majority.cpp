// Majority vote of packed signs over the in-neighbours (graph_kernels.hpp): the aggregation of
// binary GraphSAGE layers with sign messages. It reads one bit per channel and edge (32 bytes
// per edge at 256 channels, where a float32 mean reads 1 KiB); on a large graph it is then
// bound by the number of random row reads, not their bytes (docs/performance.md). Per output
// row, every channel counts its set bits in a byte counter; a row of at most 255 entries needs
// no wider counter.
#include <algorithm>
#include <vector>

#include "bingnn_core.hpp"
#include "graph_kernels.hpp"

namespace bingnn {
namespace {

// spread[b]: byte k is bit k of b (the 8 counters of one byte of a word, SWAR).
struct SpreadTable {
    uint64_t v[256];
    SpreadTable() {
        for (int b = 0; b < 256; ++b) {
            uint64_t s = 0;
            for (int k = 0; k < 8; ++k) s |= static_cast<uint64_t>((b >> k) & 1) << (8 * k);
            v[b] = s;
        }
    }
};
const SpreadTable kSpread;

// Counts of one row into `total` (c entries), 8 byte counters per uint64 (SWAR), flushed every
// 255 entries so that no byte overflows.
void count_row_swar(const uint64_t* bits, int64_t words, int64_t c, const int32_t* idx,
                    int64_t deg, uint64_t* acc, uint32_t* total) {
    std::fill(total, total + c, 0u);
    for (int64_t e0 = 0; e0 < deg; e0 += 255) {
        const int64_t e1 = std::min<int64_t>(deg, e0 + 255);
        std::fill(acc, acc + words * 8, uint64_t{0});
        for (int64_t e = e0; e < e1; ++e) {
            const uint64_t* b = bits + static_cast<int64_t>(idx[e]) * words;
            for (int64_t q = 0; q < words; ++q) {
                const uint64_t w = b[q];
                uint64_t* a = acc + q * 8;
                for (int i = 0; i < 8; ++i) a[i] += kSpread.v[(w >> (8 * i)) & 0xFF];
            }
        }
        for (int64_t j = 0; j < c; ++j) {
            const int64_t q = j / 64, i = (j % 64) / 8, k = j % 8;
            total[j] += static_cast<uint32_t>((acc[q * 8 + i] >> (8 * k)) & 0xFF);
        }
    }
}

void write_row(const uint32_t* total, int64_t c, int64_t words, int64_t deg, uint64_t* o) {
    std::fill(o, o + words, uint64_t{0});
    for (int64_t j = 0; j < c; ++j)
        if (2 * static_cast<int64_t>(total[j]) >= deg) o[j / 64] |= uint64_t{1} << (j % 64);
}

void rows_portable(const uint64_t* bits, int64_t c, const int64_t* indptr,
                   const int32_t* indices, int64_t r0, int64_t r1, uint64_t* out) {
    const int64_t words = n_words(c);
    std::vector<uint64_t> acc(static_cast<size_t>(words * 8));
    std::vector<uint32_t> total(static_cast<size_t>(c));
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t deg = indptr[r + 1] - indptr[r];
        count_row_swar(bits, words, c, indices + indptr[r], deg, acc.data(), total.data());
        write_row(total.data(), c, words, deg, out + r * words);
    }
}

#if BINGNN_X86
constexpr int64_t kAhead = 32;

// One masked byte add per word and entry (mask bit k adds 1 to byte lane k), 8 words (512
// channels) of counters in registers at a time; rows of at most 255 entries compare their
// byte counters with ceil(deg / 2) directly, longer rows (hubs) take the portable path with
// wide counters.
BINGNN_AVX512 void rows_avx512(const uint64_t* bits, int64_t c, const int64_t* indptr,
                               const int32_t* indices, int64_t r0, int64_t r1, uint64_t* out) {
    const int64_t words = n_words(c);
    std::vector<uint64_t> sw(static_cast<size_t>(words * 8));
    std::vector<uint32_t> total(static_cast<size_t>(c));
    const __m512i one = _mm512_set1_epi8(1);
    const uint64_t tail = c % 64 ? (uint64_t{1} << (c % 64)) - 1 : ~uint64_t{0};
    const int64_t e_end = indptr[r1];
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t e0 = indptr[r], e1 = indptr[r + 1], deg = e1 - e0;
        uint64_t* o = out + r * words;
        if (deg > 255) {
            count_row_swar(bits, words, c, indices + e0, deg, sw.data(), total.data());
            write_row(total.data(), c, words, deg, o);
            continue;
        }
        // 2 * count >= deg  <=>  count >= ceil(deg / 2)
        const __m512i thr = _mm512_set1_epi8(static_cast<char>((deg + 1) / 2));
        for (int64_t q0 = 0; q0 < words; q0 += 8) {
            const int64_t nq = std::min<int64_t>(8, words - q0);
            __m512i acc[8];
            for (int64_t q = 0; q < nq; ++q) acc[q] = _mm512_setzero_si512();
            for (int64_t e = e0; e < e1; ++e) {
                if (e + kAhead < e_end)
                    _mm_prefetch(reinterpret_cast<const char*>(
                                     bits + static_cast<int64_t>(indices[e + kAhead]) * words +
                                     q0),
                                 _MM_HINT_T0);
                const uint64_t* b = bits + static_cast<int64_t>(indices[e]) * words + q0;
                for (int64_t q = 0; q < nq; ++q)
                    acc[q] = _mm512_mask_add_epi8(acc[q], static_cast<__mmask64>(b[q]), acc[q],
                                                  one);
            }
            for (int64_t q = 0; q < nq; ++q)
                o[q0 + q] = static_cast<uint64_t>(_mm512_cmpge_epu8_mask(acc[q], thr));
        }
        o[words - 1] &= tail;
    }
}
#endif

}  // namespace

void graph_majority(const uint64_t* bits, int64_t c, const int64_t* indptr,
                    const int32_t* indices, int64_t rows, uint64_t* out, int num_threads) {
    if (rows <= 0 || c <= 0) return;
    const Level level = active_level();
    auto run = [&](int64_t r0, int64_t r1) {
#if BINGNN_X86
        if (level == Level::Avx512) {
            rows_avx512(bits, c, indptr, indices, r0, r1, out);
            return;
        }
#endif
        (void)level;
        rows_portable(bits, c, indptr, indices, r0, r1, out);
    };
    const int threads = resolve_threads(num_threads);
    if (threads <= 1 || (indptr[rows] - indptr[0]) * n_words(c) < (int64_t{1} << 14)) {
        run(0, rows);
        return;
    }
    parallel_edge_chunks(indptr, rows, threads, run);
}

}  // namespace bingnn
