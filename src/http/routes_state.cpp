// Twin state, access control policies and access checks (FGMV-29 8.3.3 DTIA, 8.3.4 DTS, 8.3.5 DTAC): thin
// adapters onto dtif::TwinService, which decides everything.
//   GET   /v1/twins/{id}/state              the whole state (properties the caller may read)
//   GET   /v1/twins/{id}/properties/{name}  one property's value (the bare JSON value, as a WoT readproperty)
//   GET   /v1/twin-states?id=..&id=..       many twins' state in one request
//   PATCH /v1/twins/{id}/state              a merge patch of the state, pushed by the owning DT system
//   POST  /v1/twin-systems/{id}/state       a batch of many twins' changes, with one result per change
//   GET   /v1/twins/{id}/policy, PUT        the twin's access control policy (ETag, If-Match)
//   POST  /v1/access/check                  "may X do Y on Z", with the rule that decided

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "core/json_reader.hpp"
#include "core/policy.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

constexpr std::size_t kMaxStateIds = 1000;  // twins per GET /v1/twin-states

// The ETag of a state document or property value served at `version`. What is served changes without a new
// version when it holds live values of ephemeral properties, a stale mark, or leaves out properties the
// caller may not read (its policy changed); then the ETag is "<version>.<digest of what is served>", so that
// a cached copy is never revalidated (If-None-Match) over such a change. `as_stored`: it holds none of these,
// and the ETag is the version's.
std::string served_etag(std::int64_t version, bool as_stored, std::string_view served) {
  if (as_stored) return etag(version);
  std::uint64_t digest = 14695981039346656037ULL;  // FNV-1a, 64 bits
  for (const unsigned char c : served) {
    digest ^= c;
    digest *= 1099511628211ULL;
  }
  return fmt::format("\"{}.{:016x}\"", version, digest);
}

struct ServedState {
  boost::json::object doc;
  std::string etag;
};

// The state document `caller` may see: the properties it may read (readproperty, decided per property).
core::Result<ServedState> readable_state(ApiServices& s, const core::Actor& caller, const std::string& id) {
  auto view = s.twins.state(id);
  if (!view) return std::unexpected(view.error());
  auto readable = s.twins.readable(caller, id);
  if (!readable) return std::unexpected(readable.error());
  ServedState out{dtif::to_json(*view, *readable), {}};
  const bool as_stored = view->live.empty() && !view->live_pose && !view->stale &&
                         out.doc.at("properties").as_object().size() == view->state->properties.size();
  out.etag = served_etag(view->state->version, as_stored, as_stored ? "" : boost::json::serialize(out.doc));
  return out;
}

Response state_response(const ServedState& served) {
  auto r = json_response(200, served.doc);
  r.header("ETag", served.etag);
  return r;
}

// The answer of one report of a batch: {"twin", "status", "version"} or {"twin", "status", "problem"}.
boost::json::object report_outcome(const std::string& twin, const dtif::ReportResult& r,
                                   const std::string& path, const std::string& request_id) {
  if (r) return {{"twin", twin}, {"status", 200}, {"version", (*r)->version}};
  auto problem = problem_response(r.error(), path, request_id);
  return {{"twin", twin}, {"status", problem.status}, {"problem", boost::json::parse(problem.body)}};
}

core::Result<core::Operation> operation_member(const boost::json::object& body) {
  const auto* op = body.if_contains("operation");
  if (op == nullptr || !op->is_string()) {
    return core::fail_at(Errc::validation_failed, "/operation",
                         "is required: readproperty, writeproperty, observeproperty, invokeaction or "
                         "subscribeevent");
  }
  auto parsed = core::parse_operation(op->get_string());
  if (!parsed) {
    return core::fail_at(
        Errc::validation_failed, "/operation",
        fmt::format("'{}' is not an operation a policy decides", std::string_view(op->get_string())));
  }
  return *parsed;
}

core::Result<std::string> string_member(const boost::json::object& body, std::string_view name,
                                        bool required) {
  const auto* v = body.if_contains(name);
  if (v == nullptr) {
    if (!required) return std::string();
    return core::fail_at(Errc::validation_failed, "/" + std::string(name), "is required");
  }
  if (!v->is_string() || v->get_string().empty())
    return core::fail_at(Errc::validation_failed, "/" + std::string(name), "must be a non-empty string");
  return std::string(v->get_string());
}

}  // namespace

