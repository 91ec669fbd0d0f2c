// Python bindings of the training-side kernels (train_float.hpp); called from module.cpp.
// Outputs are caller-owned arrays (numpy views of torch tensors), so no result is copied; every
// shape and index is checked here so a direct call can never read or write out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bingnn_core.hpp"
#include "train_float.hpp"

namespace py = pybind11;

namespace bingnn {
namespace {

template <class T>
using Arr = py::array_t<T, py::array::c_style>;

void need(bool ok, const std::string& msg) {
    if (!ok) throw std::invalid_argument(msg);
}

std::vector<int64_t> shape_of(const py::array& a) {
    return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

void need_shape(const py::array& a, const std::vector<int64_t>& want, const char* name) {
    need(shape_of(a) == want, std::string(name) + " has the wrong shape");
}

template <class T>
T* out_ptr(Arr<T>& a, const std::vector<int64_t>& want, const char* name) {
    need_shape(a, want, name);
    need(a.writeable(), std::string(name) + " must be writeable");
    return a.mutable_data();
}

void check_idx(const Arr<int64_t>& idx, int64_t sets, int64_t n, int64_t k) {
    need_shape(idx, {sets, n, k}, "idx");
    const int64_t* p = idx.data();
    for (int64_t q = 0; q < idx.size(); ++q)
        need(p[q] >= 0 && p[q] < n, "idx holds a neighbour index outside [0, N)");
}

}  // namespace

void bind_train_float(py::module_& m) {
    m.def(
        "neighbor_extremes",
        [](const Arr<float>& src, std::optional<Arr<int64_t>> idx, Arr<float>& mx,
           Arr<int64_t>& rmx, Arr<float>& mn, Arr<int64_t>& rmn,
           std::optional<Arr<float>> sum, int num_threads) {
            int64_t sets, n, k, c;
            if (idx) {
                need(src.ndim() == 3 && idx->ndim() == 3,
                     "neighbor_extremes expects src (B, N, C) and idx (B, N, k)");
                sets = src.shape(0), n = src.shape(1), c = src.shape(2), k = idx->shape(2);
                check_idx(*idx, sets, n, k);
            } else {
                need(src.ndim() == 4, "neighbor_extremes expects edges (B, N, k, C)");
                sets = src.shape(0), n = src.shape(1), k = src.shape(2), c = src.shape(3);
            }
            need(k >= 1, "neighbor_extremes needs k >= 1");
            const std::vector<int64_t> o{sets, n, c};
            float* pmx = out_ptr(mx, o, "mx");
            int64_t* prm = out_ptr(rmx, o, "rmx");
            float* pmn = out_ptr(mn, o, "mn");
            int64_t* prn = out_ptr(rmn, o, "rmn");
            float* psum = sum ? out_ptr(*sum, o, "sum") : nullptr;
            const int64_t* pidx = idx ? idx->data() : nullptr;
            const float* ps = src.data();
            py::gil_scoped_release nogil;
            neighbor_extremes(ps, sets, n, c, pidx, k, pmx, prm, pmn, prn, psum, num_threads);
        },
        py::arg("src"), py::arg("idx"), py::arg("mx"), py::arg("rmx"), py::arg("mn"),
        py::arg("rmn"), py::arg("sum"), py::arg("num_threads") = 0);

    m.def(
        "neighbor_scatter_sum",
        [](const Arr<float>& g, const Arr<int64_t>& idx, Arr<float>& out, int num_threads) {
            need(g.ndim() == 3 && idx.ndim() == 3,
                 "neighbor_scatter_sum expects g (B, N, C) and idx (B, N, k)");
            const int64_t sets = g.shape(0), n = g.shape(1), c = g.shape(2), k = idx.shape(2);
            check_idx(idx, sets, n, k);
            float* po = out_ptr(out, {sets, n, c}, "out");
            const float* pg = g.data();
            const int64_t* pi = idx.data();
            py::gil_scoped_release nogil;
            neighbor_scatter_sum(pg, sets, n, c, pi, k, po, num_threads);
        },
        py::arg("g"), py::arg("idx"), py::arg("out"), py::arg("num_threads") = 0);

    m.def(
        "edge_act_stats",
        [](const Arr<float>& rel, const Arr<float>& v, const Arr<float>& alpha,
           std::optional<Arr<float>> slope, int num_threads) {
            need(rel.ndim() == 3, "edge_act_stats expects rel (rows, k, C)");
            const int64_t rows = rel.shape(0), k = rel.shape(1), c = rel.shape(2);
            need_shape(v, {rows, c}, "v");
            need_shape(alpha, {c}, "alpha");
            if (slope) need_shape(*slope, {c}, "slope");
            need(rows >= 1 && k >= 1, "edge_act_stats needs at least one edge");
            Arr<double> mean({c}), var({c});
            const float* pr = rel.data();
            const float* pv = v.data();
            const float* pa = alpha.data();
            const float* psl = slope ? slope->data() : nullptr;
            double* pm = mean.mutable_data();
            double* pvar = var.mutable_data();
            {
                py::gil_scoped_release nogil;
                edge_act_stats(pr, pv, rows, k, c, pa, psl, pm, pvar, num_threads);
            }
            return py::make_tuple(mean, var);
        },
        py::arg("rel"), py::arg("v"), py::arg("alpha"), py::arg("slope"),
        py::arg("num_threads") = 0);

    m.def(
        "edge_act_stats_backward",
        [](const Arr<float>& rel, const Arr<float>& v, const Arr<float>& alpha,
           std::optional<Arr<float>> slope, const Arr<float>& mean, const Arr<float>& c1,
           const Arr<float>& c2, std::optional<Arr<int64_t>> sel_rank,
           std::optional<Arr<float>> sel_grad, Arr<float>& grad_rel, Arr<float>& grad_v,
           int num_threads) {
            need(rel.ndim() == 3, "edge_act_stats_backward expects rel (rows, k, C)");
            const int64_t rows = rel.shape(0), k = rel.shape(1), c = rel.shape(2);
            need_shape(v, {rows, c}, "v");
            for (const Arr<float>* a : {&alpha, &mean, &c1, &c2}) need_shape(*a, {c}, "vector");
            if (slope) need_shape(*slope, {c}, "slope");
            need(sel_rank.has_value() == sel_grad.has_value(),
                 "give both sel_rank and sel_grad, or neither");
            if (sel_rank) {
                need_shape(*sel_rank, {rows, c}, "sel_rank");
                need_shape(*sel_grad, {rows, c}, "sel_grad");
                const int64_t* pr = sel_rank->data();
                for (int64_t q = 0; q < sel_rank->size(); ++q)
                    need(pr[q] >= 0 && pr[q] < k, "sel_rank holds a rank outside [0, k)");
            }
            float* pgr = out_ptr(grad_rel, {rows, k, c}, "grad_rel");
            float* pgv = out_ptr(grad_v, {rows, c}, "grad_v");
            Arr<double> ga({c}), gs({c});
            const float* pr = rel.data();
            const float* pv = v.data();
            const float* pa = alpha.data();
            const float* psl = slope ? slope->data() : nullptr;
            const float* pm = mean.data();
            const float* p1 = c1.data();
            const float* p2 = c2.data();
            const int64_t* psr = sel_rank ? sel_rank->data() : nullptr;
            const float* psg = sel_grad ? sel_grad->data() : nullptr;
            double* pga = ga.mutable_data();
            double* pgs = gs.mutable_data();
            {
                py::gil_scoped_release nogil;
                edge_act_stats_backward(pr, pv, rows, k, c, pa, psl, pm, p1, p2, psr, psg, pgr,
                                        pgv, pga, pgs, num_threads);
            }
            return py::make_tuple(ga, gs);
        },
        py::arg("rel"), py::arg("v"), py::arg("alpha"), py::arg("slope"), py::arg("mean"),
        py::arg("c1"), py::arg("c2"), py::arg("sel_rank"), py::arg("sel_grad"),
        py::arg("grad_rel"), py::arg("grad_v"), py::arg("num_threads") = 0);
}

}  // namespace bingnn
