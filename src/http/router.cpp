#include "http/router.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "core/utf8.hpp"

namespace twinbridge::http {

namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  if (path.starts_with('/')) path.remove_prefix(1);
  while (true) {
    const auto slash = path.find('/');
    out.emplace_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool is_param(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view to_string(Method m) {
  switch (m) {
    case Method::get:
      return "GET";
    case Method::head:
      return "HEAD";
    case Method::post:
      return "POST";
    case Method::put:
      return "PUT";
    case Method::patch:
      return "PATCH";
    case Method::delete_:
      return "DELETE";
    case Method::options:
      return "OPTIONS";
    case Method::other:
      return "OTHER";
  }
  return "OTHER";
}

Method parse_method(std::string_view text) {
  for (auto m : {Method::get, Method::head, Method::post, Method::put, Method::patch, Method::delete_,
                 Method::options}) {
    if (to_string(m) == text) return m;
  }
  return Method::other;
}

std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (plus_is_space && in[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

std::string percent_encode_segment(std::string_view in) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (unsigned char c : in) {
    if (std::isalnum(c) != 0 ||
        std::string_view("-._~!$&'()*+,;=:@").find(static_cast<char>(c)) != std::string_view::npos) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 0x0f]);
    }
  }
  return out;
}

core::Result<std::vector<std::pair<std::string, std::string>>> parse_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    auto name = percent_decode(part.substr(0, eq), true);
    auto value =
        percent_decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1), true);
    if (!name || !value) {
      return core::fail_in(core::Errc::bad_request, core::FieldIn::query, std::string(part.substr(0, eq)),
                           "the query parameter has an invalid percent-encoding");
    }
    // Every query parameter is text: UTF-8 once decoded, or refused here for every route.
    if (const auto bad = core::invalid_utf8_offset(*name); bad != std::string_view::npos) {
      return core::fail_in(core::Errc::bad_request, core::FieldIn::query, std::string(part.substr(0, eq)),
                           fmt::format("the name of the query parameter is not valid UTF-8 once "
                                       "percent-decoded: {}",
                                       core::describe_invalid_utf8(*name, bad)));
    }
    if (const auto bad = core::invalid_utf8_offset(*value); bad != std::string_view::npos) {
      return core::fail_in(core::Errc::bad_request, core::FieldIn::query, *name,
                           fmt::format("{} is not valid UTF-8 once percent-decoded: {}", *name,
                                       core::describe_invalid_utf8(*value, bad)));
    }
    out.emplace_back(std::move(*name), std::move(*value));
  }
  return out;
}

void Router::add(Route route) {
  segments_.push_back(split_path(route.pattern));
  routes_.push_back(std::move(route));
}

core::Result<RouteMatch> Router::match(Method method, std::string_view path,
                                       std::vector<Method>* allowed) const {
  const auto raw = split_path(path);
  std::vector<std::string> segments;
  segments.reserve(raw.size());
  for (const auto& s : raw) {
    auto decoded = percent_decode(s, false);
    if (!decoded)
      return core::fail(core::Errc::bad_request, "the request path has an invalid percent-encoding");
    segments.push_back(std::move(*decoded));
  }
  // Best match: the one with the most literal segments; ties go to the earlier route.
  const Route* best = nullptr;
  const std::vector<std::string>* best_segments = nullptr;
  int best_literals = -1;
  int best_any_literals = -1;
  std::vector<Method> methods;
  for (std::size_t ri = 0; ri < routes_.size(); ++ri) {
    const Route& r = routes_[ri];
    const auto& pattern = segments_[ri];
    if (pattern.size() != segments.size()) continue;
    int literals = 0;
    bool ok = true;
    for (std::size_t i = 0; i < segments.size() && ok; ++i) {
      if (is_param(pattern[i])) continue;
      if (pattern[i] != segments[i]) ok = false;
      ++literals;
    }
    if (!ok) continue;
    if (literals > best_any_literals) {
      best_any_literals = literals;
      methods.clear();
    }
    if (literals == best_any_literals) methods.push_back(r.method);
    const bool method_ok = r.method == method || (method == Method::head && r.method == Method::get);
    if (method_ok && literals > best_literals) {
      best = &r;
      best_segments = &pattern;
      best_literals = literals;
    }
  }
  if (best == nullptr || best_literals < best_any_literals) {
    if (best_any_literals < 0) {
      return core::fail(core::Errc::not_found, fmt::format("no resource at {}", path));
    }
    if (allowed != nullptr) *allowed = methods;
    return core::fail(core::Errc::method_not_allowed,
                      fmt::format("{} is not allowed on {}", to_string(method), path));
  }
  RouteMatch m;
  m.route = best;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const auto& p = (*best_segments)[i];
    if (is_param(p)) {
      auto name = p.substr(1, p.size() - 2);
      // Path parameters are ids, which are text: UTF-8 once decoded, or refused here for every route. (The
      // rest of the id rule, core::validate_id, applies where an id is created, so that a twin registered
      // before a rule was added stays addressable.)
      if (const auto bad = core::invalid_utf8_offset(segments[i]); bad != std::string_view::npos) {
        return core::fail_in(core::Errc::bad_request, core::FieldIn::path, name,
                             fmt::format("path parameter {} is not valid UTF-8 once percent-decoded: {}",
                                         name, core::describe_invalid_utf8(segments[i], bad)));
      }
      m.params.emplace_back(std::move(name), std::move(segments[i]));
    }
  }
  return m;
}

}  // namespace twinbridge::http
