#include "dtif/twin_stream.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

#include "core/json_reader.hpp"
#include "core/utf8.hpp"
#include "dtif/selections.hpp"

namespace twinbridge::dtif {

using core::Errc;
namespace json = boost::json;

namespace {

constexpr std::size_t kResumeMaxChanges = 10'000;  // beyond this, a resume is answered as a gap
constexpr std::size_t kFlushBatch = 1'000;         // conflated twins refreshed per turn
constexpr auto kBacklogPoll = std::chrono::milliseconds(10);

std::shared_ptr<const std::string> text_of(const json::object& message) {
  auto text = json::serialize(message);
  // Like every response, a message never carries ill-formed UTF-8, whatever a record held.
  if (!core::is_valid_utf8(text)) text = core::to_valid_utf8(text);
  return std::make_shared<const std::string>(std::move(text));
}

// Runs `work` on `reader` and resumes the awaiting coroutine on its own executor with the result. `work` is a
// named local of the awaiting coroutine, moved in: GCC 12 destroys a lambda temporary of a co_await
// expression twice (its captures freed twice).
template <class F>
boost::asio::awaitable<std::invoke_result_t<F&>> on_reader(const boost::asio::any_io_executor& reader,
                                                           F work) {
  using R = std::invoke_result_t<F&>;
  co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(R)>(
      [&reader, &work](auto handler) {
        auto guard = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
        boost::asio::post(reader, [work = std::move(work), handler = std::move(handler),
                                   guard = std::move(guard)]() mutable {
          R result = work();
          auto executor = guard.get_executor();
          boost::asio::post(executor, [handler = std::move(handler), result = std::move(result),
                                       guard = std::move(guard)]() mutable {
            guard.reset();
            std::move(handler)(std::move(result));
          });
        });
      },
      boost::asio::use_awaitable);
}

bool is_stream_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxStreamIdBytes &&
         std::all_of(id.begin(), id.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

// The state version a durable state change brings (0 when the record does not say).
std::int64_t change_version(const store::Change& c, const json::object& data) {
  if (c.state) return c.state->version;
  if (const auto* v = data.if_contains("version"); v != nullptr && v->is_int64()) return v->get_int64();
  return 0;
}

// A state change as the message "change", with the properties `readable` admits (all when null); null when
// nothing of it is left to send.
std::shared_ptr<const std::string> frame_state_change(const store::Change& c, json::object data,
                                                      const std::function<bool(std::string_view)>& readable) {
  json::object message{{"type", "change"}, {"seq", c.seq}, {"twin", c.subject}};
  data.erase("id");
  if (readable) {
    auto* patch = data.if_contains("patch");
    if (patch == nullptr || !patch->is_object()) return nullptr;
    if (auto* properties = patch->as_object().if_contains("properties");
        properties != nullptr && properties->is_object()) {
      auto& p = properties->as_object();
      for (auto it = p.begin(); it != p.end();) it = readable(it->key()) ? it + 1 : p.erase(it);
      if (p.empty()) patch->as_object().erase("properties");
    }
    if (patch->as_object().empty()) return nullptr;
  }
  for (auto& [k, v] : data) message[k] = std::move(v);
  return text_of(message);
}

json::object parse_data(const store::Change& c) {
  boost::system::error_code ec;
  auto v = core::read_json(c.data, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}

// frame_state_change() of everything, as text ("" when nothing is left). The twin plane writes a state
// change's data with "id" first, so the message is its text with "id" replaced by the members before it:
// nothing is parsed (nor a number's text changed). Other data goes through frame_state_change().
std::string frame_whole_state_change(const store::Change& c) {
  const auto id = json::serialize(json::string_view(c.subject));
  const auto prefix = "{\"id\":" + id;
  std::string_view data = c.data;
  if (data.starts_with(prefix) && data.size() > prefix.size() + 1 && data[prefix.size()] == ',') {
    return fmt::format(R"({{"type":"change","seq":{},"twin":{},{})", c.seq, id,
                       data.substr(prefix.size() + 1));
  }
  auto framed = frame_state_change(c, parse_data(c), nullptr);
  return framed ? *framed : std::string();
}

}  // namespace

struct TwinStream::Subscription {
  std::string id;
  std::set<std::string> declared;         // by ids: the ids asked for (members when they exist)
  std::optional<query::JsonPath> filter;  // by filter: the TDs it matches
  std::set<std::string> members;
};

namespace {

// What a subscribe resolved to, on the reader.
struct Resolved {
  core::Result<void> ok;
  std::set<std::string> declared;
  std::optional<query::JsonPath> filter;
  std::vector<std::string> ids;  // the twins now, in id order
};

// A feed read for a resume: the changes of `ids` after `after` up to `until`, or a gap.
struct Replay {
  std::vector<store::ChangePtr> changes;
  bool gap = false;
};

}  // namespace

TwinStream::TwinStream(TwinStreamServices services, core::Actor actor, boost::asio::any_io_executor executor,
                       TwinStreamLimits limits)
    : services_(services), actor_(std::move(actor)), executor_(executor), limits_(limits), idle_(executor) {
  // The hub watches the stream's credential from the start: a key revoked (a principal disabled, ...) before
  // the first subscribe ends the stream too. No change of a twin comes until a subscription names the twin.
  StreamOwner owner{actor_.principal.id, actor_.credential, core::Permission::twins_read, std::nullopt};
  if (actor_.expires) {
    owner.expires = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::max(*actor_.expires - services_.clock.now(), std::chrono::microseconds(0)));
  }
  using store::ChangeType;
  std::set<ChangeType> types{ChangeType::state_changed,     ChangeType::thing_created,
                             ChangeType::thing_updated,     ChangeType::thing_deleted,
                             ChangeType::policy_changed,    ChangeType::principal_updated,
                             ChangeType::principal_deleted, ChangeType::key_revoked};
  feed_ = services_.hub.subscribe(executor_, std::move(types), std::nullopt, std::move(owner));
  position_ = update_hub_subjects();
}

TwinStream::~TwinStream() {
  if (feed_) feed_->cancel();
}

void TwinStream::command(std::string text) {
  if (flooded_) return;
  if (commands_.size() >= kMaxPendingCommands) {
    // The client sends faster than its commands are answered: the stream ends rather than queue without
    // bound.
    flooded_ = true;
    commands_.clear();
    out_.clear();
    StreamMessage m;
    m.type = "closed";
    m.json = text_of(json::object{
        {"type", "closed"},
        {"reason", "too_many_commands"},
        {"detail", fmt::format("more than {} commands waited for an answer", kMaxPendingCommands)}});
    m.last = true;
    m.close_reason = "too_many_commands";
    out_.push_back(std::move(m));
  } else {
    commands_.push_back(std::move(text));
  }
  wake();
}

void TwinStream::command(json::object document) {
  command(json::serialize(document));
}

void TwinStream::cancel() {
  cancelled_ = true;
  idle_.cancel();
  if (feed_) feed_->cancel();
}

void TwinStream::wake() {
  idle_.cancel();
  if (feed_) feed_->poke();
}

std::size_t TwinStream::backlog() const {
  return backlog_ ? backlog_() : 0;
}

void TwinStream::push(std::string_view type, std::int64_t seq, std::shared_ptr<const std::string> json) {
  StreamMessage m;
  m.type = type;
  m.seq = seq;
  m.json = std::move(json);
  out_.push_back(std::move(m));
}

void TwinStream::send_error(const std::optional<std::string>& id, const core::Error& error) {
  json::object m{{"type", "error"}};
  if (id) m["id"] = *id;
  for (auto& [k, v] : services_.problem(error)) m[k] = std::move(v);
  push("error", 0, text_of(m));
}

boost::asio::awaitable<std::optional<StreamMessage>> TwinStream::next() {
  auto self = shared_from_this();
  for (;;) {
    if (cancelled_) co_return std::nullopt;
    if (!out_.empty()) {
      if (!out_.front().last && backlog() > limits_.conflate_above_bytes) {
        // The transport is behind: what waits here waits, and the feed is not read meanwhile (the hub keeps
        // the subscription's place in the feed).
        idle_.expires_after(kBacklogPoll);
        co_await idle_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        continue;
      }
      auto m = std::move(out_.front());
      out_.pop_front();
      if (m.last) {
        ended_ = true;
        out_.clear();
        if (feed_) feed_->cancel();
      }
      co_return m;
    }
    if (ended_) co_return std::nullopt;
    if (!commands_.empty()) {
      auto text = std::move(commands_.front());
      commands_.pop_front();
      co_await handle(std::move(text));
      continue;
    }
    if (!conflated_.empty() && backlog() <= limits_.conflate_above_bytes / 2) {
      co_await flush_conflated();
      continue;
    }
    if (!conflated_.empty()) watch_backlog();
    // A queued change of a twin's state (the common case) is taken without a coroutine frame each.
    if (auto queued = feed_->try_next()) {
      if (queued->change->type == store::ChangeType::state_changed) {
        advance_position(*queued->change);
        on_state_change(*queued->change);
        continue;
      }
      co_await on_item(std::move(*queued));
      continue;
    }
    auto item = co_await feed_->next();
    if (!item) {
      ended_ = true;
      continue;
    }
    co_await on_item(std::move(*item));
  }
}

void TwinStream::watch_backlog() {
  if (watching_) return;
  watching_ = true;
  boost::asio::co_spawn(
      executor_,
      [weak = weak_from_this()]() -> boost::asio::awaitable<void> {
        boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
        for (;;) {
          timer.expires_after(kBacklogPoll);
          co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
          auto self = weak.lock();
          if (!self) co_return;
          if (self->cancelled_ || self->conflated_.empty() || !self->feed_) {
            self->watching_ = false;
            co_return;
          }
          if (self->backlog() <= self->limits_.conflate_above_bytes / 2) {
            self->watching_ = false;
            self->feed_->poke();
            co_return;
          }
        }
      },
      boost::asio::detached);
}

boost::asio::awaitable<void> TwinStream::handle(std::string text) {
  boost::system::error_code ec;
  auto parsed = core::read_json(text, ec);
  if (ec || !parsed.is_object()) {
    send_error(std::nullopt, core::Error(Errc::bad_request,
                                         ec ? fmt::format("the message is not JSON: {}", ec.message())
                                            : std::string("a message is a JSON object with a \"type\""),
                                         ""));
    co_return;
  }
  auto& command = parsed.as_object();
  std::optional<std::string> id;
  if (const auto* v = command.if_contains("id"); v != nullptr && v->is_string())
    id = std::string(v->get_string());
  const auto* type = command.if_contains("type");
  if (type == nullptr || !type->is_string()) {
    send_error(id, core::Error(Errc::validation_failed, "\"type\" must be \"subscribe\" or \"unsubscribe\"",
                               "/type"));
    co_return;
  }
  if (type->get_string() == "subscribe") {
    co_await subscribe(std::move(command));
  } else if (type->get_string() == "unsubscribe") {
    unsubscribe(command);
  } else {
    send_error(id, core::Error(Errc::validation_failed,
                               fmt::format("unknown message type \"{}\": \"subscribe\" or \"unsubscribe\"",
                                           core::to_valid_utf8(std::string_view(type->get_string()))),
                               "/type"));
  }
}

boost::asio::awaitable<void> TwinStream::subscribe(json::object command) {
  // The command, checked before anything is read.
  const auto* idv = command.if_contains("id");
  if (idv == nullptr || !idv->is_string() || !is_stream_id(idv->get_string())) {
    send_error(std::nullopt, core::Error(Errc::validation_failed,
                                         "\"id\" must be 1 to 64 printable ASCII characters", "/id"));
    co_return;
  }
  const std::string id(idv->get_string());
  const auto fail = [&](Errc code, std::string pointer, std::string detail) {
    send_error(id, core::Error(code, std::move(detail), std::move(pointer)));
  };
  int ways = 0;
  for (const auto& [k, v] : command) {
    if (k == "twins" || k == "filter" || k == "selection") {
      ++ways;
    } else if (k == "snapshot") {
      if (!v.is_bool())
        co_return fail(Errc::validation_failed, "/snapshot", "\"snapshot\" must be true or false");
    } else if (k == "after") {
      if (!v.is_int64() || v.get_int64() < 0)
        co_return fail(Errc::validation_failed, "/after",
                       "\"after\" must be a seq this server sent (an integer)");
    } else if (k != "type" && k != "id") {
      co_return fail(Errc::validation_failed, fmt::format("/{}", core::to_valid_utf8(std::string_view(k))),
                     fmt::format("unknown member \"{}\"", core::to_valid_utf8(std::string_view(k))));
    }
  }
  if (ways != 1)
    co_return fail(Errc::validation_failed, "",
                   "a subscribe names its twins by exactly one of \"twins\", \"filter\" and \"selection\"");
  if (subscriptions_.contains(id))
    co_return fail(Errc::conflict, "/id", fmt::format("subscription \"{}\" is open already", id));
  if (subscriptions_.size() >= limits_.max_subscriptions)
    co_return fail(Errc::validation_failed, "",
                   fmt::format("a stream holds at most {} subscriptions", limits_.max_subscriptions));
  std::set<std::string> declared;
  std::optional<std::string> filter_text;
  std::optional<std::string> selection;
  if (const auto* twins = command.if_contains("twins")) {
    if (!twins->is_array() || twins->get_array().empty() || twins->get_array().size() > kMaxStreamTwinIds)
      co_return fail(Errc::validation_failed, "/twins",
                     fmt::format("\"twins\" must be an array of 1 to {} twin ids", kMaxStreamTwinIds));
    const auto& list = twins->get_array();
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_string() || list[i].get_string().empty() || !core::is_valid_utf8(list[i].get_string()))
        co_return fail(Errc::validation_failed, fmt::format("/twins/{}", i),
                       "a twin id is a non-empty string");
      declared.emplace(list[i].get_string());
    }
  } else if (const auto* filter = command.if_contains("filter")) {
    if (!filter->is_string() || filter->get_string().empty())
      co_return fail(Errc::validation_failed, "/filter", "\"filter\" must be a JSONPath query (a string)");
    filter_text = std::string(filter->get_string());
  } else {
    const auto& s = command.at("selection");
    if (!s.is_string() || s.get_string().empty())
      co_return fail(Errc::validation_failed, "/selection",
                     "\"selection\" must be a selection id (a string)");
    if (services_.selections == nullptr)
      co_return fail(Errc::unavailable, "/selection", "selections are not available on this server");
    selection = std::string(s.get_string());
  }
  const bool snapshot = !command.contains("snapshot") || command.at("snapshot").get_bool();
  std::optional<std::int64_t> after;
  if (const auto* a = command.if_contains("after")) after = a->get_int64();

