#include "core/principal.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/access.hpp"
#include "core/ids.hpp"

namespace twinbridge::core {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields fields_of(const Error& e) {
  Fields out;
  for (const auto& f : e.fields) out.emplace_back(f.pointer, f.detail);
  return out;
}

std::vector<std::string> pointers_of(const Error& e) {
  std::vector<std::string> out;
  for (const auto& f : e.fields) out.push_back(f.pointer);
  return out;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

Result<Principal> create(std::string_view json) {
  return principal_from_json(boost::json::parse(json), nullptr);
}

Result<Principal> update(const boost::json::value& doc, const Principal& current) {
  return principal_from_json(doc, &current);
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A principal as the store returns it.
Principal stored_principal() {
  auto p = create(R"({"id":"urn:dev:ops:robot-1","kind":"twin-system","name":"Robot arm",
                      "roles":["twin-publisher"],"properties":{"site":"Hall 3","axes":6}})");
  EXPECT_TRUE(p.has_value());
  p->created = from_unix_micros(1'780'000'000'123'456);
  p->modified = from_unix_micros(1'780'000'100'654'321);
  p->version = 3;
  return *p;
}

void expect_same(const Principal& a, const Principal& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.roles, b.roles);
  EXPECT_EQ(a.properties, b.properties);
  EXPECT_EQ(a.disabled, b.disabled);
  EXPECT_EQ(a.created, b.created);
  EXPECT_EQ(a.modified, b.modified);
  EXPECT_EQ(a.version, b.version);
}

// principal_from_json on create

TEST(PrincipalCreateTest, GeneratesAUuidV7IdWhenAbsent) {
  const auto before = now_ms();
  const auto p = create(R"({"kind":"operator","name":"Alice"})");
  const auto after = now_ms();
  ASSERT_TRUE(p.has_value()) << p.error().detail;
  const auto& id = p->id.str();
  static const std::regex kUuidV7("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  ASSERT_TRUE(std::regex_match(id, kUuidV7)) << id;
  const auto ms = static_cast<std::int64_t>(std::stoull(id.substr(0, 8) + id.substr(9, 4), nullptr, 16));
  EXPECT_GE(ms, before);
  EXPECT_LE(ms, after);
  EXPECT_TRUE(validate_id(id, "/id").has_value());
}

TEST(PrincipalCreateTest, GeneratedIdsDiffer) {
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    auto p = create(R"({"kind":"operator","name":"Alice"})");
    ASSERT_TRUE(p.has_value());
    ids.insert(p->id.str());
  }
  EXPECT_EQ(ids.size(), 100u);
}

TEST(PrincipalCreateTest, KeepsAGivenId) {
  const auto p = create(R"({"id":"urn:dev:ops:lamp-1","kind":"twin-system","name":"Lamp"})");
  ASSERT_TRUE(p.has_value()) << p.error().detail;
  EXPECT_EQ(p->id.str(), "urn:dev:ops:lamp-1");
  EXPECT_EQ(p->kind, PrincipalKind::twin_system);
  EXPECT_EQ(p->name, "Lamp");
  EXPECT_FALSE(p->disabled);
  EXPECT_TRUE(p->properties.empty());
  EXPECT_EQ(p->version, 0);
}

TEST(PrincipalCreateTest, RefusesAnInvalidId) {
  const auto p = create(R"({"id":"a b","kind":"operator","name":"Alice"})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Errc::validation_failed);
  ASSERT_EQ(pointers_of(p.error()), std::vector<std::string>{"/id"});
  EXPECT_TRUE(contains(p.error().fields[0].detail, "space character U+0020 at offset 1"))
      << p.error().fields[0].detail;
}

TEST(PrincipalCreateTest, RefusesAnIdLongerThan256Bytes) {
  for (std::size_t size : {kMaxIdBytes + 1, kMaxIdBytes + 2, std::size_t{1000}}) {
    const auto p = principal_from_json(
        boost::json::object{{"id", std::string(size, 'i')}, {"kind", "operator"}, {"name", "Alice"}},
        nullptr);
    ASSERT_FALSE(p.has_value()) << size;
    EXPECT_EQ(pointers_of(p.error()), std::vector<std::string>{"/id"}) << size;
  }
}

TEST(PrincipalCreateTest, RefusesAnIdThatIsNotAString) {
  const auto p = create(R"({"id":7,"kind":"operator","name":"Alice"})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/id", "must be a string, not integer"}}));
}

TEST(PrincipalCreateTest, RequiresKind) {
  const auto p = create(R"({"name":"Alice"})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Errc::validation_failed);
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/kind", "required member 'kind' (a string) is missing"}}));
}

TEST(PrincipalCreateTest, RefusesAnUnknownKind) {
  const auto p = create(R"({"kind":"robot","name":"Alice"})");
  ASSERT_FALSE(p.has_value());
  ASSERT_EQ(pointers_of(p.error()), std::vector<std::string>{"/kind"});
  EXPECT_TRUE(contains(p.error().fields[0].detail, "'robot' is not a principal kind"))
      << p.error().fields[0].detail;
  EXPECT_TRUE(contains(p.error().fields[0].detail, "third-party-system")) << p.error().fields[0].detail;
}

TEST(PrincipalCreateTest, KindIsCaseSensitive) {
  const auto p = create(R"({"kind":"Operator","name":"Alice"})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(pointers_of(p.error()), std::vector<std::string>{"/kind"});
}

TEST(PrincipalCreateTest, RequiresName) {
  const auto p = create(R"({"kind":"operator"})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/name", "required member 'name' (a string) is missing"}}));
}

