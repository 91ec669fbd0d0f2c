// Python bindings of the real-valued engine kernels (engine_float.hpp); called from module.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bingnn_core.hpp"
#include "engine_float.hpp"

namespace py = pybind11;

namespace bingnn {
namespace {

template <class T>
using Arr = py::array_t<T, py::array::c_style>;

void need(bool ok, const std::string& msg) {
    if (!ok) throw std::invalid_argument(msg);
}

void check_idx(const Arr<int32_t>& idx, int64_t sets, int64_t n) {
    need(idx.ndim() == 3 && idx.shape(0) == sets && idx.shape(1) == n && idx.shape(2) >= 1,
         "idx must have shape (B, N, k) with k >= 1");
    const int32_t* p = idx.data();
    for (int64_t q = 0; q < idx.size(); ++q)
        need(p[q] >= 0 && p[q] < n, "idx holds a neighbour index outside [0, N)");
}

}  // namespace

void bind_engine_float(py::module_& m) {
    m.def(
        "l2_knn3",
        [](const Arr<float>& x, int64_t k, int num_threads) {
            need(x.ndim() == 3 && x.shape(2) == 3, "l2_knn3 expects (B, N, 3) float32");
            const int64_t sets = x.shape(0), n = x.shape(1);
            need(k >= 1 && k <= n, "l2_knn3 needs 1 <= k <= N");
            Arr<int32_t> idx({sets, n, k});
            const float* xp = x.data();
            int32_t* ip = idx.mutable_data();
            {
                py::gil_scoped_release nogil;
                l2_knn3(xp, sets, n, k, ip, num_threads);
            }
            return idx;
        },
        py::arg("x"), py::arg("k"), py::arg("num_threads") = 0);

    m.def(
        "select_k_rows",
        [](const Arr<float>& d, int64_t k, int num_threads) {
            need(d.ndim() == 2, "select_k_rows expects (rows, M) float32");
            const int64_t rows = d.shape(0), m = d.shape(1);
            need(k >= 1 && k <= m, "select_k_rows needs 1 <= k <= M");
            Arr<int32_t> idx({rows, k});
            const float* dp = d.data();
            int32_t* ip = idx.mutable_data();
            {
                py::gil_scoped_release nogil;
                select_k_rows(dp, rows, m, k, ip, num_threads);
            }
            return idx;
        },
        py::arg("d"), py::arg("k"), py::arg("num_threads") = 0);

    m.def(
        "edge_conv0_minmax",
        [](const Arr<float>& x, const Arr<int32_t>& idx, const Arr<float>& weight,
           const py::object& bn_scale, const py::object& bn_shift, int num_threads) {
            need(x.ndim() == 3 && x.shape(2) == 3, "edge_conv0_minmax expects x (B, N, 3)");
            const int64_t sets = x.shape(0), n = x.shape(1);
            check_idx(idx, sets, n);
            need(weight.ndim() == 2 && weight.shape(1) == 6, "weight must be (C, 6)");
            const int64_t k = idx.shape(2), c = weight.shape(0);
            Arr<float> scale, shift;
            const float *sp = nullptr, *tp = nullptr;
            if (!bn_scale.is_none()) {
                scale = bn_scale.cast<Arr<float>>();
                shift = bn_shift.cast<Arr<float>>();
                need(scale.ndim() == 1 && scale.shape(0) == 6 && shift.ndim() == 1 &&
                         shift.shape(0) == 6,
                     "bn_scale and bn_shift must have shape (6,)");
                sp = scale.data();
                tp = shift.data();
            }
            Arr<float> ymax({sets, n, c}), ymin({sets, n, c});
            const float *xp = x.data(), *wp = weight.data();
            const int32_t* ip = idx.data();
            float *mx = ymax.mutable_data(), *mn = ymin.mutable_data();
            {
                py::gil_scoped_release nogil;
                edge_conv0_minmax(xp, sets, n, ip, k, wp, c, sp, tp, mx, mn, num_threads);
            }
            return py::make_tuple(ymax, ymin);
        },
        py::arg("x"), py::arg("idx"), py::arg("weight"), py::arg("bn_scale") = py::none(),
        py::arg("bn_shift") = py::none(), py::arg("num_threads") = 0);

    m.def(
        "rf_edge_minmax",
        [](const Arr<float>& h, const Arr<int32_t>& idx, const Arr<float>& lo,
           const Arr<float>& hi, const Arr<uint8_t>& negate, const Arr<uint64_t>& self_bits,
           const Arr<uint64_t>& w_rel, const Arr<uint64_t>& w_self, int num_threads) {
            need(h.ndim() == 3, "rf_edge_minmax expects h (B, N, C) float32");
            const int64_t sets = h.shape(0), n = h.shape(1), c = h.shape(2);
            const int64_t w = n_words(c);
            check_idx(idx, sets, n);
            need(lo.ndim() == 1 && lo.shape(0) == c && hi.ndim() == 1 && hi.shape(0) == c &&
                     negate.ndim() == 1 && negate.shape(0) == c,
                 "lo, hi and negate must have shape (C,)");
            need(self_bits.ndim() == 2 && self_bits.shape(0) == sets * n &&
                     self_bits.shape(1) == w,
                 "self_bits must have shape (B * N, ceil(C / 64))");
            need(w_rel.ndim() == 2 && w_self.ndim() == 2 && w_rel.shape(1) == w &&
                     w_self.shape(1) == w && w_rel.shape(0) == w_self.shape(0),
                 "w_rel and w_self must have shape (C_out, ceil(C / 64))");
            const int64_t k = idx.shape(2), c_out = w_rel.shape(0);
            Arr<int32_t> ymax({sets, n, c_out}), ymin({sets, n, c_out});
            const float *hp = h.data(), *lp = lo.data(), *up = hi.data();
            const uint8_t* np_ = negate.data();
            const int32_t* ip = idx.data();
            const uint64_t *sp = self_bits.data(), *rp = w_rel.data(), *wp = w_self.data();
            int32_t *mx = ymax.mutable_data(), *mn = ymin.mutable_data();
            {
                py::gil_scoped_release nogil;
                rf_edge_minmax(hp, sets, n, c, ip, k, lp, up, np_, sp, rp, wp, c_out, mx, mn,
                               num_threads);
            }
            return py::make_tuple(ymax, ymin);
        },
        py::arg("h"), py::arg("idx"), py::arg("lo"), py::arg("hi"), py::arg("negate"),
        py::arg("self_bits"), py::arg("w_rel"), py::arg("w_self"), py::arg("num_threads") = 0);

    m.def(
        "embed_pool",
        [](const Arr<int32_t>& y, const Arr<float>& alpha, const Arr<float>& slope,
           const py::object& bn_scale, const py::object& bn_shift, int num_threads) {
            need(y.ndim() == 3, "embed_pool expects y (B, N, C) int32");
            const int64_t sets = y.shape(0), n = y.shape(1), c = y.shape(2);
            need(alpha.ndim() == 1 && alpha.shape(0) == c && slope.ndim() == 1 &&
                     slope.shape(0) == c,
                 "alpha and slope must have shape (C,)");
            Arr<float> scale, shift;
            const float *sp = nullptr, *tp = nullptr;
            if (!bn_scale.is_none()) {
                scale = bn_scale.cast<Arr<float>>();
                shift = bn_shift.cast<Arr<float>>();
                need(scale.ndim() == 1 && scale.shape(0) == c && shift.ndim() == 1 &&
                         shift.shape(0) == c,
                     "bn_scale and bn_shift must have shape (C,)");
                sp = scale.data();
                tp = shift.data();
            }
            Arr<float> out({sets, 2 * c});
            const int32_t* yp = y.data();
            const float *ap = alpha.data(), *lp = slope.data();
            float* op = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                embed_pool(yp, sets, n, c, ap, lp, sp, tp, op, num_threads);
            }
            return out;
        },
        py::arg("y"), py::arg("alpha"), py::arg("slope"), py::arg("bn_scale") = py::none(),
        py::arg("bn_shift") = py::none(), py::arg("num_threads") = 0);
}

}  // namespace bingnn
