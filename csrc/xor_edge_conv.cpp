// Fused XorEdgeConv step of binary DGCNN (BF1/BF2), on packed bits.
//
// For point i with neighbours j (self included) and output channel c:
//   e_ij   = [x_j XOR x_i, x_i]                       (2 * C_in edge bits)
//   y_ijc  = (C_in - 2 popcount(x_j ^ x_i ^ w_rel_c)) + (C_in - 2 popcount(x_i ^ w_self_c))
// The self half does not depend on j: it is computed once per point. max_j y and min_j y follow
// from the min and max of the relative popcount. The thresholded output is
//   bit_c(i) = negate_c XOR (max_j y_ijc >= t_hi_c  OR  min_j y_ijc <= t_lo_c).
#include <climits>

#include "knn_worker.hpp"
#include "popcount_tiles.hpp"

namespace bingnn {
namespace {

struct ConvCtx {
    const XorConvParams& p;
    Level level;
    int64_t w_in, w_out, nb;                  // nb: blocks of 8 output channels
    std::vector<uint64_t> w_rel_t, w_self_t;  // blocks8 of the weights (vector levels)
    std::vector<int32_t> t_hi, t_lo;          // padded to nb * 8; padding never fires
    std::vector<uint8_t> negate_bits, valid_bits;  // one byte (8 channels) per block

