#include "dtif/acquisition.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "connect/td_http.hpp"
#include "core/json_reader.hpp"
#include "core/policy.hpp"

namespace twinbridge::dtif {

namespace json = boost::json;
using core::Errc;

namespace {

using WorkGuard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;

// The stored credentials (store::SystemCredentials) as TdHttpClient takes them; entries of another shape
// are left out (the registration schema admits none).
connect::TdCredentials td_credentials(const json::object& by_scheme) {
  connect::TdCredentials out;
  for (const auto& [name, entry] : by_scheme) {
    const auto* o = entry.if_object();
    if (o == nullptr) continue;
    const auto* token = o->if_contains("token");
    const auto* user = o->if_contains("username");
    const auto* password = o->if_contains("password");
    if (token != nullptr && token->is_string()) {
      out.by_scheme_name.emplace(std::string(name), connect::Token{std::string(token->get_string())});
    } else if (user != nullptr && user->is_string() && password != nullptr && password->is_string()) {
      out.by_scheme_name.emplace(
          std::string(name),
          connect::UserPassword{std::string(user->get_string()), std::string(password->get_string())});
    }
  }
  return out;
}

// The value of each URI variable whose data schema gives a default (a scalar).
connect::UriVariables default_variables(const json::object& schemas) {
  connect::UriVariables out;
  for (const auto& [name, schema] : schemas) {
    const auto* s = schema.if_object();
    const auto* d = s != nullptr ? s->if_contains("default") : nullptr;
    if (d != nullptr && (d->is_string() || d->is_number() || d->is_bool()))
      out.emplace(std::string(name), *d);
  }
  return out;
}

bool flag(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->get_bool();
}

// The properties of the TD that can be read (not writeOnly), by name.
std::set<std::string, std::less<>> readable_properties(const json::object& td) {
  std::set<std::string, std::less<>> out;
  const auto* properties = td.if_contains("properties");
  if (properties == nullptr || !properties->is_object()) return out;
  for (const auto& [name, p] : properties->get_object()) {
    if (p.is_object() && !flag(p.get_object(), "writeOnly")) out.emplace(name);
  }
  return out;
}

}  // namespace

struct Acquisition::Impl {
  Impl(TwinService& twins_, store::Store& store_, const TwinIndex& index_,
       const registry::SystemMonitor& monitor_, const core::Clock& clock_, AcquisitionSettings settings_)
      : twins(twins_),
        store(store_),
        index(index_),
        monitor(monitor_),
        clock(clock_),
        settings(std::move(settings_)),
        http(io, settings.http),
        td(io, http, {settings.timeout, settings.max_response_bytes, settings.max_json_depth}) {}

  // Runs `job` now when fewer than max_concurrent twins are being acquired, else when one finishes. A job
  // calls the function it gets once it is done. I/O thread only.
  void admit(std::function<void(std::function<void()> finished)> job) {
    waiting.push_back(std::move(job));
    run_waiting();
  }
  void run_waiting() {
    while (running < std::max<std::size_t>(settings.max_concurrent, 1) && !waiting.empty()) {
      auto job = std::move(waiting.front());
      waiting.pop_front();
      ++running;
      job([this] {
        --running;
        boost::asio::post(io, [this] { run_waiting(); });
      });
    }
  }

  // A completion that resumes `then` on the acquisition's thread; the io_context counts it as work until
  // then, so the thread does not leave while a store write is under way.
  template <class T, class Then>
  store::Completion<T> on_io(Then then) {
    return [this, guard = boost::asio::make_work_guard(io),
            then = std::move(then)](core::Result<T> r) mutable {
      boost::asio::post(io, [guard = std::move(guard), then = std::move(then), r = std::move(r)]() mutable {
        then(std::move(r));
        guard.reset();
      });
    };
  }

  TwinService& twins;
  store::Store& store;
  const TwinIndex& index;
  const registry::SystemMonitor& monitor;
  const core::Clock& clock;
  AcquisitionSettings settings;

  boost::asio::io_context io{1};
  connect::HttpClient http;
  connect::TdHttpClient td;
  std::optional<WorkGuard> guard;
  std::thread thread;
  std::mutex state_mutex;  // guards accepting (and start/stop)
  bool accepting = false;
  // Set by stop(): twins not started yet are answered at once (unavailable) instead of being asked for.
  std::atomic<bool> stopping{false};

