#include "dtif/twin_service.hpp"

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <set>

#include "core/access.hpp"

namespace twinbridge::dtif {

using core::Errc;

struct TwinService::Entry {
  std::mutex mutex;
  // Under mutex:
  std::int64_t td_version = 0;  // the TD the schema was built from
  std::shared_ptr<const core::StateSchema> schema;
  std::shared_ptr<const core::TwinState> state;  // the latest accepted state (its write may be queued)
  bool stored = false;  // `state` came from the store or was written to it (else: the initial state)
  boost::json::object live;
  std::map<std::string, core::Timestamp> live_updated;
  std::optional<core::Pose> live_pose;
  std::optional<core::Timestamp> live_pose_updated;
  // The DT system's facts of the newest report that held ephemeral members only (it is not stored, so
  // `state` does not carry them): reports are ordered against these too, so that a late live value does not
  // replace a newer one and a retry is applied once.
  std::optional<std::int64_t> live_source_seq;
  std::optional<core::Timestamp> live_source_time;
  // Set (without the lock) when a write of this twin failed: the state is read from the store again.
  std::atomic<bool> reload{false};
};

namespace {

// Seconds of the TD term "twinbridge:maxAge" in `object`, when present and positive.
std::optional<std::int64_t> max_age(core::packed::Ref object) {
  const auto v = object.find(kMaxAgeTerm);
  if (v.is_int64() && v.get_int64() > 0) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() > 0) return static_cast<std::int64_t>(v.get_uint64());
  return std::nullopt;
}

core::Result<std::shared_ptr<const core::TwinView>> live_twin(const TwinIndex& index, const std::string& id,
                                                              core::Timestamp now) {
  auto view = index.get(id);
  if (!view || (view->expires() && *view->expires() <= now)) {
    return core::fail(Errc::not_found, fmt::format("twin '{}' does not exist", id));
  }
  return view;
}

// The report's pointer prefix: errors of report i of a batch point into it.
std::string report_pointer(std::size_t index, std::size_t count) {
  return count == 1 ? std::string("/patch") : fmt::format("/changes/{}/patch", index);
}

template <class T>
std::optional<T> latest(const std::optional<T>& a, const std::optional<T>& b) {
  if (!a) return b;
  if (!b) return a;
  return std::max(*a, *b);
}

// Which members of a change the TD marks ephemeral (kEphemeralTerm, kPoseEphemeralTerm).
enum class Ephemeral {
  none,             // none: the change is stored (or refused) as a whole
  only_properties,  // only "properties", each an ephemeral property's value (not a removal)
  only_pose,        // only "pose", an object, and the pose is ephemeral
  mixed,            // anything else: checked as a whole against the state as served, then split
};

Ephemeral ephemeral_members(const boost::json::value& patch, const core::StateSchema& schema) {
  const auto* members = patch.if_object();
  if (members == nullptr) return Ephemeral::none;  // refused by apply()
  bool any = false;
  bool all = true;
  for (const auto& [key, value] : *members) {
    if (key == "properties" && value.is_object()) {
      for (const auto& [name, v] : value.get_object()) {
        const auto* p = schema.property(name);
        const bool live = p != nullptr && p->ephemeral;
        any = any || live;
        all = all && live && !v.is_null();
      }
    } else if (key == "pose" && schema.pose_ephemeral()) {
      any = true;
      all = false;
    } else {
      all = false;
    }
  }
  if (!any) return Ephemeral::none;
  if (members->size() == 1 && members->contains("pose")) {
    return members->at("pose").is_object() ? Ephemeral::only_pose : Ephemeral::mixed;
  }
  return all && members->size() == 1 ? Ephemeral::only_properties : Ephemeral::mixed;
}

core::Error prefixed(core::Error e, const std::string& prefix) {
  for (auto& f : e.fields) f.pointer = prefix + f.pointer;
  return e;
}

}  // namespace

core::Result<void> take_report_facts(boost::json::object& members, const std::string& base,
                                     StateReport& report) {
  if (const auto* t = members.if_contains("sourceTime")) {
    const auto at = t->is_string() ? core::parse_rfc3339(t->get_string()) : std::nullopt;
    if (!at)
      return core::fail_at(Errc::validation_failed, base + "/sourceTime", "must be an RFC 3339 date-time");
    report.source_time = *at;
    members.erase("sourceTime");
  }
  if (const auto* n = members.if_contains("sourceSeq")) {
    if (!n->is_int64() && !(n->is_uint64() && n->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))) {
      return core::fail_at(Errc::validation_failed, base + "/sourceSeq",
                           "must be an integer from 0 to 2^63 - 1");
    }
    report.source_seq = n->is_int64() ? n->get_int64() : static_cast<std::int64_t>(n->get_uint64());
    members.erase("sourceSeq");
  }
  return {};
}

