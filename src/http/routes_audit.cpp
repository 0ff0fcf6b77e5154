// /v1/audit: the audit log, for operators and auditors (audit:read). Filters: actor, action, target_type,
// target_id, since (RFC 3339); cursor pagination in commit order.

#include <fmt/format.h>

#include "http/problem.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using boost::asio::awaitable;
using core::Errc;

void add_audit_routes(Router& router, ApiServices& s) {
  router.add({Method::get, "/v1/audit", Auth::required, core::Permission::audit_read,
              [&s](RequestContext&, const Request& req) -> HandlerResult {
                auto query = parse_query(req.query);
                if (!query) co_return std::unexpected(query.error());
                auto page = page_params(*query, s);
                if (!page) co_return std::unexpected(page.error());
                store::AuditQuery q;
                q.limit = page->limit;
                if (!page->after.empty()) {
                  auto seq = integer_param("cursor", page->after, 0, INT64_MAX);
                  if (!seq) co_return std::unexpected(seq.error());
                  q.after_seq = *seq;
                }
                for (const auto& [name, value] : *query) {
                  if (name == "actor") {
                    q.actor = value;
                  } else if (name == "action") {
                    q.action = value;
                  } else if (name == "target_type") {
                    q.target_type = value;
                  } else if (name == "target_id") {
                    q.target_id = value;
                  } else if (name == "since") {
                    auto since = time_param("since", value);
                    if (!since) co_return std::unexpected(since.error());
                    q.since = *since;
                  } else if (name != "limit" && name != "cursor") {
                    co_return unknown_parameter(name);
                  }
                }
                auto result = s.store.audit(q);
                if (!result) co_return std::unexpected(result.error());
                boost::json::array items;
                for (const auto& e : result->items) items.push_back(core::to_json(e));
                co_return list_response(req, std::move(items), result->next_after);
              }});
}

}  // namespace twinbridge::http
