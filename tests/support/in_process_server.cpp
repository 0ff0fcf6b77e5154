#include "support/in_process_server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/time.hpp"
#include "dtif/twin_index.hpp"
#include "dtif/twin_service.hpp"
#include "http/authenticator.hpp"
#include "http/metrics.hpp"
#include "registry/system_monitor.hpp"
#include "store/cached_store.hpp"
#include "store/change_feed.hpp"
#include "store/sqlite_store.hpp"
#include "support/server_process.hpp"

namespace twinbridge::testing {

namespace asio = boost::asio;

struct InProcessServer::Impl {
  InProcessOptions options;
  TempDir dir;
  http::Metrics metrics;
  core::SystemClock clock;
  dtif::TwinIndex twin_index;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<store::ChangeFeed> feed;
  std::unique_ptr<http::Authenticator> authenticator;
  std::unique_ptr<registry::SystemMonitor> monitor;
  asio::thread_pool feed_reader{1};
  std::unique_ptr<dtif::StreamHub> hub;
  std::unique_ptr<dtif::TwinService> twins;
  std::unique_ptr<http::Api> api;
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::unique_ptr<http::HttpServer> server;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  std::uint16_t port = 0;
  bool started = false;
  bool stopped = false;
};

InProcessServer::InProcessServer(InProcessOptions options) : impl_(std::make_unique<Impl>()) {
  auto& d = *impl_;
  d.options = std::move(options);
  spdlog::set_level(spdlog::level::warn);  // the store's start-up lines, for every test
  store::SqliteOptions store_options;
  store_options.path = d.dir.path() / "twinbridge.db";
  store_options.synchronous = "NORMAL";
  auto sqlite = store::SqliteStore::open(store_options, &d.metrics);
  if (!sqlite) throw std::runtime_error("in-process server: " + sqlite.error().detail);
  d.store = std::make_unique<store::CachedStore>(std::move(*sqlite));
  d.feed = std::make_unique<store::ChangeFeed>(*d.store);
  d.store->set_change_listener(d.feed.get());
  if (auto loaded = d.feed->load(); !loaded)
    throw std::runtime_error("in-process server: " + loaded.error().detail);
  d.feed->add_consumer(d.twin_index);
  d.store->start();
  if (auto loaded = d.twin_index.load(*d.store); !loaded) {
    d.store->stop();
    throw std::runtime_error("in-process server: " + loaded.error().detail);
  }
  d.authenticator = std::make_unique<http::Authenticator>(
      *d.store, http::AuthSettings{d.options.admin_token, std::nullopt, 50, 5}, d.clock);
  registry::MonitorSettings monitor_settings;
  monitor_settings.enabled = false;
  d.monitor = std::make_unique<registry::SystemMonitor>(*d.store, d.clock, monitor_settings, &d.metrics);
  http::ApiSettings api_settings;
  api_settings.access_log = false;
  api_settings.query_workers = 1;
  d.feed->add_consumer(*d.monitor);
  d.hub = std::make_unique<dtif::StreamHub>(*d.feed, d.feed_reader.get_executor());
  d.twins = std::make_unique<dtif::TwinService>(*d.store, d.twin_index, *d.hub, *d.monitor, d.clock,
                                                api_settings.outbound);
  d.feed->add_consumer(*d.twins);
  d.feed->add_consumer(*d.hub);
  d.api = std::make_unique<http::Api>(*d.store, *d.feed, *d.hub, *d.twins, *d.authenticator, d.metrics,
                                      d.clock, *d.monitor, api_settings, nullptr);
  std::vector<asio::io_context*> pointers;
  for (unsigned i = 0; i < std::max(1u, d.options.threads); ++i) {
    d.contexts.push_back(std::make_unique<asio::io_context>(1));
    pointers.push_back(d.contexts.back().get());
  }
  d.server = std::make_unique<http::HttpServer>(pointers, *d.api, d.metrics, d.options.limits);
}

InProcessServer::~InProcessServer() {
  auto& d = *impl_;
  if (d.started && !d.stopped) stop();
  d.server.reset();
  d.contexts.clear();
  d.monitor->stop();
  d.store->stop();
  d.api.reset();
  d.feed->remove_consumer(*d.hub);
  d.feed->remove_consumer(*d.twins);
  d.feed->remove_consumer(*d.monitor);
  d.feed->remove_consumer(d.twin_index);
  d.twins.reset();
  d.hub.reset();
  d.feed_reader.join();
  d.monitor.reset();
  d.authenticator.reset();
  d.store.reset();
}

http::Router& InProcessServer::router() {
  return impl_->api->router();
}

void InProcessServer::start() {
  auto& d = *impl_;
  auto bound = d.server->listen("127.0.0.1", 0);
  if (!bound) throw std::runtime_error("in-process server: " + bound.error().detail);
  d.port = static_cast<std::uint16_t>(std::stoi(bound->substr(bound->rfind(':') + 1)));
  d.server->start();
  for (auto& c : d.contexts) d.guards.push_back(asio::make_work_guard(*c));
  for (auto& c : d.contexts) d.threads.emplace_back([&io = *c] { io.run(); });
  d.started = true;
}

std::uint16_t InProcessServer::port() const {
  return impl_->port;
}

bool InProcessServer::stop(std::chrono::milliseconds grace) {
  auto& d = *impl_;
  if (!d.started || d.stopped) return false;
  d.stopped = true;
  d.api->begin_shutdown();
  auto drained = std::make_shared<std::promise<void>>();
  auto drained_future = drained->get_future();
  d.server->shutdown(grace, [&d, drained] {
    d.guards.clear();
    drained->set_value();
  });
  const auto limit = grace + std::chrono::seconds(10);
  const bool drained_in_time = drained_future.wait_for(limit) == std::future_status::ready;
  // Every loop returns once no operation of the server is pending; wait for that with a bound.
  std::mutex mutex;
  std::condition_variable cv;
  bool joined = false;
  std::thread joiner([&] {
    for (auto& t : d.threads) t.join();
    std::lock_guard lock(mutex);
    joined = true;
    cv.notify_all();
  });
  bool clean = false;
  {
    std::unique_lock lock(mutex);
    clean = cv.wait_for(lock, std::chrono::seconds(10), [&] { return joined; });
  }
  if (!clean) {
    for (auto& c : d.contexts) c->stop();
  }
  joiner.join();
  d.threads.clear();
  if (!clean || !drained_in_time) {
    // Operations still pending refer to the server and the io_contexts: never destroy them.
    (void)d.server.release();
    for (auto& c : d.contexts) (void)c.release();
    d.contexts.clear();
    return false;
  }
  d.server.reset();
  d.contexts.clear();
  return true;
}

std::string InProcessServer::metrics() const {
  return impl_->metrics.render();
}

std::size_t InProcessServer::open_connections() const {
  return impl_->server ? impl_->server->open_connections() : 0;
}

}  // namespace twinbridge::testing