void add_state_routes(Router& router, ApiServices& s) {
  router.add({Method::get, "/v1/twins/{id}/state", Auth::required, std::nullopt,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                if (!req.query.empty()) co_return unknown_parameter(req.query.substr(0, req.query.find('=')));
                auto doc = readable_state(s, *ctx.caller, std::string(ctx.param("id")));
                if (!doc) co_return std::unexpected(doc.error());
                co_return state_response(*doc);
              }});

  router.add(
      {Method::get, "/v1/twins/{id}/properties/{name}", Auth::required, std::nullopt,
       [&s](RequestContext& ctx, const Request&) -> HandlerResult {
         const std::string id(ctx.param("id"));
         const std::string name(ctx.param("name"));
         if (auto may = s.twins.may_read(*ctx.caller, id); !may) co_return std::unexpected(may.error());
         auto view = s.twins.state(id);
         if (!view) co_return std::unexpected(view.error());
         // A property the TD does not declare is not there (for anyone), rather than forbidden.
         if (auto declared =
                 core::check_characteristics(view->twin->td(), core::Operation::readproperty, name);
             !declared && declared.error().code == Errc::validation_failed) {
           co_return core::fail(Errc::not_found, fmt::format("twin '{}': {}", id, declared.error().detail));
         }
         auto decision = s.twins.decide(*ctx.caller, core::Operation::readproperty, id, name);
         if (!decision) co_return std::unexpected(decision.error());
         if (!decision->allowed) {
           co_return core::fail(Errc::forbidden, fmt::format("reading property '{}' of twin '{}' is not "
                                                             "allowed: {}",
                                                             name, id, decision->reason));
         }
         const auto doc = dtif::to_json(*view);
         const auto& props = doc.at("properties").as_object();
         const auto* value = props.if_contains(name);
         if (value == nullptr) {
           co_return core::fail(Errc::not_found,
                                fmt::format("twin '{}' has no value of property '{}' yet (values are never "
                                            "invented; the DT system reports them)",
                                            id, name));
         }
         auto r = json_response(200, *value);
         const auto* when = doc.at("updated").as_object().if_contains(name);
         const auto* stale = doc.if_contains("stale");
         const bool as_stored = !view->live.contains(name) && stale == nullptr;
         r.header("ETag",
                  served_etag(doc.at("version").as_int64(), as_stored,
                              as_stored ? std::string()
                                        : r.body + (when != nullptr ? std::string(when->as_string()) : "") +
                                              (stale != nullptr ? boost::json::serialize(*stale) : "")));
         if (when != nullptr) r.header("Twinbridge-Updated", std::string(when->as_string()));
         if (stale != nullptr) r.header("Twinbridge-Stale", boost::json::serialize(*stale));
         co_return r;
       }});

  router.add({Method::get, "/v1/twin-states", Auth::required, std::nullopt,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto params = parse_query(req.query);
                if (!params) co_return std::unexpected(params.error());
                std::vector<std::string> ids;
                for (const auto& [k, v] : *params) {
                  if (k != "id") co_return unknown_parameter(k);
                  ids.push_back(v);
                }
                if (ids.empty() || ids.size() > kMaxStateIds) {
                  co_return core::fail_in(Errc::bad_request, core::FieldIn::query, "id",
                                          fmt::format("give 1 to {} twin ids (id=..&id=..)", kMaxStateIds));
                }
                boost::json::array items;
                for (const auto& id : ids) {
                  auto doc = readable_state(s, *ctx.caller, id);
                  if (doc) {
                    items.push_back(std::move(doc->doc));
                  } else {
                    auto problem = problem_response(doc.error(), req.path, ctx.request_id);
                    items.push_back(boost::json::object{{"id", id},
                                                        {"status", problem.status},
                                                        {"problem", boost::json::parse(problem.body)}});
                  }
                }
                co_return json_response(200, boost::json::object{{"items", std::move(items)}});
              }});

  router.add({Method::patch, "/v1/twins/{id}/state", Auth::required, core::Permission::twins_publish,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto body = json_body(req, s, "application/merge-patch+json");
                if (!body) co_return std::unexpected(body.error());
                if (!body->is_object())
                  co_return core::fail_at(Errc::validation_failed, "", "must be an object");
                dtif::StateReport report;
                report.twin_id = std::string(ctx.param("id"));
                auto& members = body->as_object();
                if (auto ok = dtif::take_report_facts(members, "", report); !ok)
                  co_return std::unexpected(ok.error());
                report.patch = std::move(members);
                std::vector<dtif::StateReport> reports;
                reports.push_back(std::move(report));
                auto results = co_await await_write<std::vector<dtif::ReportResult>>([&](auto done) {
                  s.twins.report(*ctx.caller, std::move(reports), std::nullopt, std::move(done));
                });
                if (!results) co_return std::unexpected(results.error());
                auto& one = (*results)[0];
                if (!one) {
                  auto e = std::move(one.error());
                  // The patch is the body here: its pointers start at the root.
                  for (auto& f : e.fields) {
                    if (f.pointer.starts_with("/patch")) f.pointer.erase(0, 6);
                  }
                  co_return std::unexpected(std::move(e));
                }
                auto doc = readable_state(s, *ctx.caller, (*one)->id);
                if (!doc) co_return std::unexpected(doc.error());
                co_return state_response(*doc);
              }});

  router.add(
      {Method::post, "/v1/twin-systems/{id}/state", Auth::required, core::Permission::twins_publish,
       [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
         const std::string system_id(ctx.param("id"));
         // A system with twins in the index is registered (its twins leave with it); the store answers else.
         if (!s.twins.index().has_system(system_id)) {
           if (auto system = s.store.system(core::SystemKind::twin, system_id); !system)
             co_return std::unexpected(system.error());
         }
         auto body = json_body(req, s);
         if (!body) co_return std::unexpected(body.error());
         auto* changes = body->is_object() ? body->as_object().if_contains("changes") : nullptr;
         if (changes == nullptr || !changes->is_array() || changes->as_array().empty()) {
           co_return core::fail_at(Errc::validation_failed, "/changes",
                                   "is required: an array of 1 to 10000 changes {twin, patch, sourceTime?, "
                                   "sourceSeq?}");
         }
         auto& list = changes->as_array();  // the patches of valid changes are moved out
         if (list.size() > dtif::kMaxBatchReports) {
           co_return core::fail_at(
               Errc::validation_failed, "/changes",
               fmt::format("holds {} changes; at most {} per request", list.size(), dtif::kMaxBatchReports));
         }
         // Each change on its own: a malformed one gets its own result, the others go on.
         std::vector<dtif::StateReport> reports;
         std::vector<std::size_t> positions;
         boost::json::array outcomes(list.size());
         for (std::size_t i = 0; i < list.size(); ++i) {
           const auto base = fmt::format("/changes/{}", i);
           auto report = dtif::take_state_change(list[i], base);
           if (!report) {
             const auto* item = list[i].if_object();
             const auto* twin = item != nullptr ? item->if_contains("twin") : nullptr;
             outcomes[i] = report_outcome(
                 twin != nullptr && twin->is_string() ? std::string(twin->as_string()) : std::string(),
                 std::unexpected(report.error()), req.path, ctx.request_id);
             continue;
           }
           positions.push_back(i);
           reports.push_back(std::move(*report));
         }
         if (!reports.empty()) {
           std::vector<std::string> ids;
           for (const auto& r : reports) ids.push_back(r.twin_id);
           // A batch of one run (dtif::TwinService::kLockRun changes at most) is checked here, like a single
           // change: handing it to a worker and back would cost more than the check. A larger one goes to an
           // ingest worker, so that the I/O thread goes on delivering what is applied meanwhile.
           const auto start = [&](auto done) {
             s.twins.report(*ctx.caller, std::move(reports), system_id, std::move(done));
           };
           core::Result<std::vector<dtif::ReportResult>> results;
           if (reports.size() <= dtif::TwinService::kLockRun) {
             results = co_await await_write<std::vector<dtif::ReportResult>>(start);
           } else {
             results = co_await await_write_on<std::vector<dtif::ReportResult>>(
                 s.ingest, ctx.caller->principal.id.str(), start);
           }
           if (!results) co_return std::unexpected(results.error());
           for (std::size_t k = 0; k < positions.size(); ++k) {
             auto outcome = (*results)[k];
             if (!outcome) {
               // Pointers of a batch name the change: /changes/<position>/patch/...
               for (auto& f : outcome.error().fields) {
                 if (f.pointer.starts_with("/changes/")) {
                   const auto rest = f.pointer.find('/', 9);
                   f.pointer = fmt::format("/changes/{}{}", positions[k],
                                           rest == std::string::npos ? "" : f.pointer.substr(rest));
                 } else if (f.pointer.starts_with("/patch")) {
                   f.pointer = fmt::format("/changes/{}{}", positions[k], f.pointer);
                 }
               }
             }
             outcomes[positions[k]] = report_outcome(ids[k], outcome, req.path, ctx.request_id);
           }
         }
         std::size_t failed = 0;
         for (const auto& o : outcomes) failed += o.as_object().at("status").as_int64() != 200;
         co_return json_response(200, boost::json::object{{"results", std::move(outcomes)},
                                                          {"accepted", list.size() - failed},
                                                          {"failed", failed}});
       }});

  router.add({Method::get, "/v1/twins/{id}/policy", Auth::required, core::Permission::registry_read,
              [&s](RequestContext& ctx, const Request&) -> HandlerResult {
                const std::string id(ctx.param("id"));
                auto policy = s.twins.policy(id);
                if (!policy) co_return std::unexpected(policy.error());
                if (!*policy) {
                  co_return core::fail(
                      Errc::not_found,
                      fmt::format("twin '{}' has no policy: principals with twins:read may read, "
                                  "observe and subscribe; nobody else may write or invoke",
                                  id));
                }
                auto doc = (*policy)->document;
                doc["version"] = (*policy)->version;
                doc["modified"] = core::format_rfc3339((*policy)->modified);
                auto r = json_response(200, doc);
                r.header("ETag", etag((*policy)->version));
                co_return r;
              }});

  router.add({Method::put, "/v1/twins/{id}/policy", Auth::required, core::Permission::registry_write,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                const std::string id(ctx.param("id"));
                auto body = json_body(req, s);
                if (!body) co_return std::unexpected(body.error());
                if (auto* o = body->if_object()) {
                  o->erase("version");  // what GET serves may come back
                  o->erase("modified");
                }
                std::optional<std::int64_t> expected;
                if (req.if_match == "*") {
                  // any existing policy: checked below through the current version
                  auto current = s.twins.policy(id);
                  if (!current) co_return std::unexpected(current.error());
                  if (!*current)
                    co_return core::fail(Errc::precondition_failed, "the twin has no policy yet");
                  expected = (*current)->version;
                } else if (!req.if_match.empty()) {
                  auto current = s.twins.policy(id);
                  if (!current) co_return std::unexpected(current.error());
                  const auto version = *current ? (*current)->version : 0;
                  if (auto ok = check_if_match(req.if_match, version); !ok)
                    co_return std::unexpected(ok.error());
                  expected = version;
                } else if (req.if_none_match == "*") {
                  expected = 0;
                }
                auto stored = co_await await_write<store::PolicyRecord>([&](auto done) {
                  s.twins.set_policy(*ctx.caller, id, *body, expected, std::move(done));
                });
                if (!stored) co_return std::unexpected(stored.error());
                auto doc = stored->document;
                doc["version"] = stored->version;
                doc["modified"] = core::format_rfc3339(stored->modified);
                auto r = json_response(stored->version == 1 ? 201 : 200, doc);
                r.header("ETag", etag(stored->version));
                co_return r;
              }});

  router.add({Method::post, "/v1/access/check", Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto body = json_body(req, s);
                if (!body) co_return std::unexpected(body.error());
                if (!body->is_object())
                  co_return core::fail_at(Errc::validation_failed, "", "must be an object");
                const auto& o = body->as_object();
                for (const auto& m : o) {
                  if (m.key() != "principal" && m.key() != "operation" && m.key() != "twin" &&
                      m.key() != "affordance") {
                    co_return core::fail_at(Errc::validation_failed, "/" + std::string(m.key()),
                                            "is not a member of an access check");
                  }
                }
                auto op = operation_member(o);
                if (!op) co_return std::unexpected(op.error());
                auto twin = string_member(o, "twin", true);
                if (!twin) co_return std::unexpected(twin.error());
                auto affordance = string_member(o, "affordance", true);
                if (!affordance) co_return std::unexpected(affordance.error());
                auto who = string_member(o, "principal", false);
                if (!who) co_return std::unexpected(who.error());
                core::Principal subject = ctx.caller->principal;
                if (!who->empty() && *who != subject.id.str()) {
                  // Asking about someone else: an operator (principals:read) may.
                  if (!core::has_permission(ctx.caller->principal, core::Permission::principals_read)) {
                    co_return core::fail(
                        Errc::forbidden,
                        "asking what another principal may do needs principals:read; leave out "
                        "'principal' to ask for yourself");
                  }
                  auto p = s.store.principal(core::PrincipalId(*who));
                  if (!p) {
                    auto e = p.error();
                    e.fields.push_back({"/principal", e.detail});
                    co_return std::unexpected(std::move(e));
                  }
                  subject = std::move(*p);
                }
                auto decision = s.twins.decide_for(subject, *op, *twin, *affordance);
                if (!decision) co_return std::unexpected(decision.error());
                boost::json::object out{{"principal", subject.id.str()},
                                        {"operation", core::to_string(*op)},
                                        {"twin", *twin},
                                        {"affordance", *affordance},
                                        {"allowed", decision->allowed},
                                        {"reason", decision->reason}};
                if (decision->rule) out["rule"] = *decision->rule;
                if (!decision->rule_id.empty()) out["rule_id"] = decision->rule_id;
                co_return json_response(200, out);
              }});
}

}  // namespace twinbridge::http
