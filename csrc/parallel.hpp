// Threading of the native core: one persistent pool of worker threads, shared by every kernel.
//
// parallel_for(n, num_threads, grain, f) runs f(begin, end) over [0, n) in contiguous chunks on
// the calling thread plus up to num_threads - 1 pool workers, returns when every chunk is done
// and re-throws the first exception a chunk threw (pybind11 turns it into a Python error). The
// workers are created once, on first use, and live for the whole process: a kernel call costs a
// queue push and a wake-up, not a thread creation. If the system refuses to create a worker, the
// pool keeps the ones it has (the caller always works too), so a call never fails or terminates
// for lack of threads. A parallel_for inside a chunk runs serially on that thread.
//
// Thread count: num_threads > 0 is taken as given (at most kMaxThreads); num_threads == 0 means
// default_threads(): OMP_NUM_THREADS when set, else the CPUs in the affinity mask, capped by the
// cgroup CPU quota (cgroup v1 or v2), so a container limited to 2 CPUs on a 64-core host uses 2.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

namespace bingnn {

// Largest thread count a kernel call may ask for (explicitly or through OMP_NUM_THREADS).
constexpr int kMaxThreads = 1024;

// Default thread count (computed once per process; see the header comment) and where it came
// from: "OMP_NUM_THREADS", "cgroup", "affinity" or "hardware".
int default_threads();
const char* default_threads_source();

// num_threads <= 0 -> default_threads(); otherwise min(num_threads, kMaxThreads).
int resolve_threads(int num_threads);

// CPU limit of the cgroup quota, rounded up, or 0 when there is none. `root` is the cgroup file
// system mount (normally /sys/fs/cgroup) and `self_cgroup` the text of /proc/self/cgroup; both
// are parameters so the parser can be tested on a fake tree.
int cgroup_cpu_limit(const std::string& root, const std::string& self_cgroup);

// Number of pool workers alive, and a test hook that makes every further worker creation fail
// once `limit` workers exist (-1: no limit), to exercise the fallback when the system refuses
// threads.
int pool_workers();
void set_spawn_limit(int limit);

// Run body(ctx, part) for every part in [0, parts) on the calling thread and up to
// max_helpers pool workers; returns when all parts are done, re-throwing the first exception.
void run_parts(int64_t parts, int max_helpers, void (*body)(void*, int64_t), void* ctx);

template <class F>
void parallel_for(int64_t n, int num_threads, int64_t grain, F&& f) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    const int64_t by_grain = std::max<int64_t>(1, n / grain);
    const int64_t t =
        std::min<int64_t>({static_cast<int64_t>(resolve_threads(num_threads)), by_grain, n});
    if (t <= 1) {
        f(int64_t{0}, n);
        return;
    }
    const int64_t chunk = (n + t - 1) / t;
    struct Ctx {
        F* f;
        int64_t n, chunk;
    } ctx{&f, n, chunk};
    run_parts(
        t, static_cast<int>(t - 1),
        [](void* p, int64_t q) {
            auto* c = static_cast<Ctx*>(p);
            const int64_t b = q * c->chunk, e = std::min(c->n, b + c->chunk);
            if (b < e) (*c->f)(b, e);
        },
        &ctx);
}

}  // namespace bingnn