  // I/O thread only:
  std::deque<std::function<void(std::function<void()>)>> waiting;
  std::size_t running = 0;
};

namespace {

// One request: its caller, its items and how many are still being acquired.
struct Request {
  core::Actor caller;
  std::vector<AcquiredTwin> items;
  std::size_t pending = 0;
  store::Completion<std::vector<AcquiredTwin>> done;
};

// The acquisition of one twin, step by step on the acquisition's thread.
class TwinJob : public std::enable_shared_from_this<TwinJob> {
 public:
  TwinJob(Acquisition::Impl& impl, std::shared_ptr<Request> request, std::size_t index,
          std::function<void()> finished)
      : impl_(impl), request_(std::move(request)), index_(index), finished_(std::move(finished)) {}

  void start();

 private:
  AcquiredTwin& item() { return request_->items[index_]; }
  const std::string& id() { return request_->items[index_].id; }

  bool may_read();
  void fetch_values();
  void values_fetched(core::Result<json::object> values, std::string operation,
                      std::vector<std::string> urls);
  void ask_permissions();
  void permissions_answered(std::string url, core::Result<connect::HttpResponse> response);
  void record();
  void finish();
  void fail(core::Error e) {
    item().problem = std::move(e);
    ask_permissions();
  }

  Acquisition::Impl& impl_;
  std::shared_ptr<Request> request_;
  std::size_t index_;
  std::function<void()> finished_;

