#pragma once
// Waiting for the store's asynchronous writes in tests.

#include <future>
#include <utility>

#include "store/store.hpp"

namespace twinbridge::testing {

// A completion that fulfils a promise, and the future that receives its result. The completion owns the
// promise, so it stays valid however late the store runs it.
template <class T>
std::pair<store::Completion<T>, std::future<core::Result<T>>> completion() {
  std::promise<core::Result<T>> promise;
  auto future = promise.get_future();
  return {[promise = std::move(promise)](core::Result<T> result) mutable {
            promise.set_value(std::move(result));
          },
          std::move(future)};
}

// Starts one asynchronous write with `start(completion)` and blocks until it completes.
template <class T, class Start>
core::Result<T> wait_for(Start&& start) {
  auto [done, result] = completion<T>();
  std::forward<Start>(start)(std::move(done));
  return result.get();
}

}  // namespace twinbridge::testing
