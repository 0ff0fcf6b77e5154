#include "connect/outbound_guard.hpp"

#include <fmt/format.h>
#include <boost/url/ipv4_address.hpp>
#include <boost/url/ipv6_address.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <cassert>
#include <charconv>

namespace twinbridge::connect {

using core::Errc;

namespace {

constexpr std::string_view kRefused = "refused by the outbound policy: ";

struct Known {
  IpRange range;
  std::string_view what;
};

IpRange range(std::string_view text) {
  auto r = IpRange::parse(text);
  assert(r.has_value());
  return *r;
}

// The refused ranges, most specific first (the first match names the refusal). IPv4-mapped, NAT64 and 6to4
// addresses are checked through the IPv4 address they embed before this table is read.
const std::vector<Known>& refused_ranges() {
  static const std::vector<Known> table = {
      {range("255.255.255.255/32"), "the broadcast address"},
      {range("0.0.0.0/8"), "an unspecified address"},
      {range("10.0.0.0/8"), "a private address"},
      {range("100.64.0.0/10"), "a carrier-grade NAT address"},
      {range("127.0.0.0/8"), "a loopback address"},
      {range("169.254.0.0/16"), "a link-local address"},
      {range("172.16.0.0/12"), "a private address"},
      {range("192.0.0.0/24"), "an IETF protocol assignment"},
      {range("192.0.2.0/24"), "a documentation address"},
      {range("192.88.99.0/24"), "a 6to4 relay anycast address"},
      {range("192.168.0.0/16"), "a private address"},
      {range("198.18.0.0/15"), "a benchmarking address"},
      {range("198.51.100.0/24"), "a documentation address"},
      {range("203.0.113.0/24"), "a documentation address"},
      {range("224.0.0.0/4"), "a multicast address"},
      {range("240.0.0.0/4"), "a reserved address"},
      {range("::/128"), "an unspecified address"},
      {range("::1/128"), "a loopback address"},
      {range("::/96"), "an IPv4-compatible address (deprecated)"},
      {range("64:ff9b:1::/48"), "a local-use NAT64 address"},
      {range("100::/64"), "a discard-only address"},
      {range("2001::/23"), "an IETF protocol assignment (Teredo, benchmarking, ORCHID)"},
      {range("2001:db8::/32"), "a documentation address"},
      {range("3fff::/20"), "a documentation address"},
      {range("fc00::/7"), "a unique-local address"},
      {range("fe80::/10"), "a link-local address"},
      {range("fec0::/10"), "a site-local address (deprecated)"},
      {range("ff00::/8"), "a multicast address"},
  };
  return table;
}

// Cloud metadata services (AWS, Azure, GCP, OCI, OpenStack: 169.254.169.254; AWS ECS; Alibaba; AWS IPv6).
// Refused even inside an allowed range, unless the allow list names the address itself.
const std::vector<IpAddress>& metadata_addresses() {
  static const std::vector<IpAddress> list = {range("169.254.169.254").base, range("169.254.170.2").base,
                                              range("100.100.100.200").base, range("fd00:ec2::254").base};
  return list;
}

constexpr std::string_view kMetadataNames[] = {"metadata.google.internal", "metadata.goog"};

const IpRange& global_unicast() {
  static const IpRange r = range("2000::/3");
  return r;
}
const IpRange& nat64() {
  static const IpRange r = range("64:ff9b::/96");
  return r;
}
const IpRange& six_to_four() {
  static const IpRange r = range("2002::/16");
  return r;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto p = s.find(sep);
    out.push_back(s.substr(0, p));
    if (p == std::string_view::npos) return out;
    s.remove_prefix(p + 1);
  }
}

// The WHATWG URL Standard's IPv4 number parser (decimal, 0x hexadecimal, 0 octal), as inet_aton reads parts.
std::optional<std::uint64_t> ipv4_number(std::string_view part) {
  if (part.empty()) return std::nullopt;
  int base = 10;
  if (part.size() >= 2 && part[0] == '0' && (part[1] == 'x' || part[1] == 'X')) {
    base = 16;
    part.remove_prefix(2);
  } else if (part.size() >= 2 && part[0] == '0') {
    base = 8;
    part.remove_prefix(1);
  }
  if (part.empty()) return 0;
  if (part.size() > 20) return std::nullopt;
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), n, base);
  if (ec != std::errc() || p != part.data() + part.size()) return std::nullopt;
  return n;
}