    ConvCtx(const XorConvParams& params, Level lvl)
        : p(params),
          level(lvl),
          w_in(n_words(params.c_in)),
          w_out(n_words(params.c_out)),
          nb((params.c_out + 7) / 8) {
        if (level != Level::Scalar) {
            w_rel_t = blocks8(p.w_rel, p.c_out, w_in);
            w_self_t = blocks8(p.w_self, p.c_out, w_in);
        }
        t_hi.assign(static_cast<size_t>(nb * 8), INT32_MAX);
        t_lo.assign(static_cast<size_t>(nb * 8), INT32_MIN);
        negate_bits.assign(static_cast<size_t>(nb), 0);
        valid_bits.assign(static_cast<size_t>(nb), 0);
        for (int64_t c = 0; c < p.c_out; ++c) {
            if (p.t_hi) {
                t_hi[c] = p.t_hi[c];
                t_lo[c] = p.t_lo[c];
                if (p.negate[c]) negate_bits[c / 8] |= uint8_t(1u << (c % 8));
            }
            valid_bits[c / 8] |= uint8_t(1u << (c % 8));
        }
    }
};

// Threshold max/min rows into packed output bits (scalar and AVX2 levels).
void threshold_bits(const ConvCtx& cx, const int32_t* ymax, const int32_t* ymin, uint64_t* bits) {
    std::fill(bits, bits + cx.w_out, 0);
    for (int64_t c = 0; c < cx.p.c_out; ++c) {
        const bool fire = ymax[c] >= cx.t_hi[c] || ymin[c] <= cx.t_lo[c];
        const bool neg = (cx.negate_bits[c / 8] >> (c % 8)) & 1u;
        if (fire != neg) bits[c / 64] |= uint64_t{1} << (c % 64);
    }
}

void minmax_scalar(const ConvCtx& cx, const uint64_t* xi, const uint64_t* e, int64_t k,
                   int32_t* ymax, int32_t* ymin) {
    const int64_t w = cx.w_in, c_in = cx.p.c_in;
    for (int64_t c = 0; c < cx.p.c_out; ++c) {
        const int64_t self = c_in - 2 * xor_popcount_scalar(xi, cx.p.w_self + c * w, w);
        int64_t hi = INT64_MIN, lo = INT64_MAX;
        for (int64_t j = 0; j < k; ++j) {
            const int64_t y = c_in - 2 * xor_popcount_scalar(e + j * w, cx.p.w_rel + c * w, w) +
                              self;
            hi = std::max(hi, y);
            lo = std::min(lo, y);
        }
        ymax[c] = static_cast<int32_t>(hi);
        ymin[c] = static_cast<int32_t>(lo);
    }
}

#if BINGNN_X86
BINGNN_AVX2 void minmax_avx2(const ConvCtx& cx, const uint64_t* xi, const uint64_t* e, int64_t k,
                             int32_t* pc, int32_t* ymax, int32_t* ymin) {
    const int64_t w = cx.w_in, c_out = cx.p.c_out;
    const auto two_c_in = static_cast<int32_t>(2 * cx.p.c_in);
    // Relative popcounts: max y <-> min popcount.
    for (int64_t j = 0; j < k; ++j) {
        tile_avx2<1, int32_t>(e + j * w, w, cx.w_rel_t.data(), c_out, w, 0, 1, pc, c_out);
        if (j == 0) {
            std::copy(pc, pc + c_out, ymax);
            std::copy(pc, pc + c_out, ymin);
        } else {
            for (int64_t c = 0; c < c_out; ++c) {
                ymax[c] = std::min(ymax[c], pc[c]);  // holds min popcount for now
                ymin[c] = std::max(ymin[c], pc[c]);  // holds max popcount for now
            }
        }
    }
    tile_avx2<1, int32_t>(xi, w, cx.w_self_t.data(), c_out, w, 0, 1, pc, c_out);
    for (int64_t c = 0; c < c_out; ++c) {
        const int32_t base = two_c_in - 2 * pc[c];
        const int32_t min_pc = ymax[c], max_pc = ymin[c];
        ymax[c] = base - 2 * min_pc;
        ymin[c] = base - 2 * max_pc;
    }
}

// G blocks of 8 output channels of one point, in registers: each broadcast edge word is XOR-ed
// with G weight blocks (independent chains keep the popcount units busy); the thresholds are
// compared in vector registers and the resulting bits placed straight into the output words.
template <int G>
BINGNN_AVX512 inline void blocks_avx512(const ConvCtx& cx, int64_t blk0, const uint64_t* xi,
                                        const uint64_t* e, int64_t k, int32_t* ymax,
                                        int32_t* ymin, uint64_t* bits) {
    const int64_t w = cx.w_in;
    const __m512i two_c_in = _mm512_set1_epi64(2 * cx.p.c_in);
    const uint64_t* rp = cx.w_rel_t.data() + blk0 * w * 8;
    const uint64_t* sp = cx.w_self_t.data() + blk0 * w * 8;
    __m512i self[G], mn[G], mx[G];
    for (int g = 0; g < G; ++g) {
        self[g] = _mm512_setzero_si512();
        mn[g] = _mm512_set1_epi64(-1);  // unsigned max
        mx[g] = _mm512_setzero_si512();
    }
    for (int64_t t = 0; t < w; ++t) {
        const __m512i xv = _mm512_set1_epi64(static_cast<long long>(xi[t]));
        for (int g = 0; g < G; ++g)
            self[g] = _mm512_add_epi64(
                self[g], _mm512_popcnt_epi64(_mm512_xor_si512(
                             xv, _mm512_loadu_si512(sp + (g * w + t) * 8))));
    }
    for (int64_t j = 0; j < k; ++j) {
        __m512i pc[G];
        for (int g = 0; g < G; ++g) pc[g] = _mm512_setzero_si512();
        for (int64_t t = 0; t < w; ++t) {
            const __m512i ev = _mm512_set1_epi64(static_cast<long long>(e[j * w + t]));
            for (int g = 0; g < G; ++g)
                pc[g] = _mm512_add_epi64(
                    pc[g], _mm512_popcnt_epi64(_mm512_xor_si512(
                               ev, _mm512_loadu_si512(rp + (g * w + t) * 8))));
        }
        for (int g = 0; g < G; ++g) {
            mn[g] = _mm512_min_epu64(mn[g], pc[g]);
            mx[g] = _mm512_max_epu64(mx[g], pc[g]);
        }
    }
    for (int g = 0; g < G; ++g) {
        const int64_t blk = blk0 + g;
        // y = 2 C_in - 2 popcount_self - 2 popcount_rel: max y <-> min popcount_rel.
        const __m512i base = _mm512_sub_epi64(two_c_in, _mm512_slli_epi64(self[g], 1));
        const __m256i yhi =
            _mm512_cvtepi64_epi32(_mm512_sub_epi64(base, _mm512_slli_epi64(mn[g], 1)));
        const __m256i ylo =
            _mm512_cvtepi64_epi32(_mm512_sub_epi64(base, _mm512_slli_epi64(mx[g], 1)));
        if (bits) {
            const __mmask8 hi = _mm256_cmpge_epi32_mask(
                yhi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&cx.t_hi[blk * 8])));
            const __mmask8 lo = _mm256_cmple_epi32_mask(
                ylo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&cx.t_lo[blk * 8])));
            const uint64_t b =
                static_cast<uint8_t>((hi | lo) ^ cx.negate_bits[blk]) & cx.valid_bits[blk];
            bits[blk / 8] |= b << ((blk % 8) * 8);
        } else {
            const __mmask8 m = cx.valid_bits[blk];
            _mm256_mask_storeu_epi32(ymax + blk * 8, m, yhi);
            _mm256_mask_storeu_epi32(ymin + blk * 8, m, ylo);
        }
    }
}