  // What it selects now, read on the reader (a filter runs over every TD under its budget).
  const auto max_twins = limits_.max_twins;
  auto resolve = [services = services_, actor = actor_, declared = std::move(declared), filter_text,
                  selection, max_twins, limits = limits_.query_limits]() mutable {
    Resolved r;
    if (selection) {
      auto found = services.selections->find(actor, *selection);
      if (!found) {
        auto e = found.error();
        e.fields = {{"/selection", e.detail, core::FieldIn::body}};
        r.ok = std::unexpected(std::move(e));
        return r;
      }
      const auto& doc = found->document;
      if (const auto* f = doc.if_contains("filter"); f != nullptr && f->is_string()) {
        filter_text = std::string(f->get_string());
      } else if (const auto* list = doc.if_contains("twins"); list != nullptr && list->is_array()) {
        for (const auto& t : list->get_array()) {
          if (t.is_string()) declared.emplace(t.get_string());
        }
      }
    }
    if (filter_text) {
      auto path = query::JsonPath::parse(*filter_text);
      if (!path) {
        auto e = path.error();
        e.fields = {{"/filter", e.detail, core::FieldIn::body}};
        r.ok = std::unexpected(std::move(e));
        return r;
      }
      query::QueryBudget budget(limits);
      TwinIndexQuery q;
      q.filter = &*path;
      q.budget = &budget;
      q.alive_at = services.clock.now();
      q.limit = max_twins + 1;
      auto page = services.index.find(q);
      if (!budget.ok()) {
        r.ok = std::unexpected(budget.error("/filter"));
        return r;
      }
      for (const auto& v : page.items) r.ids.push_back(v->id());
      r.filter = std::move(*path);
    } else {
      const auto now = services.clock.now();
      for (const auto& twin : declared) {
        auto view = services.index.get(twin);
        if (view && !(view->expires() && *view->expires() <= now)) r.ids.push_back(twin);
      }
      r.declared = std::move(declared);
    }
    return r;
  };
  auto resolved = co_await on_reader(services_.hub.reader(), std::move(resolve));
  if (cancelled_) co_return;
  if (!resolved.ok) {
    send_error(id, resolved.ok.error());
    co_return;
  }
  std::size_t joining = 0;
  for (const auto& t : resolved.ids) joining += twins_.contains(t) ? 0 : 1;
  if (resolved.ids.size() > limits_.max_twins || twins_.size() + joining > limits_.max_twins) {
    co_return fail(
        Errc::validation_failed, resolved.filter ? "/filter" : "",
        fmt::format("the subscription would take the stream over {} twins; narrow it", limits_.max_twins));
  }

