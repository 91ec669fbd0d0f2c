// Python bindings of the native core. Kernels live in their own files; this file only binds.
// The typed Python face (bingnn.engine.kernels) validates and converts inputs; the checks here
// are a second line of defence so a direct call can never read out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "bind_checks.hpp"
#include "bingnn_core.hpp"

namespace py = pybind11;
using namespace bingnn;
using namespace bingnn::bind;

namespace bingnn {
void bind_engine_float(py::module_& m);  // bind_engine.cpp: the engine's real-valued kernels
void bind_graph(py::module_& m);         // bind_graph.cpp: the graph models' kernels
void bind_train_float(py::module_& m);   // bind_train.cpp: the training library's fast paths
}

namespace {

const uint8_t* byte_begin(const py::array& a) { return static_cast<const uint8_t*>(a.data()); }

bool overlaps(const py::array& a, const py::array& b) {
    if (a.nbytes() == 0 || b.nbytes() == 0) return false;
    const uint8_t *a0 = byte_begin(a), *b0 = byte_begin(b);
    return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

Level parse_level(const std::string& name) {
    for (int l = 0; l < kNumLevels; ++l)
        if (name == level_name(static_cast<Level>(l))) return static_cast<Level>(l);
    throw std::invalid_argument("unknown dispatch level '" + name +
                                "'; choose 'scalar', 'avx2', 'avx512' or 'neon'");
}

// BINGNN_DISPATCH=scalar|avx2|avx512|neon forces a level for the whole process (import fails
// with one clear line for an unknown name or a level this CPU or build lacks).
void apply_dispatch_env() {
    const char* env = std::getenv("BINGNN_DISPATCH");
    if (env == nullptr || *env == '\0') return;
    std::string name(env);
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    try {
        set_level(parse_level(name));
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("BINGNN_DISPATCH=") + env + ": " + e.what() +
                                    " (unset BINGNN_DISPATCH to use the best level)");
    }
}

const char* arch_name() {
#if defined(__x86_64__) || defined(_M_X64)
    return "x86_64";
#elif defined(__aarch64__)
    return "aarch64";
#else
    return "other";
#endif
}

XorConvParams conv_params(const Arr<uint64_t>& w_rel, const Arr<uint64_t>& w_self, int64_t c_in,
                          int64_t w_in) {
    require(w_rel.ndim() == 2 && w_self.ndim() == 2, "w_rel and w_self must be 2-D");
    require(w_rel.shape(0) == w_self.shape(0), "w_rel and w_self need the same number of rows");
    // y = 2 C_in - 2 popcounts must fit the int32 outputs.
    require(c_in >= 1 && c_in < (int64_t{1} << 30), "c_in must be in [1, 2**30)");
    check_words(w_in, c_in, "x");
    check_words(w_rel.shape(1), c_in, "w_rel");
    check_words(w_self.shape(1), c_in, "w_self");
    check_padding(w_rel.data(), w_rel.shape(0), w_rel.shape(1), c_in, "w_rel");
    check_padding(w_self.data(), w_self.shape(0), w_self.shape(1), c_in, "w_self");
    XorConvParams p{};
    p.w_rel = w_rel.data();
    p.w_self = w_self.data();
    p.c_in = c_in;
    p.c_out = w_rel.shape(0);
    return p;
}

void attach_thresholds(XorConvParams& p, const Arr<int32_t>& t_hi, const Arr<int32_t>& t_lo,
                       const Arr<uint8_t>& negate) {
    require(t_hi.ndim() == 1 && t_lo.ndim() == 1 && negate.ndim() == 1 &&
                t_hi.shape(0) == p.c_out && t_lo.shape(0) == p.c_out &&
                negate.shape(0) == p.c_out,
            "t_hi, t_lo and negate must have shape (C_out,)");
    p.t_hi = t_hi.data();
    p.t_lo = t_lo.data();
    p.negate = negate.data();
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "bingnn native XNOR/popcount kernels (use bingnn.engine.kernels, the typed face)";
    apply_dispatch_env();

    m.def(
        "pack_signs",
        [](const Arr<float>& x, int num_threads) {
            require(x.ndim() == 2, "pack_signs expects (rows, C) float32");
            check_aligned({{&x, "x"}});
            threads_arg(num_threads);
            const int64_t rows = x.shape(0), c = x.shape(1);
            Arr<uint64_t> out({rows, n_words(c)});
            const float* xp = x.data();
            uint64_t* op = out.mutable_data();
            bool finite;
            {
                py::gil_scoped_release nogil;
                finite = pack_signs(xp, rows, c, op, num_threads);
            }
            require(finite, "x contains NaN or infinite values; their sign is not defined");
            return out;
        },
        py::arg("x"), py::arg("num_threads") = 0);

    m.def(
        "unpack_signs",
        [](const Arr<uint64_t>& packed, int64_t c, int num_threads) {
            require(packed.ndim() == 2, "unpack_signs expects (rows, W) uint64");
            check_aligned({{&packed, "packed"}});
            check_words(packed.shape(1), c, "packed");
            threads_arg(num_threads);
            const int64_t rows = packed.shape(0);
            Arr<int8_t> out({rows, c});
            const uint64_t* pp = packed.data();
            int8_t* op = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                unpack_signs(pp, rows, c, op, num_threads);
            }
            return out;
        },
        py::arg("packed"), py::arg("c"), py::arg("num_threads") = 0);

