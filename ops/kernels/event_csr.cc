// Event-driven CSR synaptic operators for diffbrain's `cpu` backend, as XLA typed-FFI handlers.
//
// Rows are presynaptic. Every handler takes a batch (the unbatched call is a batch of one) and dispatches
// on dtypes at run time: weights and results float32/float64, indices int32/int64, spikes bool or float.
// A weight array of rank 0 is one shared (homogeneous) weight. Compiled on first use by
// diffbrain/ops/kernels/cpu.py with the system compiler; see that module for the Python contract.
//
// Threads: one small persistent pool whose helpers join the calling thread on chunks of work handed out
// one at a time (see Pool). Helpers spin ~100 us after each job, because inside `lax.scan` the next call
// follows within microseconds, then sleep. Small problems never touch the pool.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Work is cut into chunks of about this many synaptic events (scatter) or stored synapses (row-dot,
// weight gradient) — ~50 us each — and handed out one at a time, so a thread descheduled on a busy machine
// delays the call by one chunk at most. Problems of fewer than two chunks never touch the pool.
constexpr int64_t kEventsPerChunk = 16384;
constexpr int64_t kSynapsesPerChunk = 65536;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// The cores this process may run on: its CPU affinity where the system reports one, else every core.
int usable_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

// The pool's thread count for a DIFFBRAIN_CPU_THREADS `setting` (null when unset) on `cores` usable cores,
// by the rule of cpu.py's `threads_for`: a whole positive number in decimal digits (surrounding whitespace
// allowed) clamped to [1, cores]; unset, empty or anything else (0, -3, 2.5, 7x, abc) gives `cores` (the
// Python side warns about such values before the kernel is first used).
int threads_for(const char* setting, int cores) {
  cores = std::max(1, cores);
  if (setting == nullptr) return cores;
  const auto space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  const char* begin = setting;
  const char* end = setting + std::strlen(setting);
  while (begin < end && space(*begin)) ++begin;
  while (end > begin && space(end[-1])) --end;
  if (begin == end) return cores;
  for (const char* c = begin; c < end; ++c)
    if (*c < '0' || *c > '9') return cores;
  errno = 0;
  char* stop = nullptr;
  const long long n = std::strtoll(begin, &stop, 10);
  if (stop != end) return cores;
  if (errno == ERANGE) return cores;  // digits only: too large, so clamped to every core
  if (n < 1) return cores;
  return static_cast<int>(std::min<long long>(n, cores));
}

int pool_threads() { return threads_for(std::getenv("DIFFBRAIN_CPU_THREADS"), usable_cores()); }

// A pool of helpers for the calling thread. `run(n, job)` calls job(0) on the caller and job(slot) for
// slots 1..n-1 on workers that arrive before the caller has finished its own job(0); a worker arriving
// later skips the job. So the caller never waits for a helper that has not started — on a loaded machine it
// simply does all the chunks itself — only for helpers still inside job(). One job at a time: a concurrent
// caller (XLA may run two independent kernels at once) gets no session and runs alone.
class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool(pool_threads());  // leaked on purpose: no join at process exit
    return *pool;
  }
  int size() const { return static_cast<int>(scratch_.size()); }

  class Session {
   public:
    explicit Session(Pool& pool) : pool_(pool), lock_(pool.busy_, std::try_to_lock) {}
    explicit operator bool() const { return lock_.owns_lock() && pool_.size() > 1; }
    // Memory private to `slot`, kept between calls.
    void* scratch(int slot, size_t bytes) {
      auto& buf = pool_.scratch_[slot];
      if (buf.size() < bytes) buf.resize(bytes);
      return buf.data();
    }
    template <class Job>
    void run(Job& job) { pool_.run(job); }

   private:
    Pool& pool_;
    std::unique_lock<std::mutex> lock_;
  };

 private:
  static constexpr int64_t kClosed = int64_t{1} << 40;

  // Starts threads - 1 helpers. Where the system refuses a thread (std::thread throws), the pool keeps the
  // helpers already started and is that much smaller: helpers take slots from entry_ and check them against
  // size(), which is final before the first job is published (run's release of generation_).
  explicit Pool(int threads) : scratch_(1) {
    int started = 1;
    try {
      for (; started < threads; ++started) std::thread([this] { loop(); }).detach();
    } catch (...) {
    }
    scratch_.resize(started);
  }

  template <class Job>
  void run(Job& job) {
    fn_ = [](void* ctx, int slot) { (*static_cast<Job*>(ctx))(slot); };
    ctx_ = &job;
    done_.store(0, std::memory_order_relaxed);
    entry_.store(0, std::memory_order_release);
    bool wake;
    {
      std::lock_guard<std::mutex> lk(m_);
      generation_.fetch_add(1, std::memory_order_release);
      wake = sleepers_ > 0;
    }
    if (wake) cv_.notify_all();
    job(0);
    const int64_t entered = entry_.fetch_or(kClosed, std::memory_order_acq_rel) & (kClosed - 1);
    for (int spin = 0; done_.load(std::memory_order_acquire) != entered; ++spin) {
      if (spin < 4096) cpu_relax();
      else std::this_thread::yield();
    }
  }

  void loop() {
    using clock = std::chrono::steady_clock;
    constexpr auto kSpin = std::chrono::microseconds(100);  // the next call in a scan comes sooner
    uint64_t seen = 0;
    for (;;) {
      auto start = clock::now();
      for (int it = 1; generation_.load(std::memory_order_acquire) == seen; ++it) {
        cpu_relax();
        if (it % 256 == 0 && clock::now() - start > kSpin) {
          std::unique_lock<std::mutex> lk(m_);
          ++sleepers_;
          cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
          --sleepers_;
        }
      }
      seen = generation_.load(std::memory_order_acquire);
      const int64_t slot = entry_.fetch_add(1, std::memory_order_acq_rel) + 1;
      if (slot > kClosed) continue;  // the caller has finished: it neither needs nor waits for us
      if (slot < size()) fn_(ctx_, static_cast<int>(slot));
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  std::vector<std::vector<char>> scratch_;  // one per slot; its size is the pool's thread count
  std::mutex busy_;
  std::mutex m_;
  std::condition_variable cv_;
  int sleepers_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> entry_{kClosed};
  std::atomic<int64_t> done_{0};
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
};

// Runs body(slot, chunk) for every chunk in [0, n_chunks), on the caller and whichever helpers join.
template <class Body>
void for_each_chunk(Pool::Session& session, int64_t n_chunks, Body&& body) {
  std::atomic<int64_t> next{0};
  auto job = [&](int slot) {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < n_chunks;) body(slot, c);
  };
  if (n_chunks > 1 && session) session.run(job);
  else job(0);
}

int64_t chunks_for(int64_t work, int64_t per_chunk) { return std::max<int64_t>(1, work / per_chunk); }