  auto sub = std::make_unique<Subscription>();
  sub->id = id;
  sub->declared = std::move(resolved.declared);
  sub->filter = std::move(resolved.filter);
  std::vector<std::string> fresh;  // twins new to the stream: their access is decided first
  for (const auto& t : resolved.ids) {
    if (add_twin(*sub, t)) fresh.push_back(t);
  }
  auto& s = *subscriptions_.emplace(id, std::move(sub)).first->second;
  const auto cursor = update_hub_subjects();
  position_ = std::max(position_, cursor);  // where the new subscription starts in the feed
  co_await refresh_access(fresh, 0, false);
  if (cancelled_) co_return;

  json::array listed;
  for (const auto& t : s.members) listed.emplace_back(t);
  push("subscribed", 0,
       text_of(json::object{
           {"type", "subscribed"}, {"id", id}, {"seq", position_}, {"twins", std::move(listed)}}));
  std::vector<std::string> members(s.members.begin(), s.members.end());
  if (after) {
    // The subscription's changes after `after` up to the cursor (later ones come from the hub).
    const auto from = *after;
    auto read_replay = [&feed = services_.feed, ids = std::set<std::string>(fresh.begin(), fresh.end()), from,
                        cursor]() {
      Replay r;
      for (auto at = from; at < cursor;) {
        auto read = feed.read(at, StreamSubscription::kReadPage);
        if (!read || read->gap_until > at + 1) {
          r.gap = true;
          return r;
        }
        if (read->changes.empty()) break;
        for (auto& c : read->changes) {
          at = c->seq;
          if (c->seq > cursor) break;
          if (ids.contains(c->subject) &&
              (c->type == store::ChangeType::state_changed || c->type == store::ChangeType::thing_updated)) {
            r.changes.push_back(std::move(c));
          }
          if (r.changes.size() > kResumeMaxChanges) {
            r.gap = true;
            return r;
          }
        }
      }
      return r;
    };
    auto replay = co_await on_reader(services_.hub.reader(), std::move(read_replay));
    if (cancelled_) co_return;
    if (replay.gap) {
      push("gap", 0,
           text_of(json::object{
               {"type", "gap"},
               {"from", from + 1},
               {"to", cursor},
               {"detail", fmt::format("the changes after {} of subscription \"{}\" are no longer "
                                      "kept (or too many); the twins' states follow",
                                      from, id)}}));
      co_await send_states(std::move(members), "gap");
    } else {
      for (const auto& c : replay.changes) co_await on_change(c);
    }
  } else if (snapshot) {
    co_await send_states(std::move(members), "snapshot");
  }
}