TEST(PrincipalCreateTest, RefusesAnEmptyName) {
  const auto p = create(R"({"kind":"operator","name":""})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/name", "must not be empty"}}));
}

TEST(PrincipalCreateTest, NameMayHave256BytesButNotMore) {
  boost::json::object doc{{"kind", "operator"}, {"name", std::string(kMaxNameBytes, 'n')}};
  const auto ok = principal_from_json(doc, nullptr);
  ASSERT_TRUE(ok.has_value()) << ok.error().detail;
  EXPECT_EQ(ok->name.size(), kMaxNameBytes);

  doc["name"] = std::string(kMaxNameBytes + 1, 'n');
  const auto too_long = principal_from_json(doc, nullptr);
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(fields_of(too_long.error()), (Fields{{"/name", "is 257 bytes long; at most 256 are allowed"}}));
}

TEST(PrincipalCreateTest, RolesDefaultByKind) {
  struct Case {
    std::string_view kind;
    std::vector<std::string> roles;
  };
  const std::vector<Case> cases = {
      {"operator", {"admin"}},
      {"metaverse-system", {"registry-reader", "twin-reader", "twin-controller", "service-user"}},
      {"twin-system", {"registry-writer", "twin-publisher"}},
      {"third-party-system", {"registry-writer", "twin-reader"}},
  };
  for (const auto& c : cases) {
    const auto p = principal_from_json(boost::json::object{{"kind", c.kind}, {"name", "x"}}, nullptr);
    ASSERT_TRUE(p.has_value()) << c.kind;
    EXPECT_EQ(p->roles, c.roles) << c.kind;
    EXPECT_EQ(p->roles, default_roles(*parse_principal_kind(c.kind))) << c.kind;
  }
}

TEST(PrincipalCreateTest, ExplicitEmptyRolesMeanNoRoles) {
  const auto p = create(R"({"kind":"operator","name":"Alice","roles":[]})");
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->roles.empty());
}

TEST(PrincipalCreateTest, ReportsAnUnknownRoleAtItsIndex) {
  const auto p = create(R"({"kind":"operator","name":"Alice","roles":["admin","superuser"]})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/roles/1", "'superuser' is not a known role"}}));
}

TEST(PrincipalCreateTest, RemovesDuplicateRoles) {
  const auto p =
      create(R"({"kind":"operator","name":"Alice","roles":["twin-reader","auditor","twin-reader"]})");
  ASSERT_TRUE(p.has_value()) << p.error().detail;
  EXPECT_EQ(p->roles, (std::vector<std::string>{"auditor", "twin-reader"}));
}

