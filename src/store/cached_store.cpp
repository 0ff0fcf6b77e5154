#include "store/cached_store.hpp"

#include <mutex>

namespace twinbridge::store {

CachedStore::CachedStore(std::unique_ptr<Store> inner, std::size_t capacity)
    : inner_(std::move(inner)), capacity_(capacity) {}

template <class Value, class Load>
core::Result<Value> CachedStore::read_through(std::unordered_map<std::string, Value>& map,
                                              const std::string& key, Load load) {
  std::uint64_t generation = 0;
  {
    std::shared_lock lock(mutex_);
    if (auto it = map.find(key); it != map.end()) return it->second;
    generation = generation_;
  }
  auto result = load();
  if (result) {
    std::unique_lock lock(mutex_);
    if (generation == generation_) {  // no write committed since the load began: the value is current
      if (map.size() >= capacity_) map.clear();
      map.emplace(key, *result);
    }
  }
  return result;
}

core::Result<core::Principal> CachedStore::principal(const core::PrincipalId& id) {
  return read_through(principals_, id.str(), [&] { return inner_->principal(id); });
}

core::Result<std::optional<Credential>> CachedStore::credential(const core::ApiKeyId& key_id) {
  return read_through(credentials_, key_id.str(), [&] { return inner_->credential(key_id); });
}

void CachedStore::drop_credentials() {
  std::unique_lock lock(mutex_);
  ++generation_;
  credentials_.clear();
}

void CachedStore::after_write(const std::string& principal_id, const core::Principal* stored) {
  std::unique_lock lock(mutex_);
  ++generation_;
  credentials_.clear();
  if (stored != nullptr) {
    principals_.insert_or_assign(principal_id, *stored);
  } else {
    principals_.erase(principal_id);
  }
}

void CachedStore::create_principal(core::Principal principal, std::optional<ApiKeyRecord> key,
                                   core::AuditEntry audit, Completion<core::Principal> done) {
  inner_->create_principal(std::move(principal), std::move(key), std::move(audit),
                           [this, done = std::move(done)](core::Result<core::Principal> r) mutable {
                             if (r) after_write(r->id.str(), &*r);
                             done(std::move(r));
                           });
}

void CachedStore::update_principal(core::Principal principal, std::int64_t expected_version,
                                   core::AuditEntry audit, Completion<core::Principal> done) {
  inner_->update_principal(std::move(principal), expected_version, std::move(audit),
                           [this, done = std::move(done)](core::Result<core::Principal> r) mutable {
                             if (r) after_write(r->id.str(), &*r);
                             done(std::move(r));
                           });
}

void CachedStore::delete_principal(core::PrincipalId id, std::optional<std::int64_t> expected_version,
                                   core::AuditEntry audit, Completion<void> done) {
  auto key = id.str();
  inner_->delete_principal(
      std::move(id), expected_version, std::move(audit),
      [this, key = std::move(key), done = std::move(done)](core::Result<void> r) mutable {
        if (r) after_write(key, nullptr);
        done(std::move(r));
      });
}

void CachedStore::add_api_key(ApiKeyRecord key, core::AuditEntry audit, Completion<ApiKeyRecord> done) {
  inner_->add_api_key(std::move(key), std::move(audit),
                      [this, done = std::move(done)](core::Result<ApiKeyRecord> r) mutable {
                        if (r) drop_credentials();
                        done(std::move(r));
                      });
}

void CachedStore::revoke_api_key(core::PrincipalId principal, core::ApiKeyId key, core::AuditEntry audit,
                                 Completion<void> done) {
  inner_->revoke_api_key(std::move(principal), std::move(key), std::move(audit),
                         [this, done = std::move(done)](core::Result<void> r) mutable {
                           if (r) drop_credentials();
                           done(std::move(r));
                         });
}

}  // namespace twinbridge::store
