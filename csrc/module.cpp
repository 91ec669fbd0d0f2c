// Python bindings of the native core. Kernels live in their own files; this file only binds.
// The typed Python face (bingnn.engine.kernels) validates and converts inputs; the checks here
// are a second line of defence so a direct call can never read out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bingnn_core.hpp"

namespace py = pybind11;
using namespace bingnn;

namespace bingnn {
void bind_engine_float(py::module_& m);  // bind_engine.cpp: the engine's real-valued kernels
void bind_train_float(py::module_& m);   // bind_train.cpp: the training library's fast paths
}

namespace {

template <class T>
using Arr = py::array_t<T, py::array::c_style>;

void require(bool ok, const std::string& msg) {
    if (!ok) throw std::invalid_argument(msg);
}

void check_words(int64_t w, int64_t n_bits, const char* what) {
    require(n_bits >= 0 && w == n_words(n_bits),
            std::string(what) + ": " + std::to_string(n_bits) + " bits need " +
                std::to_string(n_words(n_bits)) + " uint64 words, got " + std::to_string(w));
}

Level parse_level(const std::string& name) {
    if (name == "scalar") return Level::Scalar;
    if (name == "avx2") return Level::Avx2;
    if (name == "avx512") return Level::Avx512;
    throw std::invalid_argument("unknown dispatch level '" + name +
                                "'; choose 'scalar', 'avx2' or 'avx512'");
}

XorConvParams conv_params(const Arr<uint64_t>& w_rel, const Arr<uint64_t>& w_self, int64_t c_in,
                          int64_t w_in) {
    require(w_rel.ndim() == 2 && w_self.ndim() == 2, "w_rel and w_self must be 2-D");
    require(w_rel.shape(0) == w_self.shape(0), "w_rel and w_self need the same number of rows");
    require(c_in >= 1, "c_in must be >= 1");
    check_words(w_in, c_in, "x");
    check_words(w_rel.shape(1), c_in, "w_rel");
    check_words(w_self.shape(1), c_in, "w_self");
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

void check_idx(const Arr<int32_t>& idx, int64_t sets, int64_t n) {
    require(idx.ndim() == 3 && idx.shape(0) == sets && idx.shape(1) == n && idx.shape(2) >= 1,
            "idx must have shape (B, N, k) with k >= 1");
    const int32_t* p = idx.data();
    for (int64_t q = 0; q < idx.size(); ++q)
        require(p[q] >= 0 && p[q] < n, "idx holds a neighbour index outside [0, N)");
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "bingnn native XNOR/popcount kernels (use bingnn.engine.kernels, the typed face)";

    m.def(
        "pack_signs",
        [](const Arr<float>& x, int num_threads) {
            require(x.ndim() == 2, "pack_signs expects (rows, C) float32");
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
            check_words(packed.shape(1), c, "packed");
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
            require(a.shape(1) == b.shape(1), "a and b must have the same number of words");
            check_words(a.shape(1), n_bits, "a");
            const int64_t m_rows = a.shape(0), n = b.shape(0), w = a.shape(1);
            Arr<int32_t> out;
            if (out_obj.is_none()) {
                out = Arr<int32_t>({m_rows, n});
            } else {
                // A caller-owned output buffer (no allocation, no page faults per call).
                auto arr = py::array::ensure(out_obj);
                require(arr && arr.dtype().is(py::dtype::of<int32_t>()) && arr.ndim() == 2 &&
                            arr.shape(0) == m_rows && arr.shape(1) == n &&
                            (arr.flags() & py::array::c_style) && arr.writeable(),
                        "out must be a writeable C-contiguous int32 array of shape (M, N)");
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
            const int64_t sets = x.shape(0), n = x.shape(1), w = x.shape(2);
            require(sets >= 1 && n >= 1 && w >= 1, "hamming_knn needs non-empty point sets");
            require(w * 64 <= kMaxKnnBits, "hamming_knn supports at most 1023 words per point");
            require(k >= 1 && k <= n, "k must satisfy 1 <= k <= N");
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
            const int64_t sets = x.shape(0), n = x.shape(1);
            XorConvParams p = conv_params(w_rel, w_self, c_in, x.shape(2));
            attach_thresholds(p, t_hi, t_lo, negate);
            check_idx(idx, sets, n);
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
            const int64_t sets = x.shape(0), n = x.shape(1);
            const XorConvParams p = conv_params(w_rel, w_self, c_in, x.shape(2));
            check_idx(idx, sets, n);
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
            const int64_t sets = x.shape(0), n = x.shape(1);
            require(sets >= 1 && n >= 1, "xor_edge_conv_knn needs non-empty point sets");
            require(k >= 1 && k <= n, "k must satisfy 1 <= k <= N");
            XorConvParams p = conv_params(w_rel, w_self, c_in, x.shape(2));
            require(x.shape(2) * 64 <= kMaxKnnBits, "k-NN supports at most 1023 words per point");
            attach_thresholds(p, t_hi, t_lo, negate);
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

    m.def("set_dispatch", [](const std::string& name) { set_level(parse_level(name)); },
          py::arg("level"));
    m.def("get_dispatch", []() { return std::string(level_name(active_level())); });
    m.def("cpu_features", []() {
        py::dict d;
#if BINGNN_X86
        d["arch"] = "x86_64";
        d["popcnt"] = bool(__builtin_cpu_supports("popcnt"));
        d["avx2"] = bool(__builtin_cpu_supports("avx2"));
        d["avx512f"] = bool(__builtin_cpu_supports("avx512f"));
        d["avx512bw"] = bool(__builtin_cpu_supports("avx512bw"));
        d["avx512vl"] = bool(__builtin_cpu_supports("avx512vl"));
        d["avx512dq"] = bool(__builtin_cpu_supports("avx512dq"));
        d["avx512vpopcntdq"] = bool(__builtin_cpu_supports("avx512vpopcntdq"));
#else
        d["arch"] = "other";
#endif
        py::list levels;
        for (Level l : {Level::Scalar, Level::Avx2, Level::Avx512})
            if (level_supported(l)) levels.append(level_name(l));
        d["levels"] = levels;
        d["best"] = level_name(best_level());
        d["dispatch"] = level_name(active_level());
        d["hardware_threads"] = resolve_threads(0);
        return d;
    });

    bind_engine_float(m);
    bind_train_float(m);
}