  std::shared_ptr<const core::TwinView> view_;
  core::SystemRecord system_;
  json::object credentials_;
  store::AcquisitionRecord record_;
  bool readable_ = false;  // the caller may read at least one property
  bool down_ = false;
  core::Timestamp started_{};
};

void TwinJob::start() {
  auto& it = item();
  started_ = impl_.clock.now();
  if (impl_.stopping) {
    it.problem = core::Error(Errc::unavailable, "twinbridge is shutting down; the twin was not acquired");
    return finish();
  }
  view_ = impl_.index.get(it.id);
  if (!view_ || (view_->expires() && *view_->expires() <= started_)) {
    it.problem = core::Error(Errc::not_found, fmt::format("twin '{}' does not exist", it.id));
    return finish();
  }
  readable_ = may_read();
  if (!readable_) {
    it.problem =
        core::Error(Errc::forbidden,
                    fmt::format("you may read no property of twin '{}': it is not acquired for you", it.id));
    return finish();
  }
  record_.twin_id = it.id;
  if (auto previous = impl_.store.acquisition(it.id); previous && *previous) record_ = std::move(**previous);
  if (view_->system_id().empty()) {
    return fail(
        core::Error(Errc::validation_failed,
                    fmt::format("twin '{}' belongs to no twin system (it was published to the directory): "
                                "there is no DT system to acquire it from",
                                it.id)));
  }
  auto system = impl_.store.system(core::SystemKind::twin, view_->system_id());
  if (!system) return fail(std::move(system.error()));
  system_ = std::move(*system);
  auto credentials = impl_.store.system_credentials(core::SystemKind::twin, system_.id);
  if (!credentials) return fail(std::move(credentials.error()));
  if (*credentials) credentials_ = std::move((*credentials)->by_scheme);
  if (auto status = impl_.monitor.status(core::SystemKind::twin, system_.id);
      status && status->status == core::SystemStatus::down) {
    down_ = true;
    return fail(core::Error(
        Errc::unavailable, fmt::format("twin system '{}' is down since {} ({}); it was not asked", system_.id,
                                       core::format_rfc3339(status->since), status->reason)));
  }
  fetch_values();
}

bool TwinJob::may_read() {
  const auto td = view_->td_json();
  const auto properties = readable_properties(td);
  if (properties.empty())
    return core::has_permission(request_->caller.principal, core::Permission::twins_read);
  auto readable = impl_.twins.readable(request_->caller, view_->id());
  if (!readable) return false;
  for (const auto& name : properties) {
    if ((*readable)(name)) return true;
  }
  return false;
}

void TwinJob::fetch_values() {
  const auto td = view_->td_json();
  const auto credentials = td_credentials(credentials_);
  auto self = shared_from_this();
  if (auto all = connect::select_form(td, connect::TdOperation::readallproperties, ""); all) {
    connect::TdCall call;
    call.op = connect::TdOperation::readallproperties;
    call.uri_variables = default_variables(all->uri_variables);
    impl_.td.perform(td, call, credentials, [self](core::Result<connect::TdResponse> r) {
      if (!r) return self->values_fetched(std::unexpected(std::move(r.error())), "readallproperties", {});
      auto url = r->url;
      json::object values = r->value.is_object() ? std::move(r->value.get_object()) : json::object();
      self->values_fetched(std::move(values), "readallproperties", {std::move(url)});
    });
    return;
  }
  // No readallproperties form: each readable property through its own readproperty form, at once.
  std::vector<std::pair<std::string, connect::TdForm>> reads;
  std::optional<core::Error> unusable;
  for (const auto& name : readable_properties(td)) {
    auto form = connect::select_form(td, connect::TdOperation::readproperty, name);
    if (form) {
      reads.emplace_back(name, std::move(*form));
    } else if (!unusable) {
      unusable = std::move(form.error());
    }
  }
  if (reads.empty() && unusable) {
    // The first property's reason (no HTTP form, only non-JSON forms, an unsupported security scheme, ...).
    return values_fetched(std::unexpected(std::move(*unusable)), "readproperty", {});
  }
  if (reads.size() > kMaxPropertyReads) {
    return values_fetched(
        core::fail(
            Errc::validation_failed,
            fmt::format("twin '{}' has {} properties and no readallproperties form; twinbridge reads at "
                        "most {} properties one by one: the TD needs a readallproperties form",
                        id(), reads.size(), kMaxPropertyReads)),
        "readproperty", {});
  }
  if (reads.empty()) return values_fetched(json::object(), "none", {});
  struct Gather {
    std::size_t left;
    json::object values;
    std::vector<std::string> urls;
    std::optional<core::Error> error;
  };
  auto gather = std::make_shared<Gather>();
  gather->left = reads.size();
  for (const auto& [name, form] : reads) {
    connect::TdCall call;
    call.op = connect::TdOperation::readproperty;
    call.affordance = name;
    call.uri_variables = default_variables(form.uri_variables);
    impl_.td.perform(td, call, credentials, [self, gather, name](core::Result<connect::TdResponse> r) {
      if (r) {
        gather->values[name] = std::move(r->value);
        gather->urls.push_back(std::move(r->url));
      } else if (!gather->error) {
        gather->error = std::move(r.error());
      }
      if (--gather->left > 0) return;
      if (gather->error) {
        return self->values_fetched(std::unexpected(std::move(*gather->error)), "readproperty", {});
      }
      std::sort(gather->urls.begin(), gather->urls.end());
      self->values_fetched(std::move(gather->values), "readproperty", std::move(gather->urls));
    });
  }
}

void TwinJob::values_fetched(core::Result<json::object> values, std::string operation,
                             std::vector<std::string> urls) {
  if (!values) {
    auto e = std::move(values.error());
    e.detail = fmt::format("the values of twin '{}' could not be acquired from twin system '{}': {}", id(),
                           system_.id, e.detail);
    return fail(std::move(e));
  }
  // What the TD declares and can be read; anything else the system sent is not the twin's.
  const auto keep = readable_properties(view_->td_json());
  json::object properties;
  for (auto& [name, value] : *values) {
    if (keep.contains(name)) properties[name] = std::move(value);
  }
  json::array called;
  for (auto& u : urls) called.emplace_back(std::move(u));
  json::object from{{"from", system_.id}, {"operation", std::move(operation)}, {"urls", std::move(called)}};
  if (properties.empty()) {
    item().acquired_at = impl_.clock.now();
    item().acquired_from = std::move(from);
    return ask_permissions();
  }
  std::vector<StateReport> reports(1);
  reports[0].twin_id = id();
  reports[0].patch = json::object{{"properties", std::move(properties)}};
  auto actor = internal_actor(core::Channel::acquisition, system_.id, request_->caller.request_id);
  auto self = shared_from_this();
  impl_.twins.report(actor, std::move(reports), system_.id,
                     impl_.on_io<std::vector<ReportResult>>(
                         [self, from = std::move(from)](core::Result<std::vector<ReportResult>> r) mutable {
                           core::Result<void> outcome;
                           if (!r) {
                             outcome = std::unexpected(std::move(r.error()));
                           } else if (!(*r)[0]) {
                             outcome = std::unexpected(std::move((*r)[0].error()));
                           }
                           if (!outcome) {
                             auto e = std::move(outcome.error());
                             if (e.code == Errc::validation_failed) {
                               e.detail = fmt::format(
                                   "the values twin system '{}' answered for twin '{}' do not fit its Thing "
                                   "Description: {}",
                                   self->system_.id, self->id(), e.detail);
                             }
                             return self->fail(std::move(e));
                           }
                           auto& it = self->item();
                           it.acquired_at = (*r)[0].value()->ingested;
                           it.acquired_from = std::move(from);
                           self->ask_permissions();
                         }));
}

void TwinJob::ask_permissions() {
  if (down_ || system_.id.empty()) return record();
  const auto* endpoints = system_.body.if_contains("endpoints");
  const auto* url = endpoints != nullptr && endpoints->is_object()
                        ? endpoints->get_object().if_contains("permissions")
                        : nullptr;
  if (url == nullptr || !url->is_string()) return record();
  std::string target(url->get_string());
  target += target.find('?') == std::string::npos ? '?' : '&';
  target += "twin=" + connect::percent_encoded(id()) +
            "&principal=" + connect::percent_encoded(request_->caller.principal.id.str());
  connect::HttpRequest req;
  req.method = "GET";
  req.url = target;
  req.timeout = impl_.settings.timeout;
  req.max_response_body = impl_.settings.max_response_bytes;
  req.headers.emplace_back("Accept", "application/json");
  if (const auto* secret = credentials_.if_contains(kPermissionsCredentials);
      secret != nullptr && secret->is_object()) {
    const auto& s = secret->get_object();
    const auto* token = s.if_contains("token");
    const auto* user = s.if_contains("username");
    const auto* password = s.if_contains("password");
    if (token != nullptr && token->is_string()) {
      req.headers.emplace_back("Authorization", "Bearer " + std::string(token->get_string()));
    } else if (user != nullptr && user->is_string() && password != nullptr && password->is_string()) {
      req.headers.emplace_back(
          "Authorization", "Basic " + connect::basic_credentials(user->get_string(), password->get_string()));
    }
  }
  auto self = shared_from_this();
  impl_.http.send(std::move(req), [self, target](core::Result<connect::HttpResponse> r) mutable {
    self->permissions_answered(std::move(target), std::move(r));
  });
}

void TwinJob::permissions_answered(std::string url, core::Result<connect::HttpResponse> response) {
  auto& it = item();
  const auto problem = [&](Errc code, std::string detail) {
    it.permissions_problem = core::Error(
        code,
        fmt::format("the permission answer of twin system '{}' for twin '{}': {}", system_.id, id(), detail));
    record();
  };
  if (!response) return problem(response.error().code, response.error().detail);
  if (response->status < 200 || response->status > 299) {
    return problem(Errc::unavailable, fmt::format("{} answered HTTP {}", url, response->status));
  }
  auto answer = core::parse_json(response->body, impl_.settings.max_json_depth);
  if (!answer)
    return problem(Errc::unavailable, fmt::format("{} answered no JSON: {}", url, answer.error().detail));
  auto policy = core::policy_from_permission_answer(*answer);
  if (!policy) {
    auto e = std::move(policy.error());
    e.detail = fmt::format("the permission answer of twin system '{}' for twin '{}' is not valid: {}",
                           system_.id, id(), e.detail);
    it.permissions_problem = std::move(e);
    return record();
  }
  const auto now = impl_.clock.now();
  it.permissions_at = now;
  it.permissions_from = url;
  record_.permissions_at = now;
  record_.permissions_from = url;
  record_.permissions_answer = std::move(*answer);
  auto current = impl_.twins.policy(id());
  if (!current) return problem(current.error().code, current.error().detail);
  if (*current) return record();  // a policy exists: the answer is kept, not applied
  auto actor = internal_actor(core::Channel::acquisition, system_.id, request_->caller.request_id);
  auto self = shared_from_this();
  impl_.twins.seed_policy(actor, id(), *policy, url,
                          impl_.on_io<store::PolicyRecord>([self](core::Result<store::PolicyRecord> r) {
                            if (r) {
                              self->item().policy_seeded = true;
                            } else if (r.error().code != Errc::precondition_failed) {
                              // precondition_failed: someone set a policy meanwhile, which stands.
                              auto e = std::move(r.error());
                              e.detail = fmt::format(
                                  "the permission answer of twin system '{}' could not seed "
                                  "the policy of twin '{}': {}",
                                  self->system_.id, self->id(), e.detail);
                              self->item().permissions_problem = std::move(e);
                            }
                            self->record();
                          }));
}

void TwinJob::record() {
  auto& it = item();
  if (it.acquired_at) {
    record_.values_at = it.acquired_at;
    record_.values_from = it.acquired_from;
    record_.failing_since.reset();
    record_.problem.clear();
  } else {
    if (!record_.failing_since) record_.failing_since = started_;
    record_.problem = it.problem ? it.problem->detail : std::string();
    if (record_.values_at) {
      it.last_acquired_at = record_.values_at;
      it.last_acquired_from = record_.values_from;
    }
  }
  auto self = shared_from_this();
  impl_.store.record_acquisition(record_, impl_.on_io<store::AcquisitionRecord>([self](auto r) {
    if (!r && r.error().code != Errc::not_found) {
      spdlog::warn("acquisition: the record of twin '{}' was not stored: {}", self->id(), r.error().detail);
    }
    self->finish();
  }));
}

void TwinJob::finish() {
  auto& it = item();
  const auto& caller = request_->caller;
  if (view_ && readable_) {
    auto view = impl_.twins.state(it.id);
    auto readable = impl_.twins.readable(caller, it.id);
    if (view && readable) {
      auto doc = to_json(*view, *readable);
      if (it.problem && !doc.contains("stale")) {
        doc["stale"] = json::object{{"since", core::format_rfc3339(record_.failing_since.value_or(started_))},
                                    {"reason", it.problem->detail},
                                    {"properties", json::array()}};
      }
      it.state = std::move(doc);
    } else if (!it.problem) {
      it.problem = view ? readable.error() : view.error();
    }
  }
  if (view_) {
    // What the caller may do on each affordance, now.
    const auto td = view_->td_json();
    const std::pair<std::string_view, std::vector<core::Operation>> kinds[] = {
        {"properties",
         {core::Operation::readproperty, core::Operation::writeproperty, core::Operation::observeproperty}},
        {"actions", {core::Operation::invokeaction}},
        {"events", {core::Operation::subscribeevent}}};
    for (const auto& [kind, operations] : kinds) {
      const auto* affordances = td.if_contains(kind);
      if (affordances == nullptr || !affordances->is_object()) continue;
      for (const auto& [name, affordance] : affordances->get_object()) {
        json::array allowed;
        for (const auto op : operations) {
          auto decision = impl_.twins.decide(caller, op, it.id, name);
          if (decision && decision->allowed) allowed.emplace_back(core::to_string(op));
        }
        it.permissions[name] = std::move(allowed);
      }
    }
  }
  if (--request_->pending == 0) request_->done(std::move(request_->items));
  finished_();
}

}  // namespace

Acquisition::Acquisition(TwinService& twins, store::Store& store, const TwinIndex& index,
                         const registry::SystemMonitor& monitor, const core::Clock& clock,
                         AcquisitionSettings settings)
    : impl_(std::make_unique<Impl>(twins, store, index, monitor, clock, std::move(settings))) {}

Acquisition::~Acquisition() {
  stop();
}

const AcquisitionSettings& Acquisition::settings() const {
  return impl_->settings;
}

void Acquisition::start() {
  std::lock_guard lock(impl_->state_mutex);
  if (impl_->thread.joinable()) return;
  impl_->guard.emplace(boost::asio::make_work_guard(impl_->io));
  impl_->accepting = true;
  impl_->stopping = false;
  impl_->thread = std::thread([io = &impl_->io] { io->run(); });
}

void Acquisition::begin_shutdown() {
  impl_->stopping = true;
}

void Acquisition::stop() {
  std::lock_guard lock(impl_->state_mutex);
  impl_->accepting = false;
  // Calls in flight finish (each is bounded by the timeout); twins still waiting are answered at once; then
  // run() has no more work.
  impl_->stopping = true;
  impl_->guard.reset();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void Acquisition::acquire(const core::Actor& caller, std::vector<std::string> twin_ids,
                          store::Completion<std::vector<AcquiredTwin>> done) {
  std::vector<std::string> ids;
  std::set<std::string_view> seen;
  for (const auto& id : twin_ids) {
    if (seen.insert(id).second) ids.push_back(id);
  }
  if (ids.size() > impl_->settings.max_twins) {
    return done(core::fail(Errc::validation_failed,
                           fmt::format("more than {} twins are selected; one acquisition takes at most {} "
                                       "(acquisition.max_twins): narrow the selection",
                                       impl_->settings.max_twins, impl_->settings.max_twins)));
  }
  auto request = std::make_shared<Request>();
  request->caller = caller;
  request->done = std::move(done);
  request->items.resize(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) request->items[i].id = std::move(ids[i]);
  request->pending = request->items.size();
  auto* impl = impl_.get();
  // Posted under the lock: stop() either came first (refused here) or waits for this work to finish.
  std::unique_lock lock(impl->state_mutex);
  if (!impl->accepting) {
    lock.unlock();
    return request->done(core::fail(Errc::unavailable, "the acquisition is stopped (shutting down)"));
  }
  boost::asio::post(impl->io, [impl, request] {
    if (request->items.empty()) return request->done(std::vector<AcquiredTwin>());
    for (std::size_t i = 0; i < request->items.size(); ++i) {
      impl->admit([impl, request, i](std::function<void()> finished) {
        std::make_shared<TwinJob>(*impl, request, i, std::move(finished))->start();
      });
    }
  });
}

}  // namespace twinbridge::dtif
