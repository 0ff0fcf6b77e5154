#include "dtif/stream_hub.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <utility>
#include <vector>

namespace twinbridge::dtif {

struct StreamHubState {
  mutable std::mutex mutex;
  std::uint64_t next_key = 1;
  std::unordered_map<std::uint64_t, std::weak_ptr<StreamSubscription>> subscribers;
  prometheus::Gauge* gauge = nullptr;
  // The index of what each subscription may admit (StreamSubscription::set_subjects): the subscriptions
  // restricted to subjects, by subject; those that take every twin's thing_created and thing_updated; those
  // without a restriction. A change is routed to these only (the subscription still checks its types).
  std::unordered_map<std::string, std::vector<std::uint64_t>> by_subject;
  std::unordered_set<std::uint64_t> every_thing;
  std::unordered_set<std::uint64_t> unrestricted;

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

  // With mutex held: moves subscription `key` in the index from (`from`, `from_every`) to (`to`, `to_every`)
  // (null: no restriction by subject).
  void reindex(std::uint64_t key, const std::unordered_set<std::string>* from, bool from_every,
               const std::unordered_set<std::string>* to, bool to_every) {
    if (from == nullptr) unrestricted.erase(key);
    if (to == nullptr) unrestricted.insert(key);
    if (from_every) every_thing.erase(key);
    if (to_every) every_thing.insert(key);
    if (from == to) return;
    if (from != nullptr) {
      for (const auto& subject : *from) {
        if (to != nullptr && to->contains(subject)) continue;
        auto it = by_subject.find(subject);
        if (it == by_subject.end()) continue;
        std::erase(it->second, key);
        if (it->second.empty()) by_subject.erase(it);
      }
    }
    if (to != nullptr) {
      for (const auto& subject : *to) {
        if (from != nullptr && from->contains(subject)) continue;
        by_subject[subject].push_back(key);
      }
    }
  }

  // With mutex held: the changes each subscription may admit, by the index (in the order given; a change
  // at most once per subscription).
  std::unordered_map<std::uint64_t, std::vector<store::ChangePtr>> route(
      std::span<const store::ChangePtr> changes) const {
    std::unordered_map<std::uint64_t, std::vector<store::ChangePtr>> routed;
    auto add = [&](std::uint64_t key, const store::ChangePtr& change) {
      auto& list = routed[key];
      if (list.empty() || list.back() != change) list.push_back(change);
    };
    for (const auto& c : changes) {
      if (c->principal) {  // every stream learns of its owner's changes (and may end)
        for (const auto& entry : subscribers) add(entry.first, c);
        continue;
      }
      for (auto key : unrestricted) add(key, c);
      if (c->type == store::ChangeType::thing_created || c->type == store::ChangeType::thing_updated) {
        for (auto key : every_thing) add(key, c);
      }
      if (auto it = by_subject.find(c->subject); it != by_subject.end()) {
        for (auto key : it->second) add(key, c);
      }
    }
    return routed;
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
    state->reindex(key_, subjects_.get(), every_thing_, nullptr, false);
    state->unrestricted.erase(key_);
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
    {
      std::lock_guard lock(mutex_);
      if (!pending_.empty() || catching_up_ || gap_ || cancelled_ || end_ || poked_) continue;
      waiting_ = true;
    }
    auto [ec] = co_await wakeup_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    {
      std::lock_guard lock(mutex_);
      waiting_ = false;
    }
    if (!ec && !expiry_first) {
      StreamItem beat;
      beat.kind = StreamItem::Kind::heartbeat;
      co_return beat;
    }
  }
}

std::optional<StreamItem> StreamSubscription::try_next() {
  std::lock_guard lock(mutex_);
  if (pending_.empty() || cancelled_ || end_ || poked_ || gap_) return std::nullopt;
  if (owner_.expires && std::chrono::steady_clock::now() >= *owner_.expires) return std::nullopt;
  StreamItem item;
  item.change = std::move(pending_.front());
  pending_.pop_front();
  return item;
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
  // The hub's lock first (its order): the index and the subscription change between two of its commits.
  auto state = hub_state_.lock();
  std::unique_lock<std::mutex> hub_lock;
  if (state) hub_lock = std::unique_lock(state->mutex);
  std::lock_guard lock(mutex_);
  if (state) state->reindex(key_, subjects_.get(), every_thing_, subjects.get(), every_thing);
  subjects_ = std::move(subjects);
  every_thing_ = every_thing;
  return cursor_;
}

bool StreamSubscription::admits(const store::Change& change) const {
  if (!takes(change.type)) return false;
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

bool StreamSubscription::takes(store::ChangeType type) const {
  return types_.empty() || types_.contains(type);
}

bool StreamSubscription::deliver(std::int64_t first, std::int64_t last,
                                 std::span<const store::ChangePtr> admitted) {
  bool queued = false;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || end_ || catching_up_ || last <= cursor_) return false;
    std::size_t taken = 0;
    for (const auto& c : admitted) taken += c->seq > cursor_ && takes(c->type) ? 1 : 0;
    if (first > cursor_ + 1 || pending_.size() + taken > kMaxPending) {
      // Missed one, or too far behind: read the feed from the cursor from now on.
      catching_up_ = true;
      queued = true;
    } else {
      for (const auto& c : admitted) {
        if (c->seq > cursor_ && takes(c->type)) pending_.push_back(c);
      }
      cursor_ = last;
      queued = taken > 0;
    }
    queued = queued && std::exchange(waiting_, false);  // else next() finds them before it waits
  }
  return queued;
}

