#include <fmt/format.h>
#include <boost/json/serialize.hpp>
#include <boost/json/serializer.hpp>

#include <charconv>

#include "core/json_reader.hpp"
#include "core/text.hpp"
#include "core/utf8.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

std::string_view media_type_of(std::string_view content_type) {
  auto mt = content_type.substr(0, content_type.find(';'));
  while (!mt.empty() && mt.back() == ' ') mt.remove_suffix(1);
  return mt;
}

std::string hex_encode(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0x0f]);
  }
  return out;
}

std::optional<std::string> hex_decode(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(s.size() / 2);
  for (std::size_t i = 0; i < s.size(); i += 2) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 2, value, 16);
    if (ec != std::errc() || p != s.data() + i + 2) return std::nullopt;
    out.push_back(static_cast<char>(value));
  }
  return out;
}

}  // namespace

core::Result<boost::json::value> json_body(const Request& request, const ApiServices& services,
                                           std::string_view media_type) {
  const auto mt = media_type_of(request.content_type);
  if (!core::iequals(mt, media_type)) {
    return core::fail_in(
        Errc::unsupported_media_type, core::FieldIn::header, "Content-Type",
        fmt::format("the body must be {}; got '{}'", media_type,
                    request.content_type.empty() ? "no Content-Type" : request.content_type));
  }
  auto body = core::parse_json(request.body, services.settings.max_json_depth);
  if (!body) {
    core::Error e = std::move(body.error());
    e.detail = "the body is not valid JSON: " + e.detail;
    for (auto& field : e.fields) field.detail = e.detail;
    return std::unexpected(std::move(e));
  }
  return body;
}

core::Result<boost::json::value> td_body(const Request& request, const ApiServices& services) {
  auto body = json_body(request, services, "application/td+json");
  if (!body && body.error().code == Errc::unsupported_media_type) body = json_body(request, services);
  return body;
}

Response json_response(int status, const boost::json::value& body) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = boost::json::serialize(body);
  return r;
}

std::string etag(std::int64_t version) {
  return fmt::format("\"{}\"", version);
}