void TwinStream::unsubscribe(const json::object& command) {
  const auto* idv = command.if_contains("id");
  if (idv == nullptr || !idv->is_string()) {
    send_error(std::nullopt, core::Error(Errc::validation_failed, "\"id\" names the subscription", "/id"));
    return;
  }
  const std::string id(idv->get_string());
  auto it = subscriptions_.find(id);
  if (it == subscriptions_.end()) {
    send_error(id, core::Error(Errc::not_found, fmt::format("no open subscription \"{}\"", id), "/id"));
    return;
  }
  auto& sub = *it->second;
  for (const auto& t : std::vector<std::string>(sub.members.begin(), sub.members.end())) drop_twin(sub, t);
  subscriptions_.erase(it);
  update_hub_subjects();
  push("unsubscribed", 0, text_of(json::object{{"type", "unsubscribed"}, {"id", id}}));
}

bool TwinStream::add_twin(Subscription& sub, const std::string& id) {
  if (!sub.members.insert(id).second) return false;
  auto [it, inserted] = twins_.try_emplace(id);
  ++it->second.refs;
  return inserted;
}

void TwinStream::drop_twin(Subscription& sub, const std::string& id) {
  if (sub.members.erase(id) == 0) return;
  auto it = twins_.find(id);
  if (it == twins_.end()) return;
  if (--it->second.refs == 0) {
    twins_.erase(it);
    conflated_.erase(id);
  }
}

