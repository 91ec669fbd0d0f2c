// Python bindings of the graph kernels (graph_kernels.hpp); called from module.cpp. The engine's
// Python side (bingnn/engine/graph.py, _graph_ops.py) validates inputs first; the checks here
// are a second line of defence, so a direct call can never read or write out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_checks.hpp"
#include "bingnn_core.hpp"
#include "graph_kernels.hpp"

namespace py = pybind11;

namespace bingnn {
namespace {

using bind::Arr;
using bind::require;

// indptr (rows + 1) non-decreasing from 0, ending at the number of entries; indices in [0, m).
void check_csr(const Arr<int64_t>& indptr, const Arr<int32_t>& indices, int64_t m,
               const char* what) {
    require(indptr.ndim() == 1 && indptr.shape(0) >= 1 && indices.ndim() == 1,
         std::string(what) + ": indptr must be (rows + 1,) int64 and indices (nnz,) int32");
    const int64_t* p = indptr.data();
    const int64_t rows = indptr.shape(0) - 1;
    require(p[0] == 0 && p[rows] == indices.shape(0),
         std::string(what) + ": indptr must start at 0 and end at the number of entries");
    for (int64_t r = 0; r < rows; ++r)
        require(p[r] <= p[r + 1], std::string(what) + ": indptr must be non-decreasing");
    const int32_t* q = indices.data();
    for (int64_t e = 0; e < indices.shape(0); ++e)
        require(q[e] >= 0 && q[e] < m, std::string(what) + ": an index is out of range");
}

// The element type of a 2-D node-value array (float32, int8, int16 or int32) whose rows are
// contiguous (a column slice of a wider array is fine: see row_stride).
Elem elem_of(const py::array& a, const char* what) {
    require(a.ndim() == 2, std::string(what) + " must be 2-D");
    require(a.size() == 0 ||
             ((a.shape(0) <= 1 || (a.strides(0) >= a.shape(1) * a.itemsize() &&
                                   a.strides(0) % a.itemsize() == 0)) &&
              (a.shape(1) <= 1 || a.strides(1) == a.itemsize())),
         std::string(what) + " must have contiguous, non-overlapping rows");
    if (a.dtype().is(py::dtype::of<float>())) return Elem::F32;
    if (a.dtype().is(py::dtype::of<int8_t>())) return Elem::I8;
    if (a.dtype().is(py::dtype::of<int16_t>())) return Elem::I16;
    if (a.dtype().is(py::dtype::of<int32_t>())) return Elem::I32;
    throw std::invalid_argument(std::string(what) + " must be float32, int8, int16 or int32");
}

// Elements from one row to the next.
int64_t row_stride(const py::array& a) {
    if (a.size() == 0 || a.shape(0) <= 1) return a.shape(1);
    return a.strides(0) / static_cast<int64_t>(a.itemsize());
}

Elem parse_elem(const std::string& name) {
    if (name == "float32") return Elem::F32;
    if (name == "int8") return Elem::I8;
    if (name == "int16") return Elem::I16;
    if (name == "int32") return Elem::I32;
    throw std::invalid_argument("out must be 'float32', 'int8', 'int16' or 'int32'");
}

py::array empty_of(Elem e, int64_t rows, int64_t c) {
    switch (e) {
        case Elem::I8:
            return py::array_t<int8_t>({rows, c});
        case Elem::I16:
            return py::array_t<int16_t>({rows, c});
        case Elem::I32:
            return py::array_t<int32_t>({rows, c});
        default:
            return py::array_t<float>({rows, c});
    }
}

Centering parse_centering(const std::string& name) {
    if (name == "none") return Centering::None;
    if (name == "mean") return Centering::Mean;
    if (name == "batchnorm") return Centering::BatchNorm;
    throw std::invalid_argument("centering must be 'none', 'mean' or 'batchnorm'");
}

const float* optional_vector(const py::object& obj, int64_t n, Arr<float>& keep,
                             const char* what) {
    if (obj.is_none()) return nullptr;
    keep = obj.cast<Arr<float>>();
    require(keep.ndim() == 1 && keep.shape(0) == n,
         std::string(what) + " must have shape (" + std::to_string(n) + ",)");
    return keep.data();
}

}  // namespace

void bind_graph(py::module_& m) {
    m.def(
        "graph_csr_by_target",
        [](const Arr<int64_t>& src, const Arr<int64_t>& dst, int64_t n, int) {
            require(src.ndim() == 1 && dst.ndim() == 1 && src.shape(0) == dst.shape(0),
                 "src and dst must be (E,) int64 of one length");
            require(n >= 0 && n < (int64_t{1} << 31), "n must be in [0, 2**31)");
            const int64_t e = src.shape(0);
            Arr<int64_t> indptr({n + 1});
            Arr<int32_t> indices({e});
            bool ok;
            const int64_t *sp = src.data(), *dp = dst.data();
            int64_t* ip = indptr.mutable_data();
            int32_t* xp = indices.mutable_data();
            {
                py::gil_scoped_release nogil;
                ok = graph_csr_by_target(sp, dp, e, n, ip, xp);
            }
            require(ok, "edge_index holds node indices outside [0, num_nodes)");
            return py::make_tuple(indptr, indices);
        },
        py::arg("src"), py::arg("dst"), py::arg("n"), py::arg("num_threads") = 0);

    m.def(
        "graph_gcn_csr",
        [](const Arr<int64_t>& indptr, const Arr<int32_t>& indices, float fill) {
            const int64_t n = indptr.shape(0) - 1;
            check_csr(indptr, indices, n, "graph_gcn_csr");
            require(fill > 0.0f && std::isfinite(fill), "fill must be a positive number");
            const int64_t total = graph_gcn_size(indptr.data(), indices.data(), n);
            Arr<int64_t> ip({n + 1});
            Arr<int32_t> ix({total});
            Arr<float> w({total});
            {
                py::gil_scoped_release nogil;
                graph_gcn_csr(indptr.data(), indices.data(), n, fill, ip.mutable_data(),
                              ix.mutable_data(), w.mutable_data());
            }
            return py::make_tuple(ip, ix, w);
        },
        py::arg("indptr"), py::arg("indices"), py::arg("fill"));

    m.def(
        "graph_aggregate",
        [](const py::array& h, const Arr<int64_t>& indptr, const Arr<int32_t>& indices,
           const py::object& weights, bool mean, int num_threads, const py::object& row_scale,
           const py::object& alpha, const py::object& t0_bias, const py::object& t0_alpha,
           const py::object& second, const py::object& bias, const py::object& slope,
           bool keep_rows, const py::object& signs, const py::object& scale,
           const py::object& signs2) -> py::object {
            require(h.ndim() == 2, "h must be (M, C)");
            AggSource src;
            src.elem = elem_of(h, "h");
            src.data = h.data();
            src.ld = row_stride(h);
            check_csr(indptr, indices, h.shape(0), "graph_aggregate");
            const int64_t rows = indptr.shape(0) - 1, c = h.shape(1);
            Arr<float> wk, rk, ak, b0k, a0k, bk, sk;
            const float* wp = optional_vector(weights, indices.shape(0), wk, "weights");
            src.row_scale = optional_vector(row_scale, h.shape(0), rk, "row_scale");
            src.alpha = optional_vector(alpha, c, ak, "alpha");
            RowEpilogue ep;
            ep.t0_bias = optional_vector(t0_bias, c, b0k, "t0_bias");
            ep.t0_alpha = optional_vector(t0_alpha, c, a0k, "t0_alpha");
            ep.bias = optional_vector(bias, c, bk, "bias");
            ep.slope = optional_vector(slope, c, sk, "slope");
            std::vector<py::object> keep;
            if (!second.is_none()) {
                auto tup = second.cast<py::tuple>();
                require(tup.size() == 4, "second is (x, row_scale, bias, alpha)");
                py::array x = py::array::ensure(tup[0]);
                require(x && x.ndim() == 2 && x.shape(0) == rows && x.shape(1) == c,
                     "second's x must have the output's shape (rows, C)");
                ep.second.elem = elem_of(x, "second's x");
                ep.second.x = x.data();
                ep.second.ld = row_stride(x);
                keep.push_back(x);
                Arr<float> a, b, r2;
                ep.second.row_scale = optional_vector(tup[1], rows, r2, "second's row_scale");
                ep.second.bias = optional_vector(tup[2], c, b, "second's bias");
                ep.second.alpha = optional_vector(tup[3], c, a, "second's alpha");
                keep.push_back(r2);
                keep.push_back(b);
                keep.push_back(a);
            }
            // What to write: the float rows, their signs, their node scale.
            RowOutput ro;
            Arr<float> out, lo, hi, beta, bs, bt;
            Arr<uint8_t> neg;
            Arr<uint64_t> bits;
            if (keep_rows) {
                out = Arr<float>({rows, c});
                ro.out = out.mutable_data();
            }
            Arr<float> lo2, hi2;
            Arr<uint8_t> neg2;
            Arr<uint64_t> bits2;
            // One set of signs: its mode and predicate (kept alive in lo/hi/neg) and its bits.
            auto read_signs = [&](const py::object& spec, SignOutput& so, Arr<float>& l,
                                  Arr<float>& h, Arr<uint8_t>& ng, Arr<uint64_t>& b) {
                if (spec.is_none()) return;
                auto tup = spec.cast<py::tuple>();
                const auto mode = tup[0].cast<std::string>();
                if (mode == "threshold") {
                    require(tup.size() == 4, "signs is ('threshold', lo, hi, negate)");
                    so.sign = SignMode::Threshold;
                    so.lo = optional_vector(tup[1], c, l, "lo");
                    so.hi = optional_vector(tup[2], c, h, "hi");
                    ng = tup[3].cast<Arr<uint8_t>>();
                    require(ng.ndim() == 1 && ng.shape(0) == c, "negate must have shape (C,)");
                    require(so.lo && so.hi, "lo and hi are needed");
                    so.negate = ng.data();
                } else if (mode == "mean" || mode == "none") {
                    so.sign = mode == "mean" ? SignMode::Mean : SignMode::None;
                } else {
                    throw std::invalid_argument("signs mode must be threshold, mean or none");
                }
                b = Arr<uint64_t>({rows, n_words(c)});
                so.bits = b.mutable_data();
            };
            read_signs(signs, ro.signs[0], lo, hi, neg, bits);
            read_signs(signs2, ro.signs[1], lo2, hi2, neg2, bits2);
            require(signs2.is_none() || !signs.is_none(), "signs2 needs signs");
            if (!scale.is_none()) {
                auto tup = scale.cast<py::tuple>();
                require(tup.size() == 3, "scale is (centering, bn_scale, bn_shift)");
                ro.scale = parse_centering(tup[0].cast<std::string>());
                ro.bn_scale = optional_vector(tup[1], c, bs, "bn_scale");
                ro.bn_shift = optional_vector(tup[2], c, bt, "bn_shift");
                require((ro.scale == Centering::BatchNorm) ==
                         (ro.bn_scale != nullptr && ro.bn_shift != nullptr),
                     "bn_scale and bn_shift are needed exactly for batchnorm centring");
                beta = Arr<float>({rows});
                ro.beta = beta.mutable_data();
            }
            require(keep_rows || ro.signs[0].bits || ro.beta, "nothing to write");
            const int64_t* pp = indptr.data();
            const int32_t* xp = indices.data();
            {
                py::gil_scoped_release nogil;
                graph_aggregate(src, c, pp, xp, wp, rows, mean, ep, ro, num_threads);
            }
            if (signs.is_none() && scale.is_none()) return out;
            py::object b = ro.signs[0].bits ? py::object(bits) : py::none();
            if (ro.signs[1].bits) b = py::make_tuple(bits, bits2);
            return py::make_tuple(keep_rows ? py::object(out) : py::none(), b,
                                  ro.beta ? py::object(beta) : py::none());
        },
        py::arg("h"), py::arg("indptr"), py::arg("indices"), py::arg("weights"),
        py::arg("mean"), py::arg("num_threads") = 0, py::arg("row_scale") = py::none(),
        py::arg("alpha") = py::none(), py::arg("t0_bias") = py::none(),
        py::arg("t0_alpha") = py::none(), py::arg("second") = py::none(),
        py::arg("bias") = py::none(), py::arg("slope") = py::none(),
        py::arg("keep_rows") = true, py::arg("signs") = py::none(),
        py::arg("scale") = py::none(), py::arg("signs2") = py::none());

    m.def(
        "graph_feature_stats",
        [](const Arr<float>& x, int num_threads) {
            require(x.ndim() == 2, "x must be (N, F) float32");
            FeatureStats st;
            {
                py::gil_scoped_release nogil;
                st = graph_feature_stats(x.data(), x.shape(0), x.shape(1), num_threads);
            }
            return py::make_tuple(st.finite, st.integral, st.max_l1);
        },
        py::arg("x"), py::arg("num_threads") = 0);

    m.def(
        "graph_signed_linear_csr",
        [](const Arr<int64_t>& indptr, const Arr<int32_t>& indices, const py::object& data,
           const Arr<uint64_t>& w, int64_t f_in, int num_threads, const std::string& out) {
            require(f_in >= 1, "f_in must be >= 1");
            check_csr(indptr, indices, f_in, "graph_signed_linear_csr");
            require(w.ndim() == 2 && w.shape(1) == n_words(f_in),
                 "w must be (C_out, ceil(f_in / 64)) uint64");
            const int64_t rows = indptr.shape(0) - 1, c_out = w.shape(0);
            Arr<float> dk;
            const float* dp = optional_vector(data, indices.shape(0), dk, "data");
            const Elem e = parse_elem(out);
            py::array z = empty_of(e, rows, c_out);
            void* zp = z.mutable_data();
            bool ok;
            {
                py::gil_scoped_release nogil;
                ok = graph_signed_linear_csr(indptr.data(), indices.data(), dp, rows, w.data(),
                                             c_out, f_in, e, zp, num_threads);
            }
            require(ok, "the features are not integers small enough for out='" + out + "'");
            return z;
        },
        py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("w"), py::arg("f_in"),
        py::arg("num_threads") = 0, py::arg("out") = "float32");

    m.def(
        "graph_signed_linear_dense",
        [](const Arr<float>& x, const Arr<uint64_t>& w, int num_threads,
           const std::string& out, bool strict) -> py::object {
            require(x.ndim() == 2 && x.shape(1) >= 1, "x must be (N, F) float32 with F >= 1");
            const int64_t rows = x.shape(0), f_in = x.shape(1);
            require(w.ndim() == 2 && w.shape(1) == n_words(f_in),
                 "w must be (C_out, ceil(F / 64)) uint64");
            const int64_t c_out = w.shape(0);
            const Elem e = parse_elem(out);
            py::array z = empty_of(e, rows, c_out);
            void* zp = z.mutable_data();
            bool ok;
            {
                py::gil_scoped_release nogil;
                ok = graph_signed_linear_dense(x.data(), rows, f_in, w.data(), c_out, e, zp,
                                               num_threads);
            }
            // strict=False: None when the features do not fit (the caller then scans them)
            if (!ok && !strict) return py::none();
            require(ok, "the features are not integers small enough for out='" + out + "'");
            return z;
        },
        py::arg("x"), py::arg("w"), py::arg("num_threads") = 0, py::arg("out") = "float32",
        py::arg("strict") = true);

    m.def(
        "graph_majority",
        [](const Arr<uint64_t>& bits, int64_t c, const Arr<int64_t>& indptr,
           const Arr<int32_t>& indices, int num_threads) {
            require(c >= 1, "c must be at least 1");
            require(bits.ndim() == 2 && bits.shape(1) == n_words(c),
                 "bits must be (N, ceil(C / 64)) uint64");
            check_csr(indptr, indices, bits.shape(0), "graph_majority");
            const int64_t rows = indptr.shape(0) - 1, words = n_words(c);
            Arr<uint64_t> out({rows, words});
            {
                py::gil_scoped_release nogil;
                graph_majority(bits.data(), c, indptr.data(), indices.data(), rows,
                               out.mutable_data(), num_threads);
            }
            return out;
        },
        py::arg("bits"), py::arg("c"), py::arg("indptr"), py::arg("indices"),
        py::arg("num_threads") = 0);

    m.def(
        "graph_threshold_pack",
        [](const Arr<float>& v, const Arr<float>& lo, const Arr<float>& hi,
           const Arr<uint8_t>& negate, int num_threads) {
            require(v.ndim() == 2, "v must be (rows, C) float32");
            const int64_t rows = v.shape(0), c = v.shape(1);
            require(lo.ndim() == 1 && hi.ndim() == 1 && negate.ndim() == 1 && lo.shape(0) == c &&
                     hi.shape(0) == c && negate.shape(0) == c,
                 "lo, hi and negate must have shape (C,)");
            Arr<uint64_t> out({rows, n_words(c)});
            {
                py::gil_scoped_release nogil;
                graph_threshold_pack(v.data(), rows, c, lo.data(), hi.data(), negate.data(),
                                     out.mutable_data(), num_threads);
            }
            return out;
        },
        py::arg("v"), py::arg("lo"), py::arg("hi"), py::arg("negate"),
        py::arg("num_threads") = 0);

    m.def(
        "graph_center_sign",
        [](const Arr<float>& v, const std::string& centering, int num_threads) {
            require(v.ndim() == 2 && v.shape(1) >= 1, "v must be (rows, C) float32 with C >= 1");
            const Centering mode = parse_centering(centering);
            require(mode != Centering::BatchNorm, "batchnorm signs are thresholds (threshold_pack)");
            const int64_t rows = v.shape(0), c = v.shape(1);
            Arr<uint64_t> out({rows, n_words(c)});
            {
                py::gil_scoped_release nogil;
                graph_center_sign(v.data(), rows, c, mode, out.mutable_data(), num_threads);
            }
            return out;
        },
        py::arg("v"), py::arg("centering"), py::arg("num_threads") = 0);

    m.def(
        "graph_node_scale",
        [](const Arr<float>& v, const std::string& centering, const py::object& bn_scale,
           const py::object& bn_shift, int num_threads) {
            require(v.ndim() == 2 && v.shape(1) >= 1, "v must be (rows, C) float32 with C >= 1");
            const Centering mode = parse_centering(centering);
            const int64_t rows = v.shape(0), c = v.shape(1);
            Arr<float> sk, tk;
            const float* sp = optional_vector(bn_scale, c, sk, "bn_scale");
            const float* tp = optional_vector(bn_shift, c, tk, "bn_shift");
            require((mode == Centering::BatchNorm) == (sp != nullptr && tp != nullptr),
                 "bn_scale and bn_shift are needed exactly for batchnorm centring");
            Arr<float> beta({rows});
            {
                py::gil_scoped_release nogil;
                graph_node_scale(v.data(), rows, c, mode, sp, tp, beta.mutable_data(),
                                 num_threads);
            }
            return beta;
        },
        py::arg("v"), py::arg("centering"), py::arg("bn_scale") = py::none(),
        py::arg("bn_shift") = py::none(), py::arg("num_threads") = 0);

    m.def(
        "graph_affine",
        [](const py::list& terms, const py::object& bias, const py::object& slope,
           int num_threads) {
            const auto n_terms = static_cast<int>(terms.size());
            require(n_terms == 1 || n_terms == 2, "graph_affine takes one or two terms");
            AffineTerm t[2];
            // Keep the converted arrays alive for the duration of the call.
            std::vector<py::object> keep;
            int64_t rows = -1, c = -1;
            for (int i = 0; i < n_terms; ++i) {
                auto tup = terms[i].cast<py::tuple>();
                require(tup.size() == 4, "a term is (x, row_scale, bias, alpha)");
                py::array x = py::array::ensure(tup[0]);
                require(x && x.ndim() == 2, "a term's x must be a 2-D array");
                if (rows < 0) {
                    rows = x.shape(0);
                    c = x.shape(1);
                }
                require(x.shape(0) == rows && x.shape(1) == c, "terms must share their shape");
                t[i].elem = elem_of(x, "a term's x");
                t[i].x = x.data();
                t[i].ld = row_stride(x);
                keep.push_back(x);
                Arr<float> rs, b, a;
                t[i].row_scale = optional_vector(tup[1], rows, rs, "row_scale");
                t[i].bias = optional_vector(tup[2], c, b, "bias");
                t[i].alpha = optional_vector(tup[3], c, a, "alpha");
                keep.push_back(rs);
                keep.push_back(b);
                keep.push_back(a);
            }
            Arr<float> bk, sk;
            const float* bp = optional_vector(bias, c, bk, "bias");
            const float* sp = optional_vector(slope, c, sk, "slope");
            Arr<float> out({rows, c});
            float* op = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                graph_affine(t, n_terms, rows, c, bp, sp, op, num_threads);
            }
            return out;
        },
        py::arg("terms"), py::arg("bias"), py::arg("slope"), py::arg("num_threads") = 0);
}

}  // namespace bingnn
