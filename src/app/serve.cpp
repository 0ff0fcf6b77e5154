#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "app/commands.hpp"
#include "app/logging.hpp"
#include "core/credentials.hpp"
#include "dtif/twin_service.hpp"
#include "http/server.hpp"
#include "store/cached_store.hpp"
#include "store/change_feed.hpp"
#include "store/sqlite_store.hpp"

namespace twinbridge::app {

namespace {

constexpr const char* kBootstrapKeyFile = "operator.key";
constexpr std::chrono::seconds kStopWatchdog{10};

// On the first start without TWINBRIDGE_ADMIN_TOKEN there is nobody who could create a principal. twinbridge
// then creates the operator principal "operator" with an API key and writes the key to <data>/operator.key
// (mode 0600), once; the operator reads it from there, and should delete the file after storing the key
// elsewhere.
core::Result<void> bootstrap_operator(store::Store& store, const Config& config, const core::Clock& clock) {
  auto existing = store.principals({"", 1});
  if (!existing) return std::unexpected(existing.error());
  if (!existing->items.empty()) return {};
  const auto issued = core::issue_api_key();
  core::Principal p;
  p.id = core::PrincipalId("operator");
  p.kind = core::PrincipalKind::operator_account;
  p.name = "bootstrap operator";
  p.roles = {"admin"};
  store::ApiKeyRecord key{
      core::ApiKeyId(issued.key_id), p.id, issued.hash, "bootstrap", clock.now(), std::nullopt};
  core::AuditEntry audit;
  audit.at = clock.now();
  audit.actor = "twinbridge:bootstrap";
  audit.actor_kind = "operator";
  audit.action = "principal.create";
  audit.target_type = "principal";
  audit.target_id = p.id.str();
  audit.detail = {{"reason", "first start without an admin token"}, {"api_key", issued.key_id}};

  const auto path = config.data_dir / kBootstrapKeyFile;
  {
    const auto old_mask = ::umask(077);
    std::ofstream out(path, std::ios::trunc);
    ::umask(old_mask);
    out << issued.token << "\n";
    if (!out) return core::fail(core::Errc::unavailable, fmt::format("cannot write {}", path.string()));
  }
  auto create = [&] {
    std::promise<core::Result<core::Principal>> done;
    auto future = done.get_future();
    store.create_principal(p, key, audit,
                           [&done](core::Result<core::Principal> r) { done.set_value(std::move(r)); });
    return future.get();
  };
  auto created = create();
  if (!created && created.error().code == core::Errc::conflict) {
    // "operator" was deleted once, and a deleted principal's id is never given again: take a fresh one.
    p.id = core::PrincipalId("operator-" + core::random_hex(4));
    key.principal = p.id;
    audit.target_id = p.id.str();
    created = create();
  }
  if (!created) return std::unexpected(created.error());
  spdlog::info("created the operator principal '{}'; its API key is in {}", p.id.str(), path.string());
  return {};
}

}  // namespace

int run_serve(ConfigLoader& loader) {
  auto loaded = loader.load();
  if (!loaded) {
    fmt::print(stderr, "twinbridge: {}\n", loaded.error().detail);
    return 2;
  }
  Config config = std::move(*loaded);
  setup_logging(config.log_level, config.log_format);
  http::AccessLog access_log(STDERR_FILENO);

  std::optional<core::JwtVerifier> jwt;
  if (!config.jwt_keys.empty()) {
    auto verifier = core::JwtVerifier::create(config.jwt_keys, config.jwt_policy);
    if (!verifier) {
      spdlog::critical("JWT keys: {}", verifier.error().detail);
      shutdown_logging();
      return 2;
    }
    jwt = std::move(*verifier);
  }

  core::SystemClock clock;
  http::Metrics metrics;
  store::SqliteOptions store_options;
  store_options.path = config.data_dir / "twinbridge.db";
  store_options.synchronous = config.store_synchronous;
  store_options.max_batch = config.store_max_batch;
  store_options.keep_changes = config.store_keep_changes;
  auto sqlite = store::SqliteStore::open(store_options, &metrics);
  if (!sqlite) {
    spdlog::critical("store: {} ({})", sqlite.error().detail, sqlite.error().log_detail);
    shutdown_logging();
    return 1;
  }
  // Reads on every request's path (credentials, principals) are served from memory; see
  // store/cached_store.hpp.
  std::unique_ptr<store::Store> store = std::make_unique<store::CachedStore>(std::move(*sqlite));
  // Every committed change leaves through one feed, in order (store/change_feed.hpp).
  store::ChangeFeed feed(*store);
  store->set_change_listener(&feed);
  if (auto feed_ok = feed.load(); !feed_ok) {
    spdlog::critical("loading the change feed: {} {}", feed_ok.error().detail, feed_ok.error().log_detail);
    shutdown_logging();
    return 1;
  }
  // Discovery reads every twin from memory; the index follows the feed (dtif/twin_index.hpp).
  dtif::TwinIndex twin_index;
  feed.add_consumer(twin_index);
  store->start();
  if (auto indexed = twin_index.load(*store); !indexed) {
    spdlog::critical("loading the twins: {} {}", indexed.error().detail, indexed.error().log_detail);
    store->stop();
    shutdown_logging();
    return 1;
  }
  spdlog::info("{} twins in memory ({} MiB of TDs)", twin_index.size(), twin_index.bytes() >> 20);
  if (config.admin_token.empty()) {
    if (auto ok = bootstrap_operator(*store, config, clock); !ok) {
      spdlog::critical("bootstrap: {}", ok.error().detail);
      store->stop();
      shutdown_logging();
      return 1;
    }
  }

  http::Authenticator authenticator(
      *store, {config.admin_token, jwt, config.auth_failure_burst, config.auth_failure_refill}, clock);
  // One outbound policy: for every call twinbridge makes and every endpoint URL it accepts.
  config.monitor.client.outbound = config.outbound;
  config.api.outbound = config.outbound;
  // A stream conflates before its WebSocket queue is half full: the queue's bound then closes only a
  // client that stopped reading altogether.
  config.api.stream.conflate_above_bytes = config.limits.max_ws_queue_bytes / 2;
  config.api.stream.query_limits = config.api.query_limits;
  std::unique_ptr<registry::SystemMonitor> monitor;
  try {
    monitor = std::make_unique<registry::SystemMonitor>(*store, clock, config.monitor, &metrics);
  } catch (const std::exception& e) {
    spdlog::critical("monitor: {} (monitor.ca_file '{}')", e.what(), config.monitor.client.ca_file);
    store->stop();
    shutdown_logging();
    return 1;
  }
  feed.add_consumer(*monitor);
  // The twin plane: subscriptions to the feed (a reader thread serves those that fell behind) and the one
  // command path of twins (dtif/twin_service.hpp).
  boost::asio::thread_pool feed_reader(1);
  dtif::StreamHub streams(feed, feed_reader.get_executor());
  dtif::TwinService twins(*store, twin_index, streams, *monitor, clock, config.outbound);
  feed.add_consumer(twins);
  feed.add_consumer(streams);
  // DTIA: selections of twins and their acquisition from the DT systems, on the acquisition's own thread
  // (dtif/acquisition.hpp).
  dtif::Selections selections(*store, twin_index, twins.registry(), clock);
  config.acquisition.http.outbound = config.outbound;
  std::unique_ptr<dtif::Acquisition> acquisition;
  try {
    acquisition =
        std::make_unique<dtif::Acquisition>(twins, *store, twin_index, *monitor, clock, config.acquisition);
  } catch (const std::exception& e) {
    spdlog::critical("acquisition: {} (acquisition.ca_file '{}')", e.what(), config.acquisition.http.ca_file);
    store->stop();
    shutdown_logging();
    return 1;
  }
  acquisition->start();
  http::Api api(*store, feed, streams, twins, authenticator, metrics, clock, *monitor, config.api,
                &access_log, http::DtiaServices{&selections, acquisition.get()});
  // Physical -> virtual over MQTT, when a broker is configured (dtif/mqtt_sync.hpp).
  std::unique_ptr<dtif::MqttSync> mqtt;
  if (!config.mqtt.client.broker_url.empty()) {
    auto created = dtif::MqttSync::create(config.mqtt, twins, twin_index, *store);
    if (!created) {
      spdlog::critical("mqtt: {}", created.error().detail);
      monitor->stop();
      store->stop();
      shutdown_logging();
      return 1;
    }
    mqtt = std::move(*created);
    feed.add_consumer(*mqtt);
    if (auto ok = mqtt->start(); !ok) {
      spdlog::critical("mqtt: {}", ok.error().detail);
      feed.remove_consumer(*mqtt);
      monitor->stop();
      store->stop();
      shutdown_logging();
      return 1;
    }
    metrics.add_source([sync = mqtt.get()] { return sync->metric_families(); });
    spdlog::info("mqtt: syncing twins from {} ({} subscriptions)", config.mqtt.client.broker_url,
                 mqtt->subscriptions().size());
  }
  if (auto ok = monitor->start(); !ok) {
    spdlog::critical("monitor: {}", ok.error().detail);
    store->stop();
    shutdown_logging();
    return 1;
  }

  const unsigned threads =
      config.threads != 0 ? config.threads : std::max(1u, std::thread::hardware_concurrency());
  // Thread per core: one single-threaded io_context per I/O thread (see src/http/server.hpp).
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts;
  std::vector<boost::asio::io_context*> context_ptrs;
  for (unsigned i = 0; i < threads; ++i) {
    contexts.push_back(std::make_unique<boost::asio::io_context>(1));
    context_ptrs.push_back(contexts.back().get());
  }
  auto& io = *contexts.front();
  // SIGINT/SIGTERM are caught from here on, before the server says it listens: a signal that arrives before
  // the wait below is set up waits for it.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  http::HttpServer server(context_ptrs, api, metrics, config.limits);
  auto bound = server.listen(config.listen_host, config.listen_port);
  if (!bound) {
    spdlog::critical("{}", bound.error().detail);
    monitor->stop();
    store->stop();
    shutdown_logging();
    return 1;
  }
  server.start();

  const std::string url = "http://" + *bound;
  std::string how;
  if (!config.admin_token.empty()) {
    how = "send 'Authorization: Bearer $TWINBRIDGE_ADMIN_TOKEN'";
  } else if (std::filesystem::exists(config.data_dir / kBootstrapKeyFile)) {
    how = fmt::format("send 'Authorization: Bearer <key>' with the operator key in {}",
                      (config.data_dir / kBootstrapKeyFile).string());
  } else {
    how = "send 'Authorization: Bearer <key>' with an API key of a principal (or set TWINBRIDGE_ADMIN_TOKEN)";
  }
  spdlog::info("twinbridge listening on {} ({} threads, data in {}); to authenticate, {}", url, threads,
               config.data_dir.string(), how);
  spdlog::default_logger()->flush();
  fmt::print(stdout, "twinbridge listening on {}\nto authenticate, {}\nAPI description: {}/openapi.json\n",
             url, how, url);
  std::fflush(stdout);

  // Stopping, in one order (see src/http/server.hpp): the signal makes the server drain (stop accepting,
  // finish in-flight requests within the grace period, close the rest); when it has drained, the work guards
  // are released, so that each I/O thread's run() returns once every pending
  // operation has completed (store writes and worker-pool jobs hold work of their own until they resume
  // their request). Then the threads are joined, the server destroyed while its io_contexts still exist, and
  // the io_contexts last. Should an operation never complete, a watchdog stops the loops after
  // kStopWatchdog; the io_contexts (and with them the coroutines that hold the server) are then left to the
  // end of the process instead of being destroyed under pending operations.
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards;
  for (auto& c : contexts) guards.push_back(boost::asio::make_work_guard(*c));
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool loops_done = false;
  std::atomic<bool> forced{false};
  std::thread watchdog;
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("received signal {}; draining in-flight requests (grace {} ms)", signal,
                 config.shutdown_grace.count());
    api.begin_shutdown();
    acquisition->begin_shutdown();  // twins still waiting are not asked for: requests end within the grace
    server.shutdown(config.shutdown_grace, [&] {
      guards.clear();
      watchdog = std::thread([&] {
        std::unique_lock lock(stop_mutex);
        if (!stop_cv.wait_for(lock, kStopWatchdog, [&] { return loops_done; })) {
          spdlog::error("operations still pending {} s after the drain; stopping the event loops",
                        kStopWatchdog.count());
          forced = true;
          for (auto& c : contexts) c->stop();
        }
      });
    });
  });

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&c = *contexts[i]] { c.run(); });
  io.run();
  for (auto& t : pool) t.join();
  {
    std::lock_guard lock(stop_mutex);
    loops_done = true;
  }
  stop_cv.notify_all();
  if (watchdog.joinable()) watchdog.join();
  if (forced) {
    // Pending operations still reference the server and the io_contexts: never destroy them.
    for (auto& c : contexts) static_cast<void>(c.release());
  }

  if (mqtt) mqtt->stop();  // what it queued is applied before the store stops
  // Requests in flight are answered by now: the acquisition has nothing left to finish but is stopped
  // before the store, whose completions it awaits.
  acquisition->stop();
  monitor->stop();
  store->stop();
  if (mqtt) feed.remove_consumer(*mqtt);
  feed.remove_consumer(streams);
  feed.remove_consumer(twins);
  feed.remove_consumer(*monitor);
  feed_reader.join();
  spdlog::info("twinbridge stopped");
  shutdown_logging();
  return 0;
}

}  // namespace twinbridge::app
