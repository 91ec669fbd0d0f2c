// Python bindings of the real-valued engine kernels (engine_float.hpp); called from module.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_checks.hpp"
#include "bingnn_core.hpp"
#include "engine_float.hpp"

namespace py = pybind11;

namespace bingnn {

using namespace bind;

namespace {

// Squared distances of coordinates up to this size stay finite in float32 (12 * 1e36 < 3.4e38).
constexpr float kMaxCoordinate = 1e18f;

void check_points(const Arr<float>& x, const char* fn) {
    require(x.ndim() == 3 && x.shape(2) == 3, std::string(fn) + " expects (B, N, 3) float32");
    check_aligned({{&x, "x"}});
    require(x.shape(1) <= INT32_MAX, std::string(fn) + ": N must fit int32 neighbour indices");
    const float* p = x.data();
    bool ok = true;
    for (int64_t q = 0; q < x.size(); ++q) ok &= std::fabs(p[q]) <= kMaxCoordinate;  // NaN: false
    require(ok, std::string(fn) +
                    ": x must hold finite coordinates with |x| <= 1e18 (NaN, infinities and "
                    "larger values make squared distances NaN or infinite)");
}

// Both BatchNorm vectors or neither.
void bn_pair(const py::object& scale, const py::object& shift) {
    require(scale.is_none() == shift.is_none(),
            "bn_scale and bn_shift must be given together (or both None)");
}

}  // namespace

void bind_engine_float(py::module_& m) {
    m.def(
        "l2_knn3",
        [](const Arr<float>& x, int64_t k, int num_threads) {
            check_points(x, "l2_knn3");
            const int64_t sets = x.shape(0), n = x.shape(1);
            require(k >= 1 && k <= n, "l2_knn3 needs 1 <= k <= N");
            threads_arg(num_threads);
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
            require(d.ndim() == 2, "select_k_rows expects (rows, M) float32");
            check_aligned({{&d, "d"}});
            const int64_t rows = d.shape(0), m = d.shape(1);
            require(k >= 1 && k <= m, "select_k_rows needs 1 <= k <= M");
            require(m <= INT32_MAX, "select_k_rows: M must fit int32 indices");
            // NaN has no place in the (value, index) order; the selection also needs finite
            // values (+inf is its 'empty' marker).
            check_finite(d.data(), d.size(), "d");
            threads_arg(num_threads);
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
            require(x.ndim() == 3 && x.shape(2) == 3, "edge_conv0_minmax expects x (B, N, 3)");
            check_aligned({{&x, "x"}, {&idx, "idx"}, {&weight, "weight"}});
            check_finite(x.data(), x.size(), "x");
            const int64_t sets = x.shape(0), n = x.shape(1);
            check_idx(idx, sets, n);
            require(weight.ndim() == 2 && weight.shape(1) == 6, "weight must be (C, 6)");
            check_finite(weight.data(), weight.size(), "weight");
            threads_arg(num_threads);
            const int64_t k = idx.shape(2), c = weight.shape(0);
            bn_pair(bn_scale, bn_shift);
            Arr<float> scale, shift;
            const float* sp = optional_vector(bn_scale, scale, 6, "bn_scale");
            const float* tp = optional_vector(bn_shift, shift, 6, "bn_shift");
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
            require(h.ndim() == 3, "rf_edge_minmax expects h (B, N, C) float32");
            check_aligned({{&h, "h"}, {&idx, "idx"}, {&lo, "lo"}, {&hi, "hi"},
                           {&self_bits, "self_bits"}, {&w_rel, "w_rel"}, {&w_self, "w_self"}});
            const int64_t sets = h.shape(0), n = h.shape(1), c = h.shape(2);
            require(c < (int64_t{1} << 30), "rf_edge_minmax: C must be < 2**30");
            const int64_t w = n_words(c);
            check_finite(h.data(), h.size(), "h");
            check_idx(idx, sets, n);
            require(lo.ndim() == 1 && lo.shape(0) == c && hi.ndim() == 1 && hi.shape(0) == c &&
                        negate.ndim() == 1 && negate.shape(0) == c,
                    "lo, hi and negate must have shape (C,)");
            bool thresholds_ok = true;  // +-inf disables a side; NaN means nothing
            for (int64_t q = 0; q < c; ++q)
                thresholds_ok &= !std::isnan(lo.data()[q]) && !std::isnan(hi.data()[q]);
            require(thresholds_ok, "lo and hi must not contain NaN");
            require(self_bits.ndim() == 2 && self_bits.shape(0) == sets * n &&
                        self_bits.shape(1) == w,
                    "self_bits must have shape (B * N, ceil(C / 64))");
            require(w_rel.ndim() == 2 && w_self.ndim() == 2 && w_rel.shape(1) == w &&
                        w_self.shape(1) == w && w_rel.shape(0) == w_self.shape(0),
                    "w_rel and w_self must have shape (C_out, ceil(C / 64))");
            check_padding(self_bits.data(), self_bits.shape(0), w, c, "self_bits");
            check_padding(w_rel.data(), w_rel.shape(0), w, c, "w_rel");
            check_padding(w_self.data(), w_self.shape(0), w, c, "w_self");
            threads_arg(num_threads);
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
        "table_minmax",
        [](const Arr<int32_t>& ymax, const Arr<int32_t>& ymin, const Arr<float>& table,
           const Arr<uint8_t>& use_min, int num_threads) {
            require(ymax.ndim() >= 1 && ymin.ndim() == ymax.ndim(),
                    "table_minmax expects ymax and ymin (..., C) int32 of one shape");
            for (py::ssize_t d = 0; d < ymax.ndim(); ++d)
                require(ymax.shape(d) == ymin.shape(d), "ymax and ymin must have one shape");
            check_aligned({{&ymax, "ymax"}, {&ymin, "ymin"}, {&table, "table"},
                           {&use_min, "use_min"}});
            const int64_t c = ymax.shape(ymax.ndim() - 1);
            require(table.ndim() == 2 && table.shape(0) == c && table.shape(1) >= 1 &&
                        table.shape(1) % 2 == 1,
                    "table must have shape (C, n_bits + 1) with n_bits even");
            require(use_min.ndim() == 1 && use_min.shape(0) == c, "use_min must have shape (C,)");
            threads_arg(num_threads);
            const int64_t rows = c ? ymax.size() / c : 0, n_bits = table.shape(1) - 1;
            std::vector<py::ssize_t> shape(ymax.shape(), ymax.shape() + ymax.ndim());
            Arr<float> out(shape);
            const int32_t *hp = ymax.data(), *lp = ymin.data();
            const float* tp = table.data();
            const uint8_t* up = use_min.data();
            float* op = out.mutable_data();
            bool ok;
            {
                py::gil_scoped_release nogil;
                ok = table_minmax(hp, lp, rows, c, tp, n_bits, up, op, num_threads);
            }
            require(ok, "table_minmax: a pre-activation lies outside the table (|y| > n_bits "
                        "or y of the wrong parity)");
            return out;
        },
        py::arg("ymax"), py::arg("ymin"), py::arg("table"), py::arg("use_min"),
        py::arg("num_threads") = 0);

    m.def(
        "embed_pool",
        [](const Arr<int32_t>& y, const Arr<float>& alpha, const Arr<float>& slope,
           const py::object& bn_scale, const py::object& bn_shift, int num_threads) {
            require(y.ndim() == 3, "embed_pool expects y (B, N, C) int32");
            check_aligned({{&y, "y"}, {&alpha, "alpha"}, {&slope, "slope"}});
            const int64_t sets = y.shape(0), n = y.shape(1), c = y.shape(2);
            require(n >= 1, "embed_pool needs at least one point per set (the mean of none is "
                            "undefined)");
            require(alpha.ndim() == 1 && alpha.shape(0) == c && slope.ndim() == 1 &&
                        slope.shape(0) == c,
                    "alpha and slope must have shape (C,)");
            check_finite(alpha.data(), c, "alpha");
            check_finite(slope.data(), c, "slope");
            threads_arg(num_threads);
            bn_pair(bn_scale, bn_shift);
            Arr<float> scale, shift;
            const float* sp = optional_vector(bn_scale, scale, c, "bn_scale");
            const float* tp = optional_vector(bn_shift, shift, c, "bn_shift");
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