TEST(PrincipalCreateTest, RolesMustBeAnArrayOfStrings) {
  const auto not_array = create(R"({"kind":"operator","name":"Alice","roles":"admin"})");
  ASSERT_FALSE(not_array.has_value());
  EXPECT_EQ(fields_of(not_array.error()), (Fields{{"/roles", "must be an array of strings, not string"}}));

  const auto not_string = create(R"({"kind":"operator","name":"Alice","roles":["admin",3]})");
  ASSERT_FALSE(not_string.has_value());
  EXPECT_EQ(fields_of(not_string.error()), (Fields{{"/roles/1", "must be a string, not integer"}}));
}

TEST(PrincipalCreateTest, KeepsPropertiesAndDisabled) {
  const auto p =
      create(R"({"kind":"operator","name":"Alice","properties":{"team":"ops","n":[1,2]},"disabled":true})");
  ASSERT_TRUE(p.has_value()) << p.error().detail;
  EXPECT_EQ(p->properties, boost::json::parse(R"({"team":"ops","n":[1,2]})").as_object());
  EXPECT_TRUE(p->disabled);
}

TEST(PrincipalCreateTest, PropertiesMustBeAnObject) {
  const auto p = create(R"({"kind":"operator","name":"Alice","properties":["team"]})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/properties", "must be an object, not array"}}));
}

TEST(PrincipalCreateTest, PropertiesHaveASizeLimit) {
  boost::json::object doc{
      {"kind", "operator"},
      {"name", "Alice"},
      {"properties", boost::json::object{{"blob", std::string(kMaxPropertiesBytes, 'x')}}}};
  const auto p = principal_from_json(doc, nullptr);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/properties", "is larger than 16384 bytes"}}));
}

TEST(PrincipalCreateTest, DisabledMustBeABoolean) {
  const auto p = create(R"({"kind":"operator","name":"Alice","disabled":"no"})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/disabled", "must be a boolean, not string"}}));
}

TEST(PrincipalCreateTest, ReportsAnUnknownMemberWithItsPointer) {
  const auto p = create(R"({"kind":"operator","name":"Alice","colour":"red","a/b":1})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()),
            (Fields{{"/colour", "unknown member 'colour'"}, {"/a~1b", "unknown member 'a/b'"}}));
}

TEST(PrincipalCreateTest, RefusesServerMaintainedMembers) {
  const auto p = create(R"({"kind":"operator","name":"Alice","created":"2026-01-01T00:00:00.000000Z",
                           "modified":"2026-01-01T00:00:00.000000Z","version":1})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(
      fields_of(p.error()),
      (Fields{{"/created", "is read-only"}, {"/modified", "is read-only"}, {"/version", "is read-only"}}));
}

TEST(PrincipalCreateTest, ReportsSeveralErrorsAtOnce) {
  const auto p =
      create(R"({"id":"a/b","kind":"robot","name":"","roles":["admin","nope"],"properties":1,"x":0})");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Errc::validation_failed);
  EXPECT_EQ(pointers_of(p.error()),
            (std::vector<std::string>{"/id", "/kind", "/name", "/roles/1", "/properties", "/x"}));
  EXPECT_EQ(p.error().detail, "the request has 6 invalid fields");
}

TEST(PrincipalCreateTest, RefusesADocumentThatIsNotAnObject) {
  const auto p = create(R"(["operator"])");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Errc::validation_failed);
  EXPECT_EQ(fields_of(p.error()), (Fields{{"", "must be an object, not array"}}));
}

// principal_from_json on update

TEST(PrincipalUpdateTest, AcceptsTheDocumentAsReadWithChanges) {
  const auto current = stored_principal();
  auto doc = to_json(current);
  doc["name"] = "Robot arm 2";
  doc["disabled"] = true;
  const auto p = update(doc, current);
  ASSERT_TRUE(p.has_value()) << p.error().detail;
  EXPECT_EQ(p->name, "Robot arm 2");
  EXPECT_TRUE(p->disabled);
  EXPECT_EQ(p->id, current.id);
  EXPECT_EQ(p->kind, current.kind);
  EXPECT_EQ(p->created, current.created);
  EXPECT_EQ(p->modified, current.modified);
  EXPECT_EQ(p->version, current.version);
}