// The WHATWG "ends in a number" test: such a host is an IPv4 address or nothing, never a DNS name.
bool ends_in_number(std::string_view host) {
  auto parts = split(host, '.');
  if (parts.back().empty()) {
    if (parts.size() == 1) return false;
    parts.pop_back();
  }
  const auto last = parts.back();
  if (!last.empty() && std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return true;
  }
  return ipv4_number(last).has_value();
}

// The WHATWG IPv4 parser (what browsers and inet_aton make of 2130706433, 0x7f.1, 0177.0.0.1, 127.1).
std::optional<std::uint32_t> whatwg_ipv4(std::string_view host) {
  auto parts = split(host, '.');
  if (parts.back().empty() && parts.size() > 1) parts.pop_back();
  if (parts.size() > 4) return std::nullopt;
  std::vector<std::uint64_t> numbers;
  for (auto p : parts) {
    auto n = ipv4_number(p);
    if (!n) return std::nullopt;
    numbers.push_back(*n);
  }
  for (std::size_t i = 0; i + 1 < numbers.size(); ++i) {
    if (numbers[i] > 255) return std::nullopt;
  }
  const auto rest_bits = 8 * (5 - numbers.size());
  if (numbers.back() >= (std::uint64_t{1} << rest_bits)) return std::nullopt;
  std::uint64_t v = numbers.back();
  for (std::size_t i = 0; i + 1 < numbers.size(); ++i) v += numbers[i] << (8 * (3 - i));
  return static_cast<std::uint32_t>(v);
}

// A DNS name as the resolver will see it: lower case, one trailing dot dropped; nullopt when it is not
// letters, digits, '-', '_' and non-empty dot-separated labels of at most 63 characters (253 in all).
std::optional<std::string> canonical_name(std::string_view host) {
  std::string name = lower(host);
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (name.empty() || name.size() > 253) return std::nullopt;
  for (auto label : split(name, '.')) {
    if (label.empty() || label.size() > 63) return std::nullopt;
    for (char c : label) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok) return std::nullopt;
    }
  }
  return name;
}

bool is_localhost(std::string_view name) {
  return name == "localhost" || name.ends_with(".localhost");
}

core::Result<void> forbidden(std::string detail) {
  return core::fail(Errc::forbidden, std::string(kRefused) + detail);
}

}  // namespace

IpAddress IpAddress::v4(std::uint32_t address) {
  IpAddress a;
  a.bytes[10] = 0xff;
  a.bytes[11] = 0xff;
  for (std::size_t i = 0; i < 4; ++i) a.bytes[12 + i] = static_cast<std::uint8_t>(address >> (8 * (3 - i)));
  return a;
}

IpAddress IpAddress::v6(const std::array<std::uint8_t, 16>& bytes) {
  IpAddress a;
  a.bytes = bytes;
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (auto v4 = boost::urls::parse_ipv4_address(text)) return IpAddress::v4(v4->to_uint());
  if (auto v6 = boost::urls::parse_ipv6_address(text)) {
    IpAddress a;
    const auto b = v6->to_bytes();
    std::copy(b.begin(), b.end(), a.bytes.begin());
    return a;
  }
  return std::nullopt;
}

bool IpAddress::is_v4() const {
  return std::all_of(bytes.begin(), bytes.begin() + 10, [](std::uint8_t b) { return b == 0; }) &&
         bytes[10] == 0xff && bytes[11] == 0xff;
}

std::uint32_t IpAddress::v4_value() const {
  return (std::uint32_t{bytes[12]} << 24) | (std::uint32_t{bytes[13]} << 16) |
         (std::uint32_t{bytes[14]} << 8) | bytes[15];
}

std::string IpAddress::to_string() const {
  if (is_v4()) return boost::urls::ipv4_address(v4_value()).to_string();
  boost::urls::ipv6_address::bytes_type b{};
  std::copy(bytes.begin(), bytes.end(), b.begin());
  return boost::urls::ipv6_address(b).to_string();
}

std::optional<IpRange> IpRange::parse(std::string_view text) {
  const auto slash = text.find('/');
  const auto address_text = text.substr(0, slash);
  auto address = IpAddress::parse(address_text);
  if (!address) return std::nullopt;
  const bool v4_text = boost::urls::parse_ipv4_address(address_text).has_value();
  const unsigned width = v4_text ? 32 : 128;
  unsigned prefix = width;
  if (slash != std::string_view::npos) {
    const auto digits = text.substr(slash + 1);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size() || prefix > width) {
      return std::nullopt;
    }
  }
  IpRange r{*address, prefix + (128 - width)};
  // Bits beyond the prefix must be zero: "10.1.2.3/8" is a typo, not 10.0.0.0/8.
  for (unsigned bit = r.prefix; bit < 128; ++bit) {
    if ((r.base.bytes[bit / 8] >> (7 - bit % 8)) & 1U) return std::nullopt;
  }
  return r;
}