std::int64_t TwinStream::update_hub_subjects() {
  auto subjects = std::make_shared<std::unordered_set<std::string>>();
  bool every_thing = false;
  for (const auto& [id, sub] : subscriptions_) {
    subjects->insert(sub->members.begin(), sub->members.end());
    subjects->insert(sub->declared.begin(), sub->declared.end());
    every_thing = every_thing || sub->filter.has_value();
  }
  return feed_->set_subjects(std::move(subjects), every_thing);
}

boost::asio::awaitable<void> TwinStream::refresh_access(std::vector<std::string> ids, std::int64_t seq,
                                                        bool announce) {
  if (ids.empty()) co_return;
  auto decide = [services = services_, actor = actor_, ids]() {
    std::vector<Access> out;
    out.reserve(ids.size());
    for (const auto& id : ids) {
      Access a;
      auto view = services.index.get(id);
      auto readable = services.twins.readable(actor, id);
      if (view && readable) {
        const auto props = view->td().find("properties");
        bool all = true;
        bool any = !props.is_object() || props.size() == 0;
        for (const auto& [name, _] : props.members()) {
          const bool may = (*readable)(name);
          all = all && may;
          any = any || may;
        }
        a.any = any;
        if (!all) a.readable = std::move(*readable);
      }
      out.push_back(std::move(a));
    }
    return out;
  };
  auto decided = co_await on_reader(services_.hub.reader(), std::move(decide));
  if (cancelled_) co_return;
  std::vector<std::string> granted;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto it = twins_.find(ids[i]);
    if (it == twins_.end()) continue;
    const bool had = it->second.access.any;
    it->second.access = std::move(decided[i]);
    if (!announce) continue;
    if (had && !it->second.access.any) {
      conflated_.erase(ids[i]);
      push("revoked", seq,
           text_of(json::object{
               {"type", "revoked"},
               {"seq", seq},
               {"twin", ids[i]},
               {"detail", fmt::format("you may no longer read any property of twin '{}'", ids[i])}}));
    } else if (!had && it->second.access.any) {
      granted.push_back(ids[i]);
    }
  }
  if (!granted.empty()) co_await send_states(std::move(granted), "access");
}