TEST(PrincipalUpdateTest, KeepsWhatTheDocumentLeavesOut) {
  const auto current = stored_principal();
  const auto p = update(boost::json::parse(R"({"name":"Renamed"})"), current);
  ASSERT_TRUE(p.has_value()) << p.error().detail;
  EXPECT_EQ(p->name, "Renamed");
  EXPECT_EQ(p->id, current.id);
  EXPECT_EQ(p->kind, current.kind);
  EXPECT_EQ(p->roles, current.roles);  // not reset to the kind's defaults
  EXPECT_EQ(p->properties, current.properties);
}

TEST(PrincipalUpdateTest, IdIsReadOnly) {
  const auto current = stored_principal();
  auto doc = to_json(current);
  doc["id"] = "urn:dev:ops:robot-2";
  const auto p = update(doc, current);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/id", "is read-only"}}));
}

TEST(PrincipalUpdateTest, KindIsReadOnly) {
  const auto current = stored_principal();
  auto doc = to_json(current);
  doc["kind"] = "operator";
  const auto p = update(doc, current);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(fields_of(p.error()), (Fields{{"/kind", "is read-only; create a new principal instead"}}));
}

TEST(PrincipalUpdateTest, ServerMaintainedMembersAreAcceptedWhenUnchanged) {
  const auto current = stored_principal();
  const auto doc = to_json(current);
  ASSERT_TRUE(doc.contains("created") && doc.contains("modified") && doc.contains("version"));
  const auto p = update(doc, current);
  ASSERT_TRUE(p.has_value()) << p.error().detail;
}

TEST(PrincipalUpdateTest, ServerMaintainedMembersAreRefusedWhenChanged) {
  const auto current = stored_principal();
  struct Case {
    std::string member;
    boost::json::value value;
  };
  const std::vector<Case> cases = {
      {"created", boost::json::value("2020-01-01T00:00:00.000000Z")},
      {"modified", boost::json::value("2020-01-01T00:00:00.000000Z")},
      {"version", boost::json::value(4)},
      {"version", boost::json::value("3")},
  };
  for (const auto& c : cases) {
    auto doc = to_json(current);
    doc[c.member] = c.value;
    const auto p = update(doc, current);
    ASSERT_FALSE(p.has_value()) << c.member;
    EXPECT_EQ(fields_of(p.error()), (Fields{{"/" + c.member, "is read-only"}})) << c.member;
  }
}

TEST(PrincipalUpdateTest, ValidatesChangedMembersLikeCreate) {
  const auto current = stored_principal();
  auto doc = to_json(current);
  doc["name"] = "";
  doc["roles"] = boost::json::array{"ghost"};
  doc["unknown"] = 1;
  const auto p = update(doc, current);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(pointers_of(p.error()), (std::vector<std::string>{"/name", "/roles/0", "/unknown"}));
}

// to_json

TEST(PrincipalToJsonTest, WritesEveryMember) {
  const auto p = stored_principal();
  const auto doc = to_json(p);
  EXPECT_EQ(doc, boost::json::parse(R"({
    "id": "urn:dev:ops:robot-1",
    "kind": "twin-system",
    "name": "Robot arm",
    "roles": ["twin-publisher"],
    "properties": {"site": "Hall 3", "axes": 6},
    "disabled": false,
    "created": "2026-05-28T20:26:40.123456Z",
    "modified": "2026-05-28T20:28:20.654321Z",
    "version": 3
  })")
                     .as_object())
      << boost::json::serialize(doc);
}

TEST(PrincipalToJsonTest, RoundTripsThroughPrincipalFromJson) {
  const auto p = stored_principal();
  const auto back = update(to_json(p), p);
  ASSERT_TRUE(back.has_value()) << back.error().detail;
  expect_same(*back, p);

  // A created document without the server-maintained members reads back as the same principal.
  auto doc = to_json(p);
  doc.erase("created");
  doc.erase("modified");
  doc.erase("version");
  auto created = principal_from_json(doc, nullptr);
  ASSERT_TRUE(created.has_value()) << created.error().detail;
  created->created = p.created;
  created->modified = p.modified;
  created->version = p.version;
  expect_same(*created, p);
}

