#include "connect/mqtt_forms.hpp"

#include <boost/json/value.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <array>
#include <utility>

#include "core/json_reader.hpp"
#include "core/utf8.hpp"

namespace twinbridge::connect {

namespace {

constexpr std::size_t kMaxHrefBytes = 2048;
constexpr std::size_t kMaxTopicBytes = 65535;

// `text` for an error detail: quoted, at most 64 bytes, ill-formed UTF-8 replaced.
std::string shown(std::string_view text) {
  constexpr std::size_t kMax = 64;
  std::string out = "\"" + core::to_valid_utf8(text.substr(0, kMax));
  out += text.size() > kMax ? "...\"" : "\"";
  return out;
}

// The binding's default mappings from an operation type to a control packet (and the TD 1.1 operations on
// all properties or events that follow the same pattern).
std::optional<MqttControlPacket> packet_of_op(std::string_view op) {
  using enum MqttControlPacket;
  static constexpr std::array<std::pair<std::string_view, MqttControlPacket>, 15> kOps{{
      {"readproperty", subscribe},
      {"observeproperty", subscribe},
      {"readallproperties", subscribe},
      {"readmultipleproperties", subscribe},
      {"observeallproperties", subscribe},
      {"subscribeevent", subscribe},
      {"subscribeallevents", subscribe},
      {"unobserveproperty", unsubscribe},
      {"unobserveallproperties", unsubscribe},
      {"unsubscribeevent", unsubscribe},
      {"unsubscribeallevents", unsubscribe},
      {"writeproperty", publish},
      {"writeallproperties", publish},
      {"writemultipleproperties", publish},
      {"invokeaction", publish},
  }};
  for (const auto& [name, packet] : kOps) {
    if (name == op) return packet;
  }
  return std::nullopt;
}

// A value of mqv:controlPacket; earlier drafts wrote it with the prefix ("mqv:subscribe").
std::optional<MqttControlPacket> packet_named(std::string_view name) {
  if (name.starts_with("mqv:")) name.remove_prefix(4);
  if (name == "publish") return MqttControlPacket::publish;
  if (name == "subscribe") return MqttControlPacket::subscribe;
  if (name == "unsubscribe") return MqttControlPacket::unsubscribe;
  return std::nullopt;
}

// The control packet the form's `op` implies; nullopt with an error recorded when it cannot say.
std::optional<MqttControlPacket> packet_of_ops(const boost::json::value& op, const std::string& pointer,
                                               core::ObjectReader& reader) {
  std::vector<std::pair<std::string, std::string>> ops;  // (operation, its pointer)
  if (op.is_string()) {
    ops.emplace_back(std::string(op.get_string()), pointer);
  } else if (op.is_array()) {
    const auto& items = op.get_array();
    for (std::size_t i = 0; i < items.size(); ++i) {
      const auto item_pointer = core::pointer_append(pointer, std::to_string(i));
      if (!items[i].is_string()) {
        reader.add_error(item_pointer,
                         "must be a string, not " + std::string(core::json_type_name(items[i])));
        return std::nullopt;
      }
      ops.emplace_back(std::string(items[i].get_string()), item_pointer);
    }
  } else {
    reader.add_error(pointer,
                     "must be a string or an array of strings, not " + std::string(core::json_type_name(op)));
    return std::nullopt;
  }
  std::string publishing, subscribing, unsubscribing;  // the first operation of each kind
  for (const auto& [name, where] : ops) {
    const auto packet = packet_of_op(name);
    if (!packet) continue;  // e.g. queryaction: nothing MQTT does
    auto& first = *packet == MqttControlPacket::publish     ? publishing
                  : *packet == MqttControlPacket::subscribe ? subscribing
                                                            : unsubscribing;
    if (first.empty()) first = name;
  }
  if (!publishing.empty() && (!subscribing.empty() || !unsubscribing.empty())) {
    reader.add_error(pointer, "mixes an operation done by publishing (" + shown(publishing) +
                                  ") with one done by subscribing (" +
                                  shown(subscribing.empty() ? unsubscribing : subscribing) +
                                  "): give mqv:controlPacket, or one form for each");
    return std::nullopt;
  }
  if (!publishing.empty()) return MqttControlPacket::publish;
  if (!subscribing.empty()) return MqttControlPacket::subscribe;  // with its un- variants: a subscription
  if (!unsubscribing.empty()) return MqttControlPacket::unsubscribe;
  reader.add_error(pointer,
                   "names no operation that the MQTT binding maps to a control packet: give "
                   "mqv:controlPacket");
  return std::nullopt;
}

// The filters of mqv:filter (a string or an array of strings), each checked; nullopt when absent or bad.
std::optional<std::vector<std::string>> read_filters(core::ObjectReader& reader) {
  const auto* value = reader.value("mqv:filter", false);
  if (value == nullptr) return std::nullopt;
  const auto pointer = reader.member_pointer("mqv:filter");
  std::vector<std::pair<const boost::json::value*, std::string>> items;
  if (value->is_array()) {
    const auto& array = value->get_array();
    if (array.empty() || array.size() > kMaxFormFilters) {
      reader.add_error(pointer, "must have from 1 to " + std::to_string(kMaxFormFilters) + " filters, not " +
                                    std::to_string(array.size()));
      return std::nullopt;
    }
    for (std::size_t i = 0; i < array.size(); ++i) {
      items.emplace_back(&array[i], core::pointer_append(pointer, std::to_string(i)));
    }
  } else {
    items.emplace_back(value, pointer);
  }
  std::vector<std::string> filters;
  bool ok = true;
  for (const auto& [item, where] : items) {
    if (!item->is_string()) {
      reader.add_error(where, std::string(value->is_array() ? "must be a string"
                                                            : "must be a string or an "
                                                              "array of strings") +
                                  ", not " + std::string(core::json_type_name(*item)));
      ok = false;
      continue;
    }
    const std::string_view filter = item->get_string();
    if (auto checked = check_mqtt_topic_filter(filter); !checked) {
      reader.add_error(where, checked.error().detail);
      ok = false;
      continue;
    }
    filters.emplace_back(filter);
  }
  if (!ok) return std::nullopt;
  return filters;
}

}  // namespace

std::string_view to_string(MqttControlPacket packet) {
  switch (packet) {
    case MqttControlPacket::publish:
      return "publish";
    case MqttControlPacket::subscribe:
      return "subscribe";
    case MqttControlPacket::unsubscribe:
      return "unsubscribe";
  }
  return "unknown";
}

core::Result<MqttFormTarget> parse_mqtt_form(const boost::json::value& form, const MqttFormContext& context) {
  std::vector<core::FieldError> errors;
  core::ObjectReader reader(form, context.pointer, errors);
  if (!reader.is_object()) return std::unexpected(core::validation_result(std::move(errors)).error());
  MqttFormTarget out;

  // The broker, and a topic in the href's path (earlier drafts).
  const auto href_pointer = reader.member_pointer("href");
  std::string path_topic;
  if (const auto href = reader.string("href", true, kMaxHrefBytes)) {
    std::string absolute = *href;
    const auto reference = boost::urls::parse_uri_reference(*href);
    bool resolved = true;
    if (!reference) {
      reader.add_error(href_pointer, "is not a URI reference");
      resolved = false;
    } else if (!reference->has_scheme()) {
      if (context.base.empty()) {
        reader.add_error(href_pointer, "is relative and the TD has no base");
        resolved = false;
      } else {
        const auto base = boost::urls::parse_uri(context.base);
        boost::urls::url target;
        if (!base || !boost::urls::resolve(*base, *reference, target)) {
          reader.add_error(href_pointer,
                           "is relative and cannot be resolved against the base " + shown(context.base));
          resolved = false;
        } else {
          absolute = target.buffer();
        }
      }
    }
    if (resolved) {
      if (auto url = parse_mqtt_url(absolute); !url) {
        reader.add_error(href_pointer, url.error().detail);
      } else {
        out.broker = std::move(url->broker);
        path_topic = std::move(url->topic);
      }
    }
  }

  // The control packet: mqv:controlPacket, else op, else the caller's default.
  std::optional<MqttControlPacket> packet;
  bool packet_error = false;
  if (const auto* named = reader.value("mqv:controlPacket", false)) {
    if (named->is_string()) packet = packet_named(named->get_string());
    if (!packet) {
      reader.add_error(reader.member_pointer("mqv:controlPacket"),
                       "must be \"publish\", \"subscribe\" or \"unsubscribe\"");
      packet_error = true;
    }
  } else if (const auto* op = reader.value("op", false)) {
    packet = packet_of_ops(*op, reader.member_pointer("op"), reader);
    packet_error = !packet;
  } else if (context.default_packet) {
    packet = context.default_packet;
  } else {
    reader.add_error(context.pointer,
                     "names neither mqv:controlPacket nor op: which MQTT control packet to "
                     "send is unknown");
    packet_error = true;
  }

  if (const auto* qos = reader.value("mqv:qos", false)) {
    const bool valid = qos->is_string() && qos->get_string().size() == 1 && qos->get_string()[0] >= '0' &&
                       qos->get_string()[0] <= '2';
    if (valid) {
      out.qos = qos->get_string()[0] - '0';
    } else {
      reader.add_error(reader.member_pointer("mqv:qos"), "must be \"0\", \"1\" or \"2\" (a string)");
    }
  }
  if (const auto retain = reader.boolean("mqv:retain")) out.retain = *retain;

  const bool topic_given = reader.value("mqv:topic", false) != nullptr;
  const bool filter_given = reader.value("mqv:filter", false) != nullptr;
  std::optional<std::string> topic = reader.string("mqv:topic", false, kMaxTopicBytes);
  if (topic) {
    if (auto checked = check_mqtt_topic(*topic); !checked) {
      reader.add_error(reader.member_pointer("mqv:topic"), checked.error().detail);
      topic.reset();
    }
  }
  const auto filters = read_filters(reader);

  if (packet && !packet_error) {
    out.control_packet = *packet;
    if (*packet == MqttControlPacket::publish) {
      if (topic_given) {
        if (topic) out.topic = *topic;
      } else if (filter_given) {
        reader.add_error(reader.member_pointer("mqv:filter"),
                         "is for subscribing: a publish names its topic in mqv:topic");
      } else if (!path_topic.empty()) {
        if (auto checked = check_mqtt_topic(path_topic); !checked) {
          reader.add_error(href_pointer, checked.error().detail);
        } else {
          out.topic = path_topic;
        }
      } else {
        reader.add_error(context.pointer, "names no topic to publish to (mqv:topic)");
      }
      if (topic && !path_topic.empty() && path_topic != *topic) {
        reader.add_error(href_pointer, "names the topic " + shown(path_topic) +
                                           " in its path, but mqv:topic " + shown(*topic));
      }
    } else {
      if (filter_given) {
        if (filters) out.filters = *filters;
      } else if (topic_given) {
        if (topic) out.filters = {*topic};
      } else if (!path_topic.empty()) {
        if (auto checked = check_mqtt_topic_filter(path_topic); !checked) {
          reader.add_error(href_pointer, checked.error().detail);
        } else {
          out.filters = {path_topic};
        }
      } else {
        reader.add_error(context.pointer, "names no topic filter to subscribe to (mqv:filter)");
      }
      const bool by_term = filter_given || topic_given;
      if (by_term && !out.filters.empty() && !path_topic.empty() &&
          (out.filters.size() != 1 || out.filters[0] != path_topic)) {
        reader.add_error(href_pointer, "names the topic " + shown(path_topic) + " in its path, but " +
                                           (filter_given ? "mqv:filter" : "mqv:topic") + " another");
      }
    }
  }

  if (auto valid = core::validation_result(std::move(errors)); !valid) return std::unexpected(valid.error());
  return out;
}

}  // namespace twinbridge::connect
