// Run-time choice of the SIMD level. The best level the CPU supports is the default (the module
// applies BINGNN_DISPATCH at import); tests force lower levels to compare them with the scalar
// reference.
#include <atomic>
#include <stdexcept>
#include <string>

#include "bingnn_core.hpp"

#if BINGNN_NEON && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace bingnn {

bool level_compiled(Level level) {
    switch (level) {
        case Level::Scalar:
            return true;
        case Level::Avx2:
        case Level::Avx512:
            return BINGNN_X86 != 0;
        case Level::Neon:
            return BINGNN_NEON != 0;
    }
    return false;
}

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
#if BINGNN_NEON
        case Level::Neon:
#if defined(__linux__) && defined(HWCAP_ASIMD)
            return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#else
            return true;  // Advanced SIMD is part of the AArch64 base ISA
#endif
#endif
        default:
            return false;
    }
}

Level best_level() {
    if (level_supported(Level::Avx512)) return Level::Avx512;
    if (level_supported(Level::Avx2)) return Level::Avx2;
    if (level_supported(Level::Neon)) return Level::Neon;
    return Level::Scalar;
}

namespace {
std::atomic<int>& level_state() {
    static std::atomic<int> state{static_cast<int>(best_level())};
    return state;
}

std::atomic<int64_t> g_calls[kNumLevels];
}  // namespace

Level current_level() {
    return static_cast<Level>(level_state().load(std::memory_order_relaxed));
}

Level active_level() {
    const Level level = current_level();
    g_calls[static_cast<int>(level)].fetch_add(1, std::memory_order_relaxed);
    return level;
}

int64_t dispatch_calls(Level level) {
    return g_calls[static_cast<int>(level)].load(std::memory_order_relaxed);
}

void set_level(Level level) {
    if (!level_supported(level)) {
        std::string have;
        for (int l = 0; l < kNumLevels; ++l)
            if (level_supported(static_cast<Level>(l)))
                have += std::string(have.empty() ? "" : ", ") + level_name(static_cast<Level>(l));
        throw std::invalid_argument(
            std::string("dispatch level '") + level_name(level) + "' is not supported " +
            (level_compiled(level) ? "by this CPU" : "by this build of bingnn._native") +
            "; supported here: " + have);
    }
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
        case Level::Neon:
            return "neon";
    }
    return "unknown";
}

}  // namespace bingnn