namespace {

// A change in the batch format checked, with everything but its patch (which the caller copies or moves).
core::Result<StateReport> check_state_change(const boost::json::value& change, const std::string& base) {
  const auto* item = change.if_object();
  if (item == nullptr)
    return core::fail_at(Errc::validation_failed, base,
                         "must be an object {twin, patch, sourceTime?, sourceSeq?}");
  const auto* twin = item->if_contains("twin");
  if (twin == nullptr || !twin->is_string() || twin->get_string().empty())
    return core::fail_at(Errc::validation_failed, base + "/twin", "is required: the twin's id");
  const auto* patch = item->if_contains("patch");
  if (patch == nullptr || !patch->is_object())
    return core::fail_at(Errc::validation_failed, base + "/patch",
                         "is required: a merge patch of the twin's state");
  StateReport report;
  report.twin_id = std::string(twin->get_string());
  boost::json::object facts;
  // Every member it does not know is named (a misspelt "sourceSeq" must not pass as a change without one).
  core::Error unknown(Errc::validation_failed, "");
  for (const auto& m : *item) {
    if (m.key() == "sourceTime" || m.key() == "sourceSeq") {
      facts.emplace(m.key(), m.value());
    } else if (m.key() != "twin" && m.key() != "patch") {
      unknown.fields.push_back({base + "/" + std::string(m.key()), "is not a member of a change"});
    }
  }
  if (!unknown.fields.empty()) {
    unknown.detail = fmt::format("{}: {}", unknown.fields.front().pointer, unknown.fields.front().detail);
    return std::unexpected(std::move(unknown));
  }
  if (auto ok = take_report_facts(facts, base, report); !ok) return std::unexpected(ok.error());
  return report;
}

}  // namespace

core::Result<StateReport> read_state_change(const boost::json::value& change, const std::string& base) {
  auto report = check_state_change(change, base);
  if (report) report->patch = change.as_object().at("patch");
  return report;
}

core::Result<StateReport> take_state_change(boost::json::value& change, const std::string& base) {
  auto report = check_state_change(change, base);
  if (report) report->patch = std::move(change.as_object().at("patch"));
  return report;
}

boost::json::object to_json(const StateView& view, const std::function<bool(std::string_view)>& readable) {
  auto doc = core::to_json(*view.state);
  auto& properties = doc["properties"].as_object();
  auto& updated = doc["updated"].as_object();
  for (const auto& [name, value] : view.live) {
    properties[name] = value;
    if (auto it = view.live_updated.find(std::string(name)); it != view.live_updated.end())
      updated[name] = core::format_rfc3339(it->second);
  }
  if (view.live_pose) {
    core::TwinState pose_only;
    pose_only.pose = view.live_pose;
    doc["pose"] = core::to_json(pose_only).at("pose");
  }
  if (readable) {
    for (auto it = properties.begin(); it != properties.end();) {
      if (readable(it->key())) {
        ++it;
      } else {
        updated.erase(it->key());
        it = properties.erase(it);
      }
    }
  }
  if (view.stale) {
    boost::json::array names;
    for (const auto& n : view.stale->properties) names.emplace_back(n);
    doc["stale"] = boost::json::object{{"since", core::format_rfc3339(view.stale->since)},
                                       {"reason", view.stale->reason},
                                       {"properties", std::move(names)}};
  }
  return doc;
}

TwinService::TwinService(store::Store& store, const TwinIndex& index, StreamHub& hub,
                         const registry::SystemMonitor& monitor, const core::Clock& clock,
                         connect::OutboundGuard outbound)
    : store_(store),
      index_(index),
      hub_(hub),
      monitor_(monitor),
      clock_(clock),
      registry_(store, index, clock, std::move(outbound)) {}

void TwinService::create(const core::Actor& actor, const core::SystemRecord* system,
                         const boost::json::value& td, boost::json::object detail,
                         store::Completion<core::TwinRecord> done) {
  auto allowed = system != nullptr ? registry_.may_publish(actor.principal, *system)
                                   : registry_.may_publish_directory_twin(actor.principal);
  if (!allowed) return done(std::unexpected(allowed.error()));
  // The twin system's owner holds its twins, whoever adds them (an operator may); a directory twin is held
  // by its publisher.
  auto twin = registry_.from_document(td, "", nullptr, system != nullptr ? system->id : std::string(),
                                      system != nullptr ? system->owner : actor.principal.id);
  if (!twin) return done(std::unexpected(twin.error()));
  if (system != nullptr) detail["system"] = system->id;
  detail["title"] = twin->title;
  auto audit = core::audit_entry(actor, clock_.now(), "twin.create", "twin", twin->id, std::move(detail));
  store_.create_twin(std::move(*twin), std::move(audit), std::move(done));
}

