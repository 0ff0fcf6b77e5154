#include "http/event_hub.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "core/utf8.hpp"

namespace twinbridge::http {

struct EventHubState {
  mutable std::mutex mutex;
  std::uint64_t next_id = 1;
  std::deque<std::shared_ptr<const DirectoryEvent>> history;
  std::uint64_t next_key = 1;
  std::unordered_map<std::uint64_t, std::weak_ptr<Subscription>> subscribers;
  prometheus::Gauge* gauge = nullptr;

  // With mutex held.
  void count() const {
    if (gauge != nullptr) gauge->Set(static_cast<double>(subscribers.size()));
  }
};

std::optional<StreamEnd> stream_end(const StreamOwner& owner, const store::PrincipalChange& change) {
  if (owner.principal != change.id) return std::nullopt;
  const auto& id = change.id.str();
  if (change.deleted) return StreamEnd{"principal_deleted", fmt::format("principal '{}' was deleted", id)};
  if (change.revoked_key && owner.credential == "api-key:" + change.revoked_key->str()) {
    return StreamEnd{"credential_revoked", fmt::format("API key '{}' of principal '{}' was revoked",
                                                       change.revoked_key->str(), id)};
  }
  if (change.principal) {
    if (change.principal->disabled) {
      return StreamEnd{"principal_disabled", fmt::format("principal '{}' was disabled", id)};
    }
    if (!core::has_permission(*change.principal, owner.permission)) {
      return StreamEnd{"permission_revoked",
                       fmt::format("principal '{}' no longer has the permission {} that this stream needs",
                                   id, core::to_string(owner.permission))};
    }
  }
  return std::nullopt;
}

Subscription::Subscription(boost::asio::any_io_executor executor, std::set<std::string> types, bool diff,
                           std::chrono::milliseconds heartbeat, StreamOwner owner)
    : executor_(executor),
      wakeup_(executor),
      types_(std::move(types)),
      diff_(diff),
      heartbeat_(heartbeat),
      owner_(std::move(owner)) {}

Subscription::~Subscription() {
  if (auto state = hub_state_.lock()) {
    std::lock_guard lock(state->mutex);
    state->subscribers.erase(key_);
    state->count();
  }
}

boost::asio::awaitable<std::optional<std::string>> Subscription::next() {
  auto self = shared_from_this();
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) co_return std::nullopt;
      if (!end_ && owner_.expires && now >= *owner_.expires) {
        end_ =
            StreamEnd{"credential_expired",
                      fmt::format("the credential that opened this stream ({}) expired", owner_.credential)};
        pending_.clear();
      }
      if (end_) {
        if (end_sent_) co_return std::nullopt;
        end_sent_ = true;
        const boost::json::object data{{"reason", end_->reason}, {"detail", end_->detail}};
        co_return fmt::format("event: stream_closed\ndata: {}\n\n", boost::json::serialize(data));
      }
      if (!pending_.empty()) {
        const auto event = std::move(pending_.front());
        pending_.pop_front();
        co_return fmt::format("event: {}\nid: {}\ndata: {}\n\n", event->type, event->id,
                              diff_ ? event->diff_data : event->data);
      }
    }
    // deliver(), close() and cancel() post a wake-up to this executor; it cannot run before this wait starts.
    // The credential's expiry, when it comes before the next heartbeat, ends the wait.
    const bool expiry_first = owner_.expires && *owner_.expires - now < heartbeat_;
    if (expiry_first) {
      wakeup_.expires_at(*owner_.expires);
    } else {
      wakeup_.expires_after(heartbeat_);
    }
    auto [ec] = co_await wakeup_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (!ec && !expiry_first) co_return std::string(": heartbeat\n\n");
  }
}

void Subscription::wake() {
  boost::asio::post(executor_, [self = shared_from_this()] { self->wakeup_.cancel(); });
}

void Subscription::cancel() {
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
  }
  wake();
}

void Subscription::close(StreamEnd end) {
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || end_) return;
    end_ = std::move(end);
    pending_.clear();
  }
  wake();
}

void Subscription::deliver(const std::shared_ptr<const DirectoryEvent>& event) {
  if (!types_.empty() && !types_.contains(event->type)) return;
  bool overflow = false;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || end_) return;
    if (pending_.size() >= kMaxPending) {
      overflow = true;
    } else {
      pending_.push_back(event);
    }
  }
  if (overflow) {
    close({"lagging", fmt::format("more than {} events were waiting for this client; reconnect with "
                                  "Last-Event-ID to resume",
                                  kMaxPending)});
    return;
  }
  wake();
}

EventHub::EventHub(std::size_t history, std::chrono::milliseconds heartbeat)
    : history_limit_(history), heartbeat_(heartbeat), state_(std::make_shared<EventHubState>()) {}

void EventHub::publish(std::string type, std::string data, std::string diff_data) {
  // Like every response (Api::finish), an event never carries ill-formed UTF-8, whatever its record held.
  if (!core::is_valid_utf8(data)) data = core::to_valid_utf8(data);
  if (!core::is_valid_utf8(diff_data)) diff_data = core::to_valid_utf8(diff_data);
  std::vector<std::shared_ptr<Subscription>> live;
  std::shared_ptr<const DirectoryEvent> event;
  {
    std::lock_guard lock(state_->mutex);
    event = std::make_shared<const DirectoryEvent>(
        DirectoryEvent{state_->next_id++, std::move(type), std::move(data), std::move(diff_data)});
    state_->history.push_back(event);
    if (state_->history.size() > history_limit_) state_->history.pop_front();
    live.reserve(state_->subscribers.size());
    for (const auto& [key, weak] : state_->subscribers) {
      if (auto s = weak.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->deliver(event);
  // `live` may hold the last reference of a subscription that ended meanwhile: it leaves the hub here,
  // outside the lock.
}

std::shared_ptr<Subscription> EventHub::subscribe(boost::asio::any_io_executor executor,
                                                  std::set<std::string> types, bool diff,
                                                  std::optional<std::uint64_t> last_event_id,
                                                  StreamOwner owner) {
  auto sub = std::make_shared<Subscription>(executor, std::move(types), diff, heartbeat_, std::move(owner));
  std::lock_guard lock(state_->mutex);
  if (last_event_id) {
    for (const auto& e : state_->history) {
      if (e->id > *last_event_id) sub->deliver(e);
    }
  }
  sub->hub_state_ = state_;
  sub->key_ = state_->next_key++;
  state_->subscribers.emplace(sub->key_, sub);
  state_->count();
  return sub;
}

void EventHub::close_streams(const store::PrincipalChange& change) {
  std::vector<std::shared_ptr<Subscription>> affected;
  {
    std::lock_guard lock(state_->mutex);
    for (const auto& [key, weak] : state_->subscribers) {
      auto s = weak.lock();
      if (s && s->owner().principal == change.id) affected.push_back(std::move(s));
    }
  }
  for (auto& s : affected) {
    if (auto end = stream_end(s->owner(), change)) s->close(std::move(*end));
  }
}

std::size_t EventHub::subscriber_count() const {
  std::lock_guard lock(state_->mutex);
  return state_->subscribers.size();
}

void EventHub::set_gauge(prometheus::Gauge* gauge) {
  std::lock_guard lock(state_->mutex);
  state_->gauge = gauge;
  state_->count();
}

}  // namespace twinbridge::http
