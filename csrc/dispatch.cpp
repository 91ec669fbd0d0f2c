// Run-time choice of the SIMD level. The best level the CPU supports is the default; tests force
// lower levels to compare them with the scalar reference.
#include <atomic>
#include <stdexcept>
#include <string>

#include "bingnn_core.hpp"

namespace bingnn {

bool level_supported(Level level) {
    switch (level) {
        case Level::Scalar:
            return true;
#if BINGNN_X86
        case Level::Avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
        case Level::Avx512:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vpopcntdq") &&
                   __builtin_cpu_supports("popcnt");
#endif
        default:
            return false;
    }
}

Level best_level() {
    if (level_supported(Level::Avx512)) return Level::Avx512;
    if (level_supported(Level::Avx2)) return Level::Avx2;
    return Level::Scalar;
}

namespace {
std::atomic<int>& level_state() {
    static std::atomic<int> state{static_cast<int>(best_level())};
    return state;
}
}  // namespace

Level active_level() { return static_cast<Level>(level_state().load(std::memory_order_relaxed)); }

void set_level(Level level) {
    if (!level_supported(level))
        throw std::invalid_argument(std::string("dispatch level '") + level_name(level) +
                                    "' is not supported by this CPU; choose one listed in "
                                    "cpu_features()['levels']");
    level_state().store(static_cast<int>(level), std::memory_order_relaxed);
}

const char* level_name(Level level) {
    switch (level) {
        case Level::Scalar:
            return "scalar";
        case Level::Avx2:
            return "avx2";
        case Level::Avx512:
            return "avx512";
    }
    return "unknown";
}

}  // namespace bingnn
