// The served OpenAPI document against the real server: its request schemas are the published JSON Schemas
// (not copies), and every request body carries an example that is valid against its schema and that the
// server accepts. Both tests read GET /openapi.json, so a new route or published schema is covered as soon as
// it is described.

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <set>
#include <string_view>
#include <tuple>

#include "core/json_schema.hpp"
#include "support/api_document.hpp"
#include "support/http_client.hpp"
#include "support/shared_server.hpp"

namespace twinbridge::testing {
namespace {

// A published schema as the component `name` of the OpenAPI document (what cmake/openapi_bundle.py makes of
// it): without its $id, its "#..." references rebased onto the component.
boost::json::value as_component(boost::json::value schema, const std::string& name) {
  schema.as_object().erase("$id");
  for_each_ref(schema, [&](boost::json::string& ref) {
    if (ref.starts_with("#")) ref = std::string(kComponentSchemas) + name + std::string(ref.subview(1));
  });
  return schema;
}

std::string percent_encode(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out += fmt::format("%{:02X}", u);
    }
  }
  return out;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned byte = 0;
    if (s[i] == '%' && i + 2 < s.size() &&
        std::from_chars(s.data() + i + 1, s.data() + i + 3, byte, 16).ptr == s.data() + i + 3) {
      out.push_back(static_cast<char>(byte));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

struct Operation {
  std::string path;    // the template, e.g. /v1/twin-systems/{id}/twins
  std::string method;  // lower case, as in the document
  std::string id;      // operationId
  const boost::json::object* op = nullptr;
};

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

int path_parameters(const std::string& path) {
  return static_cast<int>(std::count(path.begin(), path.end(), '{'));
}

int method_rank(const std::string& method) {
  if (method == "post") return 0;
  if (method == "put") return 1;
  if (method == "patch") return 2;
  return 3;
}

// The examples of a media type: its "example", or each value of its "examples".
std::vector<std::pair<std::string, boost::json::value>> examples_of(const boost::json::object& media) {
  std::vector<std::pair<std::string, boost::json::value>> out;
  if (const auto* e = media.if_contains("example")) out.emplace_back("example", *e);
  if (const auto* many = media.if_contains("examples")) {
    for (const auto& [name, example] : many->as_object()) {
      out.emplace_back(std::string(name), example.as_object().at("value"));
    }
  }
  return out;
}

class ServedOpenApiTest : public SharedServerTest {
 protected:
  static boost::json::object served(const std::string& path) {
    auto r = fetch(port(), {"GET", path});
    EXPECT_EQ(r.status, 200) << path;
    return r.json().as_object();
  }
};

TEST_F(ServedOpenApiTest, PublishedSchemasAreComponentsOfTheServedDocument) {
  const auto doc = served("/openapi.json");
  const auto& components = doc.at("components").at("schemas").as_object();
  std::map<std::string, std::string> component_of;  // published schema path -> component name
  for (const auto& [path, item] : doc.at("paths").as_object()) {
    if (!path.starts_with("/schemas/") || !item.as_object().contains("get")) continue;
    const auto published = served(std::string(path));
    for (const auto& [name, schema] : components) {
      if (schema == as_component(published, std::string(name))) component_of[std::string(path)] = name;
    }
    EXPECT_TRUE(component_of.contains(std::string(path)))
        << "no component of openapi.json is the schema served at " << std::string_view(path)
        << " (cmake/openapi_bundle.py inlines it when components/schemas names its file)";
  }
  // The registrations are validated against those schemas: their request bodies are those components.
  const std::map<std::string, std::string> kValidatedAgainst = {
      {"registerThirdPartySystem", "/schemas/third-party-system.json"},
      {"replaceThirdPartySystem", "/schemas/third-party-system.json"},
      {"registerTwinSystem", "/schemas/twin-system.json"},
      {"replaceTwinSystem", "/schemas/twin-system.json"}};
  std::size_t checked = 0;
  for (const auto& [path, item] : doc.at("paths").as_object()) {
    for (const auto& [method, op] : item.as_object()) {
      const auto* o = op.if_object();
      const auto* id = o != nullptr ? o->if_contains("operationId") : nullptr;
      if (id == nullptr || !kValidatedAgainst.contains(std::string(id->as_string()))) continue;
      ++checked;
      const auto& schema_path = kValidatedAgainst.at(std::string(id->as_string()));
      ASSERT_TRUE(component_of.contains(schema_path)) << schema_path;
      EXPECT_EQ(
          o->at("requestBody").at("content").at("application/json").at("schema"),
          (boost::json::object{{"$ref", std::string(kComponentSchemas) + component_of.at(schema_path)}}))
          << id->as_string();
    }
  }
  EXPECT_EQ(checked, kValidatedAgainst.size());
}

// Every request body of every operation has an example per media type; each is valid against the request
// schema (core::JsonSchema) and answered 2xx. The operations run in an order that creates what later ones
// need: principals first (the others act as them), then by the number of path parameters, POST before PUT
// before PATCH; questions about what the others made (access checks) come last. A path parameter is the id
// of the resource the POST of its collection created (from its Location); a twin of /v1/twins/{id} is the
// first of the initial twins of the first twin system registered, the TD the examples of a twin's state and
// policy are written for. Registrations are sent by a principal of the kind that registers them (the first
// one an example of POST /v1/principals created, or one made here), so their owners are real; everything
// else by the operator, who may do it all.
TEST_F(ServedOpenApiTest, EveryRequestBodyExampleIsValidAndAccepted) {
  const auto doc = served("/openapi.json");
  const auto& components = doc.at("components").at("schemas").as_object();
  std::vector<Operation> operations;
  for (const auto& [path, item] : doc.at("paths").as_object()) {
    for (const auto& [method, op] : item.as_object()) {
      const auto* o = op.if_object();
      if (method == "parameters" || o == nullptr || !o->contains("requestBody")) continue;
      operations.push_back(
          {std::string(path), std::string(method), std::string(o->at("operationId").as_string()), o});
    }
  }
  ASSERT_FALSE(operations.empty());
  const std::set<std::string> kQuestions = {"/v1/access/check"};  // change nothing, name what others made
  std::sort(operations.begin(), operations.end(), [&](const Operation& a, const Operation& b) {
    const auto key = [&](const Operation& x) {
      return std::tuple(kQuestions.contains(x.path), path_parameters(x.path),
                        !x.path.starts_with("/v1/principals"), method_rank(x.method), x.path);
    };
    return key(a) < key(b);
  });

  const std::map<std::string, std::string> kRegistrantKind = {
      {"/v1/third-party-systems", "third-party-system"},
      {"/v1/twin-systems", "twin-system"},
      {"/things", "twin-system"}};
  std::map<std::string, std::string> token_of_kind;  // the first principal of each kind the examples created
  std::map<std::string, std::string> created;        // collection template -> id of the first resource made
  std::size_t sent = 0;
  for (const auto& operation : operations) {
    const auto what = fmt::format("{} {} ({})", operation.method, operation.path, operation.id);
    // The path, with each parameter the id of a resource of its collection.
    std::string path;
    std::string collection;
    bool filled = true;
    for (std::size_t at = 1; at <= operation.path.size();) {
      const auto end = std::min(operation.path.find('/', at), operation.path.size());
      const auto segment = operation.path.substr(at, end - at);
      if (segment.starts_with("{")) {
        const auto it = created.find(collection);
        if (it == created.end()) {
          ADD_FAILURE() << what << ": nothing created by POST " << collection << " to use as " << segment;
          filled = false;
          break;
        }
        path += "/" + percent_encode(it->second);
      } else {
        path += "/" + segment;
      }
      collection += "/" + segment;
      at = end + 1;
    }
    if (!filled) continue;

    std::string token = kAdmin;
    if (const auto kind = kRegistrantKind.find(operation.path); kind != kRegistrantKind.end()) {
      if (!token_of_kind.contains(kind->second)) {
        token_of_kind[kind->second] = principal("openapi-examples-" + kind->second, kind->second);
      }
      token = token_of_kind.at(kind->second);
    }

    const auto& content = operation.op->at("requestBody").at("content").as_object();
    for (const auto& [media_type, media] : content) {
      const auto examples = examples_of(media.as_object());
      EXPECT_FALSE(examples.empty()) << what << ": the " << std::string_view(media_type)
                                     << " request body has no example";
      auto schema = core::JsonSchema::compile(standalone(media.at("schema"), components));
      ASSERT_TRUE(schema) << what << ": " << schema.error().detail
                          << (schema.error().fields.empty() ? "" : " at " + schema.error().fields[0].pointer);
      for (const auto& [name, example] : examples) {
        const auto label = fmt::format("{}, {} example {}", what, std::string_view(media_type), name);
        std::vector<core::FieldError> errors;
        EXPECT_TRUE(schema->validate(example, errors))
            << label << ": " << errors.front().pointer << " " << errors.front().detail;
        const auto r = call(port(), upper(operation.method), path, token, boost::json::serialize(example),
                            {{"Content-Type", std::string(media_type)}});
        ++sent;
        EXPECT_TRUE(r.status >= 200 && r.status < 300) << label << ": " << r.status << " " << r.body;
        if (r.status < 200 || r.status >= 300) continue;
        if (const auto location = r.header("Location");
            !location.empty() && !created.contains(operation.path)) {
          created[operation.path] = percent_decode(location.substr(location.rfind('/') + 1));
        }
        if (const auto* twins = example.is_object() ? example.as_object().if_contains("twins") : nullptr;
            operation.path == "/v1/twin-systems" && twins != nullptr && twins->is_array() &&
            !twins->as_array().empty() && !created.contains("/v1/twins")) {
          created["/v1/twins"] = std::string(twins->as_array()[0].at("id").as_string());
        }
        if (operation.path == "/v1/principals") {
          const auto principal = r.json().as_object();
          const std::string kind(principal.at("kind").as_string());
          if (const auto* key = principal.if_contains("api_key");
              key != nullptr && !token_of_kind.contains(kind)) {
            token_of_kind[kind] = std::string(key->at("token").as_string());
          }
        }
      }
    }
  }
  EXPECT_GE(sent, operations.size());
}

}  // namespace
}  // namespace twinbridge::testing
