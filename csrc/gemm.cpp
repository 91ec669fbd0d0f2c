// Binary GEMM: out[i, j] = n_bits - 2 * popcount(a_i XOR b_j), the +-1 dot product of packed rows.
#include "popcount_tiles.hpp"

namespace bingnn {
namespace {

void gemm_rows_scalar(const uint64_t* a, int64_t r0, int64_t r1, const uint64_t* b, int64_t n,
                      int64_t w, int64_t n_bits, int32_t* out) {
    for (int64_t i = r0; i < r1; ++i)
        for (int64_t j = 0; j < n; ++j)
            out[i * n + j] =
                static_cast<int32_t>(n_bits - 2 * xor_popcount_scalar(a + i * w, b + j * w, w));
}

}  // namespace

void binary_gemm(const uint64_t* a, int64_t m, const uint64_t* b, int64_t n, int64_t w,
                 int64_t n_bits, int32_t* out, int num_threads) {
    if (m == 0 || n == 0) return;
    const Level level = active_level();
    const int64_t grain = std::max<int64_t>(4, (1 << 17) / std::max<int64_t>(1, n * (w + 1)));
    if (level == Level::Scalar) {
        parallel_for(m, num_threads, grain, [&](int64_t r0, int64_t r1) {
            gemm_rows_scalar(a, r0, r1, b, n, w, n_bits, out);
        });
        return;
    }
#if BINGNN_X86 || BINGNN_NEON
    const std::vector<uint64_t> bt = blocks8(b, n, w);
    const auto base = static_cast<int32_t>(n_bits);
    parallel_for(m, num_threads, grain, [&](int64_t r0, int64_t r1) {
        over_row_tiles(r0, r1, [&](auto rows, int64_t r) {
            constexpr int R = decltype(rows)::value;
#if BINGNN_X86
            if (level == Level::Avx512)
                tile_avx512<R, int32_t>(a + r * w, w, bt.data(), n, w, base, -2, out + r * n, n);
            else
                tile_avx2<R, int32_t>(a + r * w, w, bt.data(), n, w, base, -2, out + r * n, n);
#else
            tile_neon<R, int32_t>(a + r * w, w, bt.data(), n, w, base, -2, out + r * n, n);
#endif
        });
    });
#endif
}

}  // namespace bingnn
