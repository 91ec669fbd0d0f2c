// Python bindings of the training-side kernels (train_float.hpp); called from module.cpp.
// Outputs are caller-owned arrays (numpy views of torch tensors), so no result is copied; every
// shape and index is checked here so a direct call can never read or write out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_checks.hpp"
#include "bingnn_core.hpp"
#include "pm1_matmul.hpp"
#include "train_float.hpp"

namespace py = pybind11;

namespace bingnn {
namespace {

using bind::Arr;
using bind::require;

std::vector<int64_t> shape_of(const py::array& a) {
    return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

void need_shape(const py::array& a, const std::vector<int64_t>& want, const char* name) {
    require(shape_of(a) == want, std::string(name) + " has the wrong shape");
}

template <class T>
T* out_ptr(Arr<T>& a, const std::vector<int64_t>& want, const char* name) {
    need_shape(a, want, name);
    require(a.writeable(), std::string(name) + " must be writeable");
    return a.mutable_data();
}

void check_idx(const Arr<int64_t>& idx, int64_t sets, int64_t n, int64_t k) {
    need_shape(idx, {sets, n, k}, "idx");
    const int64_t* p = idx.data();
    for (int64_t q = 0; q < idx.size(); ++q)
        require(p[q] >= 0 && p[q] < n, "idx holds a neighbour index outside [0, N)");
}

// The arguments of a backward through one selected edge per (point, output channel): w
// (C_out, C), gsel and rank (B, N, C_out), every rank in [0, k). Returns C_out.
int64_t check_selection(const Arr<float>& gsel, const Arr<int64_t>& rank, const Arr<float>& w,
                        int64_t sets, int64_t n, int64_t c, int64_t k) {
    require(w.ndim() == 2 && w.shape(1) == c, "w must be (C_out, C)");
    const int64_t c_out = w.shape(0);
    need_shape(gsel, {sets, n, c_out}, "gsel");
    need_shape(rank, {sets, n, c_out}, "rank");
    const int64_t* pr = rank.data();
    for (int64_t q = 0; q < rank.size(); ++q)
        require(pr[q] >= 0 && pr[q] < k, "rank outside [0, k)");
    return c_out;
}

// The arguments of the LSP pair distances: x (B, N, C), idx (B, N, K) in [0, N), mode 0 or 1.
// Returns {B, N, C, K}.
std::array<int64_t, 4> check_pairs(const Arr<float>& x, const Arr<int64_t>& idx, int mode,
                                   const std::string& name) {
    require(x.ndim() == 3 && idx.ndim() == 3, name + " expects x (B, N, C) and idx (B, N, K)");
    const int64_t sets = x.shape(0), n = x.shape(1), c = x.shape(2), k = idx.shape(2);
    check_idx(idx, sets, n, k);
    require(mode == 0 || mode == 1, "mode must be 0 (squared L2) or 1 (dot product)");
    return {sets, n, c, k};
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
                require(src.ndim() == 3 && idx->ndim() == 3,
                     "neighbor_extremes expects src (B, N, C) and idx (B, N, k)");
                sets = src.shape(0), n = src.shape(1), c = src.shape(2), k = idx->shape(2);
                check_idx(*idx, sets, n, k);
            } else {
                require(src.ndim() == 4, "neighbor_extremes expects edges (B, N, k, C)");
                sets = src.shape(0), n = src.shape(1), k = src.shape(2), c = src.shape(3);
            }
            require(k >= 1, "neighbor_extremes needs k >= 1");
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
            require(g.ndim() == 3 && idx.ndim() == 3,
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
            require(rel.ndim() == 3, "edge_act_stats expects rel (rows, k, C)");
            const int64_t rows = rel.shape(0), k = rel.shape(1), c = rel.shape(2);
            need_shape(v, {rows, c}, "v");
            need_shape(alpha, {c}, "alpha");
            if (slope) need_shape(*slope, {c}, "slope");
            require(rows >= 1 && k >= 1, "edge_act_stats needs at least one edge");
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
            require(rel.ndim() == 3, "edge_act_stats_backward expects rel (rows, k, C)");
            const int64_t rows = rel.shape(0), k = rel.shape(1), c = rel.shape(2);
            need_shape(v, {rows, c}, "v");
            for (const Arr<float>* a : {&alpha, &mean, &c1, &c2}) need_shape(*a, {c}, "vector");
            if (slope) need_shape(*slope, {c}, "slope");
            require(sel_rank.has_value() == sel_grad.has_value(),
                 "give both sel_rank and sel_grad, or neither");
            if (sel_rank) {
                need_shape(*sel_rank, {rows, c}, "sel_rank");
                need_shape(*sel_grad, {rows, c}, "sel_grad");
                const int64_t* pr = sel_rank->data();
                for (int64_t q = 0; q < sel_rank->size(); ++q)
                    require(pr[q] >= 0 && pr[q] < k, "sel_rank holds a rank outside [0, k)");
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

    m.def(
        "binary_gemm_f32",
        [](const Arr<uint64_t>& a, const Arr<uint64_t>& b, int64_t n_bits, Arr<float>& out,
           int num_threads) {
            require(a.ndim() == 2 && b.ndim() == 2 && a.shape(1) == b.shape(1),
                 "binary_gemm_f32 expects a (M, W) and b (N, W) uint64");
            const int64_t m = a.shape(0), n = b.shape(0), w = a.shape(1);
            require(n_bits >= 0 && w == n_words(n_bits), "binary_gemm_f32: W must be ceil(C / 64)");
            float* po = out_ptr(out, {m, n}, "out");
            const uint64_t* pa = a.data();
            const uint64_t* pb = b.data();
            py::gil_scoped_release nogil;
            binary_gemm_f32(pa, m, pb, n, w, n_bits, po, num_threads);
        },
        py::arg("a"), py::arg("b"), py::arg("n_bits"), py::arg("out"),
        py::arg("num_threads") = 0);

    m.def(
        "pm1_codes",
        [](const Arr<uint64_t>& bits, int64_t c, bool invert, Arr<uint8_t>& out,
           int num_threads) {
            require(bits.ndim() == 2, "pm1_codes expects bits (K, W) uint64");
            const int64_t k = bits.shape(0), w = bits.shape(1);
            require(c >= 0 && c <= 64 * w, "pm1_codes: c must be at most 64 W");
            uint8_t* po = out_ptr(out, {pm1_groups(k), c}, "out");
            const uint64_t* pb = bits.data();
            py::gil_scoped_release nogil;
            pm1_codes(pb, k, w, c, invert, po, num_threads);
        },
        py::arg("bits"), py::arg("c"), py::arg("invert"), py::arg("out"),
        py::arg("num_threads") = 0);

    m.def(
        "pm1_matmul",
        [](const Arr<float>& a, bool transpose_a, const Arr<uint8_t>& codes, Arr<float>& out,
           int num_threads) {
            require(a.ndim() == 2 && codes.ndim() == 2,
                    "pm1_matmul expects a (M, N) float32 and codes (G, C) uint8");
            const int64_t m = a.shape(0), n = a.shape(1), c = codes.shape(1);
            const int64_t r = transpose_a ? n : m, k = transpose_a ? m : n;
            require(codes.shape(0) == pm1_groups(k),
                    "pm1_matmul: codes must have ceil(K / 5) rows for K = a's inner size");
            float* po = out_ptr(out, {r, c}, "out");
            const float* pa = a.data();
            const uint8_t* pc = codes.data();
            py::gil_scoped_release nogil;
            pm1_matmul(pa, r, k, transpose_a ? 1 : n, transpose_a ? n : 1, pc, c, po,
                       num_threads);
        },
        py::arg("a"), py::arg("transpose_a"), py::arg("codes"), py::arg("out"),
        py::arg("num_threads") = 0);

    m.def(
        "pm1_rows_linear",
        [](const Arr<uint64_t>& bits, int64_t c, const Arr<float>& weight, Arr<float>& out,
           int num_threads) {
            require(bits.ndim() == 2 && weight.ndim() == 2,
                    "pm1_rows_linear expects bits (M, W) uint64 and weight (C_out, C) float32");
            const int64_t m = bits.shape(0), w = bits.shape(1), c_out = weight.shape(0);
            require(c >= 0 && c <= 64 * w, "pm1_rows_linear: c must be at most 64 W");
            require(weight.shape(1) == c, "pm1_rows_linear: weight must have c columns");
            float* po = out_ptr(out, {m, c_out}, "out");
            const uint64_t* pb = bits.data();
            const float* pw = weight.data();
            py::gil_scoped_release nogil;
            pm1_rows_linear(pb, m, w, c, pw, c_out, po, num_threads);
        },
        py::arg("bits"), py::arg("c"), py::arg("weight"), py::arg("out"),
        py::arg("num_threads") = 0);

    m.def(
        "pair_distances",
        [](const Arr<float>& x, const Arr<int64_t>& idx, int mode, Arr<float>& out,
           int num_threads) {
            const auto [sets, n, c, k] = check_pairs(x, idx, mode, "pair_distances");
            float* po = out_ptr(out, {sets, n, k}, "out");
            const float* px = x.data();
            const int64_t* pi = idx.data();
            py::gil_scoped_release nogil;
            pair_distances(px, sets, n, c, pi, k, mode, po, num_threads);
        },
        py::arg("x"), py::arg("idx"), py::arg("mode"), py::arg("out"), py::arg("num_threads") = 0);

    m.def(
        "pair_distances_backward",
        [](const Arr<float>& x, const Arr<int64_t>& idx, int mode, const Arr<float>& g,
           Arr<float>& gx, int num_threads) {
            const auto [sets, n, c, k] = check_pairs(x, idx, mode, "pair_distances_backward");
            need_shape(g, {sets, n, k}, "g");
            float* pg = out_ptr(gx, {sets, n, c}, "gx");
            const float* px = x.data();
            const int64_t* pi = idx.data();
            const float* pgr = g.data();
            py::gil_scoped_release nogil;
            pair_distances_backward(px, sets, n, c, pi, k, mode, pgr, pg, num_threads);
        },
        py::arg("x"), py::arg("idx"), py::arg("mode"), py::arg("g"), py::arg("gx"),
        py::arg("num_threads") = 0);

    m.def(
        "select_rank",
        [](const Arr<float>& src, const Arr<int64_t>& rank, Arr<float>& out, int num_threads) {
            require(src.ndim() == 3, "select_rank expects src (rows, k, C)");
            const int64_t rows = src.shape(0), k = src.shape(1), c = src.shape(2);
            need_shape(rank, {rows, c}, "rank");
            const int64_t* pr = rank.data();
            for (int64_t q = 0; q < rank.size(); ++q)
                require(pr[q] >= 0 && pr[q] < k, "rank outside [0, k)");
            float* po = out_ptr(out, {rows, c}, "out");
            const float* ps = src.data();
            py::gil_scoped_release nogil;
            select_rank(ps, rows, k, c, pr, po, num_threads);
        },
        py::arg("src"), py::arg("rank"), py::arg("out"), py::arg("num_threads") = 0);

    m.def(
        "scatter_rank",
        [](const Arr<float>& g, const Arr<int64_t>& rank, Arr<float>& out, int num_threads) {
            require(g.ndim() == 2 && out.ndim() == 3, "scatter_rank expects g (rows, C), out "
                                                   "(rows, k, C)");
            const int64_t rows = g.shape(0), c = g.shape(1), k = out.shape(1);
            need_shape(rank, {rows, c}, "rank");
            const int64_t* pr = rank.data();
            for (int64_t q = 0; q < rank.size(); ++q)
                require(pr[q] >= 0 && pr[q] < k, "rank outside [0, k)");
            float* po = out_ptr(out, {rows, k, c}, "out");
            const float* pg = g.data();
            py::gil_scoped_release nogil;
            scatter_rank(pg, rows, k, c, pr, po, num_threads);
        },
        py::arg("g"), py::arg("rank"), py::arg("out"), py::arg("num_threads") = 0);

    m.def(
        "xor_edge_features",
        [](const Arr<float>& x, const Arr<int64_t>& idx, Arr<float>& out, int num_threads) {
            require(x.ndim() == 3 && idx.ndim() == 3,
                 "xor_edge_features expects x (B, N, C) and idx (B, N, k)");
            const int64_t sets = x.shape(0), n = x.shape(1), c = x.shape(2), k = idx.shape(2);
            check_idx(idx, sets, n, k);
            float* po = out_ptr(out, {sets, n, k, c}, "out");
            const float* px = x.data();
            const int64_t* pi = idx.data();
            py::gil_scoped_release nogil;
            xor_edge_features(px, sets, n, c, pi, k, po, num_threads);
        },
        py::arg("x"), py::arg("idx"), py::arg("out"), py::arg("num_threads") = 0);

    m.def(
        "xor_edge_features_backward",
        [](const Arr<float>& g, const Arr<float>& x, const Arr<int64_t>& idx, Arr<float>& out,
           int num_threads) {
            require(x.ndim() == 3 && idx.ndim() == 3,
                 "xor_edge_features_backward expects x (B, N, C) and idx (B, N, k)");
            const int64_t sets = x.shape(0), n = x.shape(1), c = x.shape(2), k = idx.shape(2);
            check_idx(idx, sets, n, k);
            need_shape(g, {sets, n, k, c}, "g");
            float* po = out_ptr(out, {sets, n, c}, "out");
            const float* pg = g.data();
            const float* px = x.data();
            const int64_t* pi = idx.data();
            py::gil_scoped_release nogil;
            xor_edge_features_backward(pg, px, sets, n, c, pi, k, po, num_threads);
        },
        py::arg("g"), py::arg("x"), py::arg("idx"), py::arg("out"), py::arg("num_threads") = 0);

    m.def(
        "edge_diff_stats",
        [](const Arr<float>& x, const Arr<int64_t>& idx, int num_threads) {
            require(x.ndim() == 3 && idx.ndim() == 3,
                 "edge_diff_stats expects x (B, N, C) and idx (B, N, k)");
            const int64_t sets = x.shape(0), n = x.shape(1), c = x.shape(2), k = idx.shape(2);
            check_idx(idx, sets, n, k);
            require(sets * n * k >= 1, "edge_diff_stats needs at least one edge");
            Arr<double> mean({c}), var({c});
            const float* px = x.data();
            const int64_t* pi = idx.data();
            double* pm = mean.mutable_data();
            double* pv = var.mutable_data();
            {
                py::gil_scoped_release nogil;
                edge_diff_stats(px, sets, n, c, pi, k, pm, pv, num_threads);
            }
            return py::make_tuple(mean, var);
        },
        py::arg("x"), py::arg("idx"), py::arg("num_threads") = 0);

    m.def(
        "edge_diff_quant",
        [](const Arr<float>& x, const Arr<int64_t>& idx, const Arr<float>& s,
           const Arr<float>& t, int mode, std::optional<Arr<float>> out_f,
           std::optional<Arr<uint64_t>> out_bits, int num_threads, bool fma) {
            require(x.ndim() == 3 && idx.ndim() == 3,
                 "edge_diff_quant expects x (B, N, C) and idx (B, N, k)");
            const int64_t sets = x.shape(0), n = x.shape(1), c = x.shape(2), k = idx.shape(2);
            check_idx(idx, sets, n, k);
            need_shape(s, {c}, "s");
            need_shape(t, {c}, "t");
            require(mode == 0 || mode == 1, "mode must be 0 (sign) or 1 (tanh)");
            require(!out_bits || mode == 0, "packed bits need mode 0 (sign)");
            float* pf = out_f ? out_ptr(*out_f, {sets, n, k, c}, "out_f") : nullptr;
            uint64_t* pb =
                out_bits ? out_ptr(*out_bits, {sets * n * k, n_words(c)}, "out_bits") : nullptr;
            const float* px = x.data();
            const int64_t* pi = idx.data();
            const float* ps = s.data();
            const float* pt = t.data();
            py::gil_scoped_release nogil;
            edge_diff_quant(px, sets, n, c, pi, k, ps, pt, mode, fma, pf, pb, num_threads);
        },
        py::arg("x"), py::arg("idx"), py::arg("s"), py::arg("t"), py::arg("mode"),
        py::arg("out_f"), py::arg("out_bits"), py::arg("num_threads") = 0,
        py::arg("fma") = false);

    m.def(
        "edge_diff_select_backward",
        [](const Arr<float>& x, const Arr<int64_t>& idx, const Arr<float>& s, const Arr<float>& t,
           const Arr<float>& mean, const Arr<float>& invstd, int mode, float clip,
           const Arr<float>& gsel, const Arr<int64_t>& rank, const Arr<float>& w,
           std::optional<Arr<float>> gx, std::optional<Arr<float>> g_w, int num_threads) {
            require(x.ndim() == 3 && idx.ndim() == 3,
                 "edge_diff_select_backward expects x (B, N, C) and idx (B, N, k)");
            const int64_t sets = x.shape(0), n = x.shape(1), c = x.shape(2), k = idx.shape(2);
            check_idx(idx, sets, n, k);
            for (const Arr<float>* a : {&s, &t, &mean, &invstd}) need_shape(*a, {c}, "vector");
            require(mode == 0 || mode == 1, "mode must be 0 (sign) or 1 (tanh)");
            const int64_t c_out = check_selection(gsel, rank, w, sets, n, c, k);
            const int64_t* pr = rank.data();
            float* pgx = gx ? out_ptr(*gx, {sets, n, c}, "gx") : nullptr;
            float* pgw = g_w ? out_ptr(*g_w, {c_out, c}, "g_w") : nullptr;
            Arr<double> sum_gz({c}), sum_gzx({c});
            const float* px = x.data();
            const int64_t* pi = idx.data();
            const float *ps = s.data(), *pt = t.data(), *pm = mean.data(), *pv = invstd.data();
            const float* pg = gsel.data();
            const float* pw = w.data();
            double* a = sum_gz.mutable_data();
            double* b = sum_gzx.mutable_data();
            {
                py::gil_scoped_release nogil;
                edge_diff_select_backward(px, sets, n, c, pi, k, ps, pt, pm, pv, mode, clip, pg,
                                          pr, c_out, pw, pgx, pgw, a, b, num_threads);
            }
            return py::make_tuple(sum_gz, sum_gzx);
        },
        py::arg("x"), py::arg("idx"), py::arg("s"), py::arg("t"), py::arg("mean"),
        py::arg("invstd"), py::arg("mode"), py::arg("clip"), py::arg("gsel"), py::arg("rank"),
        py::arg("w"), py::arg("gx"), py::arg("g_w"), py::arg("num_threads") = 0);

    m.def(
        "edge_diff_bn_correction",
        [](const Arr<float>& x, const Arr<int64_t>& idx, const Arr<float>& s,
           const Arr<float>& mean, const Arr<float>& invstd, const Arr<float>& c1,
           const Arr<float>& c2, Arr<float>& gx, int num_threads) {
            require(x.ndim() == 3 && idx.ndim() == 3,
                 "edge_diff_bn_correction expects x (B, N, C) and idx (B, N, k)");
            const int64_t sets = x.shape(0), n = x.shape(1), c = x.shape(2), k = idx.shape(2);
            check_idx(idx, sets, n, k);
            for (const Arr<float>* a : {&s, &mean, &invstd, &c1, &c2})
                need_shape(*a, {c}, "vector");
            float* pgx = out_ptr(gx, {sets, n, c}, "gx");
            const float* px = x.data();
            const int64_t* pi = idx.data();
            const float *ps = s.data(), *pm = mean.data(), *pv = invstd.data();
            const float *p1 = c1.data(), *p2 = c2.data();
            py::gil_scoped_release nogil;
            edge_diff_bn_correction(px, sets, n, c, pi, k, ps, pm, pv, p1, p2, pgx, num_threads);
        },
        py::arg("x"), py::arg("idx"), py::arg("s"), py::arg("mean"), py::arg("invstd"),
        py::arg("c1"), py::arg("c2"), py::arg("gx"), py::arg("num_threads") = 0);

    m.def(
        "edge_select_backward",
        [](const Arr<float>& x, const Arr<int64_t>& idx, const Arr<float>& gsel,
           const Arr<int64_t>& rank, const Arr<float>& w, std::optional<Arr<float>> g_q,
           std::optional<Arr<float>> g_w, int num_threads) {
            require(x.ndim() == 3 && idx.ndim() == 3,
                 "edge_select_backward expects x (B, N, C) and idx (B, N, k)");
            const int64_t sets = x.shape(0), n = x.shape(1), c = x.shape(2), k = idx.shape(2);
            check_idx(idx, sets, n, k);
            const int64_t c_out = check_selection(gsel, rank, w, sets, n, c, k);
            const int64_t* pr = rank.data();
            float* pgq = g_q ? out_ptr(*g_q, {sets, n, k, c}, "g_q") : nullptr;
            float* pgw = g_w ? out_ptr(*g_w, {c_out, c}, "g_w") : nullptr;
            const float* px = x.data();
            const int64_t* pi = idx.data();
            const float* pg = gsel.data();
            const float* pw = w.data();
            py::gil_scoped_release nogil;
            edge_select_backward(px, sets, n, c, pi, k, pg, pr, c_out, pw, pgq, pgw, num_threads);
        },
        py::arg("x"), py::arg("idx"), py::arg("gsel"), py::arg("rank"), py::arg("w"),
        py::arg("g_q"), py::arg("g_w"), py::arg("num_threads") = 0);

    auto rows_of = [](const Arr<float>& x, const char* name) {
        require(x.ndim() == 2, std::string(name) + " expects x (rows, C) float32");
        return std::make_pair(static_cast<int64_t>(x.shape(0)), static_cast<int64_t>(x.shape(1)));
    };
    auto vec_ptr = [](const std::optional<Arr<float>>& a, int64_t c, const char* name)
        -> const float* {
        if (!a) return nullptr;
        need_shape(*a, {c}, name);
        return a->data();
    };

    m.def(
        "rows_rescale_prelu",
        [rows_of, vec_ptr](const Arr<float>& x, const Arr<float>& alpha,
                           std::optional<Arr<float>> slope, Arr<float>& y, int num_threads) {
            const auto [rows, c] = rows_of(x, "rows_rescale_prelu");
            need_shape(alpha, {c}, "alpha");
            const float* ps = vec_ptr(slope, c, "slope");
            float* py = out_ptr(y, {rows, c}, "y");
            const float* px = x.data();
            const float* pa = alpha.data();
            py::gil_scoped_release nogil;
            rows_rescale_prelu(px, rows, c, pa, ps, py, num_threads);
        },
        py::arg("x"), py::arg("alpha"), py::arg("slope"), py::arg("y"),
        py::arg("num_threads") = 0);

    m.def(
        "rows_rescale_prelu_backward",
        [rows_of, vec_ptr](const Arr<float>& g, const Arr<float>& x, const Arr<float>& alpha,
                           std::optional<Arr<float>> slope, Arr<float>& gx, int num_threads) {
            const auto [rows, c] = rows_of(x, "rows_rescale_prelu_backward");
            need_shape(g, {rows, c}, "g");
            need_shape(alpha, {c}, "alpha");
            const float* ps = vec_ptr(slope, c, "slope");
            float* pgx = out_ptr(gx, {rows, c}, "gx");
            Arr<double> ga({c}), gs({c});
            const float* pg = g.data();
            const float* px = x.data();
            const float* pa = alpha.data();
            double* pga = ga.mutable_data();
            double* pgs = gs.mutable_data();
            {
                py::gil_scoped_release nogil;
                rows_rescale_prelu_backward(pg, px, rows, c, pa, ps, pgx, pga, pgs, num_threads);
            }
            return py::make_tuple(ga, gs);
        },
        py::arg("g"), py::arg("x"), py::arg("alpha"), py::arg("slope"), py::arg("gx"),
        py::arg("num_threads") = 0);

    m.def(
        "rows_stats",
        [rows_of](const Arr<float>& x, int num_threads) {
            const auto [rows, c] = rows_of(x, "rows_stats");
            Arr<double> mean({c}), var({c});
            const float* px = x.data();
            double* pm = mean.mutable_data();
            double* pv = var.mutable_data();
            {
                py::gil_scoped_release nogil;
                rows_stats(px, rows, c, pm, pv, num_threads);
            }
            return py::make_tuple(mean, var);
        },
        py::arg("x"), py::arg("num_threads") = 0);

    m.def(
        "rows_bn_forward",
        [rows_of, vec_ptr](const Arr<float>& x, const Arr<float>& mean, const Arr<float>& invstd,
                           std::optional<Arr<float>> weight, std::optional<Arr<float>> bias,
                           Arr<float>& y, int num_threads) {
            const auto [rows, c] = rows_of(x, "rows_bn_forward");
            need_shape(mean, {c}, "mean");
            need_shape(invstd, {c}, "invstd");
            const float* pw = vec_ptr(weight, c, "weight");
            const float* pb = vec_ptr(bias, c, "bias");
            float* py = out_ptr(y, {rows, c}, "y");
            const float* px = x.data();
            const float* pm = mean.data();
            const float* pi = invstd.data();
            py::gil_scoped_release nogil;
            rows_bn_forward(px, rows, c, pm, pi, pw, pb, py, num_threads);
        },
        py::arg("x"), py::arg("mean"), py::arg("invstd"), py::arg("weight"), py::arg("bias"),
        py::arg("y"), py::arg("num_threads") = 0);

    m.def(
        "rows_bn_backward",
        [rows_of, vec_ptr](const Arr<float>& g, const Arr<float>& x, const Arr<float>& mean,
                           const Arr<float>& invstd, std::optional<Arr<float>> weight,
                           std::optional<Arr<float>> gx, int num_threads) {
            const auto [rows, c] = rows_of(x, "rows_bn_backward");
            need_shape(g, {rows, c}, "g");
            need_shape(mean, {c}, "mean");
            need_shape(invstd, {c}, "invstd");
            const float* pw = vec_ptr(weight, c, "weight");
            float* pgx = gx ? out_ptr(*gx, {rows, c}, "gx") : nullptr;
            Arr<double> sg({c}), sgx({c});
            const float* pg = g.data();
            const float* px = x.data();
            const float* pm = mean.data();
            const float* pi = invstd.data();
            double* a = sg.mutable_data();
            double* b = sgx.mutable_data();
            {
                py::gil_scoped_release nogil;
                rows_bn_backward(pg, px, rows, c, pm, pi, pw, pgx, a, b, num_threads);
            }
            return py::make_tuple(sg, sgx);
        },
        py::arg("g"), py::arg("x"), py::arg("mean"), py::arg("invstd"), py::arg("weight"),
        py::arg("gx"), py::arg("num_threads") = 0);
}

}  // namespace bingnn
