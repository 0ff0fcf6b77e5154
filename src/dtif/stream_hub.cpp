#include "dtif/stream_hub.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace twinbridge::dtif {

struct StreamHubState {
  mutable std::mutex mutex;
  std::uint64_t next_key = 1;
  std::unordered_map<std::uint64_t, std::weak_ptr<StreamSubscription>> subscribers;
  prometheus::Gauge* gauge = nullptr;

  // With mutex held.
  void count() const {
    if (gauge != nullptr) gauge->Set(static_cast<double>(subscribers.size()));
  }

  std::vector<std::shared_ptr<StreamSubscription>> live() const {
    std::vector<std::shared_ptr<StreamSubscription>> out;
    std::lock_guard lock(mutex);
    out.reserve(subscribers.size());
    for (const auto& [key, weak] : subscribers) {
      if (auto s = weak.lock()) out.push_back(std::move(s));
    }
    return out;
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

StreamSubscription::StreamSubscription(boost::asio::any_io_executor executor,
                                       std::set<store::ChangeType> types, std::int64_t after,
                                       StreamOwner owner, std::chrono::milliseconds heartbeat,
                                       store::ChangeFeed& feed, boost::asio::any_io_executor reader)
    : executor_(executor),
      wakeup_(executor),
      types_(std::move(types)),
      owner_(std::move(owner)),
      heartbeat_(heartbeat),
      feed_(feed),
      reader_(std::move(reader)),
      cursor_(after) {}

StreamSubscription::~StreamSubscription() {
  if (auto state = hub_state_.lock()) {
    std::lock_guard lock(state->mutex);
    state->subscribers.erase(key_);
    state->count();
  }
}

namespace {

// Reads the feed on `reader` (it may read the store) and resumes the coroutine on its own executor.
boost::asio::awaitable<core::Result<store::ChangeRead>> read_feed(store::ChangeFeed& feed,
                                                                  boost::asio::any_io_executor reader,
                                                                  std::int64_t after, std::size_t limit) {
  using R = core::Result<store::ChangeRead>;
  co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(R)>(
      [&feed, reader, after, limit](auto handler) {
        auto guard = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
        boost::asio::post(
            reader, [&feed, after, limit, handler = std::move(handler), guard = std::move(guard)]() mutable {
              R result = feed.read(after, limit);
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

}  // namespace

boost::asio::awaitable<std::optional<StreamItem>> StreamSubscription::next() {
  auto self = shared_from_this();
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    std::optional<std::int64_t> read_from;
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) co_return std::nullopt;
      if (!end_ && owner_.expires && now >= *owner_.expires) {
        end_ =
            StreamEnd{"credential_expired",
                      fmt::format("the credential that opened this stream ({}) expired", owner_.credential)};
        pending_.clear();
        gap_.reset();
      }
      if (end_) {
        if (end_sent_) co_return std::nullopt;
        end_sent_ = true;
        StreamItem item;
        item.kind = StreamItem::Kind::closed;
        item.end = *end_;
        co_return item;
      }
      if (poked_) {
        poked_ = false;
        StreamItem woken;
        woken.kind = StreamItem::Kind::woken;
        co_return woken;
      }
      if (gap_) {
        auto gap = std::move(*gap_);
        gap_.reset();
        co_return gap;
      }
      if (!pending_.empty()) {
        StreamItem item;
        item.change = std::move(pending_.front());
        pending_.pop_front();
        co_return item;
      }
      if (catching_up_) read_from = cursor_;
    }
    if (read_from) {
      std::optional<core::Result<store::ChangeRead>> read;
      if (auto recent = feed_.read_recent(*read_from, kReadPage)) {
        read.emplace(std::move(*recent));
      } else {
        read.emplace(co_await read_feed(feed_, reader_, *read_from, kReadPage));
      }
      if (!*read) {
        close({"unavailable", "the change feed cannot be read now (" + read->error().detail +
                                  "); reconnect with Last-Event-ID to resume"});
        continue;
      }
      std::lock_guard lock(mutex_);
      if (cancelled_ || end_ || cursor_ != *read_from) continue;
      auto& found = **read;
      if (found.gap_until > cursor_ + 1 || (found.changes.empty() && found.last > cursor_)) {
        StreamItem gap;
        gap.kind = StreamItem::Kind::gap;
        gap.gap_from = cursor_ + 1;
        gap.gap_until = found.gap_until != 0 ? found.gap_until : found.last + 1;
        cursor_ = gap.gap_until - 1;
        gap_ = std::move(gap);
      }
      for (auto& c : found.changes) {
        if (c->seq <= cursor_) continue;
        cursor_ = c->seq;
        if (admits(*c)) pending_.push_back(std::move(c));
      }
      // Live again once nothing committed is left to read; a commit after this check is delivered.
      if (cursor_ >= feed_.last_seq()) catching_up_ = false;
      continue;
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
    if (!ec && !expiry_first) {
      StreamItem beat;
      beat.kind = StreamItem::Kind::heartbeat;
      co_return beat;
    }
  }
}

void StreamSubscription::wake() {
  boost::asio::post(executor_, [self = shared_from_this()] { self->wakeup_.cancel(); });
}

void StreamSubscription::cancel() {
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
  }
  wake();
}

void StreamSubscription::poke() {
  {
    std::lock_guard lock(mutex_);
    poked_ = true;
  }
  wake();
}

std::int64_t StreamSubscription::set_subjects(std::shared_ptr<const std::unordered_set<std::string>> subjects,
                                              bool every_thing) {
  std::lock_guard lock(mutex_);
  subjects_ = std::move(subjects);
  every_thing_ = every_thing;
  return cursor_;
}

bool StreamSubscription::admits(const store::Change& change) const {
  if (!types_.empty() && !types_.contains(change.type)) return false;
  if (!subjects_ || change.principal) return true;
  using store::ChangeType;
  if (every_thing_ && (change.type == ChangeType::thing_created || change.type == ChangeType::thing_updated))
    return true;
  return subjects_->contains(change.subject);
}

void StreamSubscription::close(StreamEnd end) {
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || end_) return;
    end_ = std::move(end);
    pending_.clear();
    gap_.reset();
  }
  wake();
}

void StreamSubscription::deliver(std::span<const store::ChangePtr> changes) {
  bool queued = false;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || end_ || catching_up_) return;
    for (const auto& c : changes) {
      if (c->seq <= cursor_) continue;
      if (c->seq != cursor_ + 1 || pending_.size() >= kMaxPending) {
        // Missed one, or too far behind: read the feed from the cursor from now on.
        catching_up_ = true;
        queued = true;
        break;
      }
      cursor_ = c->seq;
      if (admits(*c)) {
        pending_.push_back(c);
        queued = true;
      }
    }
  }
  if (queued) wake();
}

