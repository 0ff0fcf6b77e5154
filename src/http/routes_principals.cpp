// /v1/principals: who may call twinbridge. Operators (principals:write) create, change and delete principals
// and their API keys; a principal may read itself and manage its own keys (key rotation without an operator).
// Ownership passes only on purpose: a principal that owns registrations is deleted only after an operator
// transferred them (/v1/principals/{id}/transfer) or deleted them, and a deleted principal's id is never
// reused (the store keeps it).

#include <fmt/format.h>
#include <boost/json/object.hpp>

#include "core/credentials.hpp"
#include "core/json_reader.hpp"
#include "core/merge_patch.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using boost::asio::awaitable;
using core::Errc;

namespace {

constexpr std::string_view kReservedIdPrefix = "twinbridge:";

bool is_self(const RequestContext& ctx, std::string_view id) {
  return ctx.caller->principal.id.str() == id;
}

core::Result<void> require(const RequestContext& ctx, core::Permission permission,
                           std::string_view self_id = {}) {
  if (core::has_permission(ctx.caller->principal, permission)) return {};
  if (!self_id.empty() && is_self(ctx, self_id)) return {};
  return core::fail(Errc::forbidden,
                    fmt::format("principal '{}' lacks the permission {}", ctx.caller->principal.id.str(),
                                core::to_string(permission)));
}

boost::json::object key_json(const store::ApiKeyRecord& k) {
  boost::json::object o{{"id", k.id.str()},
                        {"principal", k.principal.str()},
                        {"label", k.label},
                        {"created", core::format_rfc3339(k.created)}};
  o["expires"] =
      k.expires ? boost::json::value(core::format_rfc3339(*k.expires)) : boost::json::value(nullptr);
  return o;
}

struct NewKey {
  store::ApiKeyRecord record;
  std::string token;
};

NewKey make_key(const core::PrincipalId& principal, std::string label, std::optional<core::Timestamp> expires,
                core::Timestamp now) {
  auto issued = core::issue_api_key();
  NewKey k;
  k.token = std::move(issued.token);
  k.record.id = core::ApiKeyId(std::move(issued.key_id));
  k.record.principal = principal;
  k.record.hash = std::move(issued.hash);
  k.record.label = std::move(label);
  k.record.created = now;
  k.record.expires = expires;
  return k;
}

boost::json::object issued_key_json(const NewKey& k) {
  auto o = key_json(k.record);
  o["token"] = k.token;
  o["note"] = "the token is shown only in this response; store it now";
  return o;
}

// Reads the {label, expires} of an API key request.
core::Result<std::pair<std::string, std::optional<core::Timestamp>>> key_options(
    const boost::json::value& doc, std::string pointer, core::Timestamp now) {
  std::vector<core::FieldError> errors;
  core::ObjectReader r(doc, pointer, errors);
  std::pair<std::string, std::optional<core::Timestamp>> out;
  if (auto label = r.string("label", false, 256)) out.first = std::move(*label);
  if (auto expires = r.string("expires", false, 64)) {
    auto t = core::parse_rfc3339(*expires);
    if (!t) {
      r.add_error(r.member_pointer("expires"), "must be an RFC 3339 date-time such as 2027-01-31T12:00:00Z");
    } else if (*t <= now) {
      r.add_error(r.member_pointer("expires"), "must be in the future");
    } else {
      out.second = *t;
    }
  }
  r.reject_unknown();
  if (auto ok = core::validation_result(std::move(errors)); !ok) return std::unexpected(ok.error());
  return out;
}

Response principal_response(int status, const core::Principal& p) {
  auto r = json_response(status, core::to_json(p));
  r.header("ETag", etag(p.version));
  return r;
}

}  // namespace

