// The served AsyncAPI document (GET /asyncapi.json) against the server that serves it: it is AsyncAPI 3.0.0,
// its references resolve and its operations use their channels' messages, every message has a payload schema
// and examples that core::JsonSchema finds valid, the twin stream's messages are those of
// dtif/twin_stream.hpp, every event of the Server-Sent Events routes is described, the schemas it shares with
// /openapi.json are the same, and its MQTT examples are what the MQTT sync accepts.

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/json_schema.hpp"
#include "dtif/twin_service.hpp"
#include "http/asyncapi.hpp"
#include "store/change.hpp"
#include "support/api_document.hpp"
#include "support/http_client.hpp"
#include "support/in_process_server.hpp"
#include "support/ws_client.hpp"

namespace twinbridge::testing {
namespace {

// The messages of GET /v1/stream, as dtif/twin_stream.hpp describes them.
const std::set<std::string> kStreamCommands = {"subscribe", "unsubscribe"};
const std::set<std::string> kStreamMessages = {"subscribed",    "state",   "change", "thing_updated",
                                               "thing_deleted", "revoked", "gap",    "unsubscribed",
                                               "left",          "error",   "closed"};

// The value a local reference "#/a/b" names in `doc`; null when it names nothing.
const boost::json::value* resolve(const boost::json::value& doc, std::string_view ref) {
  if (!ref.starts_with("#")) return nullptr;
  const auto* at = &doc;
  std::string_view rest = ref.substr(1);
  while (!rest.empty()) {
    if (rest.front() != '/') return nullptr;
    rest.remove_prefix(1);
    const auto end = std::min(rest.find('/'), rest.size());
    std::string token(rest.substr(0, end));
    rest.remove_prefix(end);
    for (std::size_t i = 0; (i = token.find('~', i)) != std::string::npos; ++i) {
      token.replace(i, 2, token.compare(i, 2, "~1") == 0 ? "/" : "~");
    }
    const auto* o = at->if_object();
    at = o != nullptr ? o->if_contains(token) : nullptr;
    if (at == nullptr) return nullptr;
  }
  return at;
}

// The paths a channel address stands for: each {parameter} replaced by each value of its enum.
std::vector<std::string> addresses(const boost::json::object& channel) {
  std::vector<std::string> out{std::string(channel.at("address").as_string())};
  const auto* parameters = channel.if_contains("parameters");
  if (parameters == nullptr) return out;
  for (const auto& [name, parameter] : parameters->as_object()) {
    const auto placeholder = fmt::format("{{{}}}", std::string_view(name));
    const auto* values = parameter.as_object().if_contains("enum");
    if (values == nullptr) continue;
    std::vector<std::string> expanded;
    for (const auto& address : out) {
      const auto at = address.find(placeholder);
      if (at == std::string::npos) {
        expanded.push_back(address);
        continue;
      }
      for (const auto& value : values->as_array()) {
        auto path = address;
        expanded.push_back(path.replace(at, placeholder.size(), std::string_view(value.as_string())));
      }
    }
    out = std::move(expanded);
  }
  return out;
}

// The `name` of each message of a channel.
std::set<std::string> message_names(const boost::json::value& doc, const boost::json::object& channel) {
  std::set<std::string> out;
  for (const auto& [key, message] : channel.at("messages").as_object()) {
    const auto* m = message.is_object() && message.as_object().contains("$ref")
                        ? resolve(doc, message.at("$ref").as_string())
                        : &message;
    if (m != nullptr) out.emplace(m->at("name").as_string());
  }
  return out;
}

class AsyncApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<InProcessServer>();
    server_->start();
    auto r = fetch(server_->port(), {"GET", "/asyncapi.json"});
    ASSERT_EQ(r.status, 200) << r.body;
    doc_ = r.json();
    auto o = fetch(server_->port(), {"GET", "/openapi.json"});
    ASSERT_EQ(o.status, 200);
    openapi_ = o.json();
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(server_->stop());
    server_.reset();
  }

  static const boost::json::object& doc() { return doc_.as_object(); }
  static const boost::json::object& channels() { return doc().at("channels").as_object(); }

  // The channel whose address stands for `path`; null when none does.
  static const boost::json::object* channel_of(const std::string& path) {
    for (const auto& [name, channel] : channels()) {
      for (const auto& address : addresses(channel.as_object())) {
        if (address == path) return &channel.as_object();
      }
    }
    return nullptr;
  }

