// covey-ks's worker threads: they run Main Mode's expensive steps (the
// dispatcher's MainModeJobs: Diffie-Hellman, keys, authentication) and hand
// each back, finished, to `done` on their own thread; the daemon posts it
// to the event loop, which commits it (ks/dispatcher.h). The threads touch
// nothing but the job.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ks/dispatcher.h"

namespace covey::ks {

// The CPUs this process may run on (sched_getaffinity: taskset and cgroup
// cpusets included), at least 1: [server] workers' default.
std::size_t cpus_available();

class Workers {
 public:
  using Done = std::function<void(std::unique_ptr<MainModeJob>)>;
  // `threads` >= 1, started at once with every signal blocked (signals are
  // the event loop's).
  Workers(std::size_t threads, Done done);
  // Jobs not started are dropped; the ones in hand finish first.
  ~Workers();
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  void submit(std::unique_ptr<MainModeJob> job);
  std::size_t size() const { return threads_.size(); }

 private:
  void work();

  Done done_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::unique_ptr<MainModeJob>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace covey::ks