TEST(PrincipalKindTest, NamesRoundTrip) {
  for (auto kind : {PrincipalKind::operator_account, PrincipalKind::metaverse_system,
                    PrincipalKind::twin_system, PrincipalKind::third_party_system}) {
    EXPECT_EQ(parse_principal_kind(to_string(kind)), kind);
  }
  EXPECT_EQ(to_string(PrincipalKind::operator_account), "operator");
  EXPECT_EQ(to_string(PrincipalKind::third_party_system), "third-party-system");
  EXPECT_FALSE(parse_principal_kind(""));
  EXPECT_FALSE(parse_principal_kind("operator_account"));
}

// validate_id

TEST(ValidateIdTest, RefusesAnEmptyId) {
  const auto r = validate_id("", "/id");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::validation_failed);
  EXPECT_EQ(fields_of(r.error()), (Fields{{"/id", "id must not be empty"}}));
}

TEST(ValidateIdTest, AllowsAtMost256Bytes) {
  EXPECT_TRUE(validate_id(std::string(256, 'a'), "/id").has_value());
  const auto r = validate_id(std::string(257, 'a'), "/id");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(fields_of(r.error()), (Fields{{"/id", "id is 257 bytes long; at most 256 are allowed"}}));
}

TEST(ValidateIdTest, NamesAControlCharacterAndItsOffset) {
  const auto nul = validate_id(std::string_view("\0", 1), "/id");
  ASSERT_FALSE(nul.has_value());
  EXPECT_TRUE(contains(nul.error().detail, "control character U+0000 at offset 0")) << nul.error().detail;

  const auto later = validate_id(std::string_view("abc\0", 4), "/id");
  ASSERT_FALSE(later.has_value());
  EXPECT_TRUE(contains(later.error().detail, "control character U+0000 at offset 3")) << later.error().detail;

  const auto tab = validate_id("a\tb", "/id");
  ASSERT_FALSE(tab.has_value());
  EXPECT_TRUE(contains(tab.error().detail, "control character U+0009 at offset 1")) << tab.error().detail;

  const auto del = validate_id("ab\x7f", "/id");
  ASSERT_FALSE(del.has_value());
  EXPECT_TRUE(contains(del.error().detail, "control character U+007F at offset 2")) << del.error().detail;
}

TEST(ValidateIdTest, RefusesCharactersThatNeedEscapingInAPath) {
  for (char c : std::string_view("/?#[]%\"<>\\^`{|}")) {
    const std::string id = std::string("ab") + c;
    const auto r = validate_id(id, "/id");
    ASSERT_FALSE(r.has_value()) << id;
    EXPECT_TRUE(contains(r.error().detail, std::string("character '") + c + "' at offset 2"))
        << r.error().detail;
  }
}

TEST(ValidateIdTest, RefusesSlashAndSpace) {
  const auto slash = validate_id("a/b", "/id");
  ASSERT_FALSE(slash.has_value());
  EXPECT_TRUE(contains(slash.error().detail, "character '/' at offset 1")) << slash.error().detail;

  const auto space = validate_id(" a", "/x");
  ASSERT_FALSE(space.has_value());
  EXPECT_EQ(pointers_of(space.error()), std::vector<std::string>{"/x"});
  EXPECT_TRUE(contains(space.error().detail, "space character U+0020 at offset 0")) << space.error().detail;
}

TEST(ValidateIdTest, RefusesNonAscii) {
  const auto r = validate_id("caf\xc3\xa9", "/id");
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(contains(r.error().detail, "non-ASCII character U+00E9 at offset 3")) << r.error().detail;
}

TEST(ValidateIdTest, AcceptsUrnsAndOtherPrintableAscii) {
  EXPECT_TRUE(validate_id("urn:dev:ops:lamp-1", "/id").has_value());
  EXPECT_TRUE(validate_id("urn:uuid:0190163d-8694-739b-aea5-966c26f8ad91", "/id").has_value());
  EXPECT_TRUE(validate_id("a.b_c-d~e:f@g!$&'()*+,;=", "/id").has_value());
  EXPECT_TRUE(validate_id("x", "/id").has_value());
}

TEST(NewUuidV7Test, IsAVersion7VariantRfc9562Uuid) {
  static const std::regex kUuidV7("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  for (int i = 0; i < 50; ++i) {
    const auto id = new_uuid_v7();
    EXPECT_TRUE(std::regex_match(id, kUuidV7)) << id;
  }
}

