// Registration and discovery of systems (FGMV-29 8.2.1/8.2.2 for 3rd-party systems; 8.3.1/8.3.2 for twin
// systems reuse the same routes with another registry): /v1/<collection> and /v1/<collection>/{id}, and the
// published JSON Schema of the registration document at /schemas/<kind>.json.

#include <fmt/format.h>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "core/merge_patch.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

Response system_response(int status, const core::SystemRecord& r) {
  auto out = json_response(status, core::to_json(r));
  out.header("ETag", system_etag(r));
  return out;
}

core::Result<registry::DiscoveryQuery> discovery_query(const Request& req, const ApiServices& s) {
  auto params = parse_query(req.query);
  if (!params) return std::unexpected(params.error());
  auto page = page_params(*params, s);
  if (!page) return std::unexpected(page.error());
  registry::DiscoveryQuery q;
  q.after = page->after;
  q.limit = page->limit;
  for (const auto& [name, value] : *params) {
    if (name == "type") {
      q.type = value;
    } else if (name == "owner") {
      q.owner = value;
    } else if (name == "status") {
      q.status = core::parse_system_status(value);
      if (!q.status) {
        return core::fail_in(
            Errc::bad_request, core::FieldIn::query, "status",
            fmt::format("'{}' is not a status; expected up, degraded, down or unknown", value));
      }
    } else if (name == "exclude_down") {
      if (value != "true" && value != "false") {
        return core::fail_in(Errc::bad_request, core::FieldIn::query, "exclude_down",
                             "must be true or false");
      }
      q.exclude_down = value == "true";
    } else if (name == "filter") {
      auto path = query::JsonPath::parse(value);
      if (!path) {
        return core::fail_in(Errc::bad_request, core::FieldIn::query, "filter", path.error().detail);
      }
      q.filter = std::move(*path);
    } else if (name == "sort") {
      auto sort = sort_param(value, store::parse_system_sort, "id, name, type, status, created or modified");
      if (!sort) return std::unexpected(sort.error());
      std::tie(q.sort, q.descending) = *sort;
    } else if (name != "limit" && name != "cursor") {
      return unknown_parameter(name);
    }
  }
  return q;
}

}  // namespace