  static inline std::unique_ptr<InProcessServer> server_;
  static inline boost::json::value doc_;
  static inline boost::json::value openapi_;
};

TEST_F(AsyncApiTest, IsServedWithoutCredentialsAsAsyncApi3) {
  const auto r = fetch(server_->port(), {"GET", "/asyncapi.json"});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  EXPECT_EQ(r.body, http::asyncapi_document());
  EXPECT_EQ(doc().at("asyncapi"), "3.0.0");
  EXPECT_EQ(doc().at("info").at("version"), openapi_.at("info").at("version"));
  // The servers the channels name: the listener (WebSocket and HTTP) and the MQTT broker.
  std::set<std::string> protocols;
  for (const auto& [name, server] : doc().at("servers").as_object()) {
    protocols.emplace(server.at("protocol").as_string());
    for (const auto& [variable, value] : server.as_object().if_contains("variables")->as_object()) {
      const std::string_view host = server.at("host").as_string();
      EXPECT_NE(host.find(fmt::format("{{{}}}", std::string_view(variable))), std::string_view::npos)
          << std::string_view(name) << ": variable " << std::string_view(variable) << " is not in the host";
    }
  }
  EXPECT_EQ(protocols, (std::set<std::string>{"ws", "http", "mqtt"}));
}

TEST_F(AsyncApiTest, EveryReferenceResolvesAndOperationsUseTheirChannelsMessages) {
  for_each_ref(doc_, [](const boost::json::string& ref) {
    EXPECT_NE(resolve(doc_, ref), nullptr)
        << "the reference " << std::string_view(ref) << " does not resolve";
  });
  for (const auto& [name, channel] : channels()) {
    const auto& messages = channel.at("messages").as_object();
    EXPECT_FALSE(messages.empty()) << std::string_view(name);
    for (const auto& [key, message] : messages) {
      const auto& ref = message.at("$ref").as_string();
      EXPECT_TRUE(ref.starts_with("#/components/messages/"))
          << std::string_view(name) << "/" << std::string_view(key);
    }
    EXPECT_FALSE(channel.at("servers").as_array().empty()) << std::string_view(name);
  }
  // An operation's messages, and its reply's, are messages of its channel (AsyncAPI 3.0, Operation Object).
  const auto of_channel = [](const boost::json::object& owner, const std::string& what) {
    const std::string channel(owner.at("channel").at("$ref").as_string());
    for (const auto& m : owner.at("messages").as_array()) {
      const std::string ref(m.at("$ref").as_string());
      EXPECT_TRUE(ref.starts_with(channel + "/messages/")) << what << ": " << ref << " is not of " << channel;
    }
  };
  std::set<std::string> used;
  for (const auto& [name, operation] : doc().at("operations").as_object()) {
    const auto& o = operation.as_object();
    EXPECT_TRUE(o.at("action") == "send" || o.at("action") == "receive") << std::string_view(name);
    of_channel(o, std::string(name));
    used.emplace(o.at("channel").at("$ref").as_string());
    if (const auto* reply = o.if_contains("reply"))
      of_channel(reply->as_object(), std::string(name) + " reply");
  }
  for (const auto& [name, channel] : channels()) {
    EXPECT_TRUE(used.contains("#/channels/" + std::string(name)))
        << "no operation uses " << std::string_view(name);
  }
}