bool StreamSubscription::deliver_live(std::span<const store::ChangePtr> admitted) {
  bool queued = false;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || end_) return false;
    for (const auto& c : admitted) {
      if (pending_.size() >= kMaxPending) break;
      if (!takes(c->type)) continue;
      pending_.push_back(c);
      queued = true;
    }
    queued = queued && std::exchange(waiting_, false);
  }
  return queued;
}

void StreamHub::wake_all(std::vector<std::shared_ptr<StreamSubscription>> subs) {
  std::vector<std::pair<boost::asio::any_io_executor, std::vector<std::shared_ptr<StreamSubscription>>>>
      groups;
  for (auto& s : subs) {
    auto group =
        std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == s->executor_; });
    if (group == groups.end()) group = groups.insert(groups.end(), {s->executor_, {}});
    group->second.push_back(std::move(s));
  }
  for (auto& [executor, group] : groups) {
    boost::asio::post(executor, [group = std::move(group)] {
      for (const auto& s : group) s->wakeup_.cancel();
    });
  }
}

void StreamHub::publish_live(std::span<const store::ChangePtr> changes) {
  std::vector<std::shared_ptr<StreamSubscription>> held;  // released after the lock (a last reference)
  std::vector<std::shared_ptr<StreamSubscription>> woken;
  {
    std::lock_guard lock(state_->mutex);
    for (const auto& [key, admitted] : state_->route(changes)) {
      auto it = state_->subscribers.find(key);
      if (it == state_->subscribers.end()) continue;
      if (auto s = it->second.lock()) {
        if (s->deliver_live(admitted)) woken.push_back(s);
        held.push_back(std::move(s));
      }
    }
  }
  wake_all(std::move(woken));
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
  state_->unrestricted.insert(sub->key_);
  state_->count();
  return sub;
}

void StreamHub::apply(std::span<const store::ChangePtr> changes) {
  std::vector<std::shared_ptr<StreamSubscription>> woken;
  {
    // Released after the lock: one may be the last reference of a subscription, which then leaves the hub.
    std::vector<std::pair<std::uint64_t, std::shared_ptr<StreamSubscription>>> subs;
    std::lock_guard lock(state_->mutex);
    subs.reserve(state_->subscribers.size());
    for (const auto& [key, weak] : state_->subscribers) {
      if (auto s = weak.lock()) subs.emplace_back(key, std::move(s));
    }
    // Each run of consecutive sequence numbers is routed by the index and delivered to every subscription
    // (those it admits nothing of move their cursor past it), under the hub's lock: set_subjects() falls
    // between two commits.
    for (std::size_t begin = 0; begin < changes.size();) {
      auto end = begin + 1;
      while (end < changes.size() && changes[end]->seq == changes[end - 1]->seq + 1) ++end;
      const auto run = changes.subspan(begin, end - begin);
      const auto routed = state_->route(run);
      for (const auto& [key, s] : subs) {
        const auto it = routed.find(key);
        if (s->deliver(run.front()->seq, run.back()->seq,
                       it == routed.end() ? std::span<const store::ChangePtr>{} : std::span(it->second))) {
          woken.push_back(s);
        }
      }
      begin = end;
    }
  }
  wake_all(std::move(woken));
  for (const auto& c : changes) {
    if (c->principal) close_streams(*c->principal);
  }
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