// Splits [0, n) into `parts` contiguous chunks of about equal weight; cum(i) is the weight of [0, i).
template <class Cum>
int64_t split_point(int64_t n, int64_t part, int64_t parts, Cum cum) {
  if (part == 0) return 0;
  if (part == parts) return n;
  const double target = static_cast<double>(cum(n)) * part / parts;
  int64_t lo = 0, hi = n;  // first i with cum(i) >= target
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<double>(cum(mid)) < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

template <class S>
inline bool fired(S s) { return s != S(0); }

// Calls body(i) for every i in [0, n) with s[i] != 0, in order. Bool spikes and byte masks are tested eight
// at a time: at the firing fractions of a network (~0.1-1 % per step) almost every word is zero, and the
// byte-by-byte test cost more than the synaptic events at 400,000 neurons (measured ~0.5 ns per neuron).
template <class S, class Body>
inline void for_each_fired(const S* s, int64_t n, Body&& body) {
  int64_t i = 0;
  if constexpr (sizeof(S) == 1) {  // bool, or a byte mask
    for (; i + 8 <= n; i += 8) {
      uint64_t word;
      std::memcpy(&word, s + i, sizeof(word));
      if (word == 0) continue;
      for (int64_t b = i; b < i + 8; ++b)
        if (s[b]) body(b);
    }
  }
  for (; i < n; ++i)
    if (fired(s[i])) body(i);
}

void zero(ffi::Result<ffi::AnyBuffer>& out) {
  if (out->size_bytes() > 0) std::memset(out->untyped_data(), 0, out->size_bytes());
}

template <class T>
struct Tag { using type = T; };

ffi::Error unsupported(const char* what, ffi::DataType dtype) {
  return ffi::Error::InvalidArgument(std::string("diffbrain cpu kernel: unsupported dtype for ") + what + " (" +
                                     std::to_string(static_cast<int>(dtype)) + ")");
}

template <class Fn>
ffi::Error with_float(const char* what, ffi::DataType dtype, Fn&& fn) {
  switch (dtype) {
    case ffi::DataType::F32: return fn(Tag<float>{});
    case ffi::DataType::F64: return fn(Tag<double>{});
    default: return unsupported(what, dtype);
  }
}

template <class Fn>
ffi::Error with_index(const char* what, ffi::DataType dtype, Fn&& fn) {
  switch (dtype) {
    case ffi::DataType::S32: return fn(Tag<int32_t>{});
    case ffi::DataType::S64: return fn(Tag<int64_t>{});
    default: return unsupported(what, dtype);
  }
}

template <class Fn>
ffi::Error with_spike(const char* what, ffi::DataType dtype, Fn&& fn) {
  switch (dtype) {
    case ffi::DataType::PRED: return fn(Tag<bool>{});
    case ffi::DataType::F32: return fn(Tag<float>{});
    case ffi::DataType::F64: return fn(Tag<double>{});
    default: return unsupported(what, dtype);
  }
}

template <class Fn>
ffi::Error with_homogeneous(bool homogeneous, Fn&& fn) {
  return homogeneous ? fn(std::true_type{}) : fn(std::false_type{});
}

// ---------------------------------------------------------------------------------------------------------
// Scatter: y[b, j] = sum_i s[b, i] * W[i, j] over rows with s[b, i] != 0 (all rows when kSkipSilent is off).

template <class F>
struct ActiveRow {
  int64_t lo, hi;  // the row's synapses
  F scale;         // the spike value (times the weight when homogeneous)
};

template <class F, class I, class S, bool kHomogeneous, bool kSkipSilent>
struct Scatter {
  const I* indptr;
  const I* indices;
  const F* data;
  int64_t n_pre, n_post;

  // The rows that contribute; returns their synapse count.
  int64_t collect(const S* s, std::vector<ActiveRow<F>>& rows) const {
    rows.clear();
    int64_t events = 0;
    const F w = kHomogeneous ? data[0] : F(1);
    auto add = [&](int64_t i) {
      const int64_t lo = indptr[i], hi = indptr[i + 1];
      if (lo == hi) return;
      rows.push_back({lo, hi, static_cast<F>(s[i]) * w});
      events += hi - lo;
    };
    if constexpr (kSkipSilent) for_each_fired(s, n_pre, add);
    else for (int64_t i = 0; i < n_pre; ++i) add(i);
    return events;
  }

  // y += contributions of rows[first, last); prefetches the next row, whose start is a cache miss.
  void accumulate(const ActiveRow<F>* rows, int64_t first, int64_t last, F* y) const {
    for (int64_t r = first; r < last; ++r) {
      if (r + 1 < last) {
        __builtin_prefetch(indices + rows[r + 1].lo);
        if (!kHomogeneous) __builtin_prefetch(data + rows[r + 1].lo);
      }
      const I* idx = indices;
      const int64_t lo = rows[r].lo, hi = rows[r].hi;
      const F scale = rows[r].scale;
      if constexpr (kHomogeneous) {
        for (int64_t k = lo; k < hi; ++k) y[idx[k]] += scale;
      } else if constexpr (std::is_same_v<S, bool>) {
        for (int64_t k = lo; k < hi; ++k) y[idx[k]] += data[k];
      } else {
        for (int64_t k = lo; k < hi; ++k) y[idx[k]] += data[k] * scale;
      }
    }
  }

  void one(const S* s, F* y, std::vector<ActiveRow<F>>& rows) const {
    std::fill(y, y + n_post, F(0));
    collect(s, rows);
    accumulate(rows.data(), 0, static_cast<int64_t>(rows.size()), y);
  }

  void operator()(const S* spikes, int64_t batch, F* y) const {
    thread_local std::vector<ActiveRow<F>> rows;
    Pool::Session session(Pool::get());
    if (batch > 1) {
      // Independent outputs: chunks are batch items, no reduction. Work estimated from spike counts.
      int64_t fired_rows = 0;
      for (int64_t e = 0; e < batch * n_pre; ++e) fired_rows += kSkipSilent ? fired(spikes[e]) : 1;
      const int64_t events = fired_rows * (indptr[n_pre] / n_pre);
      const int64_t n_chunks = events >= 2 * kEventsPerChunk ? batch : 1;
      for_each_chunk(session, n_chunks, [&](int, int64_t c) {
        thread_local std::vector<ActiveRow<F>> mine;  // each thread its own list
        for (int64_t b = batch * c / n_chunks; b < batch * (c + 1) / n_chunks; ++b)
          one(spikes + b * n_pre, y + b * n_post, mine);
      });
      return;
    }
    // A plain reference: lambdas name a thread_local directly, which on a worker is the worker's own copy.
    std::vector<ActiveRow<F>>& active = rows;
    const int64_t events = collect(spikes, active);
    const int64_t n_rows = static_cast<int64_t>(active.size());
    // A helper's private output costs a fill and a sum over n_post, and waking it ~10-50 us on a busy
    // machine: only worth it with enough events (measured: not at 20,000 x 400 with 0.5% firing).
    const int64_t n_chunks = events >= std::max(4 * kEventsPerChunk, n_post)
                                 ? std::min(chunks_for(events, kEventsPerChunk), n_rows) : 1;
    std::fill(y, y + n_post, F(0));
    if (n_chunks == 1 || !session) return accumulate(active.data(), 0, n_rows, y);
    // Chunks of the active rows by synapse count; the caller adds into y, each helper into its own buffer.
    std::vector<int64_t> cum(n_rows + 1, 0);
    for (int64_t r = 0; r < n_rows; ++r) cum[r + 1] = cum[r] + (active[r].hi - active[r].lo);
    std::vector<F*> out(Pool::get().size(), nullptr);
    out[0] = y;
    for (int t = 1; t < Pool::get().size(); ++t) out[t] = static_cast<F*>(session.scratch(t, sizeof(F) * n_post));
    std::vector<char> used(out.size(), 0);  // each slot written by its own thread only
    auto at = [&](int64_t i) { return cum[i]; };
    for_each_chunk(session, n_chunks, [&](int slot, int64_t c) {
      if (!used[slot]) {
        used[slot] = 1;
        if (slot > 0) std::fill(out[slot], out[slot] + n_post, F(0));
      }
      accumulate(active.data(), split_point(n_rows, c, n_chunks, at), split_point(n_rows, c + 1, n_chunks, at),
                 out[slot]);
    });
    for (size_t t = 1; t < out.size(); ++t) {
      if (!used[t]) continue;
      const F* part = out[t];
      for (int64_t j = 0; j < n_post; ++j) y[j] += part[j];
    }
  }
};

template <bool kSkipSilent>
ffi::Error scatter_impl(ffi::AnyBuffer indptr, ffi::AnyBuffer indices, ffi::AnyBuffer data, ffi::AnyBuffer spikes,
                        ffi::Result<ffi::AnyBuffer> y) {
  if (data.element_type() != y->element_type()) return unsupported("weights (must match the result)", data.element_type());
  const int64_t n_pre = static_cast<int64_t>(indptr.element_count()) - 1;
  const int64_t n_post = y->dimensions().size() == 0 ? 1 : y->dimensions().back();
  const int64_t batch = n_pre > 0 ? static_cast<int64_t>(spikes.element_count()) / n_pre : 0;
  if (n_pre <= 0 || batch == 0) {
    zero(y);
    return ffi::Error::Success();
  }
  return with_float("weights", data.element_type(), [&](auto f) {
    return with_index("indices", indices.element_type(), [&](auto i) {
      return with_spike("spikes", spikes.element_type(), [&](auto s) {
        return with_homogeneous(data.dimensions().size() == 0, [&](auto homogeneous) {
          using F = typename decltype(f)::type;
          using I = typename decltype(i)::type;
          using S = typename decltype(s)::type;
          if (indptr.element_type() != indices.element_type()) return unsupported("indptr", indptr.element_type());
          Scatter<F, I, S, decltype(homogeneous)::value, kSkipSilent> op{
              indptr.typed_data<I>(), indices.typed_data<I>(), data.typed_data<F>(), n_pre, n_post};
          op(spikes.typed_data<S>(), batch, y->typed_data<F>());
          return ffi::Error::Success();
        });
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Row-dot: out[b, i] = sum_{k in row i} w[k] * ct[b, indices[k]]   (W @ ct, the spike cotangent).

// GCC vectorizes the row-dot loop into AVX-512 gathers, which are slower than scalar loads on AMD Zen 4
// (measured: 2.2x the CPU time at 4,000 x 80, equal at 20,000 x 400).
#if defined(__GNUC__) && !defined(__clang__)
#define DIFFBRAIN_SCALAR_LOOPS __attribute__((optimize("no-tree-vectorize")))
#else
#define DIFFBRAIN_SCALAR_LOOPS
#endif

template <class F, class I, bool kHomogeneous>
DIFFBRAIN_SCALAR_LOOPS void row_dot(const I* indptr, const I* indices, const F* data, const F* ct, int64_t n_pre, int64_t n_post,
             F* out) {
  auto rows = [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      // Four partial sums: one sum would wait on the add latency at every synapse.
      const int64_t lo = indptr[i], hi = indptr[i + 1];
      auto term = [&](int64_t k) { return kHomogeneous ? ct[indices[k]] : data[k] * ct[indices[k]]; };
      F acc[4] = {F(0), F(0), F(0), F(0)};
      int64_t k = lo;
      for (; k + 4 <= hi; k += 4) {
        acc[0] += term(k);
        acc[1] += term(k + 1);
        acc[2] += term(k + 2);
        acc[3] += term(k + 3);
      }
      for (; k < hi; ++k) acc[0] += term(k);
      const F sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      out[i] = kHomogeneous ? sum * data[0] : sum;
    }
  };
  const int64_t n_chunks = std::min(chunks_for(static_cast<int64_t>(indptr[n_pre]), kSynapsesPerChunk), n_pre);
  auto at = [&](int64_t i) { return static_cast<int64_t>(indptr[i]); };
  Pool::Session session(Pool::get());
  for_each_chunk(session, n_chunks, [&](int, int64_t c) {
    rows(split_point(n_pre, c, n_chunks, at), split_point(n_pre, c + 1, n_chunks, at));
  });
}

// Batched row-dot, out[b, i] = sum_k w[k] * ct[b, indices[k]]. The cotangent is first copied into blocks
// of kLanes batch columns, each block a [n_post, kLanes] slab (zero lanes beyond the batch), so a synapse
// reads its index and weight and then one contiguous vector per block, summed in a vector register (GCC/Clang
// vector extensions; no gathers). Row by row over the batch, every synapse was read `batch` times and each
// read of ct touched its own cache line. The blocks are the outer loop within a chunk of rows, so each
// pass over the chunk's synapses reads one slab (n_post * 64 bytes for a full block).
template <class F, class I, bool kHomogeneous, int kLanes>
void row_dot_lanes(const I* indptr, const I* indices, const F* data, const F* ct, int64_t n_pre, int64_t n_post,
                   int64_t batch, F* out) {
  typedef F Vector __attribute__((vector_size(kLanes * sizeof(F))));
  const int64_t n_blocks = (batch + kLanes - 1) / kLanes;
  std::vector<F> slabs(static_cast<size_t>(n_blocks * n_post * kLanes), F(0));  // [block, n_post, lane]
  for (int64_t b = 0; b < batch; ++b) {
    F* slab = slabs.data() + (b / kLanes) * n_post * kLanes + b % kLanes;
    for (int64_t j = 0; j < n_post; ++j) slab[j * kLanes] = ct[b * n_post + j];
  }
  auto rows = [&](int64_t first, int64_t last) {
    for (int64_t block = 0; block < n_blocks; ++block) {
      const F* slab = slabs.data() + block * n_post * kLanes;
      const int64_t width = std::min<int64_t>(kLanes, batch - block * kLanes);
      for (int64_t i = first; i < last; ++i) {
        Vector acc = {};
        for (int64_t k = indptr[i], hi = indptr[i + 1]; k < hi; ++k) {
          Vector x;
          std::memcpy(&x, slab + static_cast<int64_t>(indices[k]) * kLanes, sizeof(Vector));
          acc += kHomogeneous ? x : x * data[k];
        }
        F* o = out + block * kLanes * n_pre + i;
        for (int64_t j = 0; j < width; ++j) o[j * n_pre] = kHomogeneous ? acc[j] * data[0] : acc[j];
      }
    }
  };
  const int64_t n_chunks = std::min(chunks_for(static_cast<int64_t>(indptr[n_pre]) * batch, kSynapsesPerChunk), n_pre);
  auto at = [&](int64_t i) { return static_cast<int64_t>(indptr[i]); };
  Pool::Session session(Pool::get());
  for_each_chunk(session, n_chunks, [&](int, int64_t c) {
    rows(split_point(n_pre, c, n_chunks, at), split_point(n_pre, c + 1, n_chunks, at));
  });
}

// A full block is one 64-byte cache line (16 float or 8 double lanes); a smaller batch takes the narrowest
// vector that holds it.
template <class F, class I, bool kHomogeneous>
void row_dot_batch(const I* indptr, const I* indices, const F* data, const F* ct, int64_t n_pre, int64_t n_post,
                   int64_t batch, F* out) {
  constexpr int kLine = 64 / sizeof(F);
  if (batch <= 2)
    row_dot_lanes<F, I, kHomogeneous, 2>(indptr, indices, data, ct, n_pre, n_post, batch, out);
  else if (batch <= 4)
    row_dot_lanes<F, I, kHomogeneous, 4>(indptr, indices, data, ct, n_pre, n_post, batch, out);
  else if (kLine > 8 && batch <= 8)
    row_dot_lanes<F, I, kHomogeneous, 8>(indptr, indices, data, ct, n_pre, n_post, batch, out);
  else
    row_dot_lanes<F, I, kHomogeneous, kLine>(indptr, indices, data, ct, n_pre, n_post, batch, out);
}

ffi::Error row_dot_impl(ffi::AnyBuffer indptr, ffi::AnyBuffer indices, ffi::AnyBuffer data, ffi::AnyBuffer ct,
                        ffi::Result<ffi::AnyBuffer> out) {
  if (data.element_type() != ct.element_type() || data.element_type() != out->element_type())
    return unsupported("cotangent (must match the weights)", ct.element_type());
  const int64_t n_pre = static_cast<int64_t>(indptr.element_count()) - 1;
  const int64_t batch = n_pre > 0 ? static_cast<int64_t>(out->element_count()) / n_pre : 0;
  if (n_pre <= 0 || batch == 0) return ffi::Error::Success();
  const int64_t n_post = static_cast<int64_t>(ct.element_count()) / batch;
  return with_float("weights", data.element_type(), [&](auto f) {
    return with_index("indices", indices.element_type(), [&](auto i) {
      return with_homogeneous(data.dimensions().size() == 0, [&](auto homogeneous) {
        using F = typename decltype(f)::type;
        using I = typename decltype(i)::type;
        if (indptr.element_type() != indices.element_type()) return unsupported("indptr", indptr.element_type());
        constexpr bool kHomogeneous = decltype(homogeneous)::value;
        if (batch == 1)
          row_dot<F, I, kHomogeneous>(indptr.typed_data<I>(), indices.typed_data<I>(), data.typed_data<F>(),
                                      ct.typed_data<F>(), n_pre, n_post, out->typed_data<F>());
        else
          row_dot_batch<F, I, kHomogeneous>(indptr.typed_data<I>(), indices.typed_data<I>(), data.typed_data<F>(),
                                            ct.typed_data<F>(), n_pre, n_post, batch, out->typed_data<F>());
        return ffi::Error::Success();
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Zeroing a large output whose pages are not resident.
//
// XLA's large results often sit on pages the process has not touched since they were allocated (a fresh
// mapping) or since the allocator returned them to the kernel. Writing nnz zeros into them first takes a page
// fault per page, in which the kernel clears the page, then writes the zeros a second time. For a private
// anonymous mapping, pages released with MADV_DONTNEED read back as zeros, and MADV_POPULATE_WRITE (Linux
// 5.14) maps them in one system call: each run of non-resident pages is zeroed by the kernel alone, without a
// fault per page or a second write; the resident pages are written. (Releasing the pages and leaving them
// unmapped would make the gradient itself cost only the pages its events touch, but whatever reads it next
// — an optimizer update in the same jit — would then fault every page in twice, reading and writing: slower
// end to end, so the pages are mapped here.) Used when the output is large, at least 1/8 of its pages are not
// resident (a buffer reused inside a loop is warm: the threaded fill is then as good) and /proc/self/maps shows
// private anonymous mappings covering it (one, or adjacent ones: see below); anything else falls back to writing
// the zeros. So does a kernel without MADV_POPULATE_WRITE (before 5.14: EINVAL, probed once; releasing pages
// that are then faulted in one by one gains nothing), a build whose headers lack it or any system but Linux
// (the whole path is compiled out), and a failure of MADV_DONTNEED or MADV_POPULATE_WRITE on a run of pages
// (that run is written).
//
// The range is first marked MADV_HUGEPAGE (transparent huge pages; effective in the "madvise" and "always"
// modes, a no-op with "never"; a failure only loses the speed-up): each aligned 2 MiB of the non-resident runs
// is then mapped and zeroed at once rather than as 512 pages. Measured on the 2-core Zen 4 VM for a fresh
// 160 MB mapping: populating 52 ms with 4 KiB pages, 13 ms with huge pages, and the munmap that frees the
// buffer after use 11 ms, 0.4 ms. (Two threads populating halves gain nothing: the kernel's page allocation
// and zeroing serialize.) Marking splits the mapping at the edges of the range (the flag belongs to the
// mapping, and stays after the buffer is freed), so a later buffer carved from the same mapping — a heap or
// arena under the mmap threshold — may straddle the split: adjacent private anonymous mappings are accepted.

constexpr size_t kKernelZeroBytes = size_t{16} << 20;

#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
// Whether [lo, hi) is covered by private, anonymous, read-write mappings of this process, without a gap.
bool private_anonymous(uintptr_t lo, uintptr_t hi) {
  FILE* maps = std::fopen("/proc/self/maps", "re");
  if (!maps) return false;
  char* line = nullptr;
  size_t capacity = 0;
  uintptr_t covered = lo;  // [lo, covered) is verified; the lines come in increasing address order
  while (covered < hi && getline(&line, &capacity, maps) > 0) {
    unsigned long start = 0, end = 0, offset = 0, inode = 0;
    char perms[8] = {0}, dev[16] = {0};
    int name_at = 0;
    if (std::sscanf(line, "%lx-%lx %7s %lx %15s %lu %n", &start, &end, perms, &offset, dev, &inode, &name_at) < 6)
      continue;
    if (end <= covered) continue;
    if (start > covered) break;  // a gap: not mapped
    const char* name = line + name_at;
    const bool unnamed = name_at == 0 || *name == '\n' || *name == '\0' || std::strncmp(name, "[heap]", 6) == 0;
    if (std::strcmp(perms, "rw-p") != 0 || inode != 0 || !unnamed) break;
    covered = end;
  }
  std::free(line);
  std::fclose(maps);
  return covered >= hi;
}

// Whether this kernel implements MADV_POPULATE_WRITE (Linux 5.14; EINVAL before), tried once on a scratch page.
bool populate_write_works() {
  static const bool works = [] {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* scratch = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scratch == MAP_FAILED) return false;
    const bool ok = madvise(scratch, page, MADV_POPULATE_WRITE) == 0;
    munmap(scratch, page);
    return ok;
  }();
  return works;
}

bool zero_output(void* out, size_t bytes) {
  if (bytes < kKernelZeroBytes || !populate_write_works()) return false;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(out), end = begin + bytes;
  const uintptr_t lo = (begin + page - 1) / page * page, hi = end / page * page;
  if (hi <= lo) return false;
  const size_t pages = (hi - lo) / page;
  std::vector<unsigned char> resident(pages);
  if (mincore(reinterpret_cast<void*>(lo), hi - lo, resident.data()) != 0) return false;
  size_t warm = 0;
  for (unsigned char r : resident) warm += r & 1;
  if (warm * 8 > pages * 7) return false;
  if (!private_anonymous(lo, hi)) return false;
  std::memset(out, 0, lo - begin);
  std::memset(reinterpret_cast<void*>(hi), 0, end - hi);
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // advice only: a failure changes nothing
#endif
  for (size_t first = 0; first < pages;) {  // runs of pages alike: memset the resident, release the rest
    size_t last = first + 1;
    while (last < pages && (resident[last] & 1) == (resident[first] & 1)) ++last;
    char* at = reinterpret_cast<char*>(lo + first * page);
    const size_t length = (last - first) * page;
    // Released pages read back as zeros: a failed populate leaves them correct, and the memset maps them.
    if ((resident[first] & 1) || madvise(at, length, MADV_DONTNEED) != 0 ||
        madvise(at, length, MADV_POPULATE_WRITE) != 0)
      std::memset(at, 0, length);
    first = last;
  }
  return true;
}
#else
bool zero_output(void*, size_t) { return false; }
#endif

// ---------------------------------------------------------------------------------------------------------
// Weight gradient: g[k] = sum_b s[b, row(k)] * ct[b, indices[k]], written only on rows that fired. Unless g
// already holds the values to add to (g_in == g, aliased by XLA) or was zeroed mostly by the kernel
// (zero_output), the zero fill of g (nnz-sized) is split across threads with the rows, so each thread owns
// a contiguous range of g. Otherwise only the events are touched, as in the scatter: the rows that fired
// (in any batch item) are collected first (for_each_fired), the chunks split that list by event count,
// and the next row's indices and gradient are prefetched. (Testing every row in every chunk, with an
// [n_pre + 1] running count allocated per call, cost ~0.3 ms per call at 100,000 rows: 2.5x the forward
// step at 0.5 % firing, where the events alone are ~1x.)

template <class F, class I, class S>
struct DataGrad {
  const I* indptr;
  const I* indices;
  const S* spikes;
  const F* ct;
  int64_t n_pre, n_post, batch;

  // g[k] += s[b, i] * ct[b, indices[k]] over the row's synapses, for every batch item b where row i fired.
  void row(int64_t i, F* g) const {
    const int64_t lo = indptr[i], hi = indptr[i + 1];
    for (int64_t b = 0; b < batch; ++b) {
      const S s = spikes[b * n_pre + i];
      if (!fired(s)) continue;
      const F* c = ct + b * n_post;
      if constexpr (std::is_same_v<S, bool>) {
        for (int64_t k = lo; k < hi; ++k) g[k] += c[indices[k]];
      } else {
        const F scale = static_cast<F>(s);
        for (int64_t k = lo; k < hi; ++k) g[k] += scale * c[indices[k]];
      }
    }
  }

  // The rows with synapses that fired in any batch item, in order, and the running count of their events
  // (synapses times the batch items in which the row fired): cum[r] for rows[0, r).
  void collect(std::vector<int64_t>& rows, std::vector<int64_t>& cum, std::vector<uint8_t>& mark) const {
    rows.clear();
    cum.assign(1, 0);
    auto add = [&](int64_t i) {
      const int64_t length = indptr[i + 1] - indptr[i];
      if (length == 0) return;
      int64_t items = 0;
      for (int64_t b = 0; b < batch; ++b) items += fired(spikes[b * n_pre + i]);
      rows.push_back(i);
      cum.push_back(cum.back() + length * items);
    };
    if (batch == 1) return for_each_fired(spikes, n_pre, add);
    mark.assign(n_pre, 0);
    for (int64_t b = 0; b < batch; ++b) for_each_fired(spikes + b * n_pre, n_pre, [&](int64_t i) { mark[i] = 1; });
    for_each_fired(mark.data(), n_pre, add);
  }

  void operator()(const F* g_in, F* g) const {
    const int64_t nnz = static_cast<int64_t>(indptr[n_pre]);
    const bool filled = g_in == g || (g_in == nullptr && zero_output(g, sizeof(F) * nnz));
    Pool::Session session(Pool::get());
    if (!filled) {  // the fill dominates: chunks of all rows by stored synapses
      const int64_t n_chunks = std::min(chunks_for(nnz, kSynapsesPerChunk), n_pre);
      auto at = [&](int64_t i) { return static_cast<int64_t>(indptr[i]); };
      for_each_chunk(session, n_chunks, [&](int, int64_t c) {
        const int64_t first = split_point(n_pre, c, n_chunks, at), last = split_point(n_pre, c + 1, n_chunks, at);
        if (g_in == nullptr) std::fill(g + indptr[first], g + indptr[last], F(0));
        else std::copy(g_in + indptr[first], g_in + indptr[last], g + indptr[first]);
        for (int64_t i = first; i < last; ++i) row(i, g);
      });
      return;
    }
    thread_local std::vector<int64_t> rows, cum;
    thread_local std::vector<uint8_t> mark;
    // Plain references: lambdas name a thread_local directly, which on a worker is the worker's own copy.
    std::vector<int64_t>& active = rows;
    std::vector<int64_t>& events_before = cum;
    collect(active, events_before, mark);
    const int64_t n_rows = static_cast<int64_t>(active.size());
    const int64_t events = events_before.back();
    auto accumulate = [&](int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        if (r + 1 < last) {  // the next row's start is a cache miss
          __builtin_prefetch(indices + indptr[active[r + 1]]);
          __builtin_prefetch(g + indptr[active[r + 1]], 1);
        }
        row(active[r], g);
      }
    };
    // Chunks own disjoint rows, so disjoint ranges of g: no private buffers, no reduction.
    const int64_t n_chunks = events >= 4 * kEventsPerChunk ? std::min(chunks_for(events, kEventsPerChunk), n_rows) : 1;
    if (n_chunks == 1 || !session) return accumulate(0, n_rows);
    auto at = [&](int64_t r) { return events_before[r]; };
    for_each_chunk(session, n_chunks, [&](int, int64_t c) {
      accumulate(split_point(n_rows, c, n_chunks, at), split_point(n_rows, c + 1, n_chunks, at));
    });
  }
};

// A zero-filled result (the start of a running weight gradient): a large one mostly by the OS (zero_output),
// else filled by the threads, a contiguous part of kSynapsesPerChunk float32 values each.
ffi::Error zeros_impl(ffi::Result<ffi::AnyBuffer> out) {
  char* bytes = static_cast<char*>(out->untyped_data());
  const int64_t size = static_cast<int64_t>(out->size_bytes());
  if (size == 0 || zero_output(bytes, size)) return ffi::Error::Success();
  Pool::Session session(Pool::get());
  const int64_t n_chunks = chunks_for(size, kSynapsesPerChunk * sizeof(float));
  for_each_chunk(session, n_chunks, [&](int, int64_t c) {
    std::memset(bytes + size * c / n_chunks, 0, size * (c + 1) / n_chunks - size * c / n_chunks);
  });
  return ffi::Error::Success();
}

// g = g_in + the weight gradient (g_in == nullptr: g = the weight gradient).
ffi::Error data_grad_into(const ffi::AnyBuffer* g_in, ffi::AnyBuffer indptr, ffi::AnyBuffer indices,
                          ffi::AnyBuffer spikes, ffi::AnyBuffer ct, ffi::Result<ffi::AnyBuffer>& g) {
  if (ct.element_type() != g->element_type()) return unsupported("cotangent (must match the result)", ct.element_type());
  if (g_in && g_in->element_type() != g->element_type()) return unsupported("accumulator", g_in->element_type());
  if (g->element_count() != indices.element_count() || (g_in && g_in->element_count() != g->element_count()))
    return ffi::Error::InvalidArgument("diffbrain weight gradient: the result and accumulator must be [nnz]");
  const int64_t n_pre = static_cast<int64_t>(indptr.element_count()) - 1;
  const int64_t batch = n_pre > 0 ? static_cast<int64_t>(spikes.element_count()) / n_pre : 0;
  if (n_pre <= 0 || batch == 0 || g->element_count() == 0) {
    if (!g_in) zero(g);
    else if (g_in->untyped_data() != g->untyped_data() && g->size_bytes() > 0)
      std::memcpy(g->untyped_data(), g_in->untyped_data(), g->size_bytes());
    return ffi::Error::Success();
  }
  const int64_t n_post = static_cast<int64_t>(ct.element_count()) / batch;
  return with_float("cotangent", ct.element_type(), [&](auto f) {
    return with_index("indices", indices.element_type(), [&](auto i) {
      return with_spike("spikes", spikes.element_type(), [&](auto s) {
        using F = typename decltype(f)::type;
        using I = typename decltype(i)::type;
        using S = typename decltype(s)::type;
        if (indptr.element_type() != indices.element_type()) return unsupported("indptr", indptr.element_type());
        const DataGrad<F, I, S> grad{indptr.typed_data<I>(), indices.typed_data<I>(), spikes.typed_data<S>(),
                                     ct.typed_data<F>(), n_pre, n_post, batch};
        grad(g_in ? g_in->typed_data<F>() : nullptr, g->typed_data<F>());
        return ffi::Error::Success();
      });
    });
  });
}

ffi::Error data_grad_impl(ffi::AnyBuffer indptr, ffi::AnyBuffer indices, ffi::AnyBuffer spikes, ffi::AnyBuffer ct,
                          ffi::Result<ffi::AnyBuffer> g) {
  return data_grad_into(nullptr, indptr, indices, spikes, ct, g);
}

ffi::Error data_grad_add_impl(ffi::AnyBuffer g_in, ffi::AnyBuffer indptr, ffi::AnyBuffer indices,
                              ffi::AnyBuffer spikes, ffi::AnyBuffer ct, ffi::Result<ffi::AnyBuffer> g) {
  return data_grad_into(&g_in, indptr, indices, spikes, ct, g);
}

// ---------------------------------------------------------------------------------------------------------
// Arrival ring: ring[(step + lag[r]) mod L, indices[k]] += s[i] * w[k] for every synapse k of every row r of
// every presynaptic neuron i with s[i] != 0 (rows row_ptr[i]..row_ptr[i+1]); the ring is updated in place
// (XLA aliases it with the result). With `pop`, slot (step + 1) mod L is then copied out and cleared: the
// input of the next step, read in the same call so that XLA sees no other reader of the ring (a separate
// slice and update of a `lax.scan` carry made it copy the whole ring twice per step). Work: the spiking
// neurons' synapses, one pass over the spikes and, with `pop`, over one slot.

template <class F, class I, class S, bool kHomogeneous>
void arrival(const I* row_ptr, const int32_t* lag, const I* indptr, const I* indices, int64_t step, const F* data,
             const S* spikes, int64_t n_pre, int64_t length, int64_t n_post, F* ring) {
  const F w = kHomogeneous ? data[0] : F(1);
  const int64_t now = ((step % length) + length) % length;
  for_each_fired(spikes, n_pre, [&](int64_t i) {
    const F scale = static_cast<F>(spikes[i]) * w;
    for (int64_t r = row_ptr[i]; r < row_ptr[i + 1]; ++r) {
      const int64_t slot = ((now + lag[r]) % length + length) % length;
      F* y = ring + slot * n_post;
      const int64_t lo = indptr[r], hi = indptr[r + 1];
      if (r + 1 < row_ptr[i + 1]) __builtin_prefetch(indices + hi);
      if constexpr (kHomogeneous) {
        for (int64_t k = lo; k < hi; ++k) y[indices[k]] += scale;
      } else if constexpr (std::is_same_v<S, bool>) {
        for (int64_t k = lo; k < hi; ++k) y[indices[k]] += data[k];
      } else {
        for (int64_t k = lo; k < hi; ++k) y[indices[k]] += data[k] * scale;
      }
    }
  });
}

ffi::Error arrival_impl(ffi::AnyBuffer row_ptr, ffi::Buffer<ffi::S32> lag, ffi::AnyBuffer indptr,
                        ffi::AnyBuffer indices, ffi::Buffer<ffi::S32> step, ffi::AnyBuffer data,
                        ffi::AnyBuffer spikes, ffi::AnyBuffer ring_in, ffi::Result<ffi::AnyBuffer> ring,
                        ffi::Result<ffi::AnyBuffer> arriving) {
  if (data.element_type() != ring->element_type() || ring_in.element_type() != ring->element_type() ||
      arriving->element_type() != ring->element_type())
    return unsupported("weights and ring (must match the result)", data.element_type());
  if (ring_in.untyped_data() != ring->untyped_data() && ring->size_bytes() > 0)
    std::memcpy(ring->untyped_data(), ring_in.untyped_data(), ring->size_bytes());
  const int64_t n_pre = static_cast<int64_t>(row_ptr.element_count()) - 1;
  const auto dims = ring->dimensions();
  if (dims.size() != 2 || dims[0] == 0) return ffi::Error::InvalidArgument("diffbrain arrival ring: ring [L, n]");
  const int64_t length = dims[0], n_post = dims[1];
  const bool pop = arriving->element_count() > 0;
  if (pop && static_cast<int64_t>(arriving->element_count()) != n_post)
    return ffi::Error::InvalidArgument("diffbrain arrival ring: the popped slot has n_post values");
  if (n_pre > 0 && static_cast<int64_t>(spikes.element_count()) != n_pre)
    return ffi::Error::InvalidArgument("diffbrain arrival ring: one spike per presynaptic neuron expected");
  const int64_t t = static_cast<int64_t>(step.typed_data()[0]);
  return with_float("weights", data.element_type(), [&](auto f) {
    return with_index("indices", indices.element_type(), [&](auto i) {
      return with_spike("spikes", spikes.element_type(), [&](auto s) {
        return with_homogeneous(data.dimensions().size() == 0, [&](auto homogeneous) {
          using F = typename decltype(f)::type;
          using I = typename decltype(i)::type;
          using S = typename decltype(s)::type;
          if (indptr.element_type() != indices.element_type() || row_ptr.element_type() != indices.element_type())
            return unsupported("indptr/row_ptr (must match the indices)", indptr.element_type());
          F* out = ring->typed_data<F>();
          if (n_pre > 0 && n_post > 0)
            arrival<F, I, S, decltype(homogeneous)::value>(
                row_ptr.typed_data<I>(), lag.typed_data(), indptr.typed_data<I>(), indices.typed_data<I>(), t,
                data.typed_data<F>(), spikes.typed_data<S>(), n_pre, length, n_post, out);
          if (pop) {
            F* slot = out + (((t + 1) % length + length) % length) * n_post;
            std::copy(slot, slot + n_post, arriving->typed_data<F>());
            std::fill(slot, slot + n_post, F(0));
          }
          return ffi::Error::Success();
        });
      });
    });
  });
}

// Transposes of the arrival ring, for reverse mode; ct [L, n_post] is the cotangent of the ring.
// Weight cotangent: g[k] = s[i] * ct[(step + lag[r]) mod L, indices[k]] on the synapses of the neurons that
// fired, zero elsewhere (work: the events, plus the zeroing of g, mostly by the kernel when g is large).
template <class F, class I, class S>
void arrival_data_grad(const I* row_ptr, const int32_t* lag, const I* indptr, const I* indices, int64_t step,
                       const S* spikes, const F* ct, int64_t n_pre, int64_t length, int64_t n_post, int64_t nnz,
                       const F* g_in, F* g) {
  // g_in == g: add into g in place (aliased by XLA); another g_in: a copy to add to; none: g starts at zero.
  if (g_in == nullptr) {
    if (!zero_output(g, sizeof(F) * nnz)) std::fill(g, g + nnz, F(0));
  } else if (g_in != g) {
    std::copy(g_in, g_in + nnz, g);
  }
  const int64_t now = ((step % length) + length) % length;
  for_each_fired(spikes, n_pre, [&](int64_t i) {
    const F scale = static_cast<F>(spikes[i]);
    for (int64_t r = row_ptr[i]; r < row_ptr[i + 1]; ++r) {
      const F* c = ct + ((now + lag[r]) % length + length) % length * n_post;
      for (int64_t k = indptr[r]; k < indptr[r + 1]; ++k) g[k] += scale * c[indices[k]];
    }
  });
}

// Spike cotangent: out[i] = sum over the rows r of neuron i and their synapses k of w[k] * ct[slot(r), indices[k]].
template <class F, class I, bool kHomogeneous>
DIFFBRAIN_SCALAR_LOOPS void arrival_row_dot(const I* row_ptr, const int32_t* lag, const I* indptr, const I* indices,
                                            int64_t step, const F* data, const F* ct, int64_t n_pre, int64_t length,
                                            int64_t n_post, F* out) {
  const int64_t now = ((step % length) + length) % length;
  for (int64_t i = 0; i < n_pre; ++i) {
    F acc[2] = {F(0), F(0)};
    for (int64_t r = row_ptr[i]; r < row_ptr[i + 1]; ++r) {
      const F* c = ct + ((now + lag[r]) % length + length) % length * n_post;
      int64_t k = indptr[r];
      const int64_t hi = indptr[r + 1];
      for (; k + 2 <= hi; k += 2) {
        acc[0] += kHomogeneous ? c[indices[k]] : data[k] * c[indices[k]];
        acc[1] += kHomogeneous ? c[indices[k + 1]] : data[k + 1] * c[indices[k + 1]];
      }
      if (k < hi) acc[0] += kHomogeneous ? c[indices[k]] : data[k] * c[indices[k]];
    }
    out[i] = kHomogeneous ? (acc[0] + acc[1]) * data[0] : acc[0] + acc[1];
  }
}

// Shared checks of the two transposes: returns an error message, or nullptr.
const char* arrival_transpose_shapes(ffi::AnyBuffer& row_ptr, ffi::AnyBuffer& indptr, ffi::AnyBuffer& indices,
                                     ffi::AnyBuffer& ct, int64_t& length, int64_t& n_post) {
  const auto dims = ct.dimensions();
  if (dims.size() != 2 || dims[0] == 0) return "diffbrain arrival ring transpose: cotangent [L, n]";
  length = dims[0];
  n_post = dims[1];
  if (indptr.element_type() != indices.element_type() || row_ptr.element_type() != indices.element_type())
    return "diffbrain arrival ring transpose: indptr/row_ptr must match the indices' dtype";
  return nullptr;
}

// g = g_in + the ring's weight cotangent (g_in == nullptr: the cotangent alone).
ffi::Error arrival_data_grad_into(const ffi::AnyBuffer* g_in, ffi::AnyBuffer row_ptr, ffi::Buffer<ffi::S32> lag,
                                  ffi::AnyBuffer indptr, ffi::AnyBuffer indices, ffi::Buffer<ffi::S32> step,
                                  ffi::AnyBuffer spikes, ffi::AnyBuffer ct, ffi::Result<ffi::AnyBuffer>& g) {
  if (ct.element_type() != g->element_type()) return unsupported("cotangent (must match the result)", ct.element_type());
  if (g_in && g_in->element_type() != g->element_type()) return unsupported("accumulator", g_in->element_type());
  if (g->element_count() != indices.element_count() || (g_in && g_in->element_count() != g->element_count()))
    return ffi::Error::InvalidArgument("diffbrain arrival ring transpose: the result and accumulator must be [nnz]");
  int64_t length = 0, n_post = 0;
  if (const char* error = arrival_transpose_shapes(row_ptr, indptr, indices, ct, length, n_post))
    return ffi::Error::InvalidArgument(error);
  const int64_t n_pre = static_cast<int64_t>(row_ptr.element_count()) - 1;
  if (n_pre > 0 && static_cast<int64_t>(spikes.element_count()) != n_pre)
    return ffi::Error::InvalidArgument("diffbrain arrival ring transpose: one spike per presynaptic neuron expected");
  const int64_t t = static_cast<int64_t>(step.typed_data()[0]);
  const int64_t nnz = static_cast<int64_t>(g->element_count());
  return with_float("cotangent", ct.element_type(), [&](auto f) {
    return with_index("indices", indices.element_type(), [&](auto i) {
      return with_spike("spikes", spikes.element_type(), [&](auto s) {
        using F = typename decltype(f)::type;
        using I = typename decltype(i)::type;
        using S = typename decltype(s)::type;
        const F* in = g_in ? g_in->typed_data<F>() : nullptr;
        if (n_pre <= 0 || n_post == 0) {
          if (!in) zero(g);
          else if (in != g->typed_data<F>()) std::copy(in, in + nnz, g->typed_data<F>());
          return ffi::Error::Success();
        }
        arrival_data_grad<F, I, S>(row_ptr.typed_data<I>(), lag.typed_data(), indptr.typed_data<I>(),
                                   indices.typed_data<I>(), t, spikes.typed_data<S>(), ct.typed_data<F>(), n_pre,
                                   length, n_post, nnz, in, g->typed_data<F>());
        return ffi::Error::Success();
      });
    });
  });
}

ffi::Error arrival_data_grad_impl(ffi::AnyBuffer row_ptr, ffi::Buffer<ffi::S32> lag, ffi::AnyBuffer indptr,
                                  ffi::AnyBuffer indices, ffi::Buffer<ffi::S32> step, ffi::AnyBuffer spikes,
                                  ffi::AnyBuffer ct, ffi::Result<ffi::AnyBuffer> g) {
  return arrival_data_grad_into(nullptr, row_ptr, lag, indptr, indices, step, spikes, ct, g);
}

ffi::Error arrival_data_grad_add_impl(ffi::AnyBuffer g_in, ffi::AnyBuffer row_ptr, ffi::Buffer<ffi::S32> lag,
                                      ffi::AnyBuffer indptr, ffi::AnyBuffer indices, ffi::Buffer<ffi::S32> step,
                                      ffi::AnyBuffer spikes, ffi::AnyBuffer ct, ffi::Result<ffi::AnyBuffer> g) {
  return arrival_data_grad_into(&g_in, row_ptr, lag, indptr, indices, step, spikes, ct, g);
}

ffi::Error arrival_row_dot_impl(ffi::AnyBuffer row_ptr, ffi::Buffer<ffi::S32> lag, ffi::AnyBuffer indptr,
                                ffi::AnyBuffer indices, ffi::Buffer<ffi::S32> step, ffi::AnyBuffer data,
                                ffi::AnyBuffer ct, ffi::Result<ffi::AnyBuffer> out) {
  if (data.element_type() != ct.element_type() || data.element_type() != out->element_type())
    return unsupported("cotangent (must match the weights)", ct.element_type());
  int64_t length = 0, n_post = 0;
  if (const char* error = arrival_transpose_shapes(row_ptr, indptr, indices, ct, length, n_post))
    return ffi::Error::InvalidArgument(error);
  const int64_t n_pre = static_cast<int64_t>(row_ptr.element_count()) - 1;
  const int64_t t = static_cast<int64_t>(step.typed_data()[0]);
  return with_float("weights", data.element_type(), [&](auto f) {
    return with_index("indices", indices.element_type(), [&](auto i) {
      return with_homogeneous(data.dimensions().size() == 0, [&](auto homogeneous) {
        using F = typename decltype(f)::type;
        using I = typename decltype(i)::type;
        if (n_pre > 0)
          arrival_row_dot<F, I, decltype(homogeneous)::value>(
              row_ptr.typed_data<I>(), lag.typed_data(), indptr.typed_data<I>(), indices.typed_data<I>(), t,
              data.typed_data<F>(), ct.typed_data<F>(), n_pre, length, n_post, out->typed_data<F>());
        return ffi::Error::Success();
      });
    });
  });
}

// `Fn` with every C++ exception (a failed allocation, a thread the system refuses) turned into an error
// status: an exception must not cross the FFI boundary into XLA.
template <auto Fn>
struct Guarded;

template <class... Args, ffi::Error (*Fn)(Args...)>
struct Guarded<Fn> {
  static ffi::Error call(Args... args) {
    try {
      return Fn(std::move(args)...);
    } catch (const std::exception& error) {
      return ffi::Error::Internal(std::string("diffbrain cpu kernel: ") + error.what());
    } catch (...) {
      return ffi::Error::Internal("diffbrain cpu kernel: unknown C++ exception");
    }
  }
};

}  // namespace

#define DIFFBRAIN_FOUR_ARGS_ONE_RESULT()                                                                   \
  ffi::Ffi::Bind()                                                                                        \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Ret<ffi::AnyBuffer>()

// The zeroing of large outputs on its own, for tests: returns 1 when `bytes` at `out` were zeroed (their
// non-resident pages by the kernel), 0 when the caller must write the zeros (nothing was changed).
extern "C" int DiffbrainZeroOutput(void* out, size_t bytes) { return zero_output(out, bytes) ? 1 : 0; }

// The thread count for a DIFFBRAIN_CPU_THREADS value (null: unset) on `cores` cores, for tests comparing
// the rule with cpu.py's `threads_for`; and the size of this process's pool (starting it if need be).
extern "C" int DiffbrainThreadsFor(const char* setting, int cores) { return threads_for(setting, cores); }
extern "C" int DiffbrainPoolSize() noexcept {
  try {
    return Pool::get().size();
  } catch (...) {
    return -1;
  }
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainEventMatmat, Guarded<scatter_impl<true>>::call,
                              DIFFBRAIN_FOUR_ARGS_ONE_RESULT());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainCsrMatmat, Guarded<scatter_impl<false>>::call,
                              DIFFBRAIN_FOUR_ARGS_ONE_RESULT());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainRowDot, Guarded<row_dot_impl>::call, DIFFBRAIN_FOUR_ARGS_ONE_RESULT());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainDataGrad, Guarded<data_grad_impl>::call, DIFFBRAIN_FOUR_ARGS_ONE_RESULT());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainZeros, Guarded<zeros_impl>::call, ffi::Ffi::Bind().Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainDataGradAdd, Guarded<data_grad_add_impl>::call,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
// The operands shared by the ring's kernels: row_ptr, lag, indptr, indices, step, and two arrays (the
// weights or spikes, then the spikes, ring or cotangent).
template <class Binding>
auto ring_operands(Binding binding) {
  return std::move(binding)
      .template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::Buffer<ffi::S32>>()
      .template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::Buffer<ffi::S32>>()
      .template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::AnyBuffer>();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainArrivalScatter, Guarded<arrival_impl>::call,
                              ring_operands(ffi::Ffi::Bind())
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainArrivalDataGrad, Guarded<arrival_data_grad_impl>::call,
                              ring_operands(ffi::Ffi::Bind()).Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainArrivalRowDot, Guarded<arrival_row_dot_impl>::call,
                              ring_operands(ffi::Ffi::Bind()).Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffbrainArrivalDataGradAdd, Guarded<arrival_data_grad_add_impl>::call,
                              ring_operands(ffi::Ffi::Bind().Arg<ffi::AnyBuffer>()).Ret<ffi::AnyBuffer>());
