#pragma once
// OutboundGuard: the one policy deciding where twinbridge may connect (OWASP API7, server-side request
// forgery). Every outbound call goes through it twice:
//
//  - check_url(): when a client gives a URL that twinbridge will call later (a registration's endpoints),
//    before it is stored. Only http and https, no userinfo, a host that is a plain DNS name or an IP
//    address in its standard spelling; IP literals and the names `localhost` / `*.localhost` are checked
//    against the refused ranges. A host that reads as a number in some other spelling (2130706433,
//    0x7f000001, 0177.0.0.1, 127.1, 127.0.0.1.) is refused as ambiguous: resolvers and URL parsers disagree
//    on what it means.
//  - check_resolved(): by connect::HttpClient on every address a host name resolved to, just before it
//    connects to exactly those addresses (so a name that resolves, or later re-resolves, to a refused address
//    is caught: DNS rebinding).
//
// Refused: loopback, private (RFC 1918), carrier-grade NAT, link-local, unique-local, cloud metadata,
// multicast, unspecified, broadcast, and the reserved, benchmarking and documentation ranges, in IPv4, IPv6
// and every IPv6 form that embeds an IPv4 address (mapped, NAT64, 6to4); the table is in connect/README.md.
// The operator's allow list (`outbound.allow`) opens ranges and host names: `loopback`, `private`, CIDRs,
// single addresses, host names and `*.domain` suffixes. A cloud metadata address stays refused unless the
// list names that very address.
//
// Immutable after construction: safe to share and to call from any thread. Errors: bad_request for a URL
// that cannot be called at all (syntax, scheme, userinfo, host spelling), forbidden for a destination the
// policy refuses; the detail names the range, never more than the caller already gave.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace twinbridge::connect {

// An IPv4 or IPv6 address; IPv4 is held as its IPv4-mapped IPv6 form (::ffff:a.b.c.d).
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};

  static IpAddress v4(std::uint32_t address);
  static IpAddress v6(const std::array<std::uint8_t, 16>& bytes);
  // A dotted quad or an RFC 4291 IPv6 text (no brackets); nullopt otherwise.
  static std::optional<IpAddress> parse(std::string_view text);

  bool is_v4() const;  // an IPv4 address (or IPv4-mapped IPv6)
  std::uint32_t v4_value() const;
  std::string to_string() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// An address range: `prefix` bits of `base` (IPv4 ranges count the 96 bits of the mapped prefix).
struct IpRange {
  IpAddress base;
  unsigned prefix = 128;

  // "a.b.c.d/n", "x::y/n" or a single address; nullopt when malformed.
  static std::optional<IpRange> parse(std::string_view text);
  bool contains(const IpAddress& a) const;
  std::string to_string() const;
};

class OutboundGuard {
 public:
  // Allows nothing: every refused range stays refused.
  OutboundGuard() = default;

  // The operator's allow list: comma-separated entries, each `loopback` (127.0.0.0/8, ::1 and the names
  // localhost and *.localhost), `private` (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7), a CIDR, an
  // address, a host name or `*.domain` (every name under domain). Errors: validation_failed naming the entry.
  static core::Result<OutboundGuard> from_allow_list(std::string_view list);

  // A URL that twinbridge will call: syntax, scheme, userinfo, host spelling, and the host when it is an
  // address or a loopback name. Names are not resolved here (check_resolved() runs at every call).
  core::Result<void> check_url(std::string_view url) const;

  // One address `host` (as written in the URL, an IP literal or a name) resolved to, before connecting.
  core::Result<void> check_resolved(std::string_view host, const IpAddress& address) const;

  // The allow list as the operator wrote it, normalised ("" when nothing is allowed).
  std::string describe() const;

 private:
  // Empty when `a` may be called, else why not ("a loopback address (127.0.0.0/8)").
  std::string refusal(const IpAddress& a) const;
  bool allows_range(const IpAddress& a) const;
  bool allows_name(std::string_view canonical_name) const;

  std::vector<IpRange> ranges_;
  std::vector<std::string> names_;     // canonical (lower case, no trailing dot)
  std::vector<std::string> suffixes_;  // ".domain" for `*.domain`
  std::vector<std::string> entries_;   // for describe()
};

}  // namespace twinbridge::connect