void TwinService::replace(const core::Actor& actor, const core::TwinRecord& current,
                          const boost::json::value& td, std::string action, boost::json::object detail,
                          store::Completion<core::TwinRecord> done) {
  if (auto ok = registry_.may_publish(actor.principal, current); !ok)
    return done(std::unexpected(ok.error()));
  auto twin = registry_.from_document(td, "", &current, current.system_id, current.owner);
  if (!twin) return done(std::unexpected(twin.error()));
  if (!current.system_id.empty()) detail["system"] = current.system_id;
  auto audit =
      core::audit_entry(actor, clock_.now(), std::move(action), "twin", current.id, std::move(detail));
  store_.update_twin(std::move(*twin), current.version, std::move(audit), std::move(done));
}

void TwinService::remove(const core::Actor& actor, const core::TwinRecord& current,
                         boost::json::object detail, store::Completion<void> done) {
  if (auto ok = registry_.may_publish(actor.principal, current); !ok)
    return done(std::unexpected(ok.error()));
  if (!current.system_id.empty()) detail["system"] = current.system_id;
  auto audit = core::audit_entry(actor, clock_.now(), "twin.delete", "twin", current.id, std::move(detail));
  store_.delete_twin(current.id, current.version, std::move(audit), std::move(done));
}

std::shared_ptr<TwinService::Entry> TwinService::entry(const std::string& twin_id) {
  std::lock_guard lock(entries_mutex_);
  auto& slot = entries_[twin_id];
  if (!slot) slot = std::make_shared<Entry>();
  return slot;
}

std::size_t TwinService::cached() const {
  std::lock_guard lock(entries_mutex_);
  return entries_.size();
}

std::shared_ptr<const core::StateSchema> TwinService::schema_for(const boost::json::object& td) {
  auto key = core::StateSchema::shape_key(td);
  std::lock_guard lock(schemas_mutex_);
  if (auto it = schemas_.find(key); it != schemas_.end()) {
    if (auto shared = it->second.lock()) return shared;
  }
  auto schema = std::make_shared<const core::StateSchema>(core::StateSchema::from_td(td));
  schemas_.insert_or_assign(std::move(key), schema);
  // Schemas no twin uses any more leave when the map has doubled since the last sweep.
  if (schemas_.size() >= 2 * schemas_swept_) {
    std::erase_if(schemas_, [](const auto& kv) { return kv.second.expired(); });
    schemas_swept_ = std::max<std::size_t>(schemas_.size(), 64);
  }
  return schema;
}

core::Result<void> TwinService::prepare(Entry& e, const core::TwinView& twin) {
  std::optional<boost::json::object> td;  // read from the view once, if at all
  if (!e.schema || e.td_version != twin.version()) {
    td = twin.td_json();
    e.schema = schema_for(*td);
    e.td_version = twin.version();
    // Live values stand only for what the TD (still) declares ephemeral: a property the TD dropped or now
    // stores is served from the stored state alone.
    for (auto it = e.live.begin(); it != e.live.end();) {
      if (const auto* p = e.schema->property(it->key()); p != nullptr && p->ephemeral) {
        ++it;
      } else {
        e.live_updated.erase(std::string(it->key()));
        it = e.live.erase(it);
      }
    }
    if (!e.schema->pose_ephemeral()) {
      e.live_pose.reset();
      e.live_pose_updated.reset();
    }
  }
  if (!e.state || e.reload.exchange(false)) {
    auto stored = store_.twin_state(twin.id());
    if (!stored) return std::unexpected(stored.error());
    if (*stored) {
      e.state = std::make_shared<const core::TwinState>(std::move(**stored));
      e.stored = true;
    } else {
      if (!td) td = twin.td_json();
      e.state = std::make_shared<const core::TwinState>(
          e.schema->initial_state(twin.id(), clock_.now(), core::td_pose(*td)));
      e.stored = false;
    }
  }
  return {};
}

// The results of a batch of report() and its completion, called once every run is done and every write it
// queued completed (by the last of them).
struct TwinService::ReportOutcome {
  std::vector<ReportResult> results;
  store::Completion<std::vector<ReportResult>> done;
  std::atomic<std::size_t> pending{1};  // report() itself, and each write queued
};

void TwinService::finish(const std::shared_ptr<ReportOutcome>& outcome) {
  if (outcome->pending.fetch_sub(1) != 1) return;
  for (auto& r : outcome->results) {
    if (r && *r == nullptr) r = core::fail(Errc::internal, "the report was not applied");
  }
  outcome->done(std::move(outcome->results));
}

