// The persistent worker pool behind parallel_for, and the default thread count.
#include "parallel.hpp"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>
#include <vector>

namespace bingnn {
namespace {

// ------------------------------------------------------------------ the default thread count

// Leading positive integer of OMP_NUM_THREADS ("4" or "4,2" for nested levels), else 0.
int omp_num_threads() {
    const char* env = std::getenv("OMP_NUM_THREADS");
    if (env == nullptr) return 0;
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(env, &end, 10);
    if (end == env || errno != 0 || v < 1 || (*end != '\0' && *end != ',')) return 0;
    return static_cast<int>(std::min<long>(v, kMaxThreads));
}

int affinity_cpus() {
#ifdef __linux__
    // The mask may be larger than cpu_set_t on machines with > 1024 CPUs: grow until it fits.
    for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t* set = CPU_ALLOC(ncpu);
        if (set == nullptr) break;
        const size_t size = CPU_ALLOC_SIZE(ncpu);
        CPU_ZERO_S(size, set);
        const int rc = sched_getaffinity(0, size, set);
        const int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
        CPU_FREE(set);
        if (rc == 0) return count;
        if (errno != EINVAL) break;
    }
#endif
    return 0;
}

bool read_text(const std::string& path, std::string* out) {
    std::ifstream f(path);
    if (!f) return false;
    std::ostringstream ss;
    ss << f.rdbuf();
    *out = ss.str();
    return true;
}

// ceil(quota / period) of one cgroup directory, or 0 when unlimited / unreadable.
int limit_v2(const std::string& dir) {
    std::string text;
    if (!read_text(dir + "/cpu.max", &text)) return 0;
    std::istringstream in(text);
    std::string quota;
    long long period = 0;
    in >> quota >> period;
    if (quota == "max" || period <= 0) return 0;
    char* end = nullptr;
    const long long q = std::strtoll(quota.c_str(), &end, 10);
    if (end == quota.c_str() || q <= 0) return 0;
    return static_cast<int>(std::min<long long>((q + period - 1) / period, kMaxThreads));
}

int limit_v1(const std::string& dir) {
    std::string qt, pt;
    if (!read_text(dir + "/cpu.cfs_quota_us", &qt) || !read_text(dir + "/cpu.cfs_period_us", &pt))
        return 0;
    const long long q = std::atoll(qt.c_str()), p = std::atoll(pt.c_str());
    if (q <= 0 || p <= 0) return 0;
    return static_cast<int>(std::min<long long>((q + p - 1) / p, kMaxThreads));
}

// Smallest limit along the path from `mount + path` up to `mount` (a parent's quota caps its
// children). A path that does not exist under the mount (a container that sees the host's path)
// falls back to the mount itself.
template <class Limit>
int walk_up(const std::string& mount, std::string path, Limit limit) {
    int best = 0;
    auto take = [&](int v) {
        if (v > 0) best = best == 0 ? v : std::min(best, v);
    };
    while (!path.empty() && path.back() == '/') path.pop_back();
    for (;;) {
        take(limit(mount + path));
        if (path.empty()) break;
        const size_t slash = path.rfind('/');
        path = slash == std::string::npos ? std::string() : path.substr(0, slash);
    }
    return best;
}

int detect_threads(const char** source) {
    if (const int omp = omp_num_threads(); omp > 0) {
        *source = "OMP_NUM_THREADS";
        return omp;
    }
    int n = affinity_cpus();
    *source = "affinity";
    if (n <= 0) {
        n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        *source = "hardware";
    }
    std::string self;
    if (read_text("/proc/self/cgroup", &self)) {
        const int quota = cgroup_cpu_limit("/sys/fs/cgroup", self);
        if (quota > 0 && quota < n) {
            n = quota;
            *source = "cgroup";
        }
    }
    return std::max(1, std::min(n, kMaxThreads));
}

struct DefaultThreads {
    const char* source = "hardware";
    int count = detect_threads(&source);
};

const DefaultThreads& defaults() {
    static const DefaultThreads d;
    return d;
}

// ------------------------------------------------------------------ the pool

struct Job {
    void (*body)(void*, int64_t);
    void* ctx;
    int64_t parts;
    int helpers_left;                  // guarded by the pool mutex
    std::atomic<int64_t> next{0};      // next part to claim
    std::atomic<int64_t> finished{0};  // parts done (or skipped after an error)
    std::atomic<bool> failed{false};
    std::mutex m;  // guards error; with cv, the caller's wait for the last part
    std::condition_variable cv;
    std::exception_ptr error;

