#pragma once
// A thin RAII layer over the SQLite C API, used only inside src/store/. A Connection caches its prepared
// statements by SQL text, so a hot query is prepared once per connection. Not thread-safe: one thread uses a
// connection at a time.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "core/error.hpp"

namespace twinbridge::store::sqlite {

class Statement {
 public:
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Statement(Statement&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement();  // resets and clears bindings, so the cached statement is ready for the next use

  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, std::int64_t value);
  Statement& bind_null(int index);
  Statement& bind(int index, const std::optional<std::int64_t>& value) {
    return value ? bind(index, *value) : bind_null(index);
  }
  // Binds the text, or NULL when there is none.
  Statement& bind_optional(int index, const std::optional<std::string>& value) {
    return value ? bind(index, std::string_view(*value)) : bind_null(index);
  }

  // SQLITE_ROW → true, SQLITE_DONE → false, anything else → the error.
  core::Result<bool> step();
  // Runs to completion (for statements that return no rows).
  core::Result<void> run();

  std::string_view text(int column) const;
  std::int64_t integer(int column) const;
  bool is_null(int column) const;

 private:
  sqlite3_stmt* stmt_;
};

class Connection {
 public:
  // Opens (creating when `create`) the database file and applies the connection pragmas.
  static core::Result<std::unique_ptr<Connection>> open(const std::string& path, bool read_only,
                                                        std::string_view synchronous);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  core::Result<void> exec(std::string_view sql);
  // Runs `sql` (a string literal, one statement without rows: BEGIN, SAVEPOINT, COMMIT, ...) prepared once.
  core::Result<void> run(const char* sql);
  // A cached prepared statement for `sql` (which must be a string literal: the cache is keyed by its
  // address).
  core::Result<Statement> prepare(const char* sql);
  std::int64_t changes() const { return sqlite3_changes64(db_); }
  sqlite3* handle() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
};

// Maps an SQLite result code to a store error: constraint violations become conflict, busy/locked/IO become
// unavailable, everything else internal. SQLite's own message goes to Error::log_detail only (the server's
// log); `detail`, which clients see, says what kind of failure it was.
core::Error error_from(sqlite3* db, int rc, std::string_view context);

}  // namespace twinbridge::store::sqlite