void StreamSubscription::deliver_live(const store::ChangePtr& change) {
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || end_ || pending_.size() >= kMaxPending || !admits(*change)) return;
    pending_.push_back(change);
  }
  wake();
}

void StreamHub::publish_live(const store::ChangePtr& change) {
  for (auto& s : state_->live()) s->deliver_live(change);
}

StreamHub::StreamHub(store::ChangeFeed& feed, boost::asio::any_io_executor reader,
                     std::chrono::milliseconds heartbeat)
    : feed_(feed),
      reader_(std::move(reader)),
      heartbeat_(heartbeat),
      state_(std::make_shared<StreamHubState>()) {}

std::shared_ptr<StreamSubscription> StreamHub::subscribe(boost::asio::any_io_executor executor,
                                                         std::set<store::ChangeType> types,
                                                         std::optional<std::int64_t> after,
                                                         StreamOwner owner) {
  const auto last = feed_.last_seq();
  const auto from = after ? std::min(*after, last) : last;
  auto sub = std::make_shared<StreamSubscription>(executor, std::move(types), from, std::move(owner),
                                                  heartbeat_, feed_, reader_);
  // Behind the feed already (a resume), or a commit lands before the subscription is in the hub: it reads
  // the feed first.
  sub->catching_up_ = true;
  std::lock_guard lock(state_->mutex);
  sub->hub_state_ = state_;
  sub->key_ = state_->next_key++;
  state_->subscribers.emplace(sub->key_, sub);
  state_->count();
  return sub;
}

void StreamHub::apply(std::span<const store::ChangePtr> changes) {
  auto live = state_->live();
  for (auto& s : live) s->deliver(changes);
  for (const auto& c : changes) {
    if (c->principal) close_streams(*c->principal);
  }
  // `live` may hold the last reference of a subscription that ended meanwhile: it leaves the hub here,
  // outside the lock.
}

void StreamHub::close_streams(const store::PrincipalChange& change) {
  for (auto& s : state_->live()) {
    if (s->owner().principal != change.id) continue;
    if (auto end = stream_end(s->owner(), change)) s->close(std::move(*end));
  }
}

std::size_t StreamHub::subscriber_count() const {
  std::lock_guard lock(state_->mutex);
  return state_->subscribers.size();
}

void StreamHub::set_gauge(prometheus::Gauge* gauge) {
  std::lock_guard lock(state_->mutex);
  state_->gauge = gauge;
  state_->count();
}

}  // namespace twinbridge::dtif
