#include "core/fair_pool.hpp"

#include <algorithm>
#include <utility>

namespace twinbridge::core {

FairPool::FairPool(FairPoolOptions options) : options_(options) {
  options_.threads = std::max<std::size_t>(1, options_.threads);
  if (options_.max_running_per_key == 0) {
    options_.max_running_per_key = std::max<std::size_t>(1, options_.threads - 1);
  }
  options_.max_queued_per_key = std::max<std::size_t>(1, options_.max_queued_per_key);
  threads_.reserve(options_.threads);
  for (std::size_t i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { work(); });
}

FairPool::~FairPool() {
  stop();
}

bool FairPool::post(const std::string& key, Job job) {
  JobFate refused = JobFate::run;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      refused = JobFate::stopped;
    } else if (auto it = queues_.find(key);
               it != queues_.end() && it->second.jobs.size() + it->second.running >=
                                          options_.max_running_per_key + options_.max_queued_per_key) {
      refused = JobFate::queue_full;
    } else {
      Queue& queue = queues_[key];
      if (queue.jobs.empty()) turns_.push_back(key);
      queue.jobs.push_back(std::move(job));
      ++queued_;
    }
  }
  if (refused != JobFate::run) {
    job(refused);
    return false;
  }
  ready_.notify_one();
  return true;
}

void FairPool::stop() {
  std::vector<Job> dropped;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    for (auto& [key, queue] : queues_) {
      for (auto& job : queue.jobs) dropped.push_back(std::move(job));
      queue.jobs.clear();
    }
    turns_.clear();
    queued_ = 0;
  }
  ready_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  for (auto& job : dropped) job(JobFate::stopped);  // outside the lock: a job may do anything
}

std::size_t FairPool::queued() const {
  std::lock_guard lock(mutex_);
  return queued_;
}

std::size_t FairPool::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

bool FairPool::take(std::string& key, Job& job) {
  for (auto it = turns_.begin(); it != turns_.end(); ++it) {
    Queue& queue = queues_[*it];
    if (queue.running >= options_.max_running_per_key) continue;
    job = std::move(queue.jobs.front());
    queue.jobs.pop_front();
    ++queue.running;
    --queued_;
    ++running_;
    key = std::move(*it);
    turns_.erase(it);
    if (!queue.jobs.empty()) turns_.push_back(key);  // its next job waits for the other keys' turns
    return true;
  }
  return false;
}

void FairPool::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    std::string key;
    Job job;
    ready_.wait(lock, [&] { return stopping_ || take(key, job); });
    if (!job) return;  // stopping, and nothing was taken
    lock.unlock();
    try {
      job(JobFate::run);
    } catch (...) {
      // Jobs report their own failures; one that throws is a bug, and must not take a worker down with it.
    }
    job = nullptr;
    lock.lock();
    --running_;
    auto it = queues_.find(key);
    if (it != queues_.end() && --it->second.running == 0 && it->second.jobs.empty()) queues_.erase(it);
    if (!turns_.empty()) ready_.notify_all();  // a key held back by its running jobs may go on now
  }
}

}  // namespace twinbridge::core