bool IpRange::contains(const IpAddress& a) const {
  const unsigned whole = prefix / 8;
  if (!std::equal(base.bytes.begin(), base.bytes.begin() + whole, a.bytes.begin())) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (base.bytes[whole] & mask) == (a.bytes[whole] & mask);
}

std::string IpRange::to_string() const {
  if (base.is_v4() && prefix >= 96) return fmt::format("{}/{}", base.to_string(), prefix - 96);
  return fmt::format("{}/{}", base.to_string(), prefix);
}

core::Result<OutboundGuard> OutboundGuard::from_allow_list(std::string_view list) {
  OutboundGuard g;
  for (auto raw : split(list, ',')) {
    while (!raw.empty() && (raw.front() == ' ' || raw.front() == '\t')) raw.remove_prefix(1);
    while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\t')) raw.remove_suffix(1);
    if (raw.empty()) continue;
    const std::string entry = lower(raw);
    if (entry == "loopback") {
      g.ranges_.push_back(range("127.0.0.0/8"));
      g.ranges_.push_back(range("::1/128"));
      g.names_.emplace_back("localhost");
      g.suffixes_.emplace_back(".localhost");
    } else if (entry == "private") {
      for (auto r : {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"})
        g.ranges_.push_back(range(r));
    } else if (entry.find('/') != std::string::npos || entry.find(':') != std::string::npos ||
               IpAddress::parse(entry)) {
      std::string_view text = entry;
      if (text.starts_with('[') && text.ends_with(']')) text = text.substr(1, text.size() - 2);
      auto r = IpRange::parse(text);
      if (!r) {
        return core::fail(Errc::validation_failed,
                          fmt::format("'{}' is not an address or a CIDR range with zero host bits (e.g. "
                                      "10.0.0.0/8, fd12:3456::/48)",
                                      raw));
      }
      g.ranges_.push_back(*r);
    } else {
      const bool wildcard = entry.starts_with("*.");
      const auto name =
          canonical_name(wildcard ? std::string_view(entry).substr(2) : std::string_view(entry));
      if (!name || ends_in_number(*name)) {
        return core::fail(
            Errc::validation_failed,
            fmt::format("'{}' is not loopback, private, an address, a CIDR range, a host name or "
                        "*.domain",
                        raw));
      }
      if (wildcard) {
        g.suffixes_.push_back("." + *name);
      } else {
        g.names_.push_back(*name);
      }
    }
    g.entries_.push_back(entry);
  }
  return g;
}

std::string OutboundGuard::describe() const {
  std::string out;
  for (const auto& e : entries_) {
    if (!out.empty()) out += ",";
    out += e;
  }
  return out;
}

bool OutboundGuard::allows_range(const IpAddress& a) const {
  return std::any_of(ranges_.begin(), ranges_.end(), [&](const IpRange& r) { return r.contains(a); });
}

bool OutboundGuard::allows_name(std::string_view name) const {
  if (std::find(names_.begin(), names_.end(), name) != names_.end()) return true;
  return std::any_of(suffixes_.begin(), suffixes_.end(),
                     [&](const std::string& s) { return name.ends_with(s); });
}

std::string OutboundGuard::refusal(const IpAddress& a) const {
  const auto& metadata = metadata_addresses();
  if (std::find(metadata.begin(), metadata.end(), a) != metadata.end()) {
    const bool named = std::any_of(ranges_.begin(), ranges_.end(),
                                   [&](const IpRange& r) { return r.prefix == 128 && r.base == a; });
    return named ? std::string() : "a cloud metadata address";
  }
  if (allows_range(a)) return {};
  for (const auto* embedding : {&nat64(), &six_to_four()}) {
    if (!embedding->contains(a)) continue;
    const std::size_t at = embedding == &nat64() ? 12 : 2;
    const auto embedded =
        IpAddress::v4((std::uint32_t{a.bytes[at]} << 24) | (std::uint32_t{a.bytes[at + 1]} << 16) |
                      (std::uint32_t{a.bytes[at + 2]} << 8) | a.bytes[at + 3]);
    auto why = refusal(embedded);
    if (why.empty()) return {};
    return fmt::format("the {} form of {}, {}", embedding == &nat64() ? "NAT64" : "6to4",
                       embedded.to_string(), why);
  }
  for (const auto& known : refused_ranges()) {
    if (known.range.contains(a)) return fmt::format("{} ({})", known.what, known.range.to_string());
  }
  if (!a.is_v4() && !global_unicast().contains(a)) {
    return "a reserved address (outside the global unicast range 2000::/3)";
  }
  return {};
}

core::Result<void> OutboundGuard::check_url(std::string_view url) const {
  auto u = boost::urls::parse_uri(url);
  if (!u) return core::fail(Errc::bad_request, fmt::format("'{}' is not an absolute URI", url));
  if (u->scheme_id() != boost::urls::scheme::http && u->scheme_id() != boost::urls::scheme::https) {
    return core::fail(Errc::bad_request,
                      fmt::format("only http and https URLs can be called, not '{}'", u->scheme()));
  }
  if (!u->has_authority() || u->encoded_host().empty()) {
    return core::fail(Errc::bad_request, fmt::format("'{}' has no host", url));
  }
  if (u->has_userinfo()) {
    return core::fail(Errc::bad_request,
                      "a URL with userinfo (user@host) is refused: it hides the host from readers, and "
                      "credentials do not belong in a URL");
  }
  // Boost.URL 1.81 reads "http://127.0.0.1.nip.io/" as host 127.0.0.1 and path ".nip.io/": after an authority
  // the path must be empty or start with '/' (RFC 3986 path-abempty), anything else is a host we misread.
  if (!u->encoded_path().empty() && !u->encoded_path().starts_with('/')) {
    return core::fail(Errc::bad_request,
                      fmt::format("'{}' is not a valid URL: the host '{}' is followed by '{}'", url,
                                  u->encoded_host(), u->encoded_path()));
  }
  if (u->has_port() && !u->port().empty()) {
    unsigned port = 0;
    const auto text = u->port();
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (ec != std::errc() || p != text.data() + text.size() || port == 0 || port > 65535) {
      return core::fail(Errc::bad_request, fmt::format("port '{}' is not a port from 1 to 65535", text));
    }
  }
  switch (u->host_type()) {
    case boost::urls::host_type::ipv4:
    case boost::urls::host_type::ipv6: {
      const auto address = IpAddress::parse(u->host_address());
      if (!address) return core::fail(Errc::bad_request, fmt::format("'{}' has no usable host", url));
      if (auto why = refusal(*address); !why.empty()) {
        return forbidden(fmt::format("{} is {}", u->host_address(), why));
      }
      return {};
    }
    case boost::urls::host_type::ipvfuture:
      return core::fail(Errc::bad_request, "IPvFuture hosts cannot be called");
    default:
      break;
  }
  const std::string host = lower(u->host_address());
  if (ends_in_number(host)) {
    if (auto v4 = whatwg_ipv4(host)) {
      return core::fail(
          Errc::bad_request,
          fmt::format("the host '{}' is a non-standard spelling of the IPv4 address {} (resolvers "
                      "and URL parsers disagree on such hosts); write an IPv4 address as four "
                      "decimal numbers without leading zeros",
                      u->encoded_host(), IpAddress::v4(*v4).to_string()));
    }
    return core::fail(
        Errc::bad_request,
        fmt::format("the host '{}' ends in a number but is not an IPv4 address", u->encoded_host()));
  }
  const auto name = canonical_name(host);
  if (!name) {
    return core::fail(
        Errc::bad_request,
        fmt::format("the host '{}' is not a DNS name (letters, digits, '-' and '_' in dot-separated "
                    "labels; internationalised names in their xn-- form)",
                    u->encoded_host()));
  }
  if (allows_name(*name)) return {};
  if (is_localhost(*name)) return forbidden(fmt::format("'{}' is a loopback name", *name));
  if (std::find(std::begin(kMetadataNames), std::end(kMetadataNames), *name) != std::end(kMetadataNames)) {
    return forbidden(fmt::format("'{}' is a cloud metadata service", *name));
  }
  return {};
}

core::Result<void> OutboundGuard::check_resolved(std::string_view host, const IpAddress& address) const {
  const bool literal = IpAddress::parse(host).has_value();
  if (!literal) {
    if (auto name = canonical_name(host); name && allows_name(*name)) return {};
  }
  const auto why = refusal(address);
  if (why.empty()) return {};
  if (literal) return forbidden(fmt::format("{} is {}", host, why));
  return forbidden(fmt::format("'{}' resolves to {}", host, why));
}

}  // namespace twinbridge::connect
