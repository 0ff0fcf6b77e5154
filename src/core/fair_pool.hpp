#pragma once
// FairPool: worker threads for CPU-bound work (JSONPath filters over every twin, large responses), shared
// fairly between the clients that ask for it. Each job belongs to a key (the principal that asked); the keys
// with queued jobs take turns, and one key runs at most `max_running_per_key` jobs at once (by default all
// workers but one), so one client's expensive queries can never occupy every worker: another client's job
// waits at most for one of the running jobs to finish. A key may have at most `max_running_per_key` +
// `max_queued_per_key` jobs posted and not finished (however quickly the workers take them); post() refuses
// the next one (the caller answers 429).
//
// Every job posted is called exactly once, with its fate: JobFate::run on a worker; JobFate::queue_full or
// JobFate::stopped when post() refuses it (at once, on the caller's thread, after the pool's lock is
// released); JobFate::stopped by stop() for a job still queued. So a job that owns a continuation always
// resumes it.
//
// Thread-safe. stop() (or the destructor) lets running jobs finish, calls the queued ones with
// JobFate::stopped, and joins the threads; post() after stop() is refused.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace twinbridge::core {

struct FairPoolOptions {
  std::size_t threads = 2;
  std::size_t max_running_per_key = 0;  // 0: threads - 1 (at least 1)
  std::size_t max_queued_per_key = 16;
};

enum class JobFate { run, queue_full, stopped };

class FairPool {
 public:
  using Job = std::move_only_function<void(JobFate)>;

  explicit FairPool(FairPoolOptions options);
  ~FairPool();
  FairPool(const FairPool&) = delete;
  FairPool& operator=(const FairPool&) = delete;

  // Queues job under key. False when key already has max_running_per_key + max_queued_per_key jobs posted
  // and not finished (the job was called with JobFate::queue_full), or after stop() (JobFate::stopped).
  bool post(const std::string& key, Job job);

  void stop();

  std::size_t threads() const { return threads_.size(); }
  std::size_t queued() const;
  std::size_t running() const;

 private:
  struct Queue {
    std::deque<Job> jobs;
    std::size_t running = 0;
  };

  void work();
  // The next job to run, under the lock: the first key in turn with a queued job and room to run it.
  bool take(std::string& key, Job& job);

  FairPoolOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::unordered_map<std::string, Queue> queues_;
  std::deque<std::string> turns_;  // keys with queued jobs, in the order they get their next turn
  std::size_t queued_ = 0;
  std::size_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace twinbridge::core
