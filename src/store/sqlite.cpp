#include "store/sqlite.hpp"

#include <fmt/format.h>

namespace twinbridge::store::sqlite {

using core::Errc;

core::Error error_from(sqlite3* db, int rc, std::string_view context) {
  const int primary = rc & 0xff;
  const std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  Errc code = Errc::internal;
  if (primary == SQLITE_CONSTRAINT) code = Errc::conflict;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_IOERR ||
      primary == SQLITE_FULL || primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY) {
    code = Errc::unavailable;
  }
  // SQLite's message (and the context, which may quote it) goes to the log only: clients learn what kind of
  // failure it was, and find the rest in the log under the request id of their problem document.
  core::Error e(code, code == Errc::conflict ? "the store refused a conflicting change"
                      : code == Errc::unavailable
                          ? "the store is unavailable; retry later"
                          : "the store failed; the cause is logged with this request's id");
  e.log_detail = fmt::format("{}: {}", context, message);
  return e;
}

Statement::~Statement() {
  if (stmt_ == nullptr) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Statement& Statement::bind(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind(int index, std::int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

core::Result<bool> Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::unexpected(error_from(sqlite3_db_handle(stmt_), rc, "query failed"));
}

core::Result<void> Statement::run() {
  for (;;) {
    auto row = step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return {};
  }
}

std::string_view Statement::text(int column) const {
  const auto* p = sqlite3_column_text(stmt_, column);
  const int n = sqlite3_column_bytes(stmt_, column);
  return p == nullptr ? std::string_view()
                      : std::string_view(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
}

std::int64_t Statement::integer(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

bool Statement::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

core::Result<std::unique_ptr<Connection>> Connection::open(const std::string& path, bool read_only,
                                                           std::string_view synchronous) {
  sqlite3* db = nullptr;
  const int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    auto err = error_from(db, rc, fmt::format("cannot open database {}", path));
    sqlite3_close_v2(db);
    return std::unexpected(err);
  }
  std::unique_ptr<Connection> conn(new Connection(db));
  sqlite3_busy_timeout(db, 5000);
  const std::string pragmas =
      read_only ? std::string("PRAGMA foreign_keys=ON; PRAGMA query_only=ON;")
                : fmt::format("PRAGMA journal_mode=WAL; PRAGMA synchronous={}; PRAGMA foreign_keys=ON;",
                              synchronous);
  if (auto ok = conn->exec(pragmas); !ok) return std::unexpected(ok.error());
  return conn;
}

Connection::~Connection() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

core::Result<void> Connection::exec(std::string_view sql) {
  const std::string text(sql);
  char* message = nullptr;
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    auto err = error_from(db_, rc, fmt::format("statement failed ({})", message != nullptr ? message : ""));
    sqlite3_free(message);
    return std::unexpected(err);
  }
  return {};
}

core::Result<void> Connection::run(const char* sql) {
  auto s = prepare(sql);
  if (!s) return std::unexpected(s.error());
  return s->run();
}

core::Result<Statement> Connection::prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return std::unexpected(error_from(db_, rc, "cannot prepare statement"));
    it = cache_.emplace(sql, stmt).first;
  }
  return Statement(it->second);
}

}  // namespace twinbridge::store::sqlite
