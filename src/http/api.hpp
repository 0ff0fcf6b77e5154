#pragma once
// The request pipeline of twinbridge's HTTP API: request id, routing (404/405), authentication (401/429),
// authorization (403), the route's handler, conditional GET (304), problem details for every error, metrics
// and one structured access-log line per request. The session (server.cpp) hands each complete request to
// handle().
//
// Built once at start-up; handle() is safe to call concurrently from every I/O thread.

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "core/fair_pool.hpp"
#include "core/memory.hpp"
#include "core/time.hpp"
#include "dtif/acquisition.hpp"
#include "dtif/selections.hpp"
#include "dtif/stream_hub.hpp"
#include "dtif/twin_registry.hpp"
#include "dtif/twin_service.hpp"
#include "dtif/twin_stream.hpp"
#include "http/access_log.hpp"
#include "http/authenticator.hpp"
#include "http/metrics.hpp"
#include "http/router.hpp"
#include "query/budget.hpp"
#include "registry/system_monitor.hpp"
#include "registry/system_registry.hpp"
#include "sif/schemas.hpp"
#include "store/store.hpp"

namespace twinbridge::http {

struct ApiSettings {
  std::size_t max_json_depth = 64;
  std::size_t default_page_size = 100;
  std::size_t max_page_size = 1000;
  bool access_log = true;
  // Every query of a client runs under these (query/budget.hpp).
  query::QueryLimits query_limits;
  std::size_t query_workers = 0;        // 0: one per core
  std::size_t max_queued_queries = 16;  // per principal, waiting for a worker
  std::size_t ingest_workers = 0;       // 0: one per core
  std::size_t max_queued_batches = 64;  // state batches per principal, waiting for an ingest worker
  connect::OutboundGuard outbound;      // which endpoint URLs registrations may declare (outbound.allow)
  // /v1/stream and /v1/stream/events (stream.*); its query limits and conflation threshold are set by
  // whoever builds the Api (serve: query_limits, half of limits.max_ws_queue_bytes).
  dtif::TwinStreamLimits stream;
};

// DTIA (twin information acquisition, FGMV-29 8.3.3): selections of twins and their acquisition from the DT
// systems, made by src/app/serve.cpp. Without them, their routes answer 503.
struct DtiaServices {
  dtif::Selections* selections = nullptr;
  dtif::Acquisition* acquisition = nullptr;
};

// What route handlers may use. Owned by Api; handlers get it by reference at registration.
struct ApiServices {
  store::Store& store;
  Authenticator& authenticator;
  Metrics& metrics;
  const core::Clock& clock;
  store::ChangeFeed& feed;   // every committed change, in order
  dtif::StreamHub& streams;  // subscriptions to the feed (/events, /v1/system-events, the stream)
  dtif::TwinService& twins;  // the twin plane's command path
  registry::SystemMonitor& monitor;
  // Long CPU-bound work (JSONPath filters over every TD, large answers) runs here, not on the I/O thread
  // that received the request, shared fairly between principals: see offload() in routes.hpp.
  core::FairPool& workers;
  // Batches of state changes are checked and applied here (TwinService::report), not on the I/O thread that
  // received them: a batch of thousands of changes takes milliseconds, and the I/O threads meanwhile deliver
  // the changes already applied to their subscribers. See await_write_on() in routes.hpp.
  core::FairPool& ingest;
  // Large jobs on the workers hand their freed memory back to the system through this (core/memory.hpp).
  core::MemoryReleaser& memory;
  ApiSettings settings;
  std::atomic<bool> shutting_down{false};
  DtiaServices dtia{};
  // Frames of changes shared by every stream of the server (/v1/stream).
};

class Api {
 public:
  // `streams` follows `feed` (its owner registers it); the Api counts its subscriptions until destroyed.
  Api(store::Store& store, store::ChangeFeed& feed, dtif::StreamHub& streams, dtif::TwinService& twins,
      Authenticator& authenticator, Metrics& metrics, const core::Clock& clock,
      registry::SystemMonitor& monitor, ApiSettings settings, AccessLog* access_log, DtiaServices dtia = {});
  // Stops the worker pool first (a job still running may use any member).
  ~Api();
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  boost::asio::awaitable<Response> handle(Request request);

  // A response for an error found before routing (oversized body or head, timeouts): counted and logged like
  // any other.
  Response reject(const Request& request, const core::Error& error);

  // /readyz turns 503 from now on; requests in flight finish.
  void begin_shutdown() { services_.shutting_down = true; }

  const Router& router() const { return router_; }
  // For tests that serve a route of their own through the whole pipeline (a WebSocket echo, say): add it
  // before the server starts. The product's routes are all added by the constructor.
  Router& router() { return router_; }

 private:
  void finish(const Request& request, const RequestContext& ctx, Response& response);
  std::string request_id_for(const Request& request);

  store::Store& store_;
  dtif::StreamHub& streams_;
  core::FairPool workers_;
  core::FairPool ingest_;
  // Every search hands its memory back at its end (a trim costs about a millisecond; a search far more), so
  // that the last search of a burst leaves nothing behind either.
  core::MemoryReleaser memory_{std::chrono::milliseconds(0)};
  ApiServices services_;
  registry::SystemRegistry third_party_systems_;
  registry::SystemRegistry twin_systems_;
  Router router_;
  AccessLog* access_log_;  // null: no access log
  std::string request_id_prefix_;
  std::atomic<std::uint64_t> next_request_{0};
};

}  // namespace twinbridge::http
