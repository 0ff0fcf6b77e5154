#include "connect/outbound_guard.hpp"

#include <gtest/gtest.h>

#include <string>

namespace twinbridge::connect {
namespace {

using core::Errc;

OutboundGuard allowing(std::string_view list) {
  auto g = OutboundGuard::from_allow_list(list);
  EXPECT_TRUE(g) << list << ": " << (g ? "" : g.error().detail);
  return g ? *g : OutboundGuard{};
}

IpAddress ip(std::string_view text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a) << text;
  return a.value_or(IpAddress{});
}

// The refusal's detail for `url`, or "" when the guard lets it through.
std::string url_refusal(const OutboundGuard& g, std::string_view url) {
  auto r = g.check_url(url);
  return r ? std::string() : r.error().detail;
}

std::string address_refusal(const OutboundGuard& g, std::string_view address) {
  auto r = g.check_resolved(address, ip(address));
  return r ? std::string() : r.error().detail;
}

TEST(OutboundGuardTest, EverySpellingOfLoopbackInAUrlIsRefused) {
  const OutboundGuard g;
  for (const auto* url : {
           "http://127.0.0.1/",
           "http://127.0.0.1:8470/health",
           "http://127.1.2.3/",
           "http://[::1]/",
           "http://[0:0:0:0:0:0:0:1]/",
           "http://0.0.0.0/",
           "http://[::]/",
           "http://2130706433/",
           "http://0x7f000001/",
           "http://0X7F000001/",
           "http://0177.0.0.1/",
           "http://0177.0000.0000.0001/",
           "http://127.000.000.001/",
           "http://127.1/",
           "http://127.0.1/",
           "http://0x7f.1/",
           "http://0/",
           "http://127.0.0.1./",
           "http://[::ffff:127.0.0.1]/",
           "http://[::ffff:7f00:1]/",
           "http://[0:0:0:0:0:ffff:127.0.0.1]/",
           "http://[::127.0.0.1]/",
           "http://[64:ff9b::127.0.0.1]/",
           "http://[64:ff9b::7f00:1]/",
           "http://[2002:7f00:1::]/",
           "http://localhost/",
           "http://LOCALHOST:8080/",
           "http://localhost./",
           "http://local%68ost/",
           "http://api.localhost/",
           "http://a.b.localhost./",
           "https://localhost/",
       }) {
    auto r = g.check_url(url);
    EXPECT_FALSE(r) << url;
  }
}

TEST(OutboundGuardTest, RefusalsNameTheRangeOrTheSpelling) {
  const OutboundGuard g;
  EXPECT_EQ(url_refusal(g, "http://127.0.0.1/"),
            "refused by the outbound policy: 127.0.0.1 is a loopback address (127.0.0.0/8)");
  EXPECT_EQ(url_refusal(g, "http://[::1]/"),
            "refused by the outbound policy: ::1 is a loopback address (::1/128)");
  EXPECT_EQ(url_refusal(g, "http://[::ffff:127.0.0.1]/"),
            "refused by the outbound policy: ::ffff:127.0.0.1 is a loopback address (127.0.0.0/8)");
  EXPECT_EQ(url_refusal(g, "http://[64:ff9b::7f00:1]/"),
            "refused by the outbound policy: 64:ff9b::7f00:1 is the NAT64 form of 127.0.0.1, a loopback "
            "address (127.0.0.0/8)");
  EXPECT_EQ(url_refusal(g, "http://[2002:a9fe:a9fe::1]/"),
            "refused by the outbound policy: 2002:a9fe:a9fe::1 is the 6to4 form of 169.254.169.254, a cloud "
            "metadata address");
  EXPECT_EQ(url_refusal(g, "http://localhost:8080/"),
            "refused by the outbound policy: 'localhost' is a loopback name");
  EXPECT_EQ(
      url_refusal(g, "http://2130706433/"),
      "the host '2130706433' is a non-standard spelling of the IPv4 address 127.0.0.1 (resolvers and URL "
      "parsers disagree on such hosts); write an IPv4 address as four decimal numbers without leading "
      "zeros");
  EXPECT_NE(url_refusal(g, "http://0177.0.0.1/").find("non-standard spelling of the IPv4 address 127.0.0.1"),
            std::string::npos);
  EXPECT_NE(url_refusal(g, "http://0x7f000001/").find("IPv4 address 127.0.0.1"), std::string::npos);
  EXPECT_NE(url_refusal(g, "http://127.1/").find("IPv4 address 127.0.0.1"), std::string::npos);
  EXPECT_NE(url_refusal(g, "http://2852039166/").find("IPv4 address 169.254.169.254"), std::string::npos);
  // A spelling is refused even when it means a public address: what is checked must be what is called.
  EXPECT_NE(url_refusal(g, "http://134744072/").find("IPv4 address 8.8.8.8"), std::string::npos);
  // Boost.URL 1.81 would read the host as 1.2.3.4 and ".5/" as the path: refused, not misread.
  EXPECT_EQ(url_refusal(g, "http://1.2.3.4.5/"),
            "'http://1.2.3.4.5/' is not a valid URL: the host '1.2.3.4' is followed by '.5/'");
  EXPECT_EQ(url_refusal(g, "http://a.1.2.3.4/"),
            "the host 'a.1.2.3.4' ends in a number but is not an IPv4 address");
  EXPECT_EQ(url_refusal(g, "http://example.256/"),
            "the host 'example.256' ends in a number but is not an IPv4 address");
}

TEST(OutboundGuardTest, UrlsThatCannotBeCalledAreBadRequests) {
  const OutboundGuard g;
  for (const auto* url : {"file:///etc/passwd",
                          "gopher://example.com:70/_x",
                          "ftp://example.com/",
                          "dict://example.com:11211/",
                          "ldap://example.com/",
                          "HTTPX://example.com/",
                          "mailto:a@example.com",
                          "not a url",
                          "/relative/path",
                          "http:///nohost",
                          "http://evil.example@127.0.0.1/",
                          "http://user:pass@example.com/",
                          "http://@example.com/",
                          "http://example.com:0/",
                          "http://example.com:99999/",
                          "http://example.com:65536/",
                          "http://127.0.0.1.nip.io/",
                          "http://8.8.8.8.example/x",
                          "http://[v1.x]/",
                          "http://exa mple.com/",
                          "http://ex%00ample.com/",
                          "http://b\xc3\xbc"
                          "cher.example/",
                          "http://ex%C3%BCample.com/",
                          "http://a..b.example/"}) {
    auto r = g.check_url(url);
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error().code, Errc::bad_request) << url << ": " << r.error().detail;
  }
  EXPECT_EQ(url_refusal(g, "file:///etc/passwd"), "only http and https URLs can be called, not 'file'");
  EXPECT_EQ(url_refusal(g, "gopher://example.com/"), "only http and https URLs can be called, not 'gopher'");
  EXPECT_NE(url_refusal(g, "http://evil.example@127.0.0.1/").find("userinfo"), std::string::npos);
}