void TwinService::report(const core::Actor& actor, std::vector<StateReport> reports,
                         const std::optional<std::string>& system_id,
                         store::Completion<std::vector<ReportResult>> done) {
  const auto now = clock_.now();
  const auto count = reports.size();
  auto outcome = std::make_shared<ReportOutcome>();
  outcome->results.resize(count);  // each set by a run; a null state left would be a bug, answered as one
  outcome->done = std::move(done);
  if (count > kMaxBatchReports) {
    for (auto& r : outcome->results) {
      r = core::fail(Errc::validation_failed,
                     fmt::format("a batch holds at most {} changes; split it", kMaxBatchReports));
    }
    return finish(outcome);
  }
  // The batch goes in runs of kLockRun reports: the twins of a run are locked in id order (no two batches
  // wait for each other), checked, and their writes queued before the next run, so another batch (or a
  // single change on an I/O thread) waits for one run at most, and the first run commits while the next
  // ones are checked.
  for (std::size_t run = 0; run < count; run += kLockRun)
    report_run(actor, reports, run, std::min(count, run + kLockRun), system_id, now, outcome);
  finish(outcome);
}

void TwinService::report_run(const core::Actor& actor, std::vector<StateReport>& reports, std::size_t first,
                             std::size_t last, const std::optional<std::string>& system_id,
                             core::Timestamp now, const std::shared_ptr<ReportOutcome>& outcome) {
  const auto count = reports.size();
  auto* results = &outcome->results;
  std::map<std::string, std::pair<std::shared_ptr<const core::TwinView>, std::shared_ptr<Entry>>> twins;
  for (std::size_t i = first; i < last; ++i) {
    const auto& id = reports[i].twin_id;
    if (twins.contains(id)) continue;
    auto view = live_twin(index_, id, now);
    if (!view) continue;
    twins.emplace(id, std::pair(*view, entry(id)));
  }
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(twins.size());
  for (auto& [id, t] : twins) locks.emplace_back(t.second->mutex);

  const auto ingested_at = core::format_rfc3339(now);
  std::vector<store::StateWrite> writes;
  std::vector<std::size_t> written;  // the report of each write
  // The run's live changes, fanned out together once it is checked, with its twins still locked (a twin's
  // live changes leave in the order of its reports, before its stored changes of the run): one wake-up
  // and one write per WebSocket subscriber for the run, not one per change.
  std::vector<store::ChangePtr> live_changes;
  // Queues the write of `next`, the state after report i's durable members `durable`, and makes it current.
  const auto write = [&](Entry& e, const boost::json::value& durable, core::TwinState next, std::size_t i) {
    auto state = std::make_shared<const core::TwinState>(std::move(next));
    // The change's data as text, written directly: {id, version, patch, ingestedAt, channel, sourceTime?,
    // sourceSeq?}.
    std::string data = fmt::format(R"({{"id":{},"version":{},"patch":{},"ingestedAt":"{}","channel":{})",
                                   boost::json::serialize(boost::json::string_view(state->id)),
                                   state->version, boost::json::serialize(durable), ingested_at,
                                   boost::json::serialize(boost::json::string_view(state->channel)));
    if (state->source_time)
      data += fmt::format(R"(,"sourceTime":"{}")", core::format_rfc3339(*state->source_time));
    if (state->source_seq) data += fmt::format(R"(,"sourceSeq":{})", *state->source_seq);
    data += '}';
    writes.push_back({state, e.stored ? e.state->version : 0, std::move(data),
                      boost::json::serialize(core::to_json(*state))});
    written.push_back(i);
    e.state = state;
    e.stored = true;
    (*results)[i] = state;
  };
  // Takes in a live value of property `name`: fanned out as reported (appended to `text`, the members of
  // the live change's "properties"), served as `merged` (into the value before it).
  const auto take_live_value = [&now](Entry& e, std::string& text, std::string_view name,
                                      const boost::json::value& reported, boost::json::value merged) {
    if (!text.empty()) text += ',';
    text += boost::json::serialize(boost::json::string_view(name));
    text += ':';
    text += boost::json::serialize(reported);
    e.live[name] = std::move(merged);
    e.live_updated.insert_or_assign(std::string(name), now);
  };
  // Report i had live members only, now out: its source facts order the next reports; nothing is stored.
  const auto live_only = [&results](Entry& e, const StateReport& r, std::size_t i) {
    if (r.source_seq) e.live_source_seq = r.source_seq;
    if (r.source_time) e.live_source_time = r.source_time;
    (*results)[i] = e.state;
  };
  for (std::size_t i = first; i < last; ++i) {
    auto& r = reports[i];
    auto found = twins.find(r.twin_id);
    if (found == twins.end()) {
      (*results)[i] = core::fail(Errc::not_found, fmt::format("twin '{}' does not exist", r.twin_id));
      continue;
    }
    const auto& view = *found->second.first;
    auto& e = *found->second.second;
    if (system_id && view.system_id() != *system_id) {
      (*results)[i] = core::fail(Errc::not_found,
                                 fmt::format("twin system '{}' has no twin '{}'", *system_id, r.twin_id));
      continue;
    }
    if (!core::may_publish_twins(actor.principal, view.owner(), {})) {  // the refusal, saying which twin
      (*results)[i] = std::unexpected(
          core::may_publish_twins(actor.principal, view.owner(), fmt::format("twin '{}'", view.id()))
              .error());
      continue;
    }
    if (auto ok = prepare(e, view); !ok) {
      (*results)[i] = std::unexpected(ok.error());
      continue;
    }
    // The facts of the newest report taken in, stored or live only.
    core::TwinState newest;
    newest.source_seq = latest(e.state->source_seq, e.live_source_seq);
    newest.source_time = latest(e.state->source_time, e.live_source_time);
    const auto order = core::change_order(newest, r.source_seq, r.source_time);
    if (order == core::ChangeOrder::duplicate) {
      (*results)[i] = e.state;
      continue;
    }
    if (order == core::ChangeOrder::older) {
      (*results)[i] = core::fail(
          Errc::conflict,
          fmt::format("the change is older than the state of twin '{}' (source {} {}); it is not applied",
                      r.twin_id, newest.source_seq ? "sequence" : "time",
                      newest.source_seq ? std::to_string(*newest.source_seq)
                                        : core::format_rfc3339(newest.source_time.value_or(now))));
      continue;
    }
    const core::ChangeFacts facts{now, std::string(core::to_string(actor.channel)), r.source_seq,
                                  r.source_time};
    const auto kind = ephemeral_members(r.patch, *e.schema);
    if (kind == Ephemeral::only_properties) {
      // Live values alone (the high-rate case): each checked against its value as served and fanned out;
      // the state is neither copied nor changed.
      const auto& patch = r.patch.get_object().at("properties").get_object();
      auto merged = e.schema->check_properties(
          patch,
          [&e](std::string_view name) -> const boost::json::value* {
            if (const auto* live = e.live.if_contains(name)) return live;
            return e.state->properties.if_contains(name);
          },
          core::ChangeSource::twin_system);
      if (!merged) {
        (*results)[i] = std::unexpected(prefixed(merged.error(), report_pointer(i, count)));
        continue;
      }
      std::string live_properties;
      for (auto& [name, value] : *merged)
        take_live_value(e, live_properties, name, patch.at(name), std::move(value));
      live_changes.push_back(live_change(view.id(), now, ingested_at, live_properties, {}));
      live_only(e, r, i);
      continue;
    }
    if (kind == Ephemeral::only_pose) {
      // A live pose alone (an avatar's, 60 times a second): merged into the pose as served and fanned out.
      auto pose = core::StateSchema::check_pose(e.live_pose ? e.live_pose : e.state->pose,
                                                r.patch.get_object().at("pose").get_object());
      if (!pose) {
        (*results)[i] = std::unexpected(prefixed(pose.error(), report_pointer(i, count)));
        continue;
      }
      live_changes.push_back(
          live_change(view.id(), now, ingested_at, {}, boost::json::serialize(core::to_json(*pose))));
      e.live_pose = std::move(*pose);
      e.live_pose_updated = now;
      live_only(e, r, i);
      continue;
    }
    if (kind == Ephemeral::none) {
      // Stored values alone: checked against the stored state (live values are of other members) and applied
      // to it, once.
      auto next = e.schema->apply(*e.state, r.patch, core::ChangeSource::twin_system, facts);
      if (!next) {
        (*results)[i] = std::unexpected(prefixed(next.error(), report_pointer(i, count)));
        continue;
      }
      write(e, r.patch, std::move(*next), i);
      continue;
    }
    // The whole change is checked first, against the state as served (with its live values, so that a
    // partial patch of a live value merges into it); then its ephemeral members leave for the live channel.
    std::optional<core::TwinState> served;
    if (!e.live.empty() || e.live_pose) {
      served = *e.state;
      for (const auto& [name, value] : e.live) served->properties[name] = value;
      if (e.live_pose) served->pose = e.live_pose;
    }
    auto checked =
        e.schema->apply(served ? *served : *e.state, r.patch, core::ChangeSource::twin_system, facts);
    if (!checked) {
      (*results)[i] = std::unexpected(prefixed(checked.error(), report_pointer(i, count)));
      continue;
    }
    boost::json::value durable = r.patch;
    // The ephemeral members of the change, as the JSON text of the live change's patch members.
    std::string live_properties;  // "name":value,...
    std::string live_pose;        // the pose as applied
    if (auto* patch = durable.if_object()) {
      if (auto* props = patch->if_contains("properties"); props != nullptr && props->is_object()) {
        auto& p = props->as_object();
        for (auto it = p.begin(); it != p.end();) {
          const auto* prop = e.schema->property(it->key());
          if (prop != nullptr && prop->ephemeral && !it->value().is_null()) {
            const auto* merged = checked->properties.if_contains(it->key());
            take_live_value(e, live_properties, it->key(), it->value(),
                            merged != nullptr ? *merged : it->value());
            it = p.erase(it);
          } else {
            if (prop != nullptr && prop->ephemeral) {
              e.live.erase(it->key());
              e.live_updated.erase(std::string(it->key()));
            }
            ++it;
          }
        }
        if (p.empty()) patch->erase("properties");
      }
      if (e.schema->pose_ephemeral() && patch->contains("pose")) {
        if (checked->pose) {
          live_pose = boost::json::serialize(core::to_json(*checked->pose));
          e.live_pose = checked->pose;
          e.live_pose_updated = now;
          patch->erase("pose");
        } else {
          // "pose": null removes the pose: the live one, and a stored one through the durable change.
          e.live_pose.reset();
          e.live_pose_updated.reset();
        }
      }
    }
    const bool has_live = !live_properties.empty() || !live_pose.empty();
    if (has_live)
      live_changes.push_back(live_change(view.id(), now, ingested_at, live_properties, live_pose));
    const bool has_durable = durable.is_object() && !durable.as_object().empty();
    if (!has_durable && has_live) {
      live_only(e, r, i);
      continue;
    }
    auto next = e.schema->apply(*e.state, durable, core::ChangeSource::twin_system, facts);
    if (!next) {
      (*results)[i] = std::unexpected(prefixed(next.error(), report_pointer(i, count)));
      continue;
    }
    write(e, durable, std::move(*next), i);
  }
  // The live changes before the run's write is queued: a stored change that follows a live one of the same
  // twin (a removal of the live value) reaches the streams after it.
  if (!live_changes.empty()) hub_.publish_live(live_changes);
  if (writes.empty()) return;
  // Entries whose write fails are read again from the store on their next use.
  std::vector<std::shared_ptr<Entry>> written_entries;
  written_entries.reserve(written.size());
  for (auto i : written) written_entries.push_back(twins.at(reports[i].twin_id).second);
  outcome->pending.fetch_add(1);
  store_.write_states(std::move(writes),
                      [outcome, written = std::move(written), written_entries = std::move(written_entries)](
                          core::Result<std::vector<core::Result<void>>> stored) {
                        for (std::size_t w = 0; w < written.size(); ++w) {
                          const core::Result<void> r =
                              stored ? (*stored)[w] : core::Result<void>(std::unexpected(stored.error()));
                          if (!r) {
                            outcome->results[written[w]] = std::unexpected(r.error());
                            written_entries[w]->reload = true;
                          }
                        }
                        finish(outcome);
                      });
  // The run's locks go here, after its write is queued: the next change of these twins follows it.
}

