#include "http/event_hub.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/utf8.hpp"

namespace twinbridge::http {

Subscription::Subscription(boost::asio::any_io_executor executor, std::set<std::string> types, bool diff,
                           std::chrono::milliseconds heartbeat)
    : executor_(executor), wakeup_(executor), types_(std::move(types)), diff_(diff), heartbeat_(heartbeat) {}

boost::asio::awaitable<std::optional<std::string>> Subscription::next() {
  auto self = shared_from_this();
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) co_return std::nullopt;
      if (!pending_.empty()) {
        const auto event = std::move(pending_.front());
        pending_.pop_front();
        co_return fmt::format("event: {}\nid: {}\ndata: {}\n\n", event->type, event->id,
                              diff_ ? event->diff_data : event->data);
      }
    }
    // deliver() and cancel() post a wake-up to this executor; it cannot run before this wait starts.
    wakeup_.expires_after(heartbeat_);
    auto [ec] = co_await wakeup_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (!ec) co_return std::string(": heartbeat\n\n");
  }
}

void Subscription::cancel() {
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
  }
  boost::asio::post(executor_, [self = shared_from_this()] { self->wakeup_.cancel(); });
}

void Subscription::deliver(const std::shared_ptr<const DirectoryEvent>& event) {
  if (!types_.empty() && !types_.contains(event->type)) return;
  bool overflow = false;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_) return;
    if (pending_.size() >= kMaxPending) {
      overflow = true;
    } else {
      pending_.push_back(event);
    }
  }
  if (overflow) {
    cancel();  // the client reconnects with Last-Event-ID
    return;
  }
  boost::asio::post(executor_, [self = shared_from_this()] { self->wakeup_.cancel(); });
}

void EventHub::publish(std::string type, std::string data, std::string diff_data) {
  // Like every response (Api::finish), an event never carries ill-formed UTF-8, whatever its record held.
  if (!core::is_valid_utf8(data)) data = core::to_valid_utf8(data);
  if (!core::is_valid_utf8(diff_data)) diff_data = core::to_valid_utf8(diff_data);
  std::vector<std::shared_ptr<Subscription>> live;
  std::shared_ptr<const DirectoryEvent> event;
  {
    std::lock_guard lock(mutex_);
    event = std::make_shared<const DirectoryEvent>(
        DirectoryEvent{next_id_++, std::move(type), std::move(data), std::move(diff_data)});
    history_.push_back(event);
    if (history_.size() > history_limit_) history_.pop_front();
    std::erase_if(subscribers_, [&](const std::weak_ptr<Subscription>& w) {
      auto s = w.lock();
      if (!s) return true;
      live.push_back(std::move(s));
      return false;
    });
  }
  for (auto& s : live) s->deliver(event);
}

std::shared_ptr<Subscription> EventHub::subscribe(boost::asio::any_io_executor executor,
                                                  std::set<std::string> types, bool diff,
                                                  std::optional<std::uint64_t> last_event_id) {
  auto sub = std::make_shared<Subscription>(executor, std::move(types), diff, heartbeat_);
  std::lock_guard lock(mutex_);
  if (last_event_id) {
    for (const auto& e : history_) {
      if (e->id > *last_event_id) sub->deliver(e);
    }
  }
  subscribers_.push_back(sub);
  return sub;
}

}  // namespace twinbridge::http
