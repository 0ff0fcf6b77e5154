#include "store/sqlite_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>

#include "core/json_reader.hpp"
#include "core/merge_patch.hpp"
#include "core/utf8.hpp"
#include "store/sqlite.hpp"

namespace twinbridge::store {

using core::Errc;
using core::Error;
using core::Result;
using sqlite::Connection;

namespace {

constexpr std::size_t kMaxPageSize = 10'000;  // a page request beyond this is served this many items
constexpr std::int64_t kPruneStep = 4096;     // changes pruned together
constexpr int kCheckpointPages = 1000;        // WAL pages that call for a checkpoint (SQLite's default)
constexpr int kCheckpointPagesForWriter = 16 * kCheckpointPages;  // beyond: the writer checkpoints itself

// Versioned schema migrations. Append only: a released migration never changes; a new version adds a new
// entry.
struct Migration {
  int version;
  const char* name;
  const char* sql;
};

constexpr std::array kMigrations = {
    Migration{1, "principals, api keys, audit log", R"sql(
CREATE TABLE principals (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  roles TEXT NOT NULL,
  properties TEXT NOT NULL,
  disabled INTEGER NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL,
  version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  principal_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
  hash TEXT NOT NULL,
  label TEXT NOT NULL,
  created INTEGER NOT NULL,
  expires INTEGER
) WITHOUT ROWID;
CREATE INDEX api_keys_by_principal ON api_keys(principal_id);
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  actor_kind TEXT NOT NULL,
  action TEXT NOT NULL,
  target_type TEXT NOT NULL,
  target_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX audit_by_actor ON audit(actor, seq);
CREATE INDEX audit_by_target ON audit(target_type, target_id, seq);
)sql"},
    Migration{2, "registered systems", R"sql(
CREATE TABLE systems (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  owner TEXT NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  status_reason TEXT NOT NULL,
  status_since INTEGER NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX systems_by_type ON systems(kind, type, id);
CREATE INDEX systems_by_status ON systems(kind, status, id);
CREATE INDEX systems_by_owner ON systems(kind, owner, id);
)sql"},
    Migration{3, "twins", R"sql(
CREATE TABLE twins (
  id TEXT PRIMARY KEY,
  system_id TEXT NOT NULL,
  owner TEXT NOT NULL,
  title TEXT NOT NULL,
  document TEXT NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL,
  version INTEGER NOT NULL,
  ttl INTEGER,
  expires INTEGER
) WITHOUT ROWID;
CREATE INDEX twins_by_system ON twins(system_id, id);
CREATE INDEX twins_by_expiry ON twins(expires) WHERE expires IS NOT NULL;
)sql"},
    Migration{4, "system monitoring", R"sql(
CREATE TABLE system_probes (
  kind TEXT NOT NULL,
  system_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  ok INTEGER NOT NULL,
  latency_us INTEGER NOT NULL
);
CREATE INDEX system_probes_by_system ON system_probes(kind, system_id, at);
CREATE TABLE system_status_history (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  system_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  status TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX system_status_history_by_system ON system_status_history(kind, system_id, seq);
)sql"},
    // The ids of deleted principals are never reused; those deleted before this version are known from the
    // audit log.
    Migration{5, "principal tombstones, twins by owner", R"sql(
CREATE TABLE principal_tombstones (
  id TEXT PRIMARY KEY,
  deleted INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO principal_tombstones(id, deleted)
  SELECT target_id, MAX(at) FROM audit
  WHERE target_type = 'principal' AND action = 'principal.delete' AND target_id NOT IN (SELECT id FROM principals)
  GROUP BY target_id;
CREATE INDEX twins_by_owner ON twins(owner, system_id, id);
)sql"},
    // The change feed: every committed change, numbered without gaps in commit order (store/change.hpp).
    Migration{6, "change feed", R"sql(
CREATE TABLE changes (
  seq INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  type TEXT NOT NULL,
  subject TEXT NOT NULL,
  data TEXT NOT NULL
);
)sql"},
    // Twin state (the document of core::to_json(TwinState)) and access control policies, one row per twin.
    Migration{7, "twin state and policies", R"sql(
CREATE TABLE twin_state (
  twin_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  document TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE twin_policies (
  twin_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  document TEXT NOT NULL,
  modified INTEGER NOT NULL
) WITHOUT ROWID;
)sql"},
    // Selections of twins (per owner), the credentials systems give for twinbridge's calls to them (apart
    // from the registration: never served), and what the acquisition last fetched of each twin.
    Migration{8, "selections, system credentials, acquisitions", R"sql(
CREATE TABLE selections (
  owner TEXT NOT NULL,
  id TEXT NOT NULL,
  document TEXT NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (owner, id)
) WITHOUT ROWID;
CREATE TABLE system_credentials (
  kind TEXT NOT NULL,
  system_id TEXT NOT NULL,
  document TEXT NOT NULL,
  PRIMARY KEY (kind, system_id)
) WITHOUT ROWID;
CREATE TABLE twin_acquisitions (
  twin_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  document TEXT NOT NULL
) WITHOUT ROWID;
)sql"},
    // Twins in a rowid table: a WITHOUT ROWID table keeps whole rows in its interior pages and moves what
    // does not fit a quarter of a page (a TD of ~1 KiB) to an overflow page of its own, so the twins took
    // ~4.5 KiB of pages each; in a rowid table rows of ~1 KiB share leaf pages (start-up reads a quarter).
    Migration{9, "twins in a rowid table", R"sql(
CREATE TABLE twins_rowid (
  id TEXT NOT NULL PRIMARY KEY,
  system_id TEXT NOT NULL,
  owner TEXT NOT NULL,
  title TEXT NOT NULL,
  document TEXT NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL,
  version INTEGER NOT NULL,
  ttl INTEGER,
  expires INTEGER
);
INSERT INTO twins_rowid(id, system_id, owner, title, document, created, modified, version, ttl, expires)
  SELECT id, system_id, owner, title, document, created, modified, version, ttl, expires FROM twins ORDER BY id;
DROP TABLE twins;
ALTER TABLE twins_rowid RENAME TO twins;
CREATE INDEX twins_by_system ON twins(system_id, id);
CREATE INDEX twins_by_expiry ON twins(expires) WHERE expires IS NOT NULL;
CREATE INDEX twins_by_owner ON twins(owner, system_id, id);
)sql"},
};

Result<void> migrate(Connection& db) {
  if (auto ok =
          db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT "
                  "NULL, applied_at INTEGER NOT NULL)");
      !ok) {
    return ok;
  }
  std::int64_t have = 0;
  {
    // Finalized before the migrations run: a pending statement would lock the tables they drop.
    auto current = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    if (!current) return std::unexpected(current.error());
    auto row = current->step();
    if (!row) return std::unexpected(row.error());
    have = current->integer(0);
  }
  if (have > kMigrations.back().version) {
    return core::fail(
        Errc::unavailable,
        fmt::format("the database has schema version {}, newer than this twinbridge knows ({}); "
                    "use a newer twinbridge",
                    have, kMigrations.back().version));
  }
  for (const auto& m : kMigrations) {
    if (m.version <= have) continue;
    if (auto ok = db.exec("BEGIN IMMEDIATE"); !ok) return ok;
    auto ok = db.exec(m.sql);
    if (ok) {
      ok =
          db.exec(fmt::format("INSERT INTO schema_migrations(version, name, applied_at) VALUES ({}, '{}', "
                              "CAST(strftime('%s','now') AS INTEGER))",
                              m.version, m.name));
    }
    if (!ok) {
      (void)db.exec("ROLLBACK");
      return std::unexpected(Error(ok.error().code, fmt::format("migration {} ({}) failed: {}", m.version,
                                                                m.name, ok.error().detail)));
    }
    if (auto committed = db.exec("COMMIT"); !committed) return committed;
    spdlog::info("store: applied schema migration {} ({})", m.version, m.name);
  }
  return {};
}

std::string json_text(const boost::json::value& v) {
  return boost::json::serialize(v);
}

}  // namespace

Result<void> ChangeLog::add(Change change) {
  change.seq = next_seq();
  auto s = db_.prepare("INSERT INTO changes(seq, at, type, subject, data) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!s) return std::unexpected(s.error());
  s->bind(1, change.seq)
      .bind(2, core::to_unix_micros(change.at))
      .bind(3, to_string(change.type))
      .bind(4, change.subject)
      .bind(5, change.data);
  if (auto ok = s->run(); !ok) return ok;
  changes_.push_back(std::make_shared<const Change>(std::move(change)));
  return {};
}

namespace {

// A change of `type` at `at` about `subject`, with its stream payload.
Change make_change(ChangeType type, core::Timestamp at, std::string subject, const boost::json::value& data) {
  Change c;
  c.type = type;
  c.at = at;
  c.subject = std::move(subject);
  c.data = json_text(data);
  return c;
}

Change twin_change(ChangeType type, core::Timestamp at, const core::TwinRecord& twin,
                   const boost::json::value& data) {
  auto c = make_change(type, at, twin.id, data);
  if (type != ChangeType::thing_deleted) c.twin = std::make_shared<const core::TwinRecord>(twin);
  return c;
}

Change system_change(ChangeType type, core::Timestamp at, core::SystemKind kind, const std::string& id,
                     const core::SystemRecord* record) {
  boost::json::object data{{"kind", core::to_string(kind)}, {"id", id}};
  if (record != nullptr) data["version"] = record->version;
  auto c = make_change(type, at, id, data);
  c.system_kind = kind;
  if (record != nullptr) c.system = std::make_shared<const core::SystemRecord>(*record);
  return c;
}

Change principal_change(ChangeType type, core::Timestamp at, PrincipalChange facts,
                        const boost::json::object& data) {
  auto c = make_change(type, at, facts.id.str(), data);
  c.principal = std::move(facts);
  return c;
}

// Rows written by an older binary may hold ill-formed UTF-8 (one decoded an id from the request path without
// checking it). Nothing ill-formed is served: text is repaired with U+FFFD, and the repair logged with
// `what`.
std::string text_column(const sqlite::Statement& s, int column, std::string_view what) {
  const auto text = s.text(column);
  if (core::is_valid_utf8(text)) return std::string(text);
  auto repaired = core::to_valid_utf8(text);
  spdlog::error("store: {} is not valid UTF-8; served as '{}' (U+FFFD in place of the bad bytes)", what,
                repaired);
  return repaired;
}

core::Principal read_principal(const sqlite::Statement& s, int first = 0) {
  core::Principal p;
  p.id = core::PrincipalId(std::string(s.text(first)));
  p.kind = core::parse_principal_kind(s.text(first + 1)).value_or(core::PrincipalKind::metaverse_system);
  p.name = std::string(s.text(first + 2));
  if (auto roles = parse_stored_json(s.text(first + 3)); roles.is_array()) {
    for (const auto& r : roles.get_array()) {
      if (r.is_string()) p.roles.emplace_back(r.get_string());
    }
  }
  if (auto props = parse_stored_json(s.text(first + 4)); props.is_object())
    p.properties = std::move(props.get_object());
  p.disabled = s.integer(first + 5) != 0;
  p.created = core::from_unix_micros(s.integer(first + 6));
  p.modified = core::from_unix_micros(s.integer(first + 7));
  p.version = s.integer(first + 8);
  return p;
}

ApiKeyRecord read_key(const sqlite::Statement& s, int first) {
  ApiKeyRecord k;
  k.id = core::ApiKeyId(std::string(s.text(first)));
  k.principal = core::PrincipalId(std::string(s.text(first + 1)));
  k.hash = std::string(s.text(first + 2));
  k.label = std::string(s.text(first + 3));
  k.created = core::from_unix_micros(s.integer(first + 4));
  if (!s.is_null(first + 5)) k.expires = core::from_unix_micros(s.integer(first + 5));
  return k;
}

Result<void> insert_audit(Connection& db, const core::AuditEntry& a) {
  auto s = db.prepare(
      "INSERT INTO audit(at, actor, actor_kind, action, target_type, target_id, request_id, detail) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!s) return std::unexpected(s.error());
  s->bind(1, core::to_unix_micros(a.at))
      .bind(2, a.actor)
      .bind(3, a.actor_kind)
      .bind(4, a.action)
      .bind(5, a.target_type)
      .bind(6, a.target_id)
      .bind(7, a.request_id)
      .bind(8, json_text(a.detail));
  return s->run();
}

Result<void> insert_key(Connection& db, const ApiKeyRecord& k) {
  auto s = db.prepare(
      "INSERT INTO api_keys(id, principal_id, hash, label, created, expires) VALUES (?1, ?2, ?3, ?4, ?5, "
      "?6)");
  if (!s) return std::unexpected(s.error());
  std::optional<std::int64_t> expires;
  if (k.expires) expires = core::to_unix_micros(*k.expires);
  s->bind(1, k.id.str())
      .bind(2, k.principal.str())
      .bind(3, k.hash)
      .bind(4, k.label)
      .bind(5, core::to_unix_micros(k.created))
      .bind(6, expires);
  auto ok = s->run();
  if (!ok && ok.error().code == Errc::conflict) {
    return core::fail(Errc::conflict, fmt::format("API key {} exists already", k.id.str()));
  }
  return ok;
}

core::SystemRecord read_system(const sqlite::Statement& s) {
  core::SystemRecord r;
  r.kind = s.text(0) == "twin-system" ? core::SystemKind::twin : core::SystemKind::third_party;
  r.id = std::string(s.text(1));
  r.type = std::string(s.text(2));
  r.name = std::string(s.text(3));
  r.owner = core::PrincipalId(std::string(s.text(4)));
  if (auto body = parse_stored_json(s.text(5)); body.is_object()) r.body = std::move(body.get_object());
  r.status = core::parse_system_status(s.text(6)).value_or(core::SystemStatus::unknown);
  r.status_reason = std::string(s.text(7));
  r.status_since = core::from_unix_micros(s.integer(8));
  r.created = core::from_unix_micros(s.integer(9));
  r.modified = core::from_unix_micros(s.integer(10));
  r.version = s.integer(11);
  return r;
}

Result<std::int64_t> system_version(Connection& db, core::SystemKind kind, const std::string& id) {
  auto s = db.prepare("SELECT version FROM systems WHERE kind = ?1 AND id = ?2");
  if (!s) return std::unexpected(s.error());
  s->bind(1, core::to_string(kind)).bind(2, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row)
    return core::fail(Errc::not_found, fmt::format("{} '{}' does not exist", core::to_string(kind), id));
  return s->integer(0);
}

// When `id` belonged to a deleted principal: the time it was deleted.
Result<std::optional<core::Timestamp>> tombstone(Connection& db, const std::string& id) {
  auto s = db.prepare("SELECT deleted FROM principal_tombstones WHERE id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<core::Timestamp>();
  return std::optional<core::Timestamp>(core::from_unix_micros(s->integer(0)));
}

// conflict when `owner`, the owner of a new registration, is a deleted principal: a registration that raced
// its owner's deletion must not outlive it unowned.
Result<void> expect_live_owner(Connection& db, const core::PrincipalId& owner) {
  auto dead = tombstone(db, owner.str());
  if (!dead) return std::unexpected(dead.error());
  if (*dead) {
    return core::fail(Errc::conflict,
                      fmt::format("principal '{}' was deleted; it cannot own registrations", owner.str()));
  }
  return {};
}

Result<std::int64_t> count_rows(Connection& db, const char* sql, const std::string& a, const std::string& b) {
  auto s = db.prepare(sql);
  if (!s) return std::unexpected(s.error());
  s->bind(1, a).bind(2, b);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  return *row ? s->integer(0) : 0;
}

Result<OwnedRegistrations> owned_registrations(Connection& db, const core::PrincipalId& principal) {
  OwnedRegistrations out;
  const auto limit = static_cast<std::int64_t>(kOwnedListLimit);
  for (const auto kind : {core::SystemKind::third_party, core::SystemKind::twin}) {
    auto s = db.prepare("SELECT id FROM systems WHERE kind = ?1 AND owner = ?2 ORDER BY id LIMIT ?3");
    if (!s) return std::unexpected(s.error());
    s->bind(1, core::to_string(kind)).bind(2, principal.str()).bind(3, limit);
    for (;;) {
      auto row = s->step();
      if (!row) return std::unexpected(row.error());
      if (!*row) break;
      if (out.systems.size() < kOwnedListLimit) out.systems.emplace_back(kind, std::string(s->text(0)));
    }
    auto n = count_rows(db, "SELECT COUNT(*) FROM systems WHERE kind = ?1 AND owner = ?2",
                        std::string(core::to_string(kind)), principal.str());
    if (!n) return std::unexpected(n.error());
    out.system_count += *n;
  }
  auto s = db.prepare("SELECT id FROM twins WHERE owner = ?1 AND system_id = '' ORDER BY id LIMIT ?2");
  if (!s) return std::unexpected(s.error());
  s->bind(1, principal.str()).bind(2, limit);
  for (;;) {
    auto row = s->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.twins.emplace_back(s->text(0));
  }
  auto n = count_rows(db, "SELECT COUNT(*) FROM twins WHERE owner = ?1 AND system_id = ?2", principal.str(),
                      std::string());
  if (!n) return std::unexpected(n.error());
  out.twin_count = *n;
  return out;
}

// Binds ?1..?6 of a systems statement: kind, id, type, name, owner, body.
sqlite::Statement& bind_registration(sqlite::Statement& s, const core::SystemRecord& r) {
  return s.bind(1, core::to_string(r.kind))
      .bind(2, r.id)
      .bind(3, r.type)
      .bind(4, r.name)
      .bind(5, r.owner.str())
      .bind(6, json_text(r.body));
}

Result<void> insert_system(Connection& db, const core::SystemRecord& r) {
  if (auto ok = expect_live_owner(db, r.owner); !ok) return ok;
  auto s = db.prepare(
      "INSERT INTO systems(kind, id, type, name, owner, body, status, status_reason, status_since, created, "
      "modified, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
  if (!s) return std::unexpected(s.error());
  bind_registration(*s, r)
      .bind(7, core::to_string(r.status))
      .bind(8, r.status_reason)
      .bind(9, core::to_unix_micros(r.status_since))
      .bind(10, core::to_unix_micros(r.created))
      .bind(11, core::to_unix_micros(r.modified))
      .bind(12, r.version);
  auto ok = s->run();
  if (!ok && ok.error().code == Errc::conflict) {
    return core::fail_at(Errc::conflict, "/id",
                         fmt::format("{} '{}' exists already", core::to_string(r.kind), r.id));
  }
  return ok;
}

// Updates the registration members of an existing system. The status members belong to the monitor
// (record_system_check), which may have written them after the caller read `r`: they are not written but
// read back into `r`.
Result<void> update_system_row(Connection& db, core::SystemRecord& r) {
  auto s = db.prepare(
      "UPDATE systems SET type = ?3, name = ?4, owner = ?5, body = ?6, created = ?7, modified = ?8, "
      "version = ?9 WHERE kind = ?1 AND id = ?2 RETURNING status, status_reason, status_since");
  if (!s) return std::unexpected(s.error());
  bind_registration(*s, r)
      .bind(7, core::to_unix_micros(r.created))
      .bind(8, core::to_unix_micros(r.modified))
      .bind(9, r.version);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) {
    return core::fail(Errc::not_found, fmt::format("{} '{}' does not exist", core::to_string(r.kind), r.id));
  }
  r.status = core::parse_system_status(s->text(0)).value_or(core::SystemStatus::unknown);
  r.status_reason = std::string(s->text(1));
  r.status_since = core::from_unix_micros(s->integer(2));
  return s->run();  // to SQLITE_DONE: the statement is complete
}

core::AuditEntry read_audit(const sqlite::Statement& s) {
  core::AuditEntry e;
  e.seq = s.integer(0);
  e.at = core::from_unix_micros(s.integer(1));
  const auto what = [&](std::string_view column) { return fmt::format("audit entry {}: {}", e.seq, column); };
  e.actor = text_column(s, 2, what("actor"));
  e.actor_kind = text_column(s, 3, what("actor_kind"));
  e.action = text_column(s, 4, what("action"));
  e.target_type = text_column(s, 5, what("target_type"));
  e.target_id = text_column(s, 6, what("target_id"));
  e.request_id = text_column(s, 7, what("request_id"));
  if (auto d = parse_stored_json(s.text(8), what("detail")); d.is_object())
    e.detail = std::move(d.get_object());
  return e;
}

// A twin's columns but its document, from `first` on (id, system_id, owner, title, document, created,
// modified, version, ttl, expires).
core::TwinRecord read_twin_columns(const sqlite::Statement& s, int first = 0) {
  core::TwinRecord t;
  t.id = std::string(s.text(first));
  t.system_id = std::string(s.text(first + 1));
  t.owner = core::PrincipalId(std::string(s.text(first + 2)));
  t.title = text_column(s, first + 3, fmt::format("the title of twin '{}'", t.id));
  t.created = core::from_unix_micros(s.integer(first + 5));
  t.modified = core::from_unix_micros(s.integer(first + 6));
  t.version = s.integer(first + 7);
  if (!s.is_null(first + 8)) t.ttl_seconds = s.integer(first + 8);
  if (!s.is_null(first + 9)) t.expires = core::from_unix_micros(s.integer(first + 9));
  return t;
}

core::TwinRecord read_twin(const sqlite::Statement& s) {
  auto t = read_twin_columns(s);
  if (auto doc = parse_stored_json(s.text(4), fmt::format("the document of twin '{}'", t.id));
      doc.is_object())
    t.document = std::move(doc.get_object());
  return t;
}

// A twin whose id is not valid UTF-8 (stored by an older binary) is skipped: its id cannot be served, and a
// repaired id would name no twin (or two). Logged with the statement that removes it.
bool servable_twin_id(std::string_view id) {
  if (core::is_valid_utf8(id)) return true;
  std::string hex;
  for (unsigned char c : id) hex += fmt::format("{:02X}", c);
  spdlog::error(
      "store: twin with id X'{}' is skipped: its id is not valid UTF-8 (stored by an older "
      "twinbridge); remove it with: DELETE FROM twins WHERE id = CAST(X'{}' AS TEXT)",
      hex, hex);
  return false;
}

Result<std::int64_t> twin_version(Connection& db, const std::string& id) {
  auto s = db.prepare("SELECT version FROM twins WHERE id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return core::fail(Errc::not_found, fmt::format("twin '{}' does not exist", id));
  return s->integer(0);
}

// The stored twin (writer connection); not_found when there is none.
Result<core::TwinRecord> twin_row(Connection& db, const std::string& id) {
  auto s = db.prepare(
      "SELECT id, system_id, owner, title, document, created, modified, version, ttl, expires FROM twins "
      "WHERE id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return core::fail(Errc::not_found, fmt::format("twin '{}' does not exist", id));
  return read_twin(*s);
}

// Inserts or updates a twin; `pointer` names the twin in a conflict error.
Result<void> write_twin(Connection& db, const core::TwinRecord& t, bool insert, const std::string& pointer) {
  if (insert) {
    if (auto ok = expect_live_owner(db, t.owner); !ok) return ok;
  }
  auto s = insert
               ? db.prepare(
                     "INSERT INTO twins(id, system_id, owner, title, document, created, modified, version, "
                     "ttl, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
               : db.prepare(
                     "UPDATE twins SET system_id = ?2, owner = ?3, title = ?4, document = ?5, created = ?6, "
                     "modified = ?7, version = ?8, ttl = ?9, expires = ?10 WHERE id = ?1");
  if (!s) return std::unexpected(s.error());
  std::optional<std::int64_t> expires;
  if (t.expires) expires = core::to_unix_micros(*t.expires);
  s->bind(1, t.id)
      .bind(2, t.system_id)
      .bind(3, t.owner.str())
      .bind(4, t.title)
      .bind(5, json_text(t.document))
      .bind(6, core::to_unix_micros(t.created))
      .bind(7, core::to_unix_micros(t.modified))
      .bind(8, t.version)
      .bind(9, t.ttl_seconds)
      .bind(10, expires);
  auto ok = s->run();
  if (!ok && ok.error().code == Errc::conflict) {
    return core::fail_at(
        Errc::conflict, pointer,
        fmt::format("a twin with id '{}' is registered already (ids are unique across systems)", t.id));
  }
  return ok;
}

// Reads the rows of `s` (run with LIMIT limit + 1) into a page of at most `limit` items; the extra row only
// says that more follow, and `key` gives the cursor of the last item returned.
template <class T, class Read, class Key>
Result<Page<T>> read_page(sqlite::Statement& s, std::size_t limit, Read read, Key key) {
  Page<T> out;
  for (;;) {
    auto row = s.step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    if (out.items.size() == limit) {
      out.next_after = key(out.items.back());
      break;
    }
    out.items.push_back(read(s));
  }
  return out;
}

// Succeeds when `current` (a stored version) equals `expected`, or when no version is expected.
Result<void> expect_version(const Result<std::int64_t>& current, std::optional<std::int64_t> expected,
                            const std::string& what) {
  if (!current) return std::unexpected(current.error());
  if (expected && *current != *expected) {
    return core::fail(Errc::precondition_failed,
                      fmt::format("{} is at version {}, not {}", what, *current, *expected));
  }
  return {};
}

Result<std::int64_t> principal_version(Connection& db, const core::PrincipalId& id) {
  auto s = db.prepare("SELECT version FROM principals WHERE id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, id.str());
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return core::fail(Errc::not_found, fmt::format("principal '{}' does not exist", id.str()));
  return s->integer(0);
}

class ScopedTimer {
 public:
  ScopedTimer(StoreObserver* observer, std::string_view op)
      : observer_(observer), op_(op), start_(std::chrono::steady_clock::now()) {}
  ~ScopedTimer() {
    if (observer_ != nullptr) observer_->on_read(op_, std::chrono::steady_clock::now() - start_);
  }
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  StoreObserver* observer_;
  std::string_view op_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

// A read connection borrowed from the pool for the duration of one read.
class SqliteStore::ReadLease {
 public:
  ReadLease(SqliteStore& store, std::unique_ptr<Connection> conn) : store_(&store), conn_(std::move(conn)) {}
  ReadLease(ReadLease&& other) noexcept = default;
  ReadLease& operator=(ReadLease&&) = delete;
  ~ReadLease() {
    if (conn_) store_->release(std::move(conn_));
  }
  Connection* operator->() const { return conn_.get(); }
  Connection& operator*() const { return *conn_; }

 private:
  SqliteStore* store_;
  std::unique_ptr<Connection> conn_;
};

int SqliteStore::schema_version() {
  return kMigrations.back().version;
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(SqliteOptions options, StoreObserver* observer) {
  if (options.synchronous != "FULL" && options.synchronous != "NORMAL" && options.synchronous != "EXTRA") {
    return core::fail(
        Errc::validation_failed,
        fmt::format("store synchronous mode '{}' is not FULL, EXTRA or NORMAL", options.synchronous));
  }
  std::error_code ec;
  if (options.path.has_parent_path()) std::filesystem::create_directories(options.path.parent_path(), ec);
  if (ec) {
    return core::fail(Errc::unavailable, fmt::format("cannot create data directory {}: {}",
                                                     options.path.parent_path().string(), ec.message()));
  }
  auto writer = Connection::open(options.path.string(), false, options.synchronous);
  if (!writer) return std::unexpected(writer.error());
  if (auto ok = migrate(**writer); !ok) return std::unexpected(ok.error());
  options.keep_changes = std::max<std::int64_t>(options.keep_changes, 1);
  auto last = (*writer)->prepare("SELECT COALESCE(MAX(seq), 0) FROM changes");
  if (!last) return std::unexpected(last.error());
  if (auto row = last->step(); !row) return std::unexpected(row.error());
  const auto last_seq = last->integer(0);
  auto store =
      std::unique_ptr<SqliteStore>(new SqliteStore(std::move(options), observer, std::move(*writer)));
  store->last_seq_ = last_seq;
  return store;
}

SqliteStore::SqliteStore(SqliteOptions options, StoreObserver* observer, std::unique_ptr<Connection> writer)
    : options_(std::move(options)), observer_(observer), writer_conn_(std::move(writer)) {}

SqliteStore::~SqliteStore() {
  stop();
}

void SqliteStore::start() {
  std::lock_guard lock(queue_mutex_);
  if (writer_.joinable()) return;
  accepting_ = true;
  stopping_ = false;
  if (!checkpointer_.joinable()) {
    if (auto conn = Connection::open(options_.path.string(), false, options_.synchronous); conn) {
      checkpoint_conn_ = std::move(*conn);
      {
        std::lock_guard checkpoint_lock(checkpoint_mutex_);
        checkpoint_stopping_ = false;
      }
      // Replaces SQLite's automatic checkpoint (itself a WAL hook) on the writer's connection.
      sqlite3_wal_hook(writer_conn_->handle(), &SqliteStore::on_wal, this);
      checkpointer_ = std::thread([this] { checkpoint_loop(); });
    } else {
      spdlog::warn("store: no connection for background checkpoints ({}); the writer checkpoints itself",
                   conn.error().detail);
    }
  }
  writer_ = std::thread([this] { writer_loop(); });
}

int SqliteStore::on_wal(void* self, sqlite3* db, const char* name, int pages) {
  auto* store = static_cast<SqliteStore*>(self);
  if (pages >= kCheckpointPagesForWriter) {
    // The checkpointer never caught the WAL's end between two commits (SQLite restarts the WAL only after a
    // checkpoint copied every page), so it grew: the writer copies it, with no commit appending meanwhile.
    // Best effort: busy while the checkpointer runs (then the next commit tries again).
    (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    return SQLITE_OK;
  }
  if (pages >= kCheckpointPages && !store->checkpoint_asked_.exchange(true)) {
    { std::lock_guard lock(store->checkpoint_mutex_); }  // the checkpointer is waiting or will see the flag
    store->checkpoint_cv_.notify_one();
  }
  return SQLITE_OK;
}

void SqliteStore::checkpoint_loop() {
  std::optional<std::chrono::steady_clock::time_point> warned;  // a failing disk is said once a minute
  for (;;) {
    {
      std::unique_lock lock(checkpoint_mutex_);
      checkpoint_cv_.wait(lock, [&] { return checkpoint_stopping_ || checkpoint_asked_.load(); });
      if (checkpoint_stopping_) return;
    }
    checkpoint_asked_ = false;
    // PASSIVE: copies what no reader still needs, waits for no one; the writer restarts the WAL at its next
    // commit once every page was copied.
    const int rc = sqlite3_wal_checkpoint_v2(checkpoint_conn_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                             nullptr, nullptr);
    const auto now = std::chrono::steady_clock::now();
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && (!warned || now - *warned >= std::chrono::minutes(1))) {
      warned = now;
      spdlog::warn("store: WAL checkpoint failed: {}", sqlite3_errmsg(checkpoint_conn_->handle()));
    }
  }
}

void SqliteStore::stop() {
  {
    std::lock_guard lock(queue_mutex_);
    accepting_ = false;
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (checkpointer_.joinable()) {
    {
      std::lock_guard lock(checkpoint_mutex_);
      checkpoint_stopping_ = true;
    }
    checkpoint_cv_.notify_one();
    checkpointer_.join();
    sqlite3_wal_hook(writer_conn_->handle(), nullptr, nullptr);
    sqlite3_wal_autocheckpoint(writer_conn_->handle(), kCheckpointPages);
    checkpoint_conn_.reset();
  }
  // Anything queued before start() or after the writer left: refuse it, so no caller waits forever.
  std::deque<PendingWrite> left;
  {
    std::lock_guard lock(queue_mutex_);
    left.swap(queue_);
  }
  for (auto& w : left) w.complete(core::fail(Errc::unavailable, "the store is shutting down"));
}

void SqliteStore::enqueue(PendingWrite write) {
  {
    std::unique_lock lock(queue_mutex_);
    if (!accepting_) {
      lock.unlock();
      write.complete(core::fail(Errc::unavailable, "the store is not accepting writes (shutting down)"));
      return;
    }
    if (queue_.size() >= options_.max_queue) {
      lock.unlock();
      Error e(Errc::unavailable, "the store's write queue is full; retry shortly");
      e.retry_after_seconds = 1;
      write.complete(std::unexpected(std::move(e)));
      return;
    }
    queue_.push_back(std::move(write));
  }
  queue_cv_.notify_one();
}

template <class T>
void SqliteStore::submit(std::move_only_function<Result<T>(Connection&, ChangeLog&)> apply,
                         Completion<T> done) {
  auto slot = std::make_shared<std::optional<Result<T>>>();
  PendingWrite w;
  w.apply = [slot, apply = std::move(apply)](Connection& db, ChangeLog& log) mutable -> Result<void> {
    *slot = apply(db, log);
    if (!slot->value()) return std::unexpected(slot->value().error());
    return {};
  };
  w.complete = [slot, done = std::move(done)](Result<void> outcome) mutable {
    if (!outcome || !slot->has_value()) {
      done(std::unexpected(outcome ? Error(Errc::internal, "write was not applied") : outcome.error()));
      return;
    }
    done(std::move(**slot));
  };
  enqueue(std::move(w));
}

void SqliteStore::writer_loop() {
  std::vector<PendingWrite> batch;
  for (;;) {
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      const auto n = std::min(queue_.size(), options_.max_batch);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    commit_batch(batch);
    batch.clear();
  }
}

void SqliteStore::commit_batch(std::vector<PendingWrite>& batch) {
  const auto start = std::chrono::steady_clock::now();
  Connection& db = *writer_conn_;
  std::vector<Result<void>> results;
  results.reserve(batch.size());
  ChangeLog log(db, last_seq_);
  Result<void> txn = db.run("BEGIN IMMEDIATE");
  if (txn) {
    for (auto& w : batch) {
      if (auto sp = db.run("SAVEPOINT w"); !sp) {
        results.emplace_back(std::unexpected(sp.error()));
        continue;
      }
      const auto mark = log.mark();
      auto r = w.apply(db, log);
      if (!r) {
        (void)db.run("ROLLBACK TO w");
        log.roll_back_to(mark);
      }
      (void)db.run("RELEASE w");
      results.push_back(std::move(r));
      if (sqlite3_get_autocommit(db.handle()) != 0) {
        // SQLite rolled the whole transaction back by itself (disk full, I/O error, out of memory): nothing
        // of this batch is stored, so the rest must not run outside a transaction, and every write of it
        // fails.
        txn = core::fail(Errc::unavailable,
                         "the store's transaction was rolled back: " +
                             (results.back() ? std::string("by SQLite") : results.back().error().detail));
        break;
      }
    }
    // The feed keeps its newest keep_changes changes; older ones go, a few thousand at a time.
    if (txn && log.last() - options_.keep_changes - pruned_upto_ >= kPruneStep) {
      auto prune = db.prepare("DELETE FROM changes WHERE seq <= ?1");
      if (prune) {
        prune->bind(1, log.last() - options_.keep_changes);
        if (prune->run()) pruned_upto_ = log.last() - options_.keep_changes;
      }
    }
    if (txn) txn = db.run("COMMIT");
    if (!txn && sqlite3_get_autocommit(db.handle()) == 0) (void)db.run("ROLLBACK");
  }
  if (!txn) {
    spdlog::error("store: commit of {} writes failed: {} {}", batch.size(), txn.error().detail,
                  txn.error().log_detail);
    log.clear(last_seq_);
  }
  last_seq_ = log.last();
  if (observer_ != nullptr) observer_->on_commit(batch.size(), std::chrono::steady_clock::now() - start);
  if (change_listener_ != nullptr && !log.changes().empty()) change_listener_->committed(log.changes());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!txn) {
      batch[i].complete(std::unexpected(txn.error()));
    } else {
      batch[i].complete(std::move(results[i]));
    }
  }
  if (change_listener_ != nullptr) change_listener_->settled();
}

Result<SqliteStore::ReadLease> SqliteStore::reader() {
  {
    std::lock_guard lock(readers_mutex_);
    if (!readers_.empty()) {
      auto conn = std::move(readers_.back());
      readers_.pop_back();
      return ReadLease(*this, std::move(conn));
    }
  }
  auto conn = Connection::open(options_.path.string(), true, options_.synchronous);
  if (!conn) return std::unexpected(conn.error());
  return ReadLease(*this, std::move(*conn));
}

void SqliteStore::release(std::unique_ptr<Connection> conn) {
  std::lock_guard lock(readers_mutex_);
  readers_.push_back(std::move(conn));
}

Result<void> SqliteStore::ping() {
  ScopedTimer timer(observer_, "ping");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare("SELECT 1");
  if (!s) return std::unexpected(s.error());
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  return {};
}

Result<core::Principal> SqliteStore::principal(const core::PrincipalId& id) {
  ScopedTimer timer(observer_, "principal");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT id, kind, name, roles, properties, disabled, created, modified, version FROM principals WHERE "
      "id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, id.str());
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return core::fail(Errc::not_found, fmt::format("principal '{}' does not exist", id.str()));
  return read_principal(*s);
}

Result<Page<core::Principal>> SqliteStore::principals(const PageRequest& page) {
  ScopedTimer timer(observer_, "principals");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT id, kind, name, roles, properties, disabled, created, modified, version FROM principals "
      "WHERE id > ?1 ORDER BY id LIMIT ?2");
  if (!s) return std::unexpected(s.error());
  const auto limit = std::clamp<std::size_t>(page.limit, 1, kMaxPageSize);
  s->bind(1, page.after).bind(2, static_cast<std::int64_t>(limit + 1));
  return read_page<core::Principal>(
      *s, limit, [](const sqlite::Statement& st) { return read_principal(st); },
      [](const core::Principal& item) { return item.id.str(); });
}

Result<std::optional<Credential>> SqliteStore::credential(const core::ApiKeyId& key_id) {
  ScopedTimer timer(observer_, "credential");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT p.id, p.kind, p.name, p.roles, p.properties, p.disabled, p.created, p.modified, p.version, "
      "k.id, k.principal_id, k.hash, k.label, k.created, k.expires "
      "FROM api_keys k JOIN principals p ON p.id = k.principal_id WHERE k.id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, key_id.str());
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<Credential>();
  return std::optional<Credential>(Credential{read_principal(*s), read_key(*s, 9)});
}

Result<std::vector<ApiKeyRecord>> SqliteStore::api_keys(const core::PrincipalId& principal) {
  ScopedTimer timer(observer_, "api_keys");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT id, principal_id, hash, label, created, expires FROM api_keys WHERE principal_id = ?1 ORDER BY "
      "id");
  if (!s) return std::unexpected(s.error());
  s->bind(1, principal.str());
  std::vector<ApiKeyRecord> out;
  for (;;) {
    auto row = s->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.push_back(read_key(*s, 0));
  }
  return out;
}

Result<Page<core::AuditEntry>> SqliteStore::audit(const AuditQuery& q) {
  ScopedTimer timer(observer_, "audit");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT seq, at, actor, actor_kind, action, target_type, target_id, request_id, detail FROM audit "
      "WHERE seq > ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR target_type = ?3) "
      "AND (?4 IS NULL OR target_id = ?4) AND (?5 IS NULL OR action = ?5) AND (?6 IS NULL OR at >= ?6) "
      "ORDER BY seq LIMIT ?7");
  if (!s) return std::unexpected(s.error());
  s->bind(1, q.after_seq);
  std::optional<std::int64_t> since;
  if (q.since) since = core::to_unix_micros(*q.since);
  const auto limit = std::clamp<std::size_t>(q.limit, 1, kMaxPageSize);
  s->bind_optional(2, q.actor)
      .bind_optional(3, q.target_type)
      .bind_optional(4, q.target_id)
      .bind_optional(5, q.action)
      .bind(6, since)
      .bind(7, static_cast<std::int64_t>(limit + 1));
  return read_page<core::AuditEntry>(
      *s, limit, [](const sqlite::Statement& st) { return read_audit(st); },
      [](const core::AuditEntry& e) { return std::to_string(e.seq); });
}

namespace {

Result<void> write_principal(Connection& db, const core::Principal& p, bool insert) {
  auto s = insert ? db.prepare(
                        "INSERT INTO principals(id, kind, name, roles, properties, disabled, created, "
                        "modified, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                  : db.prepare(
                        "UPDATE principals SET kind = ?2, name = ?3, roles = ?4, properties = ?5, "
                        "disabled = ?6, created = ?7, modified = ?8, version = ?9 WHERE id = ?1");
  if (!s) return std::unexpected(s.error());
  boost::json::array roles;
  for (const auto& r : p.roles) roles.emplace_back(r);
  s->bind(1, p.id.str())
      .bind(2, core::to_string(p.kind))
      .bind(3, p.name)
      .bind(4, json_text(roles))
      .bind(5, json_text(p.properties))
      .bind(6, std::int64_t{p.disabled ? 1 : 0})
      .bind(7, core::to_unix_micros(p.created))
      .bind(8, core::to_unix_micros(p.modified))
      .bind(9, p.version);
  auto ok = s->run();
  if (!ok && ok.error().code == Errc::conflict) {
    return core::fail_at(Errc::conflict, "/id", fmt::format("principal '{}' exists already", p.id.str()));
  }
  return ok;
}

}  // namespace

void SqliteStore::create_principal(core::Principal principal, std::optional<ApiKeyRecord> key,
                                   core::AuditEntry audit, Completion<core::Principal> done) {
  submit<core::Principal>(
      [p = std::move(principal), key = std::move(key), audit = std::move(audit)](
          Connection& db, ChangeLog& log) mutable -> Result<core::Principal> {
        p.version = 1;
        p.created = p.modified = audit.at;
        auto dead = tombstone(db, p.id.str());
        if (!dead) return std::unexpected(dead.error());
        if (*dead) {
          return core::fail_at(Errc::conflict, "/id",
                               fmt::format("principal id '{}' belonged to a principal deleted at {}; the ids "
                                           "of deleted principals are never reused",
                                           p.id.str(), core::format_rfc3339(**dead)));
        }
        if (auto ok = write_principal(db, p, true); !ok) return std::unexpected(ok.error());
        if (key) {
          if (auto ok = insert_key(db, *key); !ok) return std::unexpected(ok.error());
        }
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        if (auto ok = log.add(principal_change(ChangeType::principal_created, audit.at, {.id = p.id},
                                               {{"id", p.id.str()}, {"kind", core::to_string(p.kind)}}));
            !ok) {
          return std::unexpected(ok.error());
        }
        if (key) {
          if (auto ok = log.add(principal_change(ChangeType::key_added, audit.at, {.id = p.id},
                                                 {{"principal", p.id.str()}, {"key", key->id.str()}}));
              !ok) {
            return std::unexpected(ok.error());
          }
        }
        return p;
      },
      std::move(done));
}

void SqliteStore::update_principal(core::Principal principal, std::int64_t expected_version,
                                   core::AuditEntry audit, Completion<core::Principal> done) {
  submit<core::Principal>(
      [p = std::move(principal), expected_version, audit = std::move(audit)](
          Connection& db, ChangeLog& log) mutable -> Result<core::Principal> {
        if (auto ok = expect_version(principal_version(db, p.id), expected_version,
                                     fmt::format("principal '{}'", p.id.str()));
            !ok) {
          return std::unexpected(ok.error());
        }
        p.version = expected_version + 1;
        p.modified = audit.at;
        if (auto ok = write_principal(db, p, false); !ok) return std::unexpected(ok.error());
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        if (auto ok = log.add(principal_change(ChangeType::principal_updated, audit.at,
                                               {.id = p.id, .principal = p},
                                               {{"id", p.id.str()},
                                                {"kind", core::to_string(p.kind)},
                                                {"version", p.version},
                                                {"disabled", p.disabled}}));
            !ok) {
          return std::unexpected(ok.error());
        }
        return p;
      },
      std::move(done));
}

void SqliteStore::delete_principal(core::PrincipalId id, std::optional<std::int64_t> expected_version,
                                   core::AuditEntry audit, Completion<void> done) {
  submit<void>(
      [id = std::move(id), expected_version, audit = std::move(audit)](Connection& db,
                                                                       ChangeLog& log) -> Result<void> {
        if (auto ok = expect_version(principal_version(db, id), expected_version,
                                     fmt::format("principal '{}'", id.str()));
            !ok) {
          return std::unexpected(ok.error());
        }
        // Ownership never passes silently: what it owns is transferred or deleted first.
        auto owned = owned_registrations(db, id);
        if (!owned) return std::unexpected(owned.error());
        if (!owned->empty()) {
          return core::fail(Errc::conflict,
                            fmt::format("principal '{}' owns registrations: {}", id.str(), describe(*owned)));
        }
        auto s = db.prepare("DELETE FROM principals WHERE id = ?1");
        if (!s) return std::unexpected(s.error());
        s->bind(1, id.str());
        if (auto ok = s->run(); !ok) return ok;
        auto grave = db.prepare("INSERT OR REPLACE INTO principal_tombstones(id, deleted) VALUES (?1, ?2)");
        if (!grave) return std::unexpected(grave.error());
        grave->bind(1, id.str()).bind(2, core::to_unix_micros(audit.at));
        if (auto ok = grave->run(); !ok) return ok;
        // Its selections go with it (they are its own, not registrations others use).
        auto selections = db.prepare("DELETE FROM selections WHERE owner = ?1 RETURNING id");
        if (!selections) return std::unexpected(selections.error());
        selections->bind(1, id.str());
        std::vector<std::string> gone;
        for (;;) {
          auto row = selections->step();
          if (!row) return std::unexpected(row.error());
          if (!*row) break;
          gone.emplace_back(selections->text(0));
        }
        for (const auto& selection : gone) {
          if (auto ok = log.add(make_change(ChangeType::selection_deleted, audit.at, selection,
                                            boost::json::object{{"owner", id.str()}, {"id", selection}}));
              !ok) {
            return ok;
          }
        }
        if (auto ok = insert_audit(db, audit); !ok) return ok;
        return log.add(principal_change(ChangeType::principal_deleted, audit.at, {.id = id, .deleted = true},
                                        {{"id", id.str()}}));
      },
      std::move(done));
}

Result<OwnedRegistrations> SqliteStore::owned_by(const core::PrincipalId& principal) {
  ScopedTimer timer(observer_, "owned_by");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  return owned_registrations(**db, principal);
}

void SqliteStore::transfer_registrations(core::PrincipalId from, core::PrincipalId to, core::AuditEntry audit,
                                         Completion<OwnedRegistrations> done) {
  submit<OwnedRegistrations>(
      [from = std::move(from), to = std::move(to), audit = std::move(audit)](
          Connection& db, ChangeLog& log) -> Result<OwnedRegistrations> {
        if (from == to) {
          return core::fail_at(
              Errc::bad_request, "/to",
              fmt::format("registrations of '{}' cannot be transferred to itself", to.str()));
        }
        if (auto v = principal_version(db, from); !v) return std::unexpected(v.error());
        if (auto v = principal_version(db, to); !v) {
          auto e = v.error();
          if (e.code == Errc::not_found) e.fields.push_back({"/to", e.detail});
          return std::unexpected(std::move(e));
        }
        auto owned = owned_registrations(db, from);
        if (!owned) return std::unexpected(owned.error());
        // The twins of its twin systems first (found through the systems it still owns), and its directory
        // twins.
        auto twins = db.prepare(
            "UPDATE twins SET owner = ?2 WHERE owner = ?1 OR system_id IN "
            "(SELECT id FROM systems WHERE kind = 'twin-system' AND owner = ?1) "
            "RETURNING id, system_id, owner, title, document, created, modified, version, ttl, expires");
        if (!twins) return std::unexpected(twins.error());
        twins->bind(1, from.str()).bind(2, to.str());
        for (;;) {
          auto row = twins->step();
          if (!row) return std::unexpected(row.error());
          if (!*row) break;
          const auto twin = read_twin(*twins);
          if (auto ok = log.add(twin_change(ChangeType::thing_transferred, audit.at, twin,
                                            boost::json::object{{"id", twin.id}, {"owner", to.str()}}));
              !ok) {
            return std::unexpected(ok.error());
          }
        }
        auto systems = db.prepare(
            "UPDATE systems SET owner = ?2, version = version + 1, modified = ?3 WHERE owner = ?1 "
            "RETURNING kind, id, type, name, owner, body, status, status_reason, status_since, created, "
            "modified, version");
        if (!systems) return std::unexpected(systems.error());
        systems->bind(1, from.str()).bind(2, to.str()).bind(3, core::to_unix_micros(audit.at));
        for (;;) {
          auto row = systems->step();
          if (!row) return std::unexpected(row.error());
          if (!*row) break;
          const auto system = read_system(*systems);
          if (auto ok = log.add(
                  system_change(ChangeType::system_updated, audit.at, system.kind, system.id, &system));
              !ok) {
            return std::unexpected(ok.error());
          }
        }
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        return std::move(*owned);
      },
      std::move(done));
}

void SqliteStore::add_api_key(ApiKeyRecord key, core::AuditEntry audit, Completion<ApiKeyRecord> done) {
  submit<ApiKeyRecord>(
      [key = std::move(key), audit = std::move(audit)](Connection& db,
                                                       ChangeLog& log) -> Result<ApiKeyRecord> {
        if (auto v = principal_version(db, key.principal); !v) return std::unexpected(v.error());
        if (auto ok = insert_key(db, key); !ok) return std::unexpected(ok.error());
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        if (auto ok = log.add(principal_change(ChangeType::key_added, audit.at, {.id = key.principal},
                                               {{"principal", key.principal.str()}, {"key", key.id.str()}}));
            !ok) {
          return std::unexpected(ok.error());
        }
        return key;
      },
      std::move(done));
}

void SqliteStore::revoke_api_key(core::PrincipalId principal, core::ApiKeyId key, core::AuditEntry audit,
                                 Completion<void> done) {
  submit<void>(
      [principal = std::move(principal), key = std::move(key), audit = std::move(audit)](
          Connection& db, ChangeLog& log) -> Result<void> {
        auto s = db.prepare("DELETE FROM api_keys WHERE id = ?1 AND principal_id = ?2");
        if (!s) return std::unexpected(s.error());
        s->bind(1, key.str()).bind(2, principal.str());
        if (auto ok = s->run(); !ok) return ok;
        if (db.changes() == 0) {
          return core::fail(Errc::not_found,
                            fmt::format("principal '{}' has no API key '{}'", principal.str(), key.str()));
        }
        if (auto ok = insert_audit(db, audit); !ok) return ok;
        return log.add(principal_change(ChangeType::key_revoked, audit.at,
                                        {.id = principal, .revoked_key = key},
                                        {{"principal", principal.str()}, {"key", key.str()}}));
      },
      std::move(done));
}

Result<core::SystemRecord> SqliteStore::system(core::SystemKind kind, const std::string& id) {
  ScopedTimer timer(observer_, "system");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT kind, id, type, name, owner, body, status, status_reason, status_since, created, modified, "
      "version "
      "FROM systems WHERE kind = ?1 AND id = ?2");
  if (!s) return std::unexpected(s.error());
  s->bind(1, core::to_string(kind)).bind(2, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row)
    return core::fail(Errc::not_found, fmt::format("{} '{}' does not exist", core::to_string(kind), id));
  return read_system(*s);
}

namespace {

const char* sort_column(SystemSort sort) {
  switch (sort) {
    case SystemSort::id:
      return "id";
    case SystemSort::name:
      return "name";
    case SystemSort::type:
      return "type";
    case SystemSort::status:
      return "status";
    case SystemSort::created:
      return "created";
    case SystemSort::modified:
      return "modified";
  }
  return "id";
}

Error bad_cursor() {
  Error e(Errc::bad_request, "cursor is not one that this server handed out for this sort");
  e.fields.push_back({"cursor", e.detail, core::FieldIn::query});
  return e;
}

}  // namespace

// Sorted by another member than id, or backwards: the equalities are checked on the rows of the order (the
// registry of one kind is small next to its twins); the cursor is the (value, id) of the last row.
Result<Page<core::SystemRecord>> SqliteStore::sorted_systems(const SystemQuery& q) {
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  std::optional<boost::json::value> after_key;
  std::string after_id;
  if (!q.after.empty()) {
    if (q.sort == SystemSort::id) {
      after_id = q.after;
    } else {
      boost::system::error_code ec;
      auto cursor = boost::json::parse(q.after, ec);
      const auto* a = cursor.if_array();
      if (ec || a == nullptr || a->size() != 2 || !a->at(1).is_string() ||
          !(a->at(0).is_string() || a->at(0).is_int64())) {
        return std::unexpected(bad_cursor());
      }
      after_key = a->at(0);
      after_id = std::string(a->at(1).get_string());
    }
  }
  // Every (sort, direction, cursor) has its own statement text, made once: the connection caches prepared
  // statements by the address of their text.
  static const auto kStatements = [] {
    constexpr SystemSort kSorts[] = {SystemSort::id,     SystemSort::name,    SystemSort::type,
                                     SystemSort::status, SystemSort::created, SystemSort::modified};
    std::array<std::string, 24> out;
    for (const auto sort : kSorts) {
      for (const bool descending : {false, true}) {
        for (const bool cursor : {false, true}) {
          const char* column = sort_column(sort);
          const char* dir = descending ? "DESC" : "ASC";
          std::string where =
              "kind = ?1 AND (?3 IS NULL OR type = ?3) AND (?4 IS NULL OR status = ?4) AND (?5 IS NULL OR "
              "owner = "
              "?5)";
          if (cursor) {
            where += sort == SystemSort::id
                         ? fmt::format(" AND id {} ?2", descending ? "<" : ">")
                         : fmt::format(" AND ({}, id) {} (?7, ?2)", column, descending ? "<" : ">");
          }
          out[(static_cast<std::size_t>(sort) * 2 + descending) * 2 + cursor] = fmt::format(
              "SELECT kind, id, type, name, owner, body, status, status_reason, status_since, created, "
              "modified, "
              "version FROM systems WHERE {} ORDER BY {} {}, id {} LIMIT ?6",
              where, column, dir, dir);
        }
      }
    }
    return out;
  }();
  const auto& sql = kStatements[(static_cast<std::size_t>(q.sort) * 2 + q.descending) * 2 + !q.after.empty()];
  auto s = (*db)->prepare(sql.c_str());
  if (!s) return std::unexpected(s.error());
  const auto limit = std::clamp<std::size_t>(q.limit, 1, kMaxPageSize);
  std::optional<std::string> status;
  if (q.status) status = std::string(core::to_string(*q.status));
  s->bind(1, core::to_string(q.kind))
      .bind(2, after_id)
      .bind_optional(3, q.type)
      .bind_optional(4, status)
      .bind_optional(5, q.owner);
  s->bind(6, static_cast<std::int64_t>(limit + 1));
  if (after_key) {
    if (after_key->is_int64()) {
      s->bind(7, after_key->get_int64());
    } else {
      s->bind(7, std::string(after_key->get_string()));
    }
  }
  return read_page<core::SystemRecord>(
      *s, limit, [](const sqlite::Statement& st) { return read_system(st); },
      [sort = q.sort](const core::SystemRecord& item) { return system_cursor(item, sort); });
}

Result<Page<core::SystemRecord>> SqliteStore::systems(const SystemQuery& q) {
  ScopedTimer timer(observer_, "systems");
  if (q.sort != SystemSort::id || q.descending) return sorted_systems(q);
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  // One statement per leading equality, so that SQLite walks the matching index (kind, <column>, id) instead
  // of scanning; the other equalities are checked on the rows it walks.
  static constexpr const char* kByType =
      "SELECT kind, id, type, name, owner, body, status, status_reason, status_since, created, modified, "
      "version "
      "FROM systems WHERE kind = ?1 AND type = ?3 AND id > ?2 AND (?4 IS NULL OR status = ?4) "
      "AND (?5 IS NULL OR owner = ?5) ORDER BY id LIMIT ?6";
  static constexpr const char* kByStatus =
      "SELECT kind, id, type, name, owner, body, status, status_reason, status_since, created, modified, "
      "version "
      "FROM systems WHERE kind = ?1 AND status = ?4 AND id > ?2 AND (?3 IS NULL OR type = ?3) "
      "AND (?5 IS NULL OR owner = ?5) ORDER BY id LIMIT ?6";
  static constexpr const char* kByOwner =
      "SELECT kind, id, type, name, owner, body, status, status_reason, status_since, created, modified, "
      "version "
      "FROM systems WHERE kind = ?1 AND owner = ?5 AND id > ?2 AND (?3 IS NULL OR type = ?3) "
      "AND (?4 IS NULL OR status = ?4) ORDER BY id LIMIT ?6";
  static constexpr const char* kAll =
      "SELECT kind, id, type, name, owner, body, status, status_reason, status_since, created, modified, "
      "version "
      "FROM systems WHERE kind = ?1 AND id > ?2 AND (?3 IS NULL OR type = ?3) AND (?4 IS NULL OR status = "
      "?4) "
      "AND (?5 IS NULL OR owner = ?5) ORDER BY id LIMIT ?6";
  const char* sql = q.type ? kByType : q.status ? kByStatus : q.owner ? kByOwner : kAll;
  auto s = (*db)->prepare(sql);
  if (!s) return std::unexpected(s.error());
  const auto limit = std::clamp<std::size_t>(q.limit, 1, kMaxPageSize);
  std::optional<std::string> status;
  if (q.status) status = std::string(core::to_string(*q.status));
  s->bind(1, core::to_string(q.kind))
      .bind(2, q.after)
      .bind_optional(3, q.type)
      .bind_optional(4, status)
      .bind_optional(5, q.owner);
  s->bind(6, static_cast<std::int64_t>(limit + 1));
  return read_page<core::SystemRecord>(
      *s, limit, [](const sqlite::Statement& st) { return read_system(st); },
      [](const core::SystemRecord& item) { return item.id; });
}

void SqliteStore::create_system(core::SystemRecord record, core::AuditEntry audit,
                                Completion<core::SystemRecord> done) {
  submit<core::SystemRecord>(
      [r = std::move(record), audit = std::move(audit)](
          Connection& db, ChangeLog& log) mutable -> Result<core::SystemRecord> {
        r.version = 1;
        r.created = r.modified = r.status_since = audit.at;
        if (auto ok = insert_system(db, r); !ok) return std::unexpected(ok.error());
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        if (auto ok = log.add(system_change(ChangeType::system_created, audit.at, r.kind, r.id, &r)); !ok)
          return std::unexpected(ok.error());
        return r;
      },
      std::move(done));
}

namespace {

// Replaces the stored credentials of a system (empty: none).
Result<void> write_credentials(Connection& db, core::SystemKind kind, const std::string& id,
                               const SystemCredentials& credentials) {
  auto s = credentials.by_scheme.empty()
               ? db.prepare("DELETE FROM system_credentials WHERE kind = ?1 AND system_id = ?2")
               : db.prepare(
                     "INSERT INTO system_credentials(kind, system_id, document) VALUES (?1, ?2, ?3) "
                     "ON CONFLICT(kind, system_id) DO UPDATE SET document = excluded.document");
  if (!s) return std::unexpected(s.error());
  s->bind(1, core::to_string(kind)).bind(2, id);
  if (!credentials.by_scheme.empty()) s->bind(3, json_text(credentials.by_scheme));
  return s->run();
}

// The write of update_system; with `credentials`, they replace the stored ones in the same transaction.
auto system_update(core::SystemRecord record, std::int64_t expected_version,
                   std::optional<SystemCredentials> credentials, core::AuditEntry audit) {
  return [r = std::move(record), expected_version, credentials = std::move(credentials),
          audit = std::move(audit)](Connection& db, ChangeLog& log) mutable -> Result<core::SystemRecord> {
    if (auto ok = expect_version(system_version(db, r.kind, r.id), expected_version,
                                 fmt::format("{} '{}'", core::to_string(r.kind), r.id));
        !ok) {
      return std::unexpected(ok.error());
    }
    r.version = expected_version + 1;
    r.modified = audit.at;
    if (auto ok = update_system_row(db, r); !ok) return std::unexpected(ok.error());
    if (credentials) {
      if (auto ok = write_credentials(db, r.kind, r.id, *credentials); !ok)
        return std::unexpected(ok.error());
    }
    if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
    if (auto ok = log.add(system_change(ChangeType::system_updated, audit.at, r.kind, r.id, &r)); !ok)
      return std::unexpected(ok.error());
    return r;
  };
}

}  // namespace

void SqliteStore::update_system(core::SystemRecord record, std::int64_t expected_version,
                                core::AuditEntry audit, Completion<core::SystemRecord> done) {
  submit<core::SystemRecord>(
      system_update(std::move(record), expected_version, std::nullopt, std::move(audit)), std::move(done));
}

void SqliteStore::update_system(core::SystemRecord record, std::int64_t expected_version,
                                SystemCredentials credentials, core::AuditEntry audit,
                                Completion<core::SystemRecord> done) {
  submit<core::SystemRecord>(
      system_update(std::move(record), expected_version, std::move(credentials), std::move(audit)),
      std::move(done));
}

Result<std::optional<SystemCredentials>> SqliteStore::system_credentials(core::SystemKind kind,
                                                                         const std::string& id) {
  ScopedTimer timer(observer_, "system_credentials");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare("SELECT document FROM system_credentials WHERE kind = ?1 AND system_id = ?2");
  if (!s) return std::unexpected(s.error());
  s->bind(1, core::to_string(kind)).bind(2, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<SystemCredentials>();
  SystemCredentials out;
  // Not through parse_json_column: its log lines name the column, and nothing of a secret is logged.
  boost::system::error_code ec;
  auto document = core::read_json(s->text(0), ec);
  if (ec || !document.is_object())
    return core::fail(Errc::internal,
                      fmt::format("the stored credentials of system '{}' cannot be read", id));
  out.by_scheme = std::move(document.get_object());
  return std::optional<SystemCredentials>(std::move(out));
}

void SqliteStore::delete_system(core::SystemKind kind, std::string id,
                                std::optional<std::int64_t> expected_version, core::AuditEntry audit,
                                Completion<std::vector<std::string>> done) {
  submit<std::vector<std::string>>(
      [kind, id = std::move(id), expected_version, audit = std::move(audit)](
          Connection& db, ChangeLog& log) -> Result<std::vector<std::string>> {
        if (auto ok = expect_version(system_version(db, kind, id), expected_version,
                                     fmt::format("{} '{}'", core::to_string(kind), id));
            !ok) {
          return std::unexpected(ok.error());
        }
        // The system row, then what belongs to it.
        for (const char* sql : {"DELETE FROM systems WHERE kind = ?1 AND id = ?2",
                                "DELETE FROM system_probes WHERE kind = ?1 AND system_id = ?2",
                                "DELETE FROM system_status_history WHERE kind = ?1 AND system_id = ?2",
                                "DELETE FROM system_credentials WHERE kind = ?1 AND system_id = ?2"}) {
          auto s = db.prepare(sql);
          if (!s) return std::unexpected(s.error());
          s->bind(1, core::to_string(kind)).bind(2, id);
          if (auto ok = s->run(); !ok) return std::unexpected(ok.error());
        }
        std::vector<std::string> removed;
        if (kind == core::SystemKind::twin) {
          auto twins = db.prepare("DELETE FROM twins WHERE system_id = ?1 RETURNING id");
          if (!twins) return std::unexpected(twins.error());
          twins->bind(1, id);
          for (;;) {
            auto row = twins->step();
            if (!row) return std::unexpected(row.error());
            if (!*row) break;
            removed.emplace_back(twins->text(0));
          }
          for (const auto& twin : removed) {
            for (const char* sql :
                 {"DELETE FROM twin_state WHERE twin_id = ?1", "DELETE FROM twin_policies WHERE twin_id = ?1",
                  "DELETE FROM twin_acquisitions WHERE twin_id = ?1"}) {
              auto s = db.prepare(sql);
              if (!s) return std::unexpected(s.error());
              s->bind(1, twin);
              if (auto ok = s->run(); !ok) return std::unexpected(ok.error());
            }
          }
        }
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        // The twins first: a consumer that follows systems never sees twins of a system it forgot.
        for (const auto& twin : removed) {
          if (auto ok = log.add(
                  make_change(ChangeType::thing_deleted, audit.at, twin, boost::json::object{{"id", twin}}));
              !ok) {
            return std::unexpected(ok.error());
          }
        }
        if (auto ok = log.add(system_change(ChangeType::system_deleted, audit.at, kind, id, nullptr)); !ok)
          return std::unexpected(ok.error());
        return removed;
      },
      std::move(done));
}

namespace {

core::StatusHistoryEntry read_history_entry(const sqlite::Statement& s) {
  core::StatusHistoryEntry e;
  e.seq = s.integer(0);
  e.at = core::from_unix_micros(s.integer(1));
  e.status = core::parse_system_status(s.text(2)).value_or(core::SystemStatus::unknown);
  e.reason = std::string(s.text(3));
  return e;
}

std::int64_t clamp_count(std::size_t n) {
  return static_cast<std::int64_t>(std::min<std::size_t>(n, INT64_MAX));
}

}  // namespace

Result<Page<core::StatusHistoryEntry>> SqliteStore::status_history(const StatusHistoryQuery& q) {
  ScopedTimer timer(observer_, "status_history");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT seq, at, status, reason FROM system_status_history "
      "WHERE kind = ?1 AND system_id = ?2 AND seq > ?3 AND (?4 IS NULL OR at >= ?4) ORDER BY seq LIMIT ?5");
  if (!s) return std::unexpected(s.error());
  const auto limit = std::clamp<std::size_t>(q.limit, 1, kMaxPageSize);
  std::optional<std::int64_t> since;
  if (q.since) since = core::to_unix_micros(*q.since);
  s->bind(1, core::to_string(q.kind))
      .bind(2, q.id)
      .bind(3, q.after_seq)
      .bind(4, since)
      .bind(5, static_cast<std::int64_t>(limit + 1));
  return read_page<core::StatusHistoryEntry>(
      *s, limit, [](const sqlite::Statement& st) { return read_history_entry(st); },
      [](const core::StatusHistoryEntry& e) { return std::to_string(e.seq); });
}

Result<std::optional<core::StatusHistoryEntry>> SqliteStore::status_before(core::SystemKind kind,
                                                                           const std::string& id,
                                                                           core::Timestamp at) {
  ScopedTimer timer(observer_, "status_before");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT seq, at, status, reason FROM system_status_history "
      "WHERE kind = ?1 AND system_id = ?2 AND at <= ?3 ORDER BY seq DESC LIMIT 1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, core::to_string(kind)).bind(2, id).bind(3, core::to_unix_micros(at));
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<core::StatusHistoryEntry>();
  return std::optional<core::StatusHistoryEntry>(read_history_entry(*s));
}

Result<std::vector<core::ProbeSample>> SqliteStore::probe_samples(core::SystemKind kind,
                                                                  const std::string& id, core::Timestamp from,
                                                                  core::Timestamp to) {
  ScopedTimer timer(observer_, "probe_samples");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  // Newest first, so that the bound keeps the newest samples; reversed below.
  auto s = (*db)->prepare(
      "SELECT at, ok, latency_us FROM system_probes WHERE kind = ?1 AND system_id = ?2 AND at >= ?3 AND "
      "at <= ?4 ORDER BY at DESC LIMIT ?5");
  if (!s) return std::unexpected(s.error());
  s->bind(1, core::to_string(kind))
      .bind(2, id)
      .bind(3, core::to_unix_micros(from))
      .bind(4, core::to_unix_micros(to))
      .bind(5, clamp_count(kMaxProbeSamples));
  std::vector<core::ProbeSample> out;
  for (;;) {
    auto row = s->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.push_back(core::ProbeSample{.at = core::from_unix_micros(s->integer(0)),
                                    .ok = s->integer(1) != 0,
                                    .latency = std::chrono::microseconds(s->integer(2))});
  }
  std::reverse(out.begin(), out.end());
  return out;
}

namespace {

// One check of one system (see SystemCheck); not_found when the system does not exist.
Result<void> apply_system_check(Connection& db, ChangeLog& log, const SystemCheck& c) {
  const auto kind = core::to_string(c.kind);
  if (auto v = system_version(db, c.kind, c.id); !v) return std::unexpected(v.error());
  if (c.probe) {
    auto s = db.prepare(
        "INSERT INTO system_probes(kind, system_id, at, ok, latency_us) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!s) return std::unexpected(s.error());
    s->bind(1, kind)
        .bind(2, c.id)
        .bind(3, core::to_unix_micros(c.probe->at))
        .bind(4, std::int64_t{c.probe->ok ? 1 : 0})
        .bind(5, static_cast<std::int64_t>(c.probe->latency.count()));
    if (auto ok = s->run(); !ok) return ok;
  }
  auto old_probes = db.prepare("DELETE FROM system_probes WHERE kind = ?1 AND system_id = ?2 AND at < ?3");
  if (!old_probes) return std::unexpected(old_probes.error());
  old_probes->bind(1, kind).bind(2, c.id).bind(3, core::to_unix_micros(c.keep_probes_since));
  if (auto ok = old_probes->run(); !ok) return ok;
  if (!c.change) return {};

  // The status members only: version and modified stay, they track the registration.
  auto status = db.prepare(
      "UPDATE systems SET status = ?3, status_reason = ?4, status_since = ?5 "
      "WHERE kind = ?1 AND id = ?2");
  if (!status) return std::unexpected(status.error());
  status->bind(1, kind)
      .bind(2, c.id)
      .bind(3, core::to_string(c.change->to))
      .bind(4, c.change->reason)
      .bind(5, core::to_unix_micros(c.change->at));
  if (auto ok = status->run(); !ok) return ok;
  auto entry = db.prepare(
      "INSERT INTO system_status_history(kind, system_id, at, status, reason) "
      "VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!entry) return std::unexpected(entry.error());
  entry->bind(1, kind)
      .bind(2, c.id)
      .bind(3, core::to_unix_micros(c.change->at))
      .bind(4, core::to_string(c.change->to))
      .bind(5, c.change->reason);
  if (auto ok = entry->run(); !ok) return ok;
  auto change = make_change(ChangeType::status_changed, c.change->at, c.id,
                            boost::json::object{{"kind", kind},
                                                {"id", c.id},
                                                {"from", core::to_string(c.change->from)},
                                                {"to", core::to_string(c.change->to)},
                                                {"reason", c.change->reason},
                                                {"at", core::format_rfc3339(c.change->at)}});
  change.system_kind = c.kind;
  change.status = c.change;
  if (auto ok = log.add(std::move(change)); !ok) return ok;
  // Everything up to the newest entry beyond the kept ones (none when there are not that many).
  auto old_history = db.prepare(
      "DELETE FROM system_status_history WHERE kind = ?1 AND system_id = ?2 AND seq <= "
      "(SELECT seq FROM system_status_history WHERE kind = ?1 AND system_id = ?2 "
      "ORDER BY seq DESC LIMIT 1 OFFSET ?3)");
  if (!old_history) return std::unexpected(old_history.error());
  old_history->bind(1, kind).bind(2, c.id).bind(3, clamp_count(c.keep_history));
  return old_history->run();
}

}  // namespace

void SqliteStore::record_system_check(SystemCheck check, Completion<void> done) {
  submit<void>([c = std::move(check)](
                   Connection& db, ChangeLog& log) -> Result<void> { return apply_system_check(db, log, c); },
               std::move(done));
}

void SqliteStore::record_system_checks(std::vector<SystemCheck> checks, Completion<void> done) {
  submit<void>(
      [checks = std::move(checks)](Connection& db, ChangeLog& log) -> Result<void> {
        for (const auto& c : checks) {
          // A system deregistered since its probe started has nothing to record.
          if (auto ok = apply_system_check(db, log, c); !ok && ok.error().code != Errc::not_found) return ok;
        }
        return {};
      },
      std::move(done));
}

Result<core::TwinRecord> SqliteStore::twin(const std::string& id) {
  ScopedTimer timer(observer_, "twin");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT id, system_id, owner, title, document, created, modified, version, ttl, expires FROM twins "
      "WHERE id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return core::fail(Errc::not_found, fmt::format("twin '{}' does not exist", id));
  return read_twin(*s);
}

Result<Page<core::TwinRecord>> SqliteStore::twins(const TwinQuery& q) {
  ScopedTimer timer(observer_, "twins");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  static constexpr const char* kBySystem =
      "SELECT id, system_id, owner, title, document, created, modified, version, ttl, expires FROM twins "
      "WHERE system_id = ?1 AND id > ?2 AND (?4 IS NULL OR expires IS NULL OR expires > ?4) ORDER BY id "
      "LIMIT ?3 OFFSET ?5";
  static constexpr const char* kAll =
      "SELECT id, system_id, owner, title, document, created, modified, version, ttl, expires FROM twins "
      "WHERE id > ?2 AND (?1 IS NULL OR system_id = ?1) AND (?4 IS NULL OR expires IS NULL OR expires > ?4) "
      "ORDER BY id LIMIT ?3 OFFSET ?5";
  auto s = (*db)->prepare(q.system_id ? kBySystem : kAll);
  if (!s) return std::unexpected(s.error());
  const auto limit = std::clamp<std::size_t>(q.limit, 1, kMaxPageSize);
  s->bind_optional(1, q.system_id);
  std::optional<std::int64_t> alive_at;
  if (q.alive_at) alive_at = core::to_unix_micros(*q.alive_at);
  s->bind(2, q.after)
      .bind(3, static_cast<std::int64_t>(limit + 1))
      .bind(4, alive_at)
      .bind(5, static_cast<std::int64_t>(std::min<std::size_t>(q.offset, INT64_MAX)));
  // A twin whose id is not valid UTF-8 is skipped (servable_twin_id). When a row is skipped and the
  // statement's limit + 1 rows are read, the page ends at the last row read.
  Page<core::TwinRecord> page;
  std::size_t rows = 0;
  std::string last_id;
  for (;;) {
    auto row = s->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    ++rows;
    if (page.items.size() == limit) {
      page.next_after = page.items.back().id;
      break;
    }
    const auto id = s->text(0);
    last_id = std::string(id);
    if (!servable_twin_id(id)) continue;
    page.items.push_back(read_twin(*s));
  }
  if (!page.next_after && rows == limit + 1) page.next_after = last_id;
  return page;
}

Result<void> SqliteStore::each_twin_text(std::size_t batch,
                                         const std::function<void(std::vector<TwinText>&&)>& each) {
  ScopedTimer timer(observer_, "twins");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  batch = std::clamp<std::size_t>(batch, 1, kMaxPageSize);
  std::int64_t after = std::numeric_limits<std::int64_t>::min();
  for (;;) {
    std::vector<TwinText> texts;
    texts.reserve(batch);
    std::size_t rows = 0;
    {
      // In rowid order: the table's own order, read front to back. A statement per batch (from the
      // connection's cache), done before `each` runs.
      auto s = (*db)->prepare(
          "SELECT rowid, id, system_id, owner, title, document, created, modified, version, ttl, expires "
          "FROM "
          "twins WHERE rowid > ?1 ORDER BY rowid LIMIT ?2");
      if (!s) return std::unexpected(s.error());
      s->bind(1, after).bind(2, static_cast<std::int64_t>(batch));
      for (;;) {
        auto row = s->step();
        if (!row) return std::unexpected(row.error());
        if (!*row) break;
        ++rows;
        after = s->integer(0);
        if (!servable_twin_id(s->text(1))) continue;
        texts.push_back(TwinText{read_twin_columns(*s, 1), std::string(s->text(5))});
      }
    }
    if (!texts.empty()) each(std::move(texts));
    if (rows < batch) return {};
  }
}

namespace {

// The write of register_twin_system; with `credentials`, they are stored in the same transaction.
auto twin_system_registration(core::SystemRecord record, std::vector<core::TwinRecord> twins,
                              std::optional<SystemCredentials> credentials, core::AuditEntry audit) {
  return [r = std::move(record), stored = std::move(twins), credentials = std::move(credentials),
          audit = std::move(audit)](Connection& db, ChangeLog& log) mutable -> Result<core::SystemRecord> {
    r.version = 1;
    r.created = r.modified = r.status_since = audit.at;
    if (auto ok = insert_system(db, r); !ok) return std::unexpected(ok.error());
    for (std::size_t i = 0; i < stored.size(); ++i) {
      auto& t = stored[i];
      t.version = 1;
      t.created = t.modified = audit.at;
      if (auto ok = write_twin(db, t, true, fmt::format("/twins/{}/id", i)); !ok) {
        return std::unexpected(ok.error());
      }
    }
    if (credentials) {
      if (auto ok = write_credentials(db, r.kind, r.id, *credentials); !ok)
        return std::unexpected(ok.error());
    }
    if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
    // The system first: a consumer that follows systems knows the system of each twin it hears of.
    if (auto ok = log.add(system_change(ChangeType::system_created, audit.at, r.kind, r.id, &r)); !ok)
      return std::unexpected(ok.error());
    for (const auto& t : stored) {
      if (auto ok = log.add(twin_change(ChangeType::thing_created, audit.at, t, core::to_json(t))); !ok)
        return std::unexpected(ok.error());
    }
    return r;
  };
}

}  // namespace

void SqliteStore::register_twin_system(core::SystemRecord record, std::vector<core::TwinRecord> twins,
                                       core::AuditEntry audit, Completion<core::SystemRecord> done) {
  submit<core::SystemRecord>(
      twin_system_registration(std::move(record), std::move(twins), std::nullopt, std::move(audit)),
      std::move(done));
}

void SqliteStore::register_twin_system(core::SystemRecord record, std::vector<core::TwinRecord> twins,
                                       SystemCredentials credentials, core::AuditEntry audit,
                                       Completion<core::SystemRecord> done) {
  submit<core::SystemRecord>(
      twin_system_registration(std::move(record), std::move(twins), std::move(credentials), std::move(audit)),
      std::move(done));
}

void SqliteStore::create_twin(core::TwinRecord twin, core::AuditEntry audit,
                              Completion<core::TwinRecord> done) {
  submit<core::TwinRecord>(
      [t = std::move(twin), audit = std::move(audit)](Connection& db,
                                                      ChangeLog& log) mutable -> Result<core::TwinRecord> {
        // The owning system may have been deregistered since the caller looked: then the twin has no home.
        if (!t.system_id.empty()) {
          if (auto owner = system_version(db, core::SystemKind::twin, t.system_id); !owner) {
            return std::unexpected(owner.error());
          }
        }
        t.version = 1;
        t.created = t.modified = audit.at;
        auto expired =
            db.prepare("DELETE FROM twins WHERE id = ?1 AND expires IS NOT NULL AND expires <= ?2");
        if (!expired) return std::unexpected(expired.error());
        expired->bind(1, t.id).bind(2, core::to_unix_micros(audit.at));
        if (auto ok = expired->run(); !ok) return std::unexpected(ok.error());
        if (db.changes() > 0) {
          // An expired twin is gone with its state and policy: nothing of it passes to the new twin (which
          // may be another principal's), and the feed says so before the new twin appears.
          for (const char* sql :
               {"DELETE FROM twin_state WHERE twin_id = ?1", "DELETE FROM twin_policies WHERE twin_id = ?1",
                "DELETE FROM twin_acquisitions WHERE twin_id = ?1"}) {
            auto s = db.prepare(sql);
            if (!s) return std::unexpected(s.error());
            s->bind(1, t.id);
            if (auto ok = s->run(); !ok) return std::unexpected(ok.error());
          }
          if (auto ok = log.add(
                  make_change(ChangeType::thing_deleted, audit.at, t.id, boost::json::object{{"id", t.id}}));
              !ok) {
            return std::unexpected(ok.error());
          }
        }
        if (auto ok = write_twin(db, t, true, "/id"); !ok) return std::unexpected(ok.error());
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        if (auto ok = log.add(twin_change(ChangeType::thing_created, audit.at, t, core::to_json(t))); !ok)
          return std::unexpected(ok.error());
        return t;
      },
      std::move(done));
}

void SqliteStore::update_twin(core::TwinRecord twin, std::int64_t expected_version, core::AuditEntry audit,
                              Completion<core::TwinRecord> done) {
  submit<core::TwinRecord>(
      [t = std::move(twin), expected_version, audit = std::move(audit)](
          Connection& db, ChangeLog& log) mutable -> Result<core::TwinRecord> {
        auto before = twin_row(db, t.id);
        if (auto ok = expect_version(before ? Result<std::int64_t>(before->version)
                                            : Result<std::int64_t>(std::unexpected(before.error())),
                                     expected_version, fmt::format("twin '{}'", t.id));
            !ok) {
          return std::unexpected(ok.error());
        }
        t.version = expected_version + 1;
        t.modified = audit.at;
        if (auto ok = write_twin(db, t, false, "/id"); !ok) return std::unexpected(ok.error());
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        auto patch = core::merge_diff(core::to_json(*before), core::to_json(t));
        patch.as_object()["id"] = t.id;
        if (auto ok = log.add(twin_change(ChangeType::thing_updated, audit.at, t, patch)); !ok)
          return std::unexpected(ok.error());
        return t;
      },
      std::move(done));
}

void SqliteStore::delete_twin(std::string id, std::optional<std::int64_t> expected_version,
                              core::AuditEntry audit, Completion<void> done) {
  submit<void>(
      [id = std::move(id), expected_version, audit = std::move(audit)](Connection& db,
                                                                       ChangeLog& log) -> Result<void> {
        if (auto ok = expect_version(twin_version(db, id), expected_version, fmt::format("twin '{}'", id));
            !ok) {
          return std::unexpected(ok.error());
        }
        for (const char* sql :
             {"DELETE FROM twins WHERE id = ?1", "DELETE FROM twin_state WHERE twin_id = ?1",
              "DELETE FROM twin_policies WHERE twin_id = ?1",
              "DELETE FROM twin_acquisitions WHERE twin_id = ?1"}) {
          auto s = db.prepare(sql);
          if (!s) return std::unexpected(s.error());
          s->bind(1, id);
          if (auto ok = s->run(); !ok) return ok;
        }
        if (auto ok = insert_audit(db, audit); !ok) return ok;
        return log.add(make_change(ChangeType::thing_deleted, audit.at, id, boost::json::object{{"id", id}}));
      },
      std::move(done));
}

Result<std::optional<core::TwinState>> SqliteStore::twin_state(const std::string& id) {
  ScopedTimer timer(observer_, "twin_state");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare("SELECT document FROM twin_state WHERE twin_id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<core::TwinState>();
  auto state = core::state_from_json(parse_stored_json(text_column(*s, 0, "a twin state"), "a twin state"));
  if (!state) {
    Error e(Errc::internal, fmt::format("the stored state of twin '{}' cannot be read", id));
    e.log_detail = state.error().detail;
    return std::unexpected(std::move(e));
  }
  return std::optional<core::TwinState>(std::move(*state));
}

Result<std::optional<PolicyRecord>> SqliteStore::twin_policy(const std::string& id) {
  ScopedTimer timer(observer_, "twin_policy");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare("SELECT version, document, modified FROM twin_policies WHERE twin_id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<PolicyRecord>();
  PolicyRecord p;
  p.twin_id = id;
  p.version = s->integer(0);
  auto document = parse_stored_json(text_column(*s, 1, "a policy"), "a policy");
  if (auto* doc = document.if_object()) p.document = std::move(*doc);
  p.modified = core::from_unix_micros(s->integer(2));
  return std::optional<PolicyRecord>(std::move(p));
}

void SqliteStore::write_states(std::vector<StateWrite> writes,
                               Completion<std::vector<core::Result<void>>> done) {
  submit<std::vector<core::Result<void>>>(
      [writes = std::move(writes)](Connection& db,
                                   ChangeLog& log) -> Result<std::vector<core::Result<void>>> {
        std::vector<core::Result<void>> results;
        results.reserve(writes.size());
        for (const auto& w : writes) {
          const auto& state = *w.state;
          const auto logged = [&]() -> Result<void> {
            Change c;
            c.type = ChangeType::state_changed;
            c.at = state.ingested;
            c.subject = state.id;
            c.data = w.data;
            c.state = w.state;
            return log.add(std::move(c));
          };
          std::string made;
          const auto& document = w.document.empty() ? (made = json_text(core::to_json(state))) : w.document;
          if (w.expected_version > 0) {
            // The common case in one statement: a stored state at the expected version (a twin's state row
            // leaves with the twin, so the twin exists).
            auto update = db.prepare(
                "UPDATE twin_state SET version = ?2, document = ?3 WHERE twin_id = ?1 AND version = ?4");
            if (!update) return std::unexpected(update.error());
            update->bind(1, state.id).bind(2, state.version).bind(3, document).bind(4, w.expected_version);
            if (auto ok = update->run(); !ok) return std::unexpected(ok.error());
            if (db.changes() == 1) {
              if (auto ok = logged(); !ok) return std::unexpected(ok.error());
              results.emplace_back();
              continue;
            }
          }
          // A first state, or a write that does not hold (said why below).
          auto current = db.prepare(
              "SELECT EXISTS(SELECT 1 FROM twins WHERE id = ?1), "
              "(SELECT version FROM twin_state WHERE twin_id = ?1)");
          if (!current) return std::unexpected(current.error());
          current->bind(1, state.id);
          if (auto row = current->step(); !row) return std::unexpected(row.error());
          if (current->integer(0) == 0) {
            results.push_back(core::fail(Errc::not_found, fmt::format("twin '{}' does not exist", state.id)));
            continue;
          }
          const auto stored = current->is_null(1) ? 0 : current->integer(1);
          if (stored != w.expected_version) {
            results.push_back(core::fail(Errc::precondition_failed,
                                         fmt::format("the state of twin '{}' is at version {}, not {}",
                                                     state.id, stored, w.expected_version)));
            continue;
          }
          auto put = db.prepare(
              "INSERT INTO twin_state(twin_id, version, document) VALUES (?1, ?2, ?3) "
              "ON CONFLICT(twin_id) DO UPDATE SET version = excluded.version, document = excluded.document");
          if (!put) return std::unexpected(put.error());
          put->bind(1, state.id).bind(2, state.version).bind(3, document);
          if (auto ok = put->run(); !ok) return std::unexpected(ok.error());
          if (auto ok = logged(); !ok) return std::unexpected(ok.error());
          results.emplace_back();
        }
        return results;
      },
      std::move(done));
}

void SqliteStore::put_policy(PolicyRecord record, std::optional<std::int64_t> expected_version,
                             core::AuditEntry audit, Completion<PolicyRecord> done) {
  submit<PolicyRecord>(
      [p = std::move(record), expected_version, audit = std::move(audit)](
          Connection& db, ChangeLog& log) mutable -> Result<PolicyRecord> {
        if (auto v = twin_version(db, p.twin_id); !v) return std::unexpected(v.error());
        auto current = db.prepare("SELECT version FROM twin_policies WHERE twin_id = ?1");
        if (!current) return std::unexpected(current.error());
        current->bind(1, p.twin_id);
        auto row = current->step();
        if (!row) return std::unexpected(row.error());
        const std::int64_t stored = *row ? current->integer(0) : 0;
        if (expected_version && *expected_version != stored) {
          return core::fail(Errc::precondition_failed,
                            stored == 0 ? fmt::format("twin '{}' has no policy yet", p.twin_id)
                                        : fmt::format("the policy of twin '{}' is at version {}, not {}",
                                                      p.twin_id, stored, *expected_version));
        }
        p.version = stored + 1;
        p.modified = audit.at;
        auto put = db.prepare(
            "INSERT INTO twin_policies(twin_id, version, document, modified) VALUES (?1, ?2, ?3, ?4) "
            "ON CONFLICT(twin_id) DO UPDATE SET version = excluded.version, document = excluded.document, "
            "modified = excluded.modified");
        if (!put) return std::unexpected(put.error());
        const auto document = json_text(p.document);
        put->bind(1, p.twin_id)
            .bind(2, p.version)
            .bind(3, document)
            .bind(4, core::to_unix_micros(p.modified));
        if (auto ok = put->run(); !ok) return std::unexpected(ok.error());
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        if (auto ok = log.add(make_change(ChangeType::policy_changed, audit.at, p.twin_id,
                                          boost::json::object{{"id", p.twin_id}, {"version", p.version}}));
            !ok) {
          return std::unexpected(ok.error());
        }
        return p;
      },
      std::move(done));
}

namespace {

SelectionRecord read_selection(const sqlite::Statement& s) {
  SelectionRecord r;
  r.owner = core::PrincipalId(std::string(s.text(0)));
  r.id = text_column(s, 1, "a selection's id");
  if (auto doc = parse_stored_json(s.text(2), fmt::format("the document of selection '{}'", r.id));
      doc.is_object())
    r.document = std::move(doc.get_object());
  r.created = core::from_unix_micros(s.integer(3));
  r.modified = core::from_unix_micros(s.integer(4));
  r.version = s.integer(5);
  return r;
}

Result<std::int64_t> selection_version(Connection& db, const core::PrincipalId& owner,
                                       const std::string& id) {
  auto s = db.prepare("SELECT version FROM selections WHERE owner = ?1 AND id = ?2");
  if (!s) return std::unexpected(s.error());
  s->bind(1, owner.str()).bind(2, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return core::fail(Errc::not_found, fmt::format("selection '{}' does not exist", id));
  return s->integer(0);
}

Change selection_change(const SelectionRecord& r, core::Timestamp at) {
  return make_change(ChangeType::selection_changed, at, r.id,
                     boost::json::object{{"owner", r.owner.str()}, {"id", r.id}, {"version", r.version}});
}

boost::json::object acquisition_document(const AcquisitionRecord& r) {
  boost::json::object doc;
  const auto time = [](const std::optional<core::Timestamp>& t) -> boost::json::value {
    if (!t) return nullptr;
    return boost::json::value(core::to_unix_micros(*t));
  };
  doc["values_at"] = time(r.values_at);
  doc["values_from"] = r.values_from;
  doc["failing_since"] = time(r.failing_since);
  doc["problem"] = r.problem;
  doc["permissions_at"] = time(r.permissions_at);
  doc["permissions_from"] = r.permissions_from;
  doc["permissions_answer"] = r.permissions_answer;
  return doc;
}

AcquisitionRecord read_acquisition(std::string twin_id, std::int64_t version, const boost::json::value& v) {
  AcquisitionRecord r;
  r.twin_id = std::move(twin_id);
  r.version = version;
  const auto* doc = v.if_object();
  if (doc == nullptr) return r;
  const auto time = [&](std::string_view key) -> std::optional<core::Timestamp> {
    const auto* t = doc->if_contains(key);
    if (t == nullptr || !t->is_int64()) return std::nullopt;
    return core::from_unix_micros(t->get_int64());
  };
  const auto text = [&](std::string_view key) {
    const auto* t = doc->if_contains(key);
    return t != nullptr && t->is_string() ? std::string(t->get_string()) : std::string();
  };
  r.values_at = time("values_at");
  if (const auto* from = doc->if_contains("values_from"); from != nullptr && from->is_object())
    r.values_from = from->get_object();
  r.failing_since = time("failing_since");
  r.problem = text("problem");
  r.permissions_at = time("permissions_at");
  r.permissions_from = text("permissions_from");
  if (const auto* answer = doc->if_contains("permissions_answer")) r.permissions_answer = *answer;
  return r;
}

}  // namespace

Result<std::optional<SelectionRecord>> SqliteStore::selection(const core::PrincipalId& owner,
                                                              const std::string& id) {
  ScopedTimer timer(observer_, "selection");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT owner, id, document, created, modified, version FROM selections WHERE owner = ?1 AND id = ?2");
  if (!s) return std::unexpected(s.error());
  s->bind(1, owner.str()).bind(2, id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<SelectionRecord>();
  return std::optional<SelectionRecord>(read_selection(*s));
}

Result<Page<SelectionRecord>> SqliteStore::selections(const core::PrincipalId& owner,
                                                      const PageRequest& page) {
  ScopedTimer timer(observer_, "selections");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare(
      "SELECT owner, id, document, created, modified, version FROM selections WHERE owner = ?1 AND id > ?2 "
      "ORDER BY id LIMIT ?3");
  if (!s) return std::unexpected(s.error());
  const auto limit = std::clamp<std::size_t>(page.limit, 1, kMaxPageSize);
  s->bind(1, owner.str()).bind(2, page.after).bind(3, static_cast<std::int64_t>(limit + 1));
  return read_page<SelectionRecord>(
      *s, limit, [](const sqlite::Statement& st) { return read_selection(st); },
      [](const SelectionRecord& r) { return r.id; });
}

void SqliteStore::create_selection(SelectionRecord record, core::AuditEntry audit,
                                   Completion<SelectionRecord> done) {
  submit<SelectionRecord>(
      [r = std::move(record), audit = std::move(audit)](Connection& db,
                                                        ChangeLog& log) mutable -> Result<SelectionRecord> {
        r.version = 1;
        r.created = r.modified = audit.at;
        auto s = db.prepare(
            "INSERT INTO selections(owner, id, document, created, modified, version) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
        if (!s) return std::unexpected(s.error());
        s->bind(1, r.owner.str())
            .bind(2, r.id)
            .bind(3, json_text(r.document))
            .bind(4, core::to_unix_micros(r.created))
            .bind(5, core::to_unix_micros(r.modified))
            .bind(6, r.version);
        if (auto ok = s->run(); !ok) {
          if (ok.error().code == Errc::conflict) {
            return core::fail_at(Errc::conflict, "/id",
                                 fmt::format("you have a selection '{}' already", r.id));
          }
          return std::unexpected(ok.error());
        }
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        if (auto ok = log.add(selection_change(r, audit.at)); !ok) return std::unexpected(ok.error());
        return r;
      },
      std::move(done));
}

void SqliteStore::update_selection(SelectionRecord record, std::int64_t expected_version,
                                   core::AuditEntry audit, Completion<SelectionRecord> done) {
  submit<SelectionRecord>(
      [r = std::move(record), expected_version, audit = std::move(audit)](
          Connection& db, ChangeLog& log) mutable -> Result<SelectionRecord> {
        if (auto ok = expect_version(selection_version(db, r.owner, r.id), expected_version,
                                     fmt::format("selection '{}'", r.id));
            !ok) {
          return std::unexpected(ok.error());
        }
        r.version = expected_version + 1;
        r.modified = audit.at;
        auto s = db.prepare(
            "UPDATE selections SET document = ?3, modified = ?4, version = ?5 WHERE owner = ?1 AND id = ?2 "
            "RETURNING created");
        if (!s) return std::unexpected(s.error());
        s->bind(1, r.owner.str())
            .bind(2, r.id)
            .bind(3, json_text(r.document))
            .bind(4, core::to_unix_micros(r.modified))
            .bind(5, r.version);
        auto row = s->step();
        if (!row) return std::unexpected(row.error());
        if (*row) r.created = core::from_unix_micros(s->integer(0));
        if (auto ok = s->run(); !ok) return std::unexpected(ok.error());
        if (auto ok = insert_audit(db, audit); !ok) return std::unexpected(ok.error());
        if (auto ok = log.add(selection_change(r, audit.at)); !ok) return std::unexpected(ok.error());
        return r;
      },
      std::move(done));
}

void SqliteStore::delete_selection(core::PrincipalId owner, std::string id,
                                   std::optional<std::int64_t> expected_version, core::AuditEntry audit,
                                   Completion<void> done) {
  submit<void>(
      [owner = std::move(owner), id = std::move(id), expected_version, audit = std::move(audit)](
          Connection& db, ChangeLog& log) -> Result<void> {
        if (auto ok = expect_version(selection_version(db, owner, id), expected_version,
                                     fmt::format("selection '{}'", id));
            !ok) {
          return ok;
        }
        auto s = db.prepare("DELETE FROM selections WHERE owner = ?1 AND id = ?2");
        if (!s) return std::unexpected(s.error());
        s->bind(1, owner.str()).bind(2, id);
        if (auto ok = s->run(); !ok) return ok;
        if (auto ok = insert_audit(db, audit); !ok) return ok;
        return log.add(make_change(ChangeType::selection_deleted, audit.at, id,
                                   boost::json::object{{"owner", owner.str()}, {"id", id}}));
      },
      std::move(done));
}

Result<std::optional<AcquisitionRecord>> SqliteStore::acquisition(const std::string& twin_id) {
  ScopedTimer timer(observer_, "acquisition");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare("SELECT version, document FROM twin_acquisitions WHERE twin_id = ?1");
  if (!s) return std::unexpected(s.error());
  s->bind(1, twin_id);
  auto row = s->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<AcquisitionRecord>();
  return std::optional<AcquisitionRecord>(
      read_acquisition(twin_id, s->integer(0), parse_stored_json(s->text(1), "an acquisition record")));
}

void SqliteStore::record_acquisition(AcquisitionRecord record, Completion<AcquisitionRecord> done) {
  submit<AcquisitionRecord>(
      [r = std::move(record)](Connection& db, ChangeLog&) mutable -> Result<AcquisitionRecord> {
        if (auto v = twin_version(db, r.twin_id); !v) return std::unexpected(v.error());
        auto s = db.prepare(
            "INSERT INTO twin_acquisitions(twin_id, version, document) VALUES (?1, 1, ?2) "
            "ON CONFLICT(twin_id) DO UPDATE SET version = version + 1, document = excluded.document "
            "RETURNING version");
        if (!s) return std::unexpected(s.error());
        s->bind(1, r.twin_id).bind(2, json_text(acquisition_document(r)));
        auto row = s->step();
        if (!row) return std::unexpected(row.error());
        if (*row) r.version = s->integer(0);
        if (auto ok = s->run(); !ok) return std::unexpected(ok.error());
        return r;
      },
      std::move(done));
}

Result<ChangeWindow> SqliteStore::change_window() {
  ScopedTimer timer(observer_, "change_window");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s = (*db)->prepare("SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM changes");
  if (!s) return std::unexpected(s.error());
  if (auto row = s->step(); !row) return std::unexpected(row.error());
  ChangeWindow w;
  w.last = s->integer(1);
  w.first = s->integer(0) == 0 ? w.last + 1 : s->integer(0);
  return w;
}

Result<std::vector<Change>> SqliteStore::changes(std::int64_t after_seq, std::size_t limit) {
  ScopedTimer timer(observer_, "changes");
  auto db = reader();
  if (!db) return std::unexpected(db.error());
  auto s =
      (*db)->prepare("SELECT seq, at, type, subject, data FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2");
  if (!s) return std::unexpected(s.error());
  s->bind(1, after_seq).bind(2, static_cast<std::int64_t>(std::min(limit, kMaxPageSize)));
  std::vector<Change> out;
  for (;;) {
    auto row = s->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    Change c;
    c.seq = s->integer(0);
    c.at = core::from_unix_micros(s->integer(1));
    const auto type = parse_change_type(s->text(2));
    if (!type) {
      spdlog::error("store: change {} has the unknown type '{}'; skipped", c.seq, s->text(2));
      continue;
    }
    c.type = *type;
    c.subject = text_column(*s, 3, "a change's subject");
    c.data = text_column(*s, 4, "a change's data");
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace twinbridge::store