store::ChangePtr TwinService::live_change(const std::string& id, core::Timestamp at,
                                          std::string_view ingested_at, std::string_view properties,
                                          std::string_view pose) {
  auto c = std::make_shared<store::Change>();
  c->type = store::ChangeType::state_changed;
  c->at = at;
  c->subject = id;
  std::string patch = "{";
  if (!properties.empty()) patch += fmt::format(R"("properties":{{{}}})", properties);
  if (!pose.empty()) patch += fmt::format(R"({}"pose":{})", patch.size() > 1 ? "," : "", pose);
  patch += '}';
  c->data = fmt::format(R"({{"id":{},"ephemeral":true,"ingestedAt":"{}","patch":{}}})",
                        boost::json::serialize(boost::json::string_view(id)), ingested_at, patch);
  return c;
}

core::Result<StateView> TwinService::state(const std::string& twin_id) {
  auto view = live_twin(index_, twin_id, clock_.now());
  if (!view) return std::unexpected(view.error());
  auto e = entry(twin_id);
  std::lock_guard lock(e->mutex);
  if (auto ok = prepare(*e, **view); !ok) return std::unexpected(ok.error());
  StateView out;
  out.twin = *view;
  out.state = e->state;
  out.live = e->live;
  out.live_updated = e->live_updated;
  out.live_pose = e->live_pose;
  out.live_pose_updated = e->live_pose_updated;
  out.stale = staleness(**view, *e->state, e->live_updated);
  return out;
}