TEST(OutboundGuardTest, PolicyRefusalsAreForbidden) {
  const OutboundGuard g;
  auto r = g.check_url("http://10.0.0.1/");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::forbidden);
}

TEST(OutboundGuardTest, PublicDestinationsPass) {
  const OutboundGuard g;
  for (const auto* url : {"http://example.com/",
                          "https://pay.example.com:8443/health?x=1",
                          "HTTPS://Example.COM/",
                          "http://example.com./",
                          "http://8.8.8.8/",
                          "http://1.1.1.1:80/",
                          "http://[2606:4700::1111]/",
                          "http://[::ffff:8.8.8.8]/",
                          "http://[64:ff9b::808:808]/",
                          "http://[2002:808:808::1]/",
                          "http://xn--bcher-kva.example/",
                          "http://under_score.example/",
                          "http://a-b.c-d.example/",
                          "http://example.com:/",
                          "http://0x.example.com/",
                          "http://1e100.net/",
                          "http://localhost.example.com/",
                          "http://172.32.0.1/",
                          "http://100.128.0.1/",
                          "http://192.169.0.1/",
                          "http://169.253.0.1/"}) {
    EXPECT_EQ(url_refusal(g, url), "") << url;
  }
}

TEST(OutboundGuardTest, EachRefusedRange) {
  const OutboundGuard g;
  const std::pair<const char*, const char*> cases[] = {
      {"0.0.0.0", "an unspecified address (0.0.0.0/8)"},
      {"0.1.2.3", "an unspecified address (0.0.0.0/8)"},
      {"10.0.0.1", "a private address (10.0.0.0/8)"},
      {"10.255.255.255", "a private address (10.0.0.0/8)"},
      {"100.64.0.1", "a carrier-grade NAT address (100.64.0.0/10)"},
      {"100.127.255.254", "a carrier-grade NAT address (100.64.0.0/10)"},
      {"127.0.0.1", "a loopback address (127.0.0.0/8)"},
      {"127.255.255.254", "a loopback address (127.0.0.0/8)"},
      {"169.254.0.1", "a link-local address (169.254.0.0/16)"},
      {"169.254.169.254", "a cloud metadata address"},
      {"169.254.170.2", "a cloud metadata address"},
      {"100.100.100.200", "a cloud metadata address"},
      {"172.16.0.1", "a private address (172.16.0.0/12)"},
      {"172.31.255.255", "a private address (172.16.0.0/12)"},
      {"192.0.0.8", "an IETF protocol assignment (192.0.0.0/24)"},
      {"192.0.2.1", "a documentation address (192.0.2.0/24)"},
      {"192.88.99.1", "a 6to4 relay anycast address (192.88.99.0/24)"},
      {"192.168.1.1", "a private address (192.168.0.0/16)"},
      {"198.18.0.1", "a benchmarking address (198.18.0.0/15)"},
      {"198.19.255.255", "a benchmarking address (198.18.0.0/15)"},
      {"198.51.100.7", "a documentation address (198.51.100.0/24)"},
      {"203.0.113.9", "a documentation address (203.0.113.0/24)"},
      {"224.0.0.1", "a multicast address (224.0.0.0/4)"},
      {"239.255.255.250", "a multicast address (224.0.0.0/4)"},
      {"240.0.0.1", "a reserved address (240.0.0.0/4)"},
      {"255.255.255.255", "the broadcast address (255.255.255.255/32)"},
      {"::", "an unspecified address (::/128)"},
      {"::1", "a loopback address (::1/128)"},
      {"::a00:1", "an IPv4-compatible address (deprecated) (::/96)"},
      {"::ffff:10.1.2.3", "a private address (10.0.0.0/8)"},
      {"::ffff:169.254.169.254", "a cloud metadata address"},
      {"::ffff:0.0.0.0", "an unspecified address (0.0.0.0/8)"},
      {"64:ff9b::a00:1", "the NAT64 form of 10.0.0.1, a private address (10.0.0.0/8)"},
      {"64:ff9b::a9fe:a9fe", "the NAT64 form of 169.254.169.254, a cloud metadata address"},
      {"64:ff9b:1::1", "a local-use NAT64 address (64:ff9b:1::/48)"},
      {"2002:c0a8:101::1", "the 6to4 form of 192.168.1.1, a private address (192.168.0.0/16)"},
      {"100::1", "a discard-only address (100::/64)"},
      {"2001::1", "an IETF protocol assignment (Teredo, benchmarking, ORCHID) (2001::/23)"},
      {"2001:2::1", "an IETF protocol assignment (Teredo, benchmarking, ORCHID) (2001::/23)"},
      {"2001:db8::1", "a documentation address (2001:db8::/32)"},
      {"3fff::1", "a documentation address (3fff::/20)"},
      {"fc00::1", "a unique-local address (fc00::/7)"},
      {"fd12:3456::1", "a unique-local address (fc00::/7)"},
      {"fd00:ec2::254", "a cloud metadata address"},
      {"fe80::1", "a link-local address (fe80::/10)"},
      {"febf::1", "a link-local address (fe80::/10)"},
      {"fec0::1", "a site-local address (deprecated) (fec0::/10)"},
      {"ff02::1", "a multicast address (ff00::/8)"},
      {"::ffff:0:a00:1", "a reserved address (outside the global unicast range 2000::/3)"},
      {"4000::1", "a reserved address (outside the global unicast range 2000::/3)"},
  };
  for (const auto& [address, why] : cases) {
    EXPECT_EQ(address_refusal(g, address),
              std::string("refused by the outbound policy: ") + address + " is " + why)
        << address;
  }
  for (const auto* address : {"8.8.8.8",         "1.1.1.1",         "9.255.255.255",
                              "11.0.0.0",        "100.63.255.255",  "100.128.0.0",
                              "126.255.255.255", "128.0.0.0",       "169.255.0.0",
                              "172.15.255.255",  "172.32.0.0",      "192.0.1.0",
                              "192.167.255.255", "198.17.255.255",  "198.20.0.0",
                              "223.255.255.255", "2606:4700::1111", "2a00:1450:4001:80b::200e",
                              "2001:200::1",     "::ffff:8.8.8.8"}) {
    EXPECT_EQ(address_refusal(g, address), "") << address;
  }
}