boost::asio::awaitable<void> TwinStream::send_states(std::vector<std::string> ids, std::string_view reason) {
  if (ids.empty()) co_return;
  struct Read {
    std::string twin;
    std::shared_ptr<const std::string> text;
    std::int64_t version = 0;
  };
  std::vector<std::function<bool(std::string_view)>> readable;
  std::vector<std::string> wanted;
  for (auto& id : ids) {
    auto it = twins_.find(id);
    if (it == twins_.end() || !it->second.access.any) continue;
    readable.push_back(it->second.access.readable);
    wanted.push_back(std::move(id));
  }
  const auto seq = position_;
  const auto now = services_.clock.now();
  auto read_states = [services = services_, wanted, readable = std::move(readable), seq,
                      reason = std::string(reason)]() {
    std::vector<Read> out;
    for (std::size_t i = 0; i < wanted.size(); ++i) {
      auto view = services.twins.state(wanted[i]);
      if (!view) continue;
      json::object m{{"type", "state"},
                     {"twin", wanted[i]},
                     {"seq", seq},
                     {"reason", reason},
                     {"state", to_json(*view, readable[i])}};
      out.push_back({wanted[i], text_of(m), view->state->version});
    }
    return out;
  };
  auto states = co_await on_reader(services_.hub.reader(), std::move(read_states));
  if (cancelled_) co_return;
  for (auto& r : states) {
    auto it = twins_.find(r.twin);
    if (it == twins_.end()) continue;
    it->second.floor_version = std::max(it->second.floor_version, r.version);
    it->second.floor_live = now;
    conflated_.erase(r.twin);
    push("state", seq, std::move(r.text));
  }
}

