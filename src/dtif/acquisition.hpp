#pragma once
// Acquisition: twin information acquisition (FGMV-29 8.3.3 DTIA; flow 9.2 steps 8 to 12). A metaverse system
// asks for the properties and permissions of the twins it selected; twinbridge asks each twin's owning DT
// system and keeps what it answers:
//   - the values: the TD's readallproperties form (or, when the TD has none, the readproperty form of each
//     readable property, at most kMaxPropertyReads), performed by connect::TdHttpClient over the HTTP
//     binding: URI variables take the default of their data schema, the security the TD declares is applied
//     with the credentials the twin system registered (store::SystemCredentials, by security definition
//     name), and every call passes the outbound guard. The values (properties the TD declares and that can be
//     read) are reported through TwinService::report as one state change of channel "acquisition" by
//     internal_actor() on behalf of the twin system: versioned, on the change feed, with ingestedAt;
//   - the permission answer: GET <endpoints.permissions>?twin=<id>&principal=<caller> (basic or bearer with
//     the credentials registered under the name "permissions", if any), a JSON document in the format of
//     core::policy_from_permission_answer. When the twin has no policy yet, the answer seeds it
//     (TwinService::seed_policy: audited as twin.policy {"seeded_from": url}); a policy someone set is never
//     replaced;
//   - when and from where, in the twin's store::AcquisitionRecord (values: time, system, operation, URLs;
//     answer: time, URL and the answer itself; the first failure since the last success).
// Nothing is invented: a twin whose system is down (as the monitor says: no call is made), fails, times out
// or answers values that do not fit the TD keeps its last known state, served marked stale (since the first
// failure, why) beside a problem. A twin the caller may not read (no property readproperty allows) is not
// fetched at all.
//
// Threads: the acquisition has its own io_context and thread (start/stop), on which every outbound call,
// its store reads and the assembly of the answer run; the I/O threads only hand a request over and await
// its completion. At most `max_concurrent` twins are acquired at once over all requests (the others wait in
// order); each call is bounded by `timeout` and `max_response_bytes`, so a request ends within about
// (twins / max_concurrent + 1) x 2 x timeout however the DT systems behave.
//
// Ownership: holds references to the twin service, store, index, monitor and clock, which must outlive it.
// stop() refuses new requests, lets the calls in flight finish (each within the timeout), answers the twins
// still waiting at once (unavailable) and joins the thread; the owner calls it after the HTTP server has
// drained and before the store stops. Thread-safety: acquire() may be called from
// any thread; `done` runs on the acquisition's thread.

#include <boost/json/object.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "connect/http_client.hpp"
#include "core/actor.hpp"
#include "dtif/twin_index.hpp"
#include "dtif/twin_service.hpp"
#include "registry/system_monitor.hpp"
#include "store/store.hpp"

namespace twinbridge::dtif {

// Properties read one by one (readproperty) at most, for a TD without a readallproperties form.
inline constexpr std::size_t kMaxPropertyReads = 64;
// The security definition name under which a twin system registers credentials for its permissions endpoint.
inline constexpr std::string_view kPermissionsCredentials = "permissions";

struct AcquisitionSettings {
  std::chrono::milliseconds timeout{5'000};      // each call to a twin system, connect to last byte
  std::size_t max_response_bytes = 1024 * 1024;  // each answer's body
  std::size_t max_json_depth = 64;               // each answer's nesting
  std::size_t max_concurrent = 16;               // twins acquired at once, over all requests
  std::size_t max_twins = 1000;                  // twins one request may acquire
  connect::HttpClientOptions http;               // CA file, outbound guard (outbound.allow)
};

// What the acquisition of one twin gave its caller.
struct AcquiredTwin {
  std::string id;
  // The twin's state as GET /v1/twins/{id}/state serves it to the caller (the properties it may read),
  // marked "stale" when no values could be acquired; none when there is no such twin or the caller may not
  // read it.
  std::optional<boost::json::object> state;
  // Each affordance of the TD with the operations the caller may perform on it now (after any seeding).
  boost::json::object permissions;
  // The values were acquired: when, and from where ({"from": system, "operation", "urls"}).
  std::optional<core::Timestamp> acquired_at;
  boost::json::object acquired_from;
  // Or why not, and the last time they were (when ever).
  std::optional<core::Error> problem;
  std::optional<core::Timestamp> last_acquired_at;
  boost::json::object last_acquired_from;
  // The permission answer, when the twin system declares a permissions endpoint: when and from where it
  // came and whether it seeded the twin's policy, or why there is none.
  std::optional<core::Timestamp> permissions_at;
  std::string permissions_from;
  bool policy_seeded = false;
  std::optional<core::Error> permissions_problem;
};

class Acquisition {
 public:
  // Throws on an unusable CA file (start-up configuration).
  Acquisition(TwinService& twins, store::Store& store, const TwinIndex& index,
              const registry::SystemMonitor& monitor, const core::Clock& clock, AcquisitionSettings settings);
  ~Acquisition();  // stop()
  Acquisition(const Acquisition&) = delete;
  Acquisition& operator=(const Acquisition&) = delete;

  void start();
  // From now on, twins not started yet are answered at once (unavailable) instead of being asked for, so
  // that requests in flight end within about two call timeouts; new requests are still taken. Any thread;
  // does not block.
  void begin_shutdown();
  void stop();

  const AcquisitionSettings& settings() const;

  // Acquires the twins `twin_ids` (each once, in the order given) for `caller`; `done` gets one item per
  // twin, in that order. Errors (of the whole request): validation_failed for more than max_twins twins,
  // unavailable when the acquisition is stopped.
  void acquire(const core::Actor& caller, std::vector<std::string> twin_ids,
               store::Completion<std::vector<AcquiredTwin>> done);

  struct Impl;  // acquisition.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace twinbridge::dtif