std::optional<Staleness> TwinService::staleness(const core::TwinView& twin, const core::TwinState& state,
                                                const std::map<std::string, core::Timestamp>& live) const {
  if (!twin.system_id().empty()) {
    if (auto status = monitor_.status(core::SystemKind::twin, twin.system_id());
        status && status->status == core::SystemStatus::down) {
      return Staleness{status->since,
                       fmt::format("twin system '{}' is down since {}: {}", twin.system_id(),
                                   core::format_rfc3339(status->since), status->reason),
                       {}};
    }
  }
  const auto td = twin.td();
  const auto now = clock_.now();
  const auto twin_max = max_age(td);
  std::optional<Staleness> out;
  const auto properties = td.find("properties");
  // Every value served: the stored ones and the live ones of ephemeral properties, by name.
  std::map<std::string_view, core::Timestamp> values;
  for (const auto& [name, when] : state.updated) values.emplace(name, when);
  for (const auto& [name, when] : live) values.insert_or_assign(name, when);
  for (const auto& [name, when] : values) {
    std::optional<std::int64_t> limit = twin_max;
    if (const auto p = properties.find(name); p.is_object()) {
      if (auto own = max_age(p)) limit = own;
    }
    if (!limit) continue;
    const auto stale_at = when + std::chrono::seconds(*limit);
    if (stale_at > now) continue;
    if (!out) out = Staleness{stale_at, "", {}};
    out->since = std::min(out->since, stale_at);
    out->properties.emplace_back(name);
  }
  if (out) {
    out->reason =
        fmt::format("{} value(s) older than their maximum age (twinbridge:maxAge)", out->properties.size());
  }
  return out;
}