void point_avx512(const ConvCtx& cx, const uint64_t* xi, const uint64_t* e, int64_t k,
                  int32_t* ymax, int32_t* ymin, uint64_t* bits) {
    if (bits) std::fill(bits, bits + cx.w_out, 0);
    int64_t blk = 0;
    for (; blk + 4 <= cx.nb; blk += 4) blocks_avx512<4>(cx, blk, xi, e, k, ymax, ymin, bits);
    switch (cx.nb - blk) {
        case 3: blocks_avx512<3>(cx, blk, xi, e, k, ymax, ymin, bits); break;
        case 2: blocks_avx512<2>(cx, blk, xi, e, k, ymax, ymin, bits); break;
        case 1: blocks_avx512<1>(cx, blk, xi, e, k, ymax, ymin, bits); break;
        default: break;
    }
}
#endif

#if BINGNN_NEON
// Relative popcounts of up to 4 neighbours at a time against every weight row (the edge rows
// share each loaded weight block), then the self half once per point.
void minmax_neon(const ConvCtx& cx, const uint64_t* xi, const uint64_t* e, int64_t k,
                 int32_t* pc /* 4 x nb * 8 */, int32_t* ymax, int32_t* ymin) {
    const int64_t w = cx.w_in, c_out = cx.p.c_out, ld = cx.nb * 8;
    // Until the end, ymax holds the min and ymin the max relative popcount (max y <-> min pc).
    std::fill(ymax, ymax + c_out, INT32_MAX);
    std::fill(ymin, ymin + c_out, INT32_MIN);
    over_row_tiles(0, k, [&](auto rows, int64_t j) {
        constexpr int R = decltype(rows)::value;
        tile_neon<R, int32_t>(e + j * w, w, cx.w_rel_t.data(), c_out, w, 0, 1, pc, ld);
        for (int r = 0; r < R; ++r)
            for (int64_t c = 0; c < c_out; ++c) {
                ymax[c] = std::min(ymax[c], pc[r * ld + c]);
                ymin[c] = std::max(ymin[c], pc[r * ld + c]);
            }
    });
    tile_neon<1, int32_t>(xi, w, cx.w_self_t.data(), c_out, w, 0, 1, pc, ld);
    const auto two_c_in = static_cast<int32_t>(2 * cx.p.c_in);
    for (int64_t c = 0; c < c_out; ++c) {
        const int32_t base = two_c_in - 2 * pc[c];
        const int32_t min_pc = ymax[c], max_pc = ymin[c];
        ymax[c] = base - 2 * min_pc;
        ymin[c] = base - 2 * max_pc;
    }
}
#endif

class ConvWorker {
   public:
    ConvWorker(const ConvCtx& cx, int64_t k)
        : cx_(cx),
          k_(k),
          e_(static_cast<size_t>(k * cx.w_in)),
          pc_(static_cast<size_t>(4 * cx.nb * 8)),
          ymax_(static_cast<size_t>(cx.nb * 8)),
          ymin_(static_cast<size_t>(cx.nb * 8)) {}

    // Point i of a set xs (n, w_in); bits != null: thresholded output word(s), else ymax/ymin.
    void point(const uint64_t* xs, int64_t i, const int32_t* nbr, int32_t* ymax, int32_t* ymin,
               uint64_t* bits) {
        const int64_t w = cx_.w_in;
        const uint64_t* xi = xs + i * w;
        for (int64_t j = 0; j < k_; ++j) {
            const uint64_t* xj = xs + static_cast<int64_t>(nbr[j]) * w;
            for (int64_t t = 0; t < w; ++t) e_[j * w + t] = xj[t] ^ xi[t];
        }
#if BINGNN_X86
        if (cx_.level == Level::Avx512)
            return point_avx512(cx_, xi, e_.data(), k_, ymax, ymin, bits);
#endif
        int32_t* hi = bits ? ymax_.data() : ymax;
        int32_t* lo = bits ? ymin_.data() : ymin;
        switch (cx_.level) {
#if BINGNN_X86
            case Level::Avx2:
                minmax_avx2(cx_, xi, e_.data(), k_, pc_.data(), hi, lo);
                break;
#endif
#if BINGNN_NEON
            case Level::Neon:
                minmax_neon(cx_, xi, e_.data(), k_, pc_.data(), hi, lo);
                break;
#endif
            default:
                minmax_scalar(cx_, xi, e_.data(), k_, hi, lo);
        }
        if (bits) threshold_bits(cx_, hi, lo, bits);
    }

   private:
    const ConvCtx& cx_;
    int64_t k_;
    std::vector<uint64_t> e_;
    std::vector<int32_t> pc_, ymax_, ymin_;
};