boost::asio::awaitable<void> TwinStream::flush_conflated() {
  std::vector<std::string> ids;
  for (auto it = conflated_.begin(); it != conflated_.end() && ids.size() < kFlushBatch;) {
    ids.push_back(*it);
    it = conflated_.erase(it);
  }
  co_await send_states(std::move(ids), "conflated");
}

boost::asio::awaitable<void> TwinStream::on_item(StreamItem item) {
  switch (item.kind) {
    case StreamItem::Kind::heartbeat:
    case StreamItem::Kind::woken:
      co_return;
    case StreamItem::Kind::closed: {
      StreamMessage m;
      m.type = "closed";
      m.json =
          text_of(json::object{{"type", "closed"}, {"reason", item.end.reason}, {"detail", item.end.detail}});
      m.last = true;
      m.close_reason = item.end.reason;
      out_.push_back(std::move(m));
      co_return;
    }
    case StreamItem::Kind::gap: {
      position_ = item.gap_until - 1;
      push("gap", position_,
           text_of(json::object{
               {"type", "gap"},
               {"from", item.gap_from},
               {"to", item.gap_until - 1},
               {"detail", fmt::format("the changes {} to {} are no longer kept; the twins' states follow",
                                      item.gap_from, item.gap_until - 1)}}));
      std::vector<std::string> ids;
      for (const auto& [id, _] : twins_) ids.push_back(id);
      co_await send_states(std::move(ids), "gap");
      co_return;
    }
    case StreamItem::Kind::change:
      break;
  }
  advance_position(*item.change);
  co_await on_change(item.change);
}

boost::asio::awaitable<void> TwinStream::on_change(const store::ChangePtr& change) {
  using store::ChangeType;
  const auto& c = *change;
  switch (c.type) {
    case ChangeType::principal_updated: {
      if (!c.principal || !c.principal->principal || c.principal->id != actor_.principal.id) co_return;
      // The client's own roles changed: every twin is decided again.
      actor_.principal = *c.principal->principal;
      std::vector<std::string> ids;
      for (const auto& [id, _] : twins_) ids.push_back(id);
      co_await refresh_access(std::move(ids), c.seq, true);
      co_return;
    }
    case ChangeType::policy_changed: {
      if (!twins_.contains(c.subject)) co_return;
      std::vector<std::string> ids{c.subject};
      co_await refresh_access(std::move(ids), c.seq, true);
      co_return;
    }
    case ChangeType::thing_created:
    case ChangeType::thing_updated: {
      co_await follow_td(change);
      co_return;
    }
    case ChangeType::thing_deleted: {
      auto it = twins_.find(c.subject);
      if (it == twins_.end()) co_return;
      const bool visible = it->second.access.any;
      for (auto& [id, sub] : subscriptions_) drop_twin(*sub, c.subject);
      update_hub_subjects();
      if (visible) {
        push("thing_deleted", c.seq, c.stream_message.get([&] {
          return *text_of(json::object{{"type", "thing_deleted"}, {"seq", c.seq}, {"twin", c.subject}});
        }));
      }
      co_return;
    }
    case ChangeType::state_changed:
      on_state_change(c);
      co_return;
    default:
      co_return;
  }
}