core::Result<core::Decision> TwinService::decide(const core::Actor& actor, core::Operation op,
                                                 const std::string& twin_id, std::string_view affordance) {
  return decide_impl(actor.principal, op, twin_id, affordance);
}

core::Result<core::Decision> TwinService::decide_for(const core::Principal& subject, core::Operation op,
                                                     const std::string& twin_id,
                                                     std::string_view affordance) {
  return decide_impl(subject, op, twin_id, affordance);
}

core::Result<core::Decision> TwinService::decide_impl(const core::Principal& subject, core::Operation op,
                                                      const std::string& twin_id,
                                                      std::string_view affordance) {
  auto view = live_twin(index_, twin_id, clock_.now());
  if (!view) return std::unexpected(view.error());
  if (auto ok = core::check_characteristics((*view)->td(), op, affordance); !ok) {
    core::Decision d;
    d.reason = ok.error().detail;
    return d;
  }
  core::Decision d;
  if (core::has_permission(subject, core::Permission::registry_admin)) {
    d.allowed = true;
    d.reason = fmt::format("principal '{}' has registry:admin", subject.id.str());
    return d;
  }
  if (subject.id == (*view)->owner()) {
    d.allowed = true;
    d.reason = fmt::format("principal '{}' holds twin '{}'", subject.id.str(), twin_id);
    return d;
  }
  auto policy = store_.twin_policy(twin_id);
  if (!policy) return std::unexpected(policy.error());
  if (*policy) {
    auto parsed = core::parse_policy((*policy)->document);
    if (!parsed) {
      d.reason = "the twin's stored policy cannot be read (default deny)";
      return d;
    }
    core::SubjectFacts who{subject.id, subject.roles, {}};
    auto owned = store_.owned_by(subject.id);
    if (owned) {
      for (const auto& [kind, id] : owned->systems) who.systems.push_back(id);
    }
    return core::decide(*parsed, who, op, affordance);
  }
  const bool reads = op == core::Operation::readproperty || op == core::Operation::observeproperty ||
                     op == core::Operation::subscribeevent;
  if (reads && core::has_permission(subject, core::Permission::twins_read)) {
    d.allowed = true;
    d.reason = "the twin has no policy: principals with twins:read may read, observe and subscribe";
  } else {
    d.reason = reads ? "the twin has no policy, and the principal lacks twins:read"
                     : "the twin has no policy: writes and invocations need one that allows them";
  }
  return d;
}

core::Result<void> TwinService::may_read(const core::Actor& actor, const std::string& twin_id) {
  auto view = live_twin(index_, twin_id, clock_.now());
  if (!view) return std::unexpected(view.error());
  const auto& subject = actor.principal;
  if (core::has_permission(subject, core::Permission::twins_read) ||
      core::has_permission(subject, core::Permission::registry_admin) || subject.id == (*view)->owner()) {
    return {};
  }
  return core::fail(Errc::forbidden,
                    fmt::format("reading the state of twin '{}' needs the permission twins:read, or to hold "
                                "the twin ('{}' holds it)",
                                twin_id, (*view)->owner().str()));
}