void run_conv(const uint64_t* x, int64_t sets, int64_t n, const int32_t* idx, int64_t k,
              const XorConvParams& p, int32_t* ymax, int32_t* ymin, uint64_t* out,
              int num_threads) {
    if (sets == 0 || n == 0) return;
    const ConvCtx cx(p, active_level());
    const int64_t cost = std::max<int64_t>(1, k * (cx.nb * 8) * (cx.w_in + 1));
    const int64_t grain = std::max<int64_t>(1, (1 << 17) / cost);
    parallel_for(sets * n, num_threads, grain, [&](int64_t q0, int64_t q1) {
        ConvWorker worker(cx, k);
        for (int64_t q = q0; q < q1; ++q) {
            const int64_t s = q / n, i = q % n;
            worker.point(x + s * n * cx.w_in, i, idx + q * k, ymax ? ymax + q * p.c_out : nullptr,
                         ymin ? ymin + q * p.c_out : nullptr, out ? out + q * cx.w_out : nullptr);
        }
    });
}

}  // namespace

void xor_edge_conv(const uint64_t* x, int64_t sets, int64_t n, const int32_t* idx, int64_t k,
                   const XorConvParams& p, uint64_t* out, int num_threads) {
    run_conv(x, sets, n, idx, k, p, nullptr, nullptr, out, num_threads);
}

void xor_edge_conv_minmax(const uint64_t* x, int64_t sets, int64_t n, const int32_t* idx,
                          int64_t k, const XorConvParams& p, int32_t* ymax, int32_t* ymin,
                          int num_threads) {
    run_conv(x, sets, n, idx, k, p, ymax, ymin, nullptr, num_threads);
}

namespace {

// Hamming k-NN and the conv per tile of points: thresholded bits into out, or (out null) the
// max / min pre-activations into ymax, ymin.
void run_knn_conv(const uint64_t* x, int64_t sets, int64_t n, int64_t k, const XorConvParams& p,
                  uint64_t* out, int32_t* ymax, int32_t* ymin, int32_t* idx_out,
                  int num_threads) {
    if (sets == 0 || n == 0) return;
    const ConvCtx cx(p, active_level());
    const int64_t w = cx.w_in, set_words = n * w, set_bt = (n + 7) / 8 * w * 8;
    std::vector<uint64_t> bt;
    if (cx.level != Level::Scalar) {
        bt.resize(static_cast<size_t>(sets * set_bt));
        for (int64_t s = 0; s < sets; ++s) {
            const std::vector<uint64_t> b = blocks8(x + s * set_words, n, w);
            std::copy(b.begin(), b.end(), bt.begin() + s * set_bt);
        }
    }
    const int64_t tiles_per_set = (n + KnnWorker::kTile - 1) / KnnWorker::kTile;
    const int64_t cost = KnnWorker::kTile * (n * (w + 2) + k * (cx.nb * 8) * (w + 1));
    const int64_t grain = std::max<int64_t>(1, (1 << 17) / std::max<int64_t>(1, cost));
    parallel_for(sets * tiles_per_set, num_threads, grain, [&](int64_t u0, int64_t u1) {
        KnnWorker knn(n, w, k, cx.level);
        ConvWorker conv(cx, k);
        std::vector<int32_t> local(static_cast<size_t>(KnnWorker::kTile * k));
        for (int64_t u = u0; u < u1; ++u) {
            const int64_t s = u / tiles_per_set, r = (u % tiles_per_set) * KnnWorker::kTile;
            const int cnt = static_cast<int>(std::min<int64_t>(KnnWorker::kTile, n - r));
            const int64_t row = s * n + r;
            int32_t* nbr = idx_out ? idx_out + row * k : local.data();
            knn.rows(x + s * set_words, bt.empty() ? nullptr : bt.data() + s * set_bt, r, cnt,
                     nbr, nullptr);
            for (int q = 0; q < cnt; ++q) {
                const int64_t pt = row + q;
                conv.point(x + s * set_words, r + q, nbr + q * k,
                           out ? nullptr : ymax + pt * p.c_out,
                           out ? nullptr : ymin + pt * p.c_out,
                           out ? out + pt * cx.w_out : nullptr);
            }
        }
    });
}

}  // namespace

void xor_edge_conv_knn(const uint64_t* x, int64_t sets, int64_t n, int64_t k,
                       const XorConvParams& p, uint64_t* out, int32_t* idx_out,
                       int num_threads) {
    run_knn_conv(x, sets, n, k, p, out, nullptr, nullptr, idx_out, num_threads);
}

void xor_edge_conv_knn_minmax(const uint64_t* x, int64_t sets, int64_t n, int64_t k,
                              const XorConvParams& p, int32_t* ymax, int32_t* ymin,
                              int32_t* idx_out, int num_threads) {
    run_knn_conv(x, sets, n, k, p, nullptr, ymax, ymin, idx_out, num_threads);
}

}  // namespace bingnn