void add_principal_routes(Router& router, ApiServices& s) {
  router.add(
      {Method::post, "/v1/principals", Auth::required, core::Permission::principals_write,
       [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
         auto body = json_body(req, s);
         if (!body) co_return std::unexpected(body.error());
         bool issue_key = true;
         std::optional<boost::json::value> key_request;
         if (auto* obj = body->if_object()) {
           if (auto* k = obj->if_contains("api_key")) {
             if (k->is_bool()) {
               issue_key = k->get_bool();
             } else {
               key_request = *k;
             }
             obj->erase("api_key");
           }
         }
         auto principal = core::principal_from_json(*body, nullptr);
         if (!principal) co_return std::unexpected(principal.error());
         if (principal->id.str().starts_with(kReservedIdPrefix)) {
           co_return std::unexpected(
               core::Error(Errc::validation_failed, "ids starting with 'twinbridge:' are reserved", "/id"));
         }
         const auto now = s.clock.now();
         std::optional<NewKey> key;
         if (key_request) {
           auto options = key_options(*key_request, "/api_key", now);
           if (!options) co_return std::unexpected(options.error());
           key = make_key(principal->id, std::move(options->first), options->second, now);
         } else if (issue_key) {
           key = make_key(principal->id, "initial", std::nullopt, now);
         }
         boost::json::object detail{{"kind", core::to_string(principal->kind)}, {"name", principal->name}};
         if (key) detail["api_key"] = key->record.id.str();
         auto audit = audit_entry(ctx, s.clock, "principal.create", "principal", principal->id.str(),
                                  std::move(detail));
         std::optional<store::ApiKeyRecord> record;
         if (key) record = key->record;
         auto created = co_await await_write<core::Principal>(
             [&](auto done) { s.store.create_principal(*principal, record, audit, std::move(done)); });
         if (!created) co_return std::unexpected(created.error());
         auto out = core::to_json(*created);
         if (key) out["api_key"] = issued_key_json(*key);
         auto r = json_response(201, out);
         r.header("Location", "/v1/principals/" + created->id.str());
         r.header("ETag", etag(created->version));
         co_return r;
       }});

  router.add({Method::get, "/v1/principals", Auth::required, core::Permission::principals_read,
              [&s](RequestContext&, const Request& req) -> HandlerResult {
                auto query = parse_query(req.query);
                if (!query) co_return std::unexpected(query.error());
                auto page = page_params(*query, s);
                if (!page) co_return std::unexpected(page.error());
                auto result = s.store.principals({page->after, page->limit});
                if (!result) co_return std::unexpected(result.error());
                boost::json::array items;
                for (const auto& p : result->items) items.push_back(core::to_json(p));
                co_return list_response(req, std::move(items), result->next_after);
              }});

  router.add({Method::get, "/v1/principals/me", Auth::required, std::nullopt,
              [](RequestContext& ctx, const Request&) -> HandlerResult {
                auto out = core::to_json(ctx.caller->principal);
                out["credential"] = ctx.caller->credential;
                boost::json::array permissions;
                for (auto p : {core::Permission::principals_read, core::Permission::principals_write,
                               core::Permission::audit_read, core::Permission::registry_read,
                               core::Permission::registry_write, core::Permission::registry_admin,
                               core::Permission::twins_read, core::Permission::twins_control,
                               core::Permission::twins_publish, core::Permission::services_use}) {
                  if (core::has_permission(ctx.caller->principal, p))
                    permissions.emplace_back(core::to_string(p));
                }
                out["permissions"] = std::move(permissions);
                co_return json_response(200, out);
              }});

  router.add({Method::get, "/v1/principals/{id}", Auth::required, std::nullopt,
              [&s](RequestContext& ctx, const Request&) -> HandlerResult {
                const auto id = ctx.param("id");
                if (auto ok = require(ctx, core::Permission::principals_read, id); !ok)
                  co_return std::unexpected(ok.error());
                auto p = s.store.principal(core::PrincipalId(std::string(id)));
                if (!p) co_return std::unexpected(p.error());
                co_return principal_response(200, *p);
              }});

  router.add({Method::patch, "/v1/principals/{id}", Auth::required, core::Permission::principals_write,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto patch = json_body(req, s, "application/merge-patch+json");
                if (!patch) co_return std::unexpected(patch.error());
                if (!patch->is_object()) {
                  co_return std::unexpected(core::Error(
                      Errc::validation_failed, "a merge patch of a principal must be a JSON object", ""));
                }
                auto current = s.store.principal(core::PrincipalId(std::string(ctx.param("id"))));
                if (!current) co_return std::unexpected(current.error());
                if (auto ok = check_if_match(req.if_match, current->version); !ok)
                  co_return std::unexpected(ok.error());
                const auto merged = core::merge_patch(core::to_json(*current), *patch);
                auto updated = core::principal_from_json(merged, &*current);
                if (!updated) co_return std::unexpected(updated.error());
                auto audit = audit_entry(ctx, s.clock, "principal.update", "principal", current->id.str(),
                                         boost::json::object{{"patch", *patch}});
                auto stored = co_await await_write<core::Principal>([&](auto done) {
                  s.store.update_principal(*updated, current->version, audit, std::move(done));
                });
                if (!stored) co_return std::unexpected(concurrent_change(stored.error(), req));
                co_return principal_response(200, *stored);
              }});

  router.add({Method::delete_, "/v1/principals/{id}", Auth::required, core::Permission::principals_write,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                const core::PrincipalId id(std::string(ctx.param("id")));
                std::optional<std::int64_t> expected;
                if (!req.if_match.empty()) {
                  auto current = s.store.principal(id);
                  if (!current) co_return std::unexpected(current.error());
                  if (auto ok = check_if_match(req.if_match, current->version); !ok)
                    co_return std::unexpected(ok.error());
                  expected = current->version;
                }
                auto audit = audit_entry(ctx, s.clock, "principal.delete", "principal", id.str());
                auto done = co_await await_write<void>(
                    [&](auto cb) { s.store.delete_principal(id, expected, audit, std::move(cb)); });
                if (!done) {
                  auto e = done.error();
                  if (e.code == Errc::conflict) {  // it owns registrations (the store names them)
                    e.detail += fmt::format(
                        "; transfer them to another principal (POST /v1/principals/{}/transfer with "
                        "{{\"to\": \"<principal id>\"}}) or delete them (DELETE on each), then delete the "
                        "principal",
                        id.str());
                  }
                  co_return std::unexpected(std::move(e));
                }
                Response r;
                r.status = 204;
                co_return r;
              }});

  // Ownership passes only on purpose: an operator moves everything a principal owns (its systems with their
  // twins, its directory twins) to another principal that may own them, in one audited transaction.
  router.add(
      {Method::post, "/v1/principals/{id}/transfer", Auth::required, core::Permission::principals_write,
       [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
         if (auto ok = require(ctx, core::Permission::registry_admin); !ok)
           co_return std::unexpected(ok.error());
         const core::PrincipalId from(std::string(ctx.param("id")));
         auto body = json_body(req, s);
         if (!body) co_return std::unexpected(body.error());
         std::vector<core::FieldError> errors;
         core::ObjectReader reader(*body, "", errors);
         auto to_text = reader.string("to", true, core::kMaxIdBytes);
         reader.reject_unknown();
         if (auto ok = core::validation_result(std::move(errors)); !ok) co_return std::unexpected(ok.error());
         const core::PrincipalId to(std::move(*to_text));
         if (auto p = s.store.principal(from); !p) co_return std::unexpected(p.error());
         auto target = s.store.principal(to);
         if (!target) {
           if (target.error().code != Errc::not_found) co_return std::unexpected(target.error());
           co_return core::fail_at(Errc::validation_failed, "/to",
                                   fmt::format("principal '{}' does not exist", to.str()));
         }
         // The receiver must be one that could have registered them (core::may_own_system).
         for (const auto kind : {core::SystemKind::third_party, core::SystemKind::twin}) {
           store::SystemQuery q;
           q.kind = kind;
           q.owner = from.str();
           q.limit = 1;
           auto some = s.store.systems(q);
           if (!some) co_return std::unexpected(some.error());
           bool owns = !some->items.empty();
           if (kind == core::SystemKind::twin && !owns) {
             auto owned = s.store.owned_by(from);
             if (!owned) co_return std::unexpected(owned.error());
             owns = owned->twin_count > 0;  // directory twins are held by twin-system principals
           }
           if (!owns) continue;
           if (auto ok = core::may_own_system(*target, kind); !ok) {
             co_return core::fail_at(
                 Errc::validation_failed, "/to",
                 fmt::format("cannot receive the registrations of '{}': {}", from.str(), ok.error().detail));
           }
         }
         auto audit = audit_entry(ctx, s.clock, "principal.transfer", "principal", from.str(),
                                  boost::json::object{{"to", to.str()}});
         auto moved = co_await await_write<store::OwnedRegistrations>(
             [&](auto done) { s.store.transfer_registrations(from, to, audit, std::move(done)); });
         if (!moved) co_return std::unexpected(moved.error());
         boost::json::array systems;
         for (const auto& [kind, id] : moved->systems) {
           systems.push_back(boost::json::object{{"kind", core::to_string(kind)}, {"id", id}});
         }
         boost::json::array twins;
         for (const auto& id : moved->twins) twins.emplace_back(id);
         co_return json_response(200, boost::json::object{{"from", from.str()},
                                                          {"to", to.str()},
                                                          {"system_count", moved->system_count},
                                                          {"twin_count", moved->twin_count},
                                                          {"systems", std::move(systems)},
                                                          {"twins", std::move(twins)}});
       }});

  router.add({Method::get, "/v1/principals/{id}/api-keys", Auth::required, std::nullopt,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                const auto id = ctx.param("id");
                if (auto ok = require(ctx, core::Permission::principals_read, id); !ok)
                  co_return std::unexpected(ok.error());
                const core::PrincipalId pid{std::string(id)};
                if (auto p = s.store.principal(pid); !p) co_return std::unexpected(p.error());
                auto keys = s.store.api_keys(pid);
                if (!keys) co_return std::unexpected(keys.error());
                boost::json::array items;
                for (const auto& k : *keys) items.push_back(key_json(k));
                co_return list_response(req, std::move(items), std::nullopt);
              }});

  router.add({Method::post, "/v1/principals/{id}/api-keys", Auth::required, std::nullopt,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                const auto id = ctx.param("id");
                if (auto ok = require(ctx, core::Permission::principals_write, id); !ok)
                  co_return std::unexpected(ok.error());
                boost::json::value doc = boost::json::object();
                if (!req.body.empty()) {
                  auto body = json_body(req, s);
                  if (!body) co_return std::unexpected(body.error());
                  doc = std::move(*body);
                }
                const auto now = s.clock.now();
                auto options = key_options(doc, "", now);
                if (!options) co_return std::unexpected(options.error());
                auto key = make_key(core::PrincipalId(std::string(id)), std::move(options->first),
                                    options->second, now);
                auto audit = audit_entry(ctx, s.clock, "api-key.create", "principal", std::string(id),
                                         boost::json::object{{"api_key", key.record.id.str()}});
                auto stored = co_await await_write<store::ApiKeyRecord>(
                    [&](auto done) { s.store.add_api_key(key.record, audit, std::move(done)); });
                if (!stored) co_return std::unexpected(stored.error());
                auto r = json_response(201, issued_key_json(key));
                r.header("Location", fmt::format("/v1/principals/{}/api-keys/{}", id, key.record.id.str()));
                co_return r;
              }});

  router.add({Method::delete_, "/v1/principals/{id}/api-keys/{key}", Auth::required, std::nullopt,
              [&s](RequestContext& ctx, const Request&) -> HandlerResult {
                const auto id = ctx.param("id");
                if (auto ok = require(ctx, core::Permission::principals_write, id); !ok)
                  co_return std::unexpected(ok.error());
                auto audit = audit_entry(ctx, s.clock, "api-key.revoke", "principal", std::string(id),
                                         boost::json::object{{"api_key", ctx.param("key")}});
                auto done = co_await await_write<void>([&](auto cb) {
                  s.store.revoke_api_key(core::PrincipalId(std::string(id)),
                                         core::ApiKeyId(std::string(ctx.param("key"))), audit, std::move(cb));
                });
                if (!done) co_return std::unexpected(done.error());
                Response r;
                r.status = 204;
                co_return r;
              }});
}

}  // namespace twinbridge::http