namespace {

// True when the entity-tag list is "*" or one of its tags satisfies `matches`.
template <class Matches>
bool any_entity_tag(std::string_view list, Matches matches) {
  if (core::trim(list) == "*") return true;
  while (!list.empty()) {
    const auto comma = list.find(',');
    if (matches(core::trim(list.substr(0, comma)))) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

core::Result<void> if_match_failed(std::string_view if_match, std::string_view current) {
  core::Error e(Errc::precondition_failed,
                fmt::format("If-Match {} does not match the current ETag {}", if_match, current));
  e.fields.push_back({"If-Match", "does not match the current ETag", core::FieldIn::header});
  return std::unexpected(std::move(e));
}

}  // namespace

bool etag_in_list(std::string_view list, std::string_view etag, bool weak) {
  return any_entity_tag(list, [&](std::string_view item) {
    if (weak && item.starts_with("W/")) item.remove_prefix(2);
    return item == etag;
  });
}

core::Result<void> check_if_match(std::string_view if_match, std::int64_t version) {
  const auto current = etag(version);
  if (if_match.empty() || etag_in_list(if_match, current, /*weak=*/false)) return {};
  return if_match_failed(if_match, current);
}

std::string system_etag(const core::SystemRecord& r) {
  return fmt::format("\"{}.{}\"", r.version, core::to_unix_micros(r.status_since));
}

core::Result<void> check_system_if_match(std::string_view if_match, const core::SystemRecord& r) {
  // The current version with any status stamp (or none).
  const auto plain = etag(r.version);
  const auto version_part = fmt::format("\"{}.", r.version);
  if (if_match.empty() || any_entity_tag(if_match, [&](std::string_view item) {
        return item == plain || (item.starts_with(version_part) && item.ends_with('"'));
      })) {
    return {};
  }
  return if_match_failed(if_match, system_etag(r));
}

std::unexpected<core::Error> unknown_parameter(std::string_view name) {
  return core::fail_in(Errc::bad_request, core::FieldIn::query, std::string(name),
                       fmt::format("unknown query parameter '{}'; see /openapi.json", name));
}

core::Result<std::int64_t> integer_param(std::string_view name, std::string_view value, std::int64_t min,
                                         std::int64_t max) {
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || p != value.data() + value.size() || n < min || n > max) {
    return core::fail_in(Errc::bad_request, core::FieldIn::query, std::string(name),
                         fmt::format("{} must be an integer from {} to {}", name, min, max));
  }
  return n;
}

core::Result<core::Timestamp> time_param(std::string_view name, std::string_view value) {
  if (auto t = core::parse_rfc3339(value)) return *t;
  return core::fail_in(Errc::bad_request, core::FieldIn::query, std::string(name),
                       fmt::format("{} must be an RFC 3339 date-time", name));
}

core::Result<PageParams> page_params(const std::vector<std::pair<std::string, std::string>>& query,
                                     const ApiServices& services) {
  PageParams p;
  p.limit = services.settings.default_page_size;
  for (const auto& [name, value] : query) {
    if (name == "limit") {
      auto n = integer_param(name, value, 1, static_cast<std::int64_t>(services.settings.max_page_size));
      if (!n) return std::unexpected(n.error());
      p.limit = static_cast<std::size_t>(*n);
    } else if (name == "cursor") {
      auto decoded = hex_decode(value);
      if (!decoded) {
        return core::fail_in(
            Errc::bad_request, core::FieldIn::query, "cursor",
            "cursor is not one that this server handed out (use next_cursor of the previous page)");
      }
      p.after = std::move(*decoded);
    }
  }
  return p;
}

Response list_response(const Request& request, boost::json::array items,
                       const std::optional<std::string>& next_after) {
  return list_response(request, boost::json::serialize(items), next_after);
}

Response list_response(const Request& request, std::string items_json,
                       const std::optional<std::string>& next_after) {
  std::string body;
  body.reserve(items_json.size() + 128);
  body.append("{\"items\":").append(items_json);
  Response r;
  if (next_after) {
    const auto cursor = hex_encode(*next_after);
    body += ",\"next_cursor\":" + boost::json::serialize(boost::json::value(cursor));
    std::string query;  // the request's own parameters, still encoded, without its cursor
    std::string_view rest = request.query;
    while (!rest.empty()) {
      const auto amp = rest.find('&');
      const auto part = rest.substr(0, amp);
      if (!part.empty() && !part.starts_with("cursor=")) query += fmt::format("{}&", part);
      if (amp == std::string_view::npos) break;
      rest.remove_prefix(amp + 1);
    }
    r.header("Link", fmt::format("<{}?{}cursor={}>; rel=\"next\"", request.path, query, cursor));
  }
  body += '}';
  r.status = 200;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

core::Result<SerializedPage> serialize_twins(const store::Page<std::shared_ptr<const core::TwinView>>& page,
                                             query::QueryBudget& budget) {
  SerializedPage out{"[", page.next_after, false};
  for (const auto& t : page.items) {
    if (out.items.size() > 1) out.items += ',';
    t->append_json(out.items);
    if (!budget.output(out.items.size() - budget.output_bytes()))
      return std::unexpected(budget.error("limit"));
  }
  out.items += ']';
  out.check_utf8();
  return out;
}

core::Error refusal(core::JobFate fate, std::string_view waiting) {
  if (fate == core::JobFate::queue_full) {
    core::Error busy(Errc::rate_limited, fmt::format("too many of your {}; wait for their answers", waiting));
    busy.retry_after_seconds = 1;
    return busy;
  }
  return core::Error(Errc::unavailable, "twinbridge is shutting down");
}

void SerializedPage::check_utf8() {
  utf8_checked = core::is_valid_utf8(items);
}

Response list_response(const Request& request, SerializedPage page) {
  auto r = list_response(request, std::move(page.items), page.next_after);
  r.utf8_checked = page.utf8_checked;  // the rest of the body is ASCII
  return r;
}

core::Error concurrent_change(core::Error e, const Request& req) {
  if (e.code == Errc::precondition_failed && req.if_match.empty()) {
    return core::Error(Errc::conflict, "the resource changed while this request was applied; retry");
  }
  return e;
}

core::AuditEntry audit_entry(const RequestContext& ctx, const core::Clock& clock, std::string action,
                             std::string target_type, std::string target_id, boost::json::object detail) {
  core::Actor anonymous;
  anonymous.request_id = ctx.request_id;
  return core::audit_entry(ctx.caller ? *ctx.caller : anonymous, clock.now(), std::move(action),
                           std::move(target_type), std::move(target_id), std::move(detail));
}

std::optional<std::string> serialize_nodelist(const std::vector<const boost::json::value*>& nodes,
                                              query::QueryBudget& budget) {
  std::string out = "[";
  boost::json::serializer serializer;
  char chunk[16 * 1024];
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (i > 0) out += ',';
    serializer.reset(nodes[i]);
    while (!serializer.done()) {
      const auto piece = serializer.read(chunk, sizeof chunk);
      if (!budget.output(piece.size() + 1)) return std::nullopt;
      out.append(piece.data(), piece.size());
    }
  }
  out += ']';
  return out;
}

query::QueryBudget query_budget(const ApiServices& services, const RequestContext& ctx) {
  query::QueryBudget budget(services.settings.query_limits, ctx.client_gone);
  budget.on_exhausted(
      [&metrics = services.metrics](query::BudgetLimit limit) { metrics.query_stopped(limit); });
  return budget;
}

}  // namespace twinbridge::http