    // Claim and run parts until none is left. After a failure the remaining parts are skipped.
    void work() {
        for (;;) {
            const int64_t q = next.fetch_add(1, std::memory_order_relaxed);
            if (q >= parts) return;
            if (!failed.load(std::memory_order_relaxed)) {
                try {
                    body(ctx, q);
                } catch (...) {
                    std::lock_guard<std::mutex> lock(m);
                    if (!error) error = std::current_exception();
                    failed.store(true, std::memory_order_relaxed);
                }
            }
            if (finished.fetch_add(1, std::memory_order_acq_rel) + 1 == parts) {
                std::lock_guard<std::mutex> lock(m);
                cv.notify_all();
            }
        }
    }
};

thread_local bool t_in_part = false;  // a part is running on this thread: nested calls are serial

class Pool {
   public:
    void run(const std::shared_ptr<Job>& job, int helpers) {
        helpers = grow(helpers);
        if (helpers > 0) {
            {
                std::lock_guard<std::mutex> lock(m_);
                job->helpers_left = helpers;
                queue_.push_back(job);
            }
            for (int h = 0; h < helpers; ++h) cv_.notify_one();
        }
        t_in_part = true;
        job->work();
        t_in_part = false;
        if (helpers > 0) {
            // Workers that have not picked the job up yet must not: every part is claimed.
            std::lock_guard<std::mutex> lock(m_);
            for (auto it = queue_.begin(); it != queue_.end(); ++it)
                if (it->get() == job.get()) {
                    queue_.erase(it);
                    break;
                }
        }
        std::unique_lock<std::mutex> lock(job->m);
        job->cv.wait(lock, [&] { return job->finished.load(std::memory_order_acquire) == job->parts; });
        if (job->error) std::rethrow_exception(job->error);
    }

    int workers() {
        std::lock_guard<std::mutex> lock(m_);
        return static_cast<int>(workers_.size());
    }

    void set_spawn_limit(int limit) {
        std::lock_guard<std::mutex> lock(m_);
        spawn_limit_ = limit;
    }

   private:
    // Make sure `want` workers exist (as many as the system allows); returns how many do.
    int grow(int want) {
        std::lock_guard<std::mutex> lock(m_);
        while (static_cast<int>(workers_.size()) < want) {
            try {
                if (spawn_limit_ >= 0 && static_cast<int>(workers_.size()) >= spawn_limit_)
                    throw std::system_error(EAGAIN, std::generic_category(), "spawn limit");
                workers_.emplace_back([this] { loop(); });
            } catch (const std::system_error&) {
                break;  // no more threads: run with the workers there are
            }
        }
        return std::min(want, static_cast<int>(workers_.size()));
    }

    void loop() {
        for (;;) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock<std::mutex> lock(m_);
                cv_.wait(lock, [&] { return !queue_.empty(); });
                job = queue_.front();
                if (--job->helpers_left == 0) queue_.pop_front();
            }
            t_in_part = true;
            job->work();
            t_in_part = false;
        }
    }

    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Job>> queue_;  // jobs that still want helpers
    std::vector<std::thread> workers_;
    int spawn_limit_ = -1;
};

// The pool is never destroyed (workers block on its condition variable until the process
// ends), so no static-destruction order or join at exit can hang. A forked child does not have
// the parent's workers: it drops the inherited pool (without touching its possibly locked
// mutex) and builds its own on first use.
std::atomic<Pool*> g_pool{nullptr};

void forget_pool_in_child() { g_pool.store(nullptr); }

Pool& pool() {
    Pool* p = g_pool.load(std::memory_order_acquire);
    if (p != nullptr) return *p;
    static std::once_flag atfork;
    std::call_once(atfork, [] { pthread_atfork(nullptr, nullptr, forget_pool_in_child); });
    auto* fresh = new Pool();  // intentionally never freed, see above
    if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;  // another thread installed its pool first (ours has no workers yet)
    return *p;
}

}  // namespace

int default_threads() { return defaults().count; }
const char* default_threads_source() { return defaults().source; }

int resolve_threads(int num_threads) {
    if (num_threads <= 0) return default_threads();
    return std::min(num_threads, kMaxThreads);
}

int cgroup_cpu_limit(const std::string& root, const std::string& self_cgroup) {
    int best = 0;
    auto take = [&](int v) {
        if (v > 0) best = best == 0 ? v : std::min(best, v);
    };
    std::istringstream lines(self_cgroup);
    std::string line;
    while (std::getline(lines, line)) {
        // "hierarchy-id:controller-list:path"
        const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos) continue;
        const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
        if (line.compare(0, a, "0") == 0 && controllers.empty()) {  // cgroup v2
            std::string p = path;
            if (!read_text(root + p + "/cpu.max", &line) && !p.empty()) p.clear();
            take(walk_up(root, p, limit_v2));
            continue;
        }
        bool has_cpu = false;
        std::istringstream cs(controllers);
        for (std::string c; std::getline(cs, c, ',');) has_cpu |= c == "cpu";
        if (!has_cpu) continue;
        for (const char* mount : {"/cpu", "/cpu,cpuacct", "/cpuacct,cpu"}) {
            const std::string m = root + mount;
            std::string probe;
            if (!read_text(m + "/cpu.cfs_period_us", &probe)) continue;
            std::string p = path;
            if (!read_text(m + p + "/cpu.cfs_period_us", &probe)) p.clear();
            take(walk_up(m, p, limit_v1));
            break;
        }
    }
    return best;
}

int pool_workers() { return pool().workers(); }
void set_spawn_limit(int limit) { pool().set_spawn_limit(limit); }

void run_parts(int64_t parts, int max_helpers, void (*body)(void*, int64_t), void* ctx) {
    if (parts <= 0) return;
    if (parts == 1 || max_helpers <= 0 || t_in_part) {
        for (int64_t q = 0; q < parts; ++q) body(ctx, q);
        return;
    }
    auto job = std::make_shared<Job>();
    job->body = body;
    job->ctx = ctx;
    job->parts = parts;
    pool().run(job, static_cast<int>(std::min<int64_t>(max_helpers, parts - 1)));
}

}  // namespace bingnn