TEST(OutboundGuardTest, AResolvedNameIsRefusedWithoutNamingTheAddress) {
  const OutboundGuard g;
  auto r = g.check_resolved("db.internal.example", ip("10.1.2.3"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::forbidden);
  EXPECT_EQ(
      r.error().detail,
      "refused by the outbound policy: 'db.internal.example' resolves to a private address (10.0.0.0/8)");
  EXPECT_TRUE(g.check_resolved("example.com", ip("93.184.216.34")));
  EXPECT_FALSE(g.check_resolved("localhost", ip("127.0.0.1")));
  EXPECT_FALSE(g.check_resolved("localhost", ip("::1")));
}

TEST(OutboundGuardTest, TheOperatorAllowsLoopback) {
  const auto g = allowing("loopback");
  for (const auto* url :
       {"http://127.0.0.1:8080/health", "http://127.9.9.9/", "http://[::1]:80/", "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/", "http://localhost:1/", "http://api.localhost/", "http://localhost./"}) {
    EXPECT_EQ(url_refusal(g, url), "") << url;
  }
  EXPECT_TRUE(g.check_resolved("localhost", ip("127.0.0.1")));
  EXPECT_TRUE(g.check_resolved("localhost", ip("::1")));
  // Nothing else: private, link-local, metadata, and spellings stay refused.
  for (const auto* url : {"http://10.0.0.1/", "http://[fd00::1]/", "http://169.254.169.254/",
                          "http://0.0.0.0/", "http://[::]/", "http://2130706433/", "http://127.1/"}) {
    EXPECT_NE(url_refusal(g, url), "") << url;
  }
  EXPECT_EQ(g.describe(), "loopback");
}

TEST(OutboundGuardTest, TheOperatorAllowsPrivateRangesButNotMetadata) {
  const auto g = allowing("private");
  for (const auto* address : {"10.0.0.1", "172.16.5.4", "192.168.0.10", "fd12::1", "::ffff:192.168.0.1"}) {
    EXPECT_EQ(address_refusal(g, address), "") << address;
  }
  EXPECT_EQ(address_refusal(g, "fd00:ec2::254"),
            "refused by the outbound policy: fd00:ec2::254 is a cloud metadata address");
  EXPECT_NE(address_refusal(g, "127.0.0.1"), "");
  EXPECT_NE(address_refusal(g, "100.64.0.1"), "");
}

TEST(OutboundGuardTest, TheOperatorAllowsCidrsAddressesAndHosts) {
  const auto g =
      allowing(" 10.20.0.0/16, fd12:3456::/32 ,192.0.2.7, [2001:db8::5], health.internal, *.corp.example ");
  EXPECT_EQ(address_refusal(g, "10.20.1.2"), "");
  EXPECT_NE(address_refusal(g, "10.21.0.1"), "");
  EXPECT_EQ(address_refusal(g, "::ffff:10.20.1.2"), "");
  EXPECT_EQ(address_refusal(g, "64:ff9b::a14:102"), "");  // NAT64 form of 10.20.1.2
  EXPECT_EQ(address_refusal(g, "fd12:3456:1::1"), "");
  EXPECT_NE(address_refusal(g, "fd12:3457::1"), "");
  EXPECT_EQ(address_refusal(g, "192.0.2.7"), "");
  EXPECT_NE(address_refusal(g, "192.0.2.8"), "");
  EXPECT_EQ(address_refusal(g, "2001:db8::5"), "");
  // A named host may resolve anywhere: the operator vouched for it. Its URL passes too, in any case.
  EXPECT_TRUE(g.check_resolved("health.internal", ip("10.9.9.9")));
  EXPECT_TRUE(g.check_resolved("Health.Internal.", ip("127.0.0.1")));
  EXPECT_TRUE(g.check_resolved("a.b.corp.example", ip("192.168.1.1")));
  EXPECT_FALSE(g.check_resolved("corp.example", ip("192.168.1.1")));  // *.domain: names under it only
  EXPECT_FALSE(g.check_resolved("evilcorp.example", ip("192.168.1.1")));
  EXPECT_FALSE(g.check_resolved("other.internal", ip("10.9.9.9")));
  EXPECT_EQ(url_refusal(g, "http://HEALTH.internal:9000/h"), "");
  EXPECT_EQ(g.describe(),
            "10.20.0.0/16,fd12:3456::/32,192.0.2.7,[2001:db8::5],health.internal,*.corp.example");
}

TEST(OutboundGuardTest, MetadataNeedsItsOwnEntry) {
  EXPECT_NE(address_refusal(allowing("169.254.0.0/16"), "169.254.169.254"), "");
  EXPECT_EQ(address_refusal(allowing("169.254.0.0/16"), "169.254.1.1"), "");
  EXPECT_EQ(address_refusal(allowing("169.254.169.254"), "169.254.169.254"), "");
  EXPECT_EQ(address_refusal(allowing("169.254.169.254/32"), "169.254.169.254"), "");
  EXPECT_NE(url_refusal(OutboundGuard{}, "http://metadata.google.internal/computeMetadata/v1/"), "");
  EXPECT_EQ(url_refusal(allowing("metadata.google.internal"), "http://metadata.google.internal/"), "");
}

TEST(OutboundGuardTest, BadAllowEntriesAreConfigurationErrors) {
  for (const auto* list : {"10.1.2.3/8", "10.0.0.0/33", "fd00::/129", "10.0.0.0/", "::1/x", "2130706433",
                           "127.1", "bad host", "*.", "exa$mple.com", "lo..cal"}) {
    auto g = OutboundGuard::from_allow_list(list);
    ASSERT_FALSE(g) << list;
    EXPECT_EQ(g.error().code, Errc::validation_failed);
    EXPECT_NE(g.error().detail.find(list), std::string::npos) << g.error().detail;
  }
  auto empty = OutboundGuard::from_allow_list("");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->describe(), "");
  EXPECT_NE(url_refusal(*empty, "http://127.0.0.1/"), "");
}

TEST(IpRangeTest, ParsesAndContains) {
  auto r = IpRange::parse("100.64.0.0/10");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->to_string(), "100.64.0.0/10");
  EXPECT_TRUE(r->contains(ip("100.127.1.1")));
  EXPECT_FALSE(r->contains(ip("100.128.0.0")));
  auto v6 = IpRange::parse("fe80::/10");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(ip("febf:ffff::1")));
  EXPECT_FALSE(v6->contains(ip("fec0::")));
  EXPECT_EQ(ip("::ffff:1.2.3.4").to_string(), "1.2.3.4");
  EXPECT_TRUE(ip("1.2.3.4").is_v4());
  EXPECT_EQ(ip("1.2.3.4"), ip("::ffff:1.2.3.4"));
}

}  // namespace
}  // namespace twinbridge::connect
