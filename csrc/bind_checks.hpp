// Input checks shared by the Python bindings: the native second line of defence. The typed
// Python face (bingnn.engine.kernels) validates first and says more; these checks make sure a
// direct call of bingnn._native can never read out of bounds, overflow an output type or return
// garbage: each refuses with std::invalid_argument (a Python ValueError) and one clear line.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <climits>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <cmath>
#include <stdexcept>
#include <string>

#include "bingnn_core.hpp"

namespace bingnn {
namespace bind {

namespace py = pybind11;

template <class T>
using Arr = py::array_t<T, py::array::c_style>;

inline void require(bool ok, const std::string& msg) {
    if (!ok) throw std::invalid_argument(msg);
}

// Bit counts beyond this are refused before any size arithmetic (n_words(n) adds 63 to n).
constexpr int64_t kMaxBits = int64_t{1} << 40;

inline void check_words(int64_t w, int64_t n_bits, const char* what) {
    require(n_bits >= 0 && n_bits <= kMaxBits,
            std::string(what) + ": the bit count must be in [0, 2**40], got " +
                std::to_string(n_bits));
    require(w == n_words(n_bits),
            std::string(what) + ": " + std::to_string(n_bits) + " bits need " +
                std::to_string(n_words(n_bits)) + " uint64 words, got " + std::to_string(w));
}

// Padding bits (>= n_bits in the last word of each row) must be 0: they would change every dot
// product and distance. One word per row is read.
inline void check_padding(const uint64_t* p, int64_t rows, int64_t w, int64_t n_bits,
                          const char* what) {
    const int64_t tail = n_bits % 64;
    if (tail == 0 || w == 0) return;
    const uint64_t mask = ~uint64_t{0} << tail;
    for (int64_t r = 0; r < rows; ++r)
        require((p[r * w + w - 1] & mask) == 0,
                std::string(what) + " has non-zero padding bits above bit " +
                    std::to_string(n_bits) + " (row " + std::to_string(r) +
                    "): not packed by pack_signs with this many bits, or corrupt");
}

// numpy views at an odd byte offset are C-contiguous yet misaligned for their type (numpy does
// not copy them on conversion); the kernels load whole elements, so refuse them.
inline void check_aligned(std::initializer_list<std::pair<const py::array*, const char*>> arrays) {
    for (const auto& [a, what] : arrays)
        require(a->size() == 0 ||
                    reinterpret_cast<uintptr_t>(a->data()) % static_cast<uintptr_t>(a->itemsize()) ==
                        0,
                std::string(what) + " is not aligned to its element size (a view at an odd byte "
                                    "offset); pass a copy (numpy.array(x))");
}

// 0 = the default thread count; an explicit count must be in [1, kMaxThreads].
inline int threads_arg(int num_threads) {
    require(num_threads >= 0 && num_threads <= kMaxThreads,
            "num_threads must be in [0, " + std::to_string(kMaxThreads) +
                "] (0 = the default), got " + std::to_string(num_threads));
    return num_threads;
}

// idx (B, N, k), k >= 1, every entry in [0, N).
inline void check_idx(const Arr<int32_t>& idx, int64_t sets, int64_t n) {
    require(idx.ndim() == 3 && idx.shape(0) == sets && idx.shape(1) == n && idx.shape(2) >= 1,
            "idx must have shape (B, N, k) with k >= 1, matching the B and N of the points");
    const int32_t* p = idx.data();
    for (int64_t q = 0; q < idx.size(); ++q)
        require(p[q] >= 0 && p[q] < n, "idx holds a neighbour index outside [0, N)");
}

// Every value finite (NaN and infinities make orders, maxima and signs meaningless).
inline void check_finite(const float* p, int64_t size, const std::string& what) {
    bool ok = true;
    for (int64_t q = 0; q < size; ++q) ok &= std::isfinite(p[q]);
    require(ok, what + " contains NaN or infinite values");
}

// A 1-D float32 vector of `len` entries, or null for None (an optional parameter).
inline const float* optional_vector(const py::object& obj, Arr<float>& keep, int64_t len,
                                    const char* what) {
    if (obj.is_none()) return nullptr;
    try {
        keep = obj.cast<Arr<float>>();
    } catch (const py::cast_error&) {
        throw std::invalid_argument(std::string(what) + " must be a float32 array or None");
    } catch (const py::error_already_set&) {  // numpy could not convert it
        throw std::invalid_argument(std::string(what) + " must be a float32 array or None");
    }
    require(keep.ndim() == 1 && keep.shape(0) == len,
            std::string(what) + " must have shape (" + std::to_string(len) + ",)");
    check_aligned({{&keep, what}});
    check_finite(keep.data(), len, what);
    return keep.data();
}

}  // namespace bind
}  // namespace bingnn