void add_system_routes(Router& router, ApiServices& s, registry::SystemRegistry& registry,
                       const std::string& collection, const dtif::TwinRegistry* twins) {
  const std::string kind(core::to_string(registry.kind()));
  const std::string base = "/v1/" + collection;
  const std::string item = base + "/{id}";

  router.add({Method::get, "/schemas/" + kind + ".json", Auth::none, std::nullopt,
              [&registry](RequestContext&, const Request&) -> HandlerResult {
                Response r;
                r.content_type = "application/schema+json";
                r.body = std::string(registry.schema_text());
                co_return r;
              }});

  router.add(
      {Method::post, base, Auth::required, core::Permission::registry_write,
       [&s, &registry, kind, base, twins](RequestContext& ctx, const Request& req) -> HandlerResult {
         if (auto ok = registry.may_register(ctx.caller->principal); !ok)
           co_return std::unexpected(ok.error());
         auto body = json_body(req, s);
         if (!body) co_return std::unexpected(body.error());
         auto record = registry.from_document(*body, nullptr, ctx.caller->principal.id);
         if (!record) co_return std::unexpected(record.error());
         boost::json::object detail{{"type", record->type}, {"name", record->name}};
         // A twin system may bring its initial list of twins; they are stored with it, in one transaction.
         std::vector<core::TwinRecord> initial;
         if (const auto* list = record->body.if_contains("twins"); list != nullptr && twins != nullptr) {
           // Publishing twins is its own right (twins:publish), beside registering the system.
           if (auto ok = twins->may_publish(ctx.caller->principal, *record); !ok) {
             co_return std::unexpected(ok.error());
           }
           auto parsed = twins->from_list(*list, record->id, ctx.caller->principal.id);
           if (!parsed) co_return std::unexpected(parsed.error());
           initial = std::move(*parsed);
           record->body.erase("twins");
           boost::json::array ids;
           for (const auto& t : initial) ids.emplace_back(t.id);
           detail["twins"] = std::move(ids);
         }
         // Write-only credentials (twin systems): stored with the registration, apart from it; only the names
         // they are for reach the audit log.
         const auto credentials =
             twins != nullptr ? registry::SystemRegistry::credentials(*body) : std::nullopt;
         if (credentials) {
           detail["credentials"] =
               registry::SystemRegistry::without_secrets(*body).as_object().at("credentials");
         }
         auto audit = audit_entry(ctx, s.clock, kind + ".register", kind, record->id, std::move(detail));
         auto stored = co_await await_write<core::SystemRecord>([&](auto done) {
           if (twins != nullptr && credentials) {
             s.store.register_twin_system(*record, initial, *credentials, audit, std::move(done));
           } else if (twins != nullptr) {
             s.store.register_twin_system(*record, initial, audit, std::move(done));
           } else {
             s.store.create_system(*record, audit, std::move(done));
           }
         });
         if (!stored) co_return std::unexpected(stored.error());
         auto r = system_response(201, *stored);
         r.header("Location", base + "/" + stored->id);
         co_return r;
       }});

  router.add({Method::get, base, Auth::required, core::Permission::registry_read,
              [&s, &registry](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto q = discovery_query(req, s);
                if (!q) co_return std::unexpected(q.error());
                // A store read of a page (a filter reads and examines every record of the kind) and its
                // serialization: on the worker pool, under the caller's query budget, never on the I/O
                // thread.
                auto budget = query_budget(s, ctx);
                q->budget = &budget;
                auto work = [&registry, &q]() -> core::Result<SerializedPage> {
                  auto page = registry.discover(*q);
                  if (!page) return std::unexpected(page.error());
                  SerializedPage out{"[", page->next_after, false};
                  for (const auto& r : page->items) {
                    if (out.items.size() > 1) out.items += ',';
                    out.items += boost::json::serialize(core::to_json(r));
                  }
                  out.items += ']';
                  out.check_utf8();
                  return out;
                };
                auto page = co_await offload(s, ctx, work);
                if (!page) co_return std::unexpected(page.error());
                co_return list_response(req, std::move(*page));
              }});

  router.add({Method::get, item, Auth::required, core::Permission::registry_read,
              [&s, &registry](RequestContext& ctx, const Request&) -> HandlerResult {
                auto r = s.store.system(registry.kind(), std::string(ctx.param("id")));
                if (!r) co_return std::unexpected(r.error());
                co_return system_response(200, *r);
              }});

  // PUT replaces the registration; PATCH merges into it (RFC 7396). Both need the owner or registry:admin.
  for (const bool merge : {false, true}) {
    router.add({merge ? Method::patch : Method::put, item, Auth::required, core::Permission::registry_write,
                [&s, &registry, kind, merge](RequestContext& ctx, const Request& req) -> HandlerResult {
                  auto body = json_body(req, s, merge ? "application/merge-patch+json" : "application/json");
                  if (!body) co_return std::unexpected(body.error());
                  auto current = s.store.system(registry.kind(), std::string(ctx.param("id")));
                  if (!current) co_return std::unexpected(current.error());
                  if (auto ok = registry.may_change(ctx.caller->principal, *current); !ok) {
                    co_return std::unexpected(ok.error());
                  }
                  if (auto ok = check_system_if_match(req.if_match, *current); !ok) {
                    co_return std::unexpected(ok.error());
                  }
                  const auto document = merge ? core::merge_patch(core::to_json(*current), *body) : *body;
                  auto record = registry.from_document(document, &*current, current->owner);
                  if (!record) co_return std::unexpected(record.error());
                  if (record->body.contains("twins")) {
                    co_return core::fail_at(
                        Errc::validation_failed, "/twins",
                        "twins are managed one by one under " + std::string(req.path) + "/twins");
                  }
                  // Credentials (twin systems): PUT replaces them (none given: none kept); PATCH keeps them
                  // unless it names them (null: removed).
                  std::optional<store::SystemCredentials> credentials;
                  if (registry.kind() == core::SystemKind::twin &&
                      (!merge || registry::SystemRegistry::credentials(*body))) {
                    // The merged document's (the patch's without its nulls, checked by the schema).
                    credentials =
                        registry::SystemRegistry::credentials(document).value_or(store::SystemCredentials{});
                  }
                  auto audit = audit_entry(
                      ctx, s.clock, kind + (merge ? ".update" : ".replace"), kind, current->id,
                      merge ? boost::json::object{{"patch", registry::SystemRegistry::without_secrets(*body)}}
                            : boost::json::object{});
                  if (credentials && !merge) {
                    audit.detail["credentials"] =
                        registry::SystemRegistry::without_secrets(
                            boost::json::object{{"credentials", credentials->by_scheme}})
                            .as_object()
                            .at("credentials");
                  }
                  auto stored = co_await await_write<core::SystemRecord>([&](auto done) {
                    if (credentials) {
                      s.store.update_system(*record, current->version, *credentials, audit, std::move(done));
                    } else {
                      s.store.update_system(*record, current->version, audit, std::move(done));
                    }
                  });
                  if (!stored) co_return std::unexpected(concurrent_change(stored.error(), req));
                  co_return system_response(200, *stored);
                }});
  }

  router.add({Method::delete_, item, Auth::required, core::Permission::registry_write,
              [&s, &registry, kind](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto current = s.store.system(registry.kind(), std::string(ctx.param("id")));
                if (!current) co_return std::unexpected(current.error());
                if (auto ok = registry.may_change(ctx.caller->principal, *current); !ok) {
                  co_return std::unexpected(ok.error());
                }
                if (auto ok = check_system_if_match(req.if_match, *current); !ok) {
                  co_return std::unexpected(ok.error());
                }
                auto audit = audit_entry(ctx, s.clock, kind + ".deregister", kind, current->id);
                auto removed = co_await await_write<std::vector<std::string>>([&](auto cb) {
                  s.store.delete_system(registry.kind(), current->id, current->version, audit, std::move(cb));
                });
                if (!removed) co_return std::unexpected(concurrent_change(removed.error(), req));
                Response r;
                r.status = 204;
                co_return r;
              }});

  add_monitoring_routes(router, s, registry, item);
}

}  // namespace twinbridge::http