    m.def(
        "binary_gemm",
        [](const Arr<uint64_t>& a, const Arr<uint64_t>& b, int64_t n_bits, int num_threads,
           py::object out_obj) {
            require(a.ndim() == 2 && b.ndim() == 2, "binary_gemm expects 2-D a and b");
            check_aligned({{&a, "a"}, {&b, "b"}});
            require(a.shape(1) == b.shape(1), "a and b must have the same number of words");
            // Results lie in [-n_bits, n_bits] and are stored as int32.
            require(n_bits >= 0 && n_bits < (int64_t{1} << 31),
                    "n_bits = " + std::to_string(n_bits) +
                        " overflows the int32 result (need 0 <= n_bits < 2**31)");
            check_words(a.shape(1), n_bits, "a");
            check_padding(a.data(), a.shape(0), a.shape(1), n_bits, "a");
            check_padding(b.data(), b.shape(0), b.shape(1), n_bits, "b");
            threads_arg(num_threads);
            const int64_t m_rows = a.shape(0), n = b.shape(0), w = a.shape(1);
            Arr<int32_t> out;
            if (out_obj.is_none()) {
                out = Arr<int32_t>({m_rows, n});
            } else {
                // A caller-owned output buffer (no allocation, no page faults per call).
                require(py::isinstance<py::array>(out_obj),
                        "out must be a numpy array (int32, shape (M, N), C-contiguous)");
                auto arr = py::reinterpret_borrow<py::array>(out_obj);
                require(arr.dtype().is(py::dtype::of<int32_t>()) && arr.ndim() == 2 &&
                            arr.shape(0) == m_rows && arr.shape(1) == n &&
                            (arr.flags() & py::array::c_style) && arr.writeable(),
                        "out must be a writeable C-contiguous int32 array of shape (M, N)");
                check_aligned({{&arr, "out"}});
                require(!overlaps(arr, a) && !overlaps(arr, b),
                        "out shares memory with a or b; pass a separate output array");
                out = py::reinterpret_borrow<Arr<int32_t>>(arr);
            }
            const uint64_t *ap = a.data(), *bp = b.data();
            int32_t* op = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                binary_gemm(ap, m_rows, bp, n, w, n_bits, op, num_threads);
            }
            return out;
        },
        py::arg("a"), py::arg("b"), py::arg("n_bits"), py::arg("num_threads") = 0,
        py::arg("out") = py::none());

    m.def(
        "hamming_knn",
        [](const Arr<uint64_t>& x, int64_t k, int num_threads) {
            require(x.ndim() == 3, "hamming_knn expects (B, N, W) uint64");
            check_aligned({{&x, "x"}});
            const int64_t sets = x.shape(0), n = x.shape(1), w = x.shape(2);
            require(sets >= 1 && n >= 1 && w >= 1, "hamming_knn needs non-empty point sets");
            require(n <= INT32_MAX, "hamming_knn: N must fit int32 neighbour indices");
            require(w * 64 <= kMaxKnnBits, "hamming_knn supports at most 1023 words per point");
            require(k >= 1 && k <= n, "k must satisfy 1 <= k <= N");
            threads_arg(num_threads);
            Arr<int32_t> idx({sets, n, k}), dist({sets, n, k});
            const uint64_t* xp = x.data();
            int32_t *ip = idx.mutable_data(), *dp = dist.mutable_data();
            {
                py::gil_scoped_release nogil;
                hamming_knn(xp, sets, n, w, k, ip, dp, num_threads);
            }
            return py::make_tuple(idx, dist);
        },
        py::arg("x"), py::arg("k"), py::arg("num_threads") = 0);

    m.def(
        "xor_edge_conv",
        [](const Arr<uint64_t>& x, const Arr<int32_t>& idx, const Arr<uint64_t>& w_rel,
           const Arr<uint64_t>& w_self, const Arr<int32_t>& t_hi, const Arr<int32_t>& t_lo,
           const Arr<uint8_t>& negate, int64_t c_in, int num_threads) {
            require(x.ndim() == 3, "x must be (B, N, W)");
            check_aligned({{&x, "x"}, {&idx, "idx"}, {&w_rel, "w_rel"}, {&w_self, "w_self"},
                           {&t_hi, "t_hi"}, {&t_lo, "t_lo"}});
            const int64_t sets = x.shape(0), n = x.shape(1);
            XorConvParams p = conv_params(w_rel, w_self, c_in, x.shape(2));
            check_padding(x.data(), sets * n, x.shape(2), c_in, "x");
            attach_thresholds(p, t_hi, t_lo, negate);
            check_idx(idx, sets, n);
            threads_arg(num_threads);
            const int64_t k = idx.shape(2);
            Arr<uint64_t> out({sets, n, n_words(p.c_out)});
            const uint64_t* xp = x.data();
            const int32_t* ip = idx.data();
            uint64_t* op = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                xor_edge_conv(xp, sets, n, ip, k, p, op, num_threads);
            }
            return out;
        },
        py::arg("x"), py::arg("idx"), py::arg("w_rel"), py::arg("w_self"), py::arg("t_hi"),
        py::arg("t_lo"), py::arg("negate"), py::arg("c_in"), py::arg("num_threads") = 0);

    m.def(
        "xor_edge_conv_minmax",
        [](const Arr<uint64_t>& x, const Arr<int32_t>& idx, const Arr<uint64_t>& w_rel,
           const Arr<uint64_t>& w_self, int64_t c_in, int num_threads) {
            require(x.ndim() == 3, "x must be (B, N, W)");
            check_aligned({{&x, "x"}, {&idx, "idx"}, {&w_rel, "w_rel"}, {&w_self, "w_self"}});
            const int64_t sets = x.shape(0), n = x.shape(1);
            const XorConvParams p = conv_params(w_rel, w_self, c_in, x.shape(2));
            check_padding(x.data(), sets * n, x.shape(2), c_in, "x");
            check_idx(idx, sets, n);
            threads_arg(num_threads);
            const int64_t k = idx.shape(2);
            Arr<int32_t> ymax({sets, n, p.c_out}), ymin({sets, n, p.c_out});
            const uint64_t* xp = x.data();
            const int32_t* ip = idx.data();
            int32_t *hp = ymax.mutable_data(), *lp = ymin.mutable_data();
            {
                py::gil_scoped_release nogil;
                xor_edge_conv_minmax(xp, sets, n, ip, k, p, hp, lp, num_threads);
            }
            return py::make_tuple(ymax, ymin);
        },
        py::arg("x"), py::arg("idx"), py::arg("w_rel"), py::arg("w_self"), py::arg("c_in"),
        py::arg("num_threads") = 0);

    m.def(
        "xor_edge_conv_knn",
        [](const Arr<uint64_t>& x, int64_t k, const Arr<uint64_t>& w_rel,
           const Arr<uint64_t>& w_self, const Arr<int32_t>& t_hi, const Arr<int32_t>& t_lo,
           const Arr<uint8_t>& negate, int64_t c_in, int num_threads) {
            require(x.ndim() == 3, "x must be (B, N, W)");
            check_aligned({{&x, "x"}, {&w_rel, "w_rel"}, {&w_self, "w_self"}, {&t_hi, "t_hi"},
                           {&t_lo, "t_lo"}});
            const int64_t sets = x.shape(0), n = x.shape(1);
            require(sets >= 1 && n >= 1, "xor_edge_conv_knn needs non-empty point sets");
            require(n <= INT32_MAX, "xor_edge_conv_knn: N must fit int32 neighbour indices");
            require(k >= 1 && k <= n, "k must satisfy 1 <= k <= N");
            XorConvParams p = conv_params(w_rel, w_self, c_in, x.shape(2));
            require(x.shape(2) * 64 <= kMaxKnnBits, "k-NN supports at most 1023 words per point");
            check_padding(x.data(), sets * n, x.shape(2), c_in, "x");
            attach_thresholds(p, t_hi, t_lo, negate);
            threads_arg(num_threads);
            Arr<uint64_t> out({sets, n, n_words(p.c_out)});
            Arr<int32_t> idx({sets, n, k});
            const uint64_t* xp = x.data();
            uint64_t* op = out.mutable_data();
            int32_t* ip = idx.mutable_data();
            {
                py::gil_scoped_release nogil;
                xor_edge_conv_knn(xp, sets, n, k, p, op, ip, num_threads);
            }
            return py::make_tuple(out, idx);
        },
        py::arg("x"), py::arg("k"), py::arg("w_rel"), py::arg("w_self"), py::arg("t_hi"),
        py::arg("t_lo"), py::arg("negate"), py::arg("c_in"), py::arg("num_threads") = 0);

    m.def(
        "xor_edge_conv_knn_minmax",
        [](const Arr<uint64_t>& x, int64_t k, const Arr<uint64_t>& w_rel,
           const Arr<uint64_t>& w_self, int64_t c_in, int num_threads) {
            require(x.ndim() == 3, "x must be (B, N, W)");
            check_aligned({{&x, "x"}, {&w_rel, "w_rel"}, {&w_self, "w_self"}});
            const int64_t sets = x.shape(0), n = x.shape(1);
            require(sets >= 1 && n >= 1, "xor_edge_conv_knn_minmax needs non-empty point sets");
            require(n <= INT32_MAX,
                    "xor_edge_conv_knn_minmax: N must fit int32 neighbour indices");
            require(k >= 1 && k <= n, "k must satisfy 1 <= k <= N");
            const XorConvParams p = conv_params(w_rel, w_self, c_in, x.shape(2));
            require(x.shape(2) * 64 <= kMaxKnnBits, "k-NN supports at most 1023 words per point");
            check_padding(x.data(), sets * n, x.shape(2), c_in, "x");
            threads_arg(num_threads);
            Arr<int32_t> ymax({sets, n, p.c_out}), ymin({sets, n, p.c_out});
            Arr<int32_t> idx({sets, n, k});
            const uint64_t* xp = x.data();
            int32_t *hp = ymax.mutable_data(), *lp = ymin.mutable_data();
            int32_t* ip = idx.mutable_data();
            {
                py::gil_scoped_release nogil;
                xor_edge_conv_knn_minmax(xp, sets, n, k, p, hp, lp, ip, num_threads);
            }
            return py::make_tuple(ymax, ymin, idx);
        },
        py::arg("x"), py::arg("k"), py::arg("w_rel"), py::arg("w_self"), py::arg("c_in"),
        py::arg("num_threads") = 0);

    // ---- dispatch and threads
    m.def("set_dispatch", [](const std::string& name) { set_level(parse_level(name)); },
          py::arg("level"));
    m.def("get_dispatch", []() { return std::string(level_name(current_level())); });
    m.def(
        "dispatch_calls",
        []() {
            py::dict d;
            for (int l = 0; l < kNumLevels; ++l)
                d[level_name(static_cast<Level>(l))] = dispatch_calls(static_cast<Level>(l));
            return d;
        },
        "Kernel calls per dispatch level since import (which levels a test run exercised).");
    m.def("cpu_features", []() {
        py::dict d;
        d["arch"] = arch_name();
#if BINGNN_X86
        d["popcnt"] = bool(__builtin_cpu_supports("popcnt"));
        d["avx2"] = bool(__builtin_cpu_supports("avx2"));
        d["avx512f"] = bool(__builtin_cpu_supports("avx512f"));
        d["avx512bw"] = bool(__builtin_cpu_supports("avx512bw"));
        d["avx512vl"] = bool(__builtin_cpu_supports("avx512vl"));
        d["avx512dq"] = bool(__builtin_cpu_supports("avx512dq"));
        d["avx512vpopcntdq"] = bool(__builtin_cpu_supports("avx512vpopcntdq"));
#endif
#if BINGNN_NEON
        d["asimd"] = level_supported(Level::Neon);
#endif
        py::list levels, compiled;
        for (int l = 0; l < kNumLevels; ++l) {
            const auto level = static_cast<Level>(l);
            if (level_compiled(level)) compiled.append(level_name(level));
            if (level_supported(level)) levels.append(level_name(level));
        }
        d["levels"] = levels;
        d["compiled_levels"] = compiled;
#ifdef BINGNN_PORTABLE_ONLY
        d["portable_only"] = true;
#else
        d["portable_only"] = false;
#endif
        d["best"] = level_name(best_level());
        d["dispatch"] = level_name(current_level());
        d["hardware_threads"] = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        d["default_threads"] = default_threads();
        d["threads_source"] = default_threads_source();
        return d;
    });

    // ---- test hooks of the thread pool (private: leading underscore)
    m.def("_pool_workers", &pool_workers, "Worker threads alive in the pool.");
    m.def("_set_spawn_limit", &set_spawn_limit, py::arg("limit"),
          "Make worker creation fail once `limit` workers exist (-1: no limit); for tests.");
    m.def("_cgroup_cpu_limit", &cgroup_cpu_limit, py::arg("root"), py::arg("self_cgroup"));
    m.def(
        "_parallel_check",
        [](int64_t n, int num_threads, int64_t grain, int64_t throw_at) {
            // Runs parallel_for over [0, n); returns how many distinct threads ran chunks and
            // whether every index was visited once. Index throw_at (if in range) throws.
            threads_arg(num_threads);
            require(n >= 0 && n <= (int64_t{1} << 24), "n must be in [0, 2**24]");
            std::vector<int> seen(static_cast<size_t>(n), 0);
            std::set<std::thread::id> ids;
            std::mutex mu;
            {
                py::gil_scoped_release nogil;
                parallel_for(n, num_threads, grain, [&](int64_t b, int64_t e) {
                    {
                        std::lock_guard<std::mutex> lock(mu);
                        ids.insert(std::this_thread::get_id());
                    }
                    // Make chunks slow enough that helpers get to take part.
                    std::this_thread::sleep_for(std::chrono::milliseconds(2));
                    for (int64_t i = b; i < e; ++i) {
                        if (i == throw_at)
                            throw std::runtime_error("chunk failed at index " +
                                                     std::to_string(i));
                        ++seen[static_cast<size_t>(i)];
                    }
                });
            }
            bool once = true;
            for (int v : seen) once &= v == 1;
            return py::make_tuple(static_cast<int>(ids.size()), once);
        },
        py::arg("n"), py::arg("num_threads"), py::arg("grain") = 1, py::arg("throw_at") = -1);

    bind_engine_float(m);
    bind_graph(m);
    bind_train_float(m);
}
