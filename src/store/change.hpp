#pragma once
// The change feed's unit: one committed change of twinbridge's durable state (a twin's TD, a system and its
// status, a principal and its keys; twin state and policies come with the twin plane). Every write of the
// store records the changes it makes in the same transaction, each with the next number of one durable,
// gap-free sequence; after the commit the store hands them, in sequence order, to its ChangeListener (the
// ChangeFeed), which delivers them to every consumer: the twin index, the streams, the monitor. Consumers
// apply changes in that order, whatever thread resumes first; the sequence is the order, not the writer
// thread.
//
// `data` is the change as streams deliver it (JSON text; never a secret) and is what the store keeps, so a
// change read back after a restart is complete for streams. The typed members are for consumers in this
// process and are set only on changes delivered live.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/health.hpp"
#include "core/principal.hpp"
#include "core/system.hpp"
#include "core/time.hpp"
#include "core/twin.hpp"
#include "core/twin_state.hpp"

namespace twinbridge::store {

// The types of change; their names (to_string) are the event types of the streams and never change.
enum class ChangeType : std::uint8_t {
  thing_created,      // data: the TD as served
  thing_updated,      // data: {"id"} plus the RFC 7396 merge patch from the previous TD as served
  thing_deleted,      // data: {"id"}
  thing_transferred,  // data: {"id", "owner"}: the twin passed to another principal (its TD is unchanged)
  system_created,     // data: {"kind", "id", "version"}
  system_updated,     // data: {"kind", "id", "version"}
  system_deleted,     // data: {"kind", "id"}
  status_changed,     // data: {"kind", "id", "from", "to", "reason", "at"}
  principal_created,  // data: {"id", "kind"}
  principal_updated,  // data: {"id", "kind", "version", "disabled"}
  principal_deleted,  // data: {"id"}
  key_added,          // data: {"principal", "key"}
  key_revoked,        // data: {"principal", "key"}
  state_changed,   // data: {"id", "version", "patch", "ingestedAt", "channel", "sourceTime"?, "sourceSeq"?}
  policy_changed,  // data: {"id", "version"}
  selection_changed,  // data: {"owner", "id", "version"}: a selection was created or replaced
  selection_deleted,  // data: {"owner", "id"}
};

std::string_view to_string(ChangeType type);
std::optional<ChangeType> parse_change_type(std::string_view text);

// A committed change of a principal that may end what its credentials opened (streams): an update
// (`principal` is its new state), its deletion (`deleted`), or the revocation of one of its API keys
// (`revoked_key`; the principal itself is unchanged).
struct PrincipalChange {
  core::PrincipalId id;
  std::optional<core::Principal> principal{};
  bool deleted = false;
  std::optional<core::ApiKeyId> revoked_key{};
};

// Text made from a change once, by the first consumer that needs it, and shared by every later one for as
// long as the change lives: the live stream's message for it, the same for all its subscribers. Thread-safe
// and never waits: a consumer that comes while another is making the text makes its own copy (the same
// text). A copy of the change starts without it.
class DerivedText {
 public:
  DerivedText() = default;
  DerivedText(const DerivedText&) {}
  DerivedText& operator=(const DerivedText&) { return *this; }

  template <class Make>
  std::shared_ptr<const std::string> get(Make&& make) const {
    auto state = state_.load(std::memory_order_acquire);
    if (state == kReady) return text_;
    auto made = std::make_shared<const std::string>(std::forward<Make>(make)());
    if (state == kEmpty && state_.compare_exchange_strong(state, kMaking, std::memory_order_acquire)) {
      text_ = made;
      state_.store(kReady, std::memory_order_release);
    }
    return made;
  }

 private:
  static constexpr std::uint8_t kEmpty = 0, kMaking = 1, kReady = 2;
  mutable std::atomic<std::uint8_t> state_{kEmpty};
  mutable std::shared_ptr<const std::string> text_;
};

struct Change {
  std::int64_t seq = 0;  // the feed's sequence number: durable, gap-free, increasing in commit order
  core::Timestamp at{};  // commit time (the time of the write's audit entry)
  ChangeType type = ChangeType::thing_created;
  std::string subject;  // the twin id, the system id, the principal id, the selection id
  std::string data;     // JSON text (see ChangeType)

  // Live only (null or empty on changes read back from the store):
  std::shared_ptr<const core::TwinRecord> twin;      // thing_created, thing_updated, thing_transferred
  std::shared_ptr<const core::SystemRecord> system;  // system_created, system_updated
  core::SystemKind system_kind = core::SystemKind::third_party;  // every system_* and status_changed
  std::optional<core::StatusChange> status;                      // status_changed
  std::optional<PrincipalChange> principal;      // principal_updated, principal_deleted, key_revoked
  std::shared_ptr<const core::TwinState> state;  // state_changed: the new state

  // The live stream's message for this change as every subscriber who may see all of it gets it
  // (dtif::TwinStream), framed by the first.
  DerivedText stream_message;
};

using ChangePtr = std::shared_ptr<const Change>;

}  // namespace twinbridge::store