TEST_F(AsyncApiTest, EveryMessageHasAPayloadSchemaAndValidExamples) {
  const auto& components = doc().at("components").at("schemas").as_object();
  std::size_t checked = 0;
  for (const auto& [name, message] : doc().at("components").at("messages").as_object()) {
    const std::string what(name);
    const auto* payload = message.as_object().if_contains("payload");
    ASSERT_NE(payload, nullptr) << what << " has no payload schema";
    auto schema = core::JsonSchema::compile(standalone(*payload, components));
    ASSERT_TRUE(schema) << what << ": " << schema.error().detail
                        << (schema.error().fields.empty() ? "" : " at " + schema.error().fields[0].pointer);
    const auto* examples = message.as_object().if_contains("examples");
    ASSERT_TRUE(examples != nullptr && !examples->as_array().empty()) << what << " has no example";
    for (const auto& example : examples->as_array()) {
      const auto label = fmt::format("{} example {}", what, std::string_view(example.at("name").as_string()));
      std::vector<core::FieldError> errors;
      EXPECT_TRUE(schema->validate(example.at("payload"), errors))
          << label << ": " << errors.front().pointer << " " << errors.front().detail;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0u);
}

TEST_F(AsyncApiTest, TheTwinStreamHasEveryMessageOfItsProtocol) {
  const auto* ws = channel_of("/v1/stream");
  ASSERT_NE(ws, nullptr);
  auto all = kStreamCommands;
  all.insert(kStreamMessages.begin(), kStreamMessages.end());
  EXPECT_EQ(message_names(doc_, *ws), all);
  // The same messages over Server-Sent Events, less what answers a command it cannot send.
  const auto* sse = channel_of("/v1/stream/events");
  ASSERT_NE(sse, nullptr);
  auto sent = kStreamMessages;
  sent.erase("unsubscribed");
  EXPECT_EQ(message_names(doc_, *sse), sent);
  // Every message is a JSON object whose "type" is the message's name, in every example.
  for (const auto& [key, message] : ws->at("messages").as_object()) {
    const auto& m = resolve(doc_, message.at("$ref").as_string())->as_object();
    for (const auto& example : m.at("examples").as_array()) {
      EXPECT_EQ(example.at("payload").at("type"), m.at("name"))
          << std::string_view(key) << " example " << std::string_view(example.at("name").as_string());
    }
  }
  // Both change kinds have an example.
  const auto& change = resolve(doc_, ws->at("messages").at("change").at("$ref").as_string())->as_object();
  std::set<bool> ephemeral;
  for (const auto& example : change.at("examples").as_array()) {
    ephemeral.insert(example.at("payload").as_object().contains("ephemeral"));
  }
  EXPECT_EQ(ephemeral, (std::set<bool>{false, true}));
}

// Each Server-Sent Events route of /openapi.json is a channel, and that channel describes every event the
// route sends (routes_events.cpp): the directory changes on /events and /events/<type>, status_changed on
// /v1/system-events, stream_gap and stream_closed everywhere.
// Every example of a client message, sent on /v1/stream, is taken: answered by what the protocol says, not by
// an error (an unsubscribe after the subscription it names). This server has no selections (no DTIA
// services): there a selection example must come through every check of the command and be refused only for
// that.
TEST_F(AsyncApiTest, EveryClientMessageExampleIsTakenByTheStream) {
  const auto& messages = doc().at("components").as_object().at("messages").as_object();
  int sent = 0;
  for (const auto* name : {"StreamSubscribe", "StreamUnsubscribe"}) {
    for (const auto& example : messages.at(name).as_object().at("examples").as_array()) {
      const auto& payload = example.as_object().at("payload").as_object();
      SCOPED_TRACE(boost::json::serialize(payload));
      WsOptions options;
      options.headers = bearer(kAdminToken);
      options.protocols = {"twinbridge.v1"};
      WsClient ws(server_->port(), "/v1/stream", options);
      ASSERT_TRUE(ws.accepted());
      // The answer to the last command: subscribed, unsubscribed or error.
      const auto answer = [&]() -> boost::json::object {
        while (auto text = ws.read()) {
          auto m = boost::json::parse(*text).as_object();
          const auto type = std::string(m.at("type").as_string());
          if (type == "subscribed" || type == "unsubscribed" || type == "error") return m;
        }
        ADD_FAILURE() << "no answer";
        return {};
      };
      const bool unsubscribe = payload.at("type") == "unsubscribe";
      if (unsubscribe) {
        ASSERT_TRUE(ws.send(
            boost::json::serialize(boost::json::object{{"type", "subscribe"},
                                                       {"id", payload.at("id")},
                                                       {"twins", boost::json::array{"urn:example:x"}}})));
        ASSERT_EQ(answer().at("type"), "subscribed");
      }
      ASSERT_TRUE(ws.send(boost::json::serialize(payload)));
      const auto got = answer();
      if (payload.contains("selection")) {
        EXPECT_EQ(got.at("type"), "error");
        EXPECT_EQ(got.at("status"), 503) << boost::json::serialize(got);
        EXPECT_EQ(got.at("pointer"), "/selection");
      } else {
        EXPECT_EQ(got.at("type"), unsubscribe ? "unsubscribed" : "subscribed") << boost::json::serialize(got);
        EXPECT_EQ(got.at("id"), payload.at("id"));
      }
      ++sent;
    }
  }
  EXPECT_GE(sent, 3);
}

TEST_F(AsyncApiTest, EveryEventOfTheServerSentEventsRoutesIsDescribed) {
  std::set<std::string> directory;
  for (const auto& route : server_->router().routes()) {
    if (!route.pattern.starts_with("/events/")) continue;
    const auto type = route.pattern.substr(std::string_view("/events/").size());
    EXPECT_TRUE(store::parse_change_type(type)) << route.pattern;
    directory.insert(type);
  }
  EXPECT_FALSE(directory.empty());
  std::map<std::string, std::set<std::string>> sent = {
      {"/events", directory},
      {"/v1/system-events", {std::string(store::to_string(store::ChangeType::status_changed))}}};
  for (const auto& type : directory) sent["/events/" + type] = {type};

  std::set<std::string> streams;  // the paths whose GET answers text/event-stream
  for (const auto& [path, item] : openapi_.at("paths").as_object()) {
    const auto* get = item.as_object().if_contains("get");
    const auto* ok =
        get != nullptr ? get->as_object().at("responses").as_object().if_contains("200") : nullptr;
    const auto* content = ok != nullptr ? ok->as_object().if_contains("content") : nullptr;
    if (content != nullptr && content->as_object().contains("text/event-stream")) streams.emplace(path);
  }
  for (const auto& [path, events] : sent) {
    EXPECT_TRUE(streams.contains(path)) << path << " is not a text/event-stream route of /openapi.json";
  }
  for (const auto& path : streams) {
    const auto* channel = channel_of(path);
    ASSERT_NE(channel, nullptr) << "no channel of /asyncapi.json has the address " << path;
    EXPECT_TRUE(channel->at("servers").as_array().front().at("$ref") == "#/servers/http") << path;
    const auto names = message_names(doc_, *channel);
    auto expected = sent[path];
    if (path.starts_with("/events") || path == "/v1/system-events") {
      expected.insert({"stream_gap", "stream_closed"});
    }
    for (const auto& event : expected) {
      EXPECT_TRUE(names.contains(event)) << path << ": the event " << event << " is not described";
    }
  }
}

// Schemas of /openapi.json that the messages carry too (a twin's state, a merge patch of it, a status change)
// are copies in /asyncapi.json: they must stay the same.
TEST_F(AsyncApiTest, SchemasSharedWithTheOpenApiDocumentAreTheSame) {
  const auto& mine = doc().at("components").at("schemas").as_object();
  const auto& theirs = openapi_.at("components").at("schemas").as_object();
  for (const auto* name :
       {"TwinState", "Pose", "ActionStatus", "Staleness", "StateChange", "StatusChangedEvent"}) {
    ASSERT_TRUE(mine.contains(name)) << name;
    EXPECT_EQ(mine.at(name), theirs.at(name)) << name << " differs from /openapi.json's";
  }
}

// The examples of the MQTT state topic are changes that the MQTT sync reads (dtif::read_state_change, as
// dtif/mqtt_sync.cpp does): a batch {"changes": [...]} or one change.
TEST_F(AsyncApiTest, MqttStateExamplesAreChangesTheSyncAccepts) {
  const auto* channel = channel_of("{prefix}{systemId}");
  ASSERT_NE(channel, nullptr);
  std::size_t changes = 0;
  for (const auto& [key, message] : channel->at("messages").as_object()) {
    const auto& m = resolve(doc_, message.at("$ref").as_string())->as_object();
    for (const auto& example : m.at("examples").as_array()) {
      const auto& payload = example.at("payload");
      std::vector<const boost::json::value*> items;
      if (const auto* list = payload.as_object().if_contains("changes")) {
        for (const auto& c : list->as_array()) items.push_back(&c);
      } else {
        items.push_back(&payload);
      }
      for (const auto* item : items) {
        const auto report = dtif::read_state_change(*item, "");
        EXPECT_TRUE(report) << boost::json::serialize(*item) << ": " << report.error().detail;
        ++changes;
      }
    }
  }
  EXPECT_GE(changes, 2u);
}

}  // namespace
}  // namespace twinbridge::testing