void TwinStream::on_state_change(const store::Change& c) {
  auto it = twins_.find(c.subject);
  if (it == twins_.end() || !it->second.access.any) return;
  auto& twin = it->second;
  if (conflated_.contains(c.subject)) return;  // its newest state will be sent
  if (backlog() > limits_.conflate_above_bytes) {
    conflated_.insert(c.subject);
    return;
  }
  const bool live = c.seq == 0;
  if (live && c.at < twin.floor_live) return;  // a state sent already holds a newer value
  if (!live) {
    const auto version = c.state ? c.state->version : change_version(c, parse_data(c));
    if (version != 0 && version <= twin.floor_version) return;
  }
  std::shared_ptr<const std::string> text;
  if (!twin.access.readable) {
    text = c.stream_message.get([&] { return frame_whole_state_change(c); });
  } else {
    text = frame_state_change(c, parse_data(c), twin.access.readable);
  }
  if (text && !text->empty()) push("change", c.seq, std::move(text));
}

boost::asio::awaitable<void> TwinStream::follow_td(const store::ChangePtr& change) {
  const auto& c = *change;
  auto view = services_.index.get(c.subject);
  const auto now = services_.clock.now();
  const bool alive = view && !(view->expires() && *view->expires() <= now);
  std::vector<std::string> joined;
  for (auto& [sid, sub] : subscriptions_) {
    bool want = false;
    if (alive && sub->filter) {
      query::QueryBudget budget(limits_.query_limits);
      want = sub->filter->matches(view->wrapped(), budget) && budget.ok();
    } else if (alive) {
      want = sub->declared.contains(c.subject);
    }
    const bool member = sub->members.contains(c.subject);
    if (want && !member) {
      if (!twins_.contains(c.subject) && twins_.size() >= limits_.max_twins) {
        send_error(sid, core::Error(Errc::validation_failed,
                                    fmt::format("twin '{}' would join, but the stream holds {} twins already",
                                                c.subject, limits_.max_twins),
                                    ""));
        continue;
      }
      if (add_twin(*sub, c.subject)) joined.push_back(c.subject);
    } else if (!want && member) {
      const bool visible = twins_.contains(c.subject) && twins_.at(c.subject).access.any;
      drop_twin(*sub, c.subject);
      if (visible) {
        push("left", c.seq,
             text_of(json::object{{"type", "left"}, {"id", sid}, {"seq", c.seq}, {"twin", c.subject}}));
      }
    }
  }
  if (!joined.empty()) {
    update_hub_subjects();
    co_await refresh_access(joined, c.seq, false);
    co_await send_states(std::move(joined), "joined");
    co_return;
  }
  auto it = twins_.find(c.subject);
  if (c.type != store::ChangeType::thing_updated || it == twins_.end()) co_return;
  if (it->second.access.any) {
    push("thing_updated", c.seq, c.stream_message.get([&] {
      return *text_of(json::object{{"type", "thing_updated"}, {"seq", c.seq}, {"twin", c.subject}});
    }));
  }
  // Its properties may have changed, and with them what the client may read.
  std::vector<std::string> ids{c.subject};
  co_await refresh_access(std::move(ids), c.seq, true);
}

}  // namespace twinbridge::dtif