core::Result<std::function<bool(std::string_view)>> TwinService::readable(const core::Actor& actor,
                                                                          const std::string& twin_id,
                                                                          core::Operation op) {
  if (auto ok = may_read(actor, twin_id); !ok) return std::unexpected(ok.error());
  auto view = live_twin(index_, twin_id, clock_.now());
  if (!view) return std::unexpected(view.error());
  const auto& subject = actor.principal;
  // The view (immutable, shared) stands for the TD as it is now.
  std::shared_ptr<const core::TwinView> td = *view;
  if (core::has_permission(subject, core::Permission::registry_admin) || subject.id == (*view)->owner()) {
    return [td, op](std::string_view p) { return core::check_characteristics(td->td(), op, p).has_value(); };
  }
  auto stored = store_.twin_policy(twin_id);
  if (!stored) return std::unexpected(stored.error());
  if (!*stored) {
    const bool may = core::has_permission(subject, core::Permission::twins_read);
    return [td, may, op](std::string_view p) {
      return may && core::check_characteristics(td->td(), op, p).has_value();
    };
  }
  auto parsed = core::parse_policy((*stored)->document);
  if (!parsed) return [](std::string_view) { return false; };
  core::SubjectFacts who{subject.id, subject.roles, {}};
  if (auto owned = store_.owned_by(subject.id)) {
    for (const auto& [kind, id] : owned->systems) who.systems.push_back(id);
  }
  auto policy = std::make_shared<const core::Policy>(std::move(*parsed));
  return [td, policy, op, who = std::move(who)](std::string_view p) {
    return core::check_characteristics(td->td(), op, p).has_value() &&
           core::decide(*policy, who, op, p).allowed;
  };
}

core::Result<std::optional<store::PolicyRecord>> TwinService::policy(const std::string& twin_id) {
  if (auto view = live_twin(index_, twin_id, clock_.now()); !view) return std::unexpected(view.error());
  return store_.twin_policy(twin_id);
}

void TwinService::set_policy(const core::Actor& actor, const std::string& twin_id,
                             const boost::json::value& document, std::optional<std::int64_t> expected_version,
                             store::Completion<store::PolicyRecord> done) {
  auto view = live_twin(index_, twin_id, clock_.now());
  if (!view) return done(std::unexpected(view.error()));
  if (!core::has_permission(actor.principal, core::Permission::registry_admin) &&
      actor.principal.id != (*view)->owner()) {
    return done(
        core::fail(Errc::forbidden,
                   fmt::format("the policy of twin '{}' is set by the principal that holds it ('{}') or "
                               "an operator with registry:admin",
                               twin_id, (*view)->owner().str())));
  }
  auto policy = core::parse_policy(document);
  if (!policy) return done(std::unexpected(policy.error()));
  if (auto ok = core::check_policy_affordances(*policy, (*view)->td_json()); !ok)
    return done(std::unexpected(ok.error()));
  store::PolicyRecord record;
  record.twin_id = twin_id;
  record.document = core::to_json(*policy);
  auto audit =
      core::audit_entry(actor, clock_.now(), "twin.policy", "twin", twin_id,
                        boost::json::object{{"rules", record.document.at("rules").as_array().size()}});
  store_.put_policy(std::move(record), expected_version, std::move(audit), std::move(done));
}

void TwinService::seed_policy(const core::Actor& actor, const std::string& twin_id,
                              const core::Policy& policy, std::string source,
                              store::Completion<store::PolicyRecord> done) {
  auto view = live_twin(index_, twin_id, clock_.now());
  if (!view) return done(std::unexpected(view.error()));
  if (!core::has_permission(actor.principal, core::Permission::registry_admin) &&
      actor.principal.id != (*view)->owner()) {
    return done(core::fail(
        Errc::forbidden, fmt::format("the policy of twin '{}' is seeded by twinbridge or the principal that "
                                     "holds it ('{}')",
                                     twin_id, (*view)->owner().str())));
  }
  if (auto ok = core::check_policy_affordances(policy, (*view)->td_json()); !ok)
    return done(std::unexpected(ok.error()));
  store::PolicyRecord record;
  record.twin_id = twin_id;
  record.document = core::to_json(policy);
  auto audit = core::audit_entry(actor, clock_.now(), "twin.policy", "twin", twin_id,
                                 boost::json::object{{"seeded_from", std::move(source)}});
  store_.put_policy(std::move(record), 0, std::move(audit), std::move(done));
}

core::Actor internal_actor(core::Channel channel, std::string_view system_id, std::string request_id) {
  core::Actor actor;
  actor.principal.id = core::PrincipalId(std::string(kAcquisitionPrincipal));
  actor.principal.kind = core::PrincipalKind::operator_account;
  actor.principal.name = "twinbridge acquisition";
  actor.principal.roles = {"admin"};
  actor.credential = fmt::format("on-behalf-of:{}", system_id);
  actor.request_id = std::move(request_id);
  actor.channel = channel;
  return actor;
}

void TwinService::apply(std::span<const store::ChangePtr> changes) {
  for (const auto& c : changes) {
    if (c->type == store::ChangeType::thing_deleted) {
      std::lock_guard lock(entries_mutex_);
      entries_.erase(c->subject);
    }
  }
}

}  // namespace twinbridge::dtif
