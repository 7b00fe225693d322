#include "ks/workers.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

namespace covey::ks {

std::size_t cpus_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  const int n = CPU_COUNT(&set);
  return n > 0 ? static_cast<std::size_t>(n) : 1;
}

Workers::Workers(std::size_t threads, Done done) : done_(std::move(done)) {
  // Threads inherit the signal mask: SIGTERM and SIGHUP stay the loop's
  // (Asio's signal_set) rather than landing on a worker.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  for (std::size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { work(); });
    ::pthread_setname_np(threads_.back().native_handle(), "covey-ks-work");
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

Workers::~Workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    queue_.clear();
  }
  ready_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void Workers::submit(std::unique_ptr<MainModeJob> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(job));
  }
  ready_.notify_one();
}

void Workers::work() {
  for (;;) {
    std::unique_ptr<MainModeJob> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job->run();
    done_(std::move(job));
  }
}

}  // namespace covey::ks