// has_permission and the role catalogue

constexpr Permission kAllPermissions[] = {
    Permission::principals_read, Permission::principals_write, Permission::audit_read,
    Permission::registry_read,   Permission::registry_write,   Permission::registry_admin,
    Permission::twins_read,      Permission::twins_control,    Permission::twins_publish,
    Permission::services_use,
};

Principal with_roles(std::vector<std::string> roles) {
  Principal p;
  p.id = PrincipalId("p");
  p.name = "p";
  p.roles = std::move(roles);
  return p;
}

TEST(HasPermissionTest, AdminHasEveryPermission) {
  const auto admin = with_roles({"admin"});
  for (auto permission : kAllPermissions)
    EXPECT_TRUE(has_permission(admin, permission)) << to_string(permission);
}

TEST(HasPermissionTest, DisabledPrincipalHasNone) {
  auto admin = with_roles({"admin", "auditor"});
  admin.disabled = true;
  for (auto permission : kAllPermissions)
    EXPECT_FALSE(has_permission(admin, permission)) << to_string(permission);
}

TEST(HasPermissionTest, NoRolesOrUnknownRolesGrantNothing) {
  for (const auto& p : {with_roles({}), with_roles({"superuser"}), with_roles({"Admin"})}) {
    for (auto permission : kAllPermissions)
      EXPECT_FALSE(has_permission(p, permission)) << to_string(permission);
  }
}

TEST(HasPermissionTest, AuditorReadsPrincipalsAndAuditOnly) {
  const auto auditor = with_roles({"auditor"});
  for (auto permission : kAllPermissions) {
    const bool expected = permission == Permission::principals_read || permission == Permission::audit_read;
    EXPECT_EQ(has_permission(auditor, permission), expected) << to_string(permission);
  }
}

TEST(HasPermissionTest, EachRoleGrantsExactlyItsCataloguedPermissions) {
  for (const auto& role : role_catalogue()) {
    const auto p = with_roles({std::string(role.name)});
    for (auto permission : kAllPermissions) {
      const bool listed =
          std::find(role.permissions.begin(), role.permissions.end(), permission) != role.permissions.end();
      EXPECT_EQ(has_permission(p, permission), listed) << role.name << " " << to_string(permission);
    }
  }
}

TEST(HasPermissionTest, RolesAddUp) {
  const auto p = with_roles({"twin-reader", "service-user"});
  EXPECT_TRUE(has_permission(p, Permission::twins_read));
  EXPECT_TRUE(has_permission(p, Permission::services_use));
  EXPECT_FALSE(has_permission(p, Permission::twins_control));
}

TEST(RoleCatalogueTest, NamesAreUniqueKnownAndDescribed) {
  std::set<std::string_view> names;
  for (const auto& role : role_catalogue()) {
    EXPECT_TRUE(names.insert(role.name).second) << role.name;
    EXPECT_TRUE(is_known_role(role.name)) << role.name;
    EXPECT_FALSE(role.description.empty()) << role.name;
    EXPECT_FALSE(role.permissions.empty()) << role.name;
  }
  EXPECT_TRUE(names.contains("admin"));
  EXPECT_FALSE(is_known_role("superuser"));
  EXPECT_FALSE(is_known_role(""));
}

TEST(RoleCatalogueTest, DefaultRolesOfEveryKindAreKnown) {
  for (auto kind : {PrincipalKind::operator_account, PrincipalKind::metaverse_system,
                    PrincipalKind::twin_system, PrincipalKind::third_party_system}) {
    const auto roles = default_roles(kind);
    EXPECT_FALSE(roles.empty()) << to_string(kind);
    for (const auto& r : roles) EXPECT_TRUE(is_known_role(r)) << r;
  }
}

TEST(PermissionTest, NamesAreDistinct) {
  std::set<std::string_view> names;
  for (auto permission : kAllPermissions) {
    EXPECT_NE(to_string(permission), "unknown");
    EXPECT_TRUE(names.insert(to_string(permission)).second) << to_string(permission);
  }
  EXPECT_EQ(to_string(Permission::principals_read), "principals:read");
}

}  // namespace
}  // namespace twinbridge::core
