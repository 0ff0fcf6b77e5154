#include "dtif/selections.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/access.hpp"
#include "core/json_reader.hpp"
#include "query/jsonpath.hpp"

namespace twinbridge::dtif {

using core::Errc;

namespace {

// Members twinbridge maintains; a client may echo them unchanged (after a GET), not change them.
constexpr std::string_view kServerMembers[] = {"owner", "created", "modified", "version"};

}  // namespace

boost::json::object to_json(const store::SelectionRecord& r) {
  boost::json::object out{{"id", r.id}};
  for (const auto& [key, value] : r.document) out[key] = value;
  out["owner"] = r.owner.str();
  out["created"] = core::format_rfc3339(r.created);
  out["modified"] = core::format_rfc3339(r.modified);
  out["version"] = r.version;
  return out;
}

core::Result<void> Selections::may_select(const core::Principal& caller) const {
  if (caller.kind != core::PrincipalKind::metaverse_system &&
      caller.kind != core::PrincipalKind::operator_account) {
    return core::fail(
        Errc::forbidden,
        fmt::format("selections are made by metaverse systems (or operators); principal '{}' is "
                    "of kind {}",
                    caller.id.str(), core::to_string(caller.kind)));
  }
  if (!core::has_permission(caller, core::Permission::twins_read)) {
    return core::fail(Errc::forbidden,
                      fmt::format("principal '{}' lacks the permission twins:read", caller.id.str()));
  }
  return {};
}

core::Result<store::SelectionRecord> Selections::find(const core::Actor& actor, const std::string& id) const {
  if (auto ok = may_select(actor.principal); !ok) return std::unexpected(ok.error());
  auto found = store_.selection(actor.principal.id, id);
  if (!found) return std::unexpected(found.error());
  if (!*found) return core::fail(Errc::not_found, fmt::format("you have no selection '{}'", id));
  return std::move(**found);
}

core::Result<store::Page<store::SelectionRecord>> Selections::list(const core::Actor& actor,
                                                                   const store::PageRequest& page) const {
  if (auto ok = may_select(actor.principal); !ok) return std::unexpected(ok.error());
  return store_.selections(actor.principal.id, page);
}

core::Result<store::SelectionRecord> Selections::from_document(const boost::json::value& document,
                                                               const store::SelectionRecord* current,
                                                               const core::PrincipalId& owner) const {
  std::vector<core::FieldError> errors;
  core::ObjectReader reader(document, "", errors);
  store::SelectionRecord record;
  if (current != nullptr) record = *current;
  record.owner = owner;
  record.document = {};

  auto id = reader.string("id", current == nullptr, core::kMaxIdBytes);
  if (id) {
    if (current != nullptr && *id != current->id) {
      reader.add_error("/id", "is read-only: the selection keeps its id");
    } else if (auto ok = core::validate_id(*id, "/id"); !ok) {
      errors.insert(errors.end(), ok.error().fields.begin(), ok.error().fields.end());
    } else {
      record.id = *id;
    }
  }
  if (auto title = reader.string("title", false, kMaxSelectionTitleBytes)) {
    if (title->empty()) {
      reader.add_error("/title", "must not be empty");
    } else {
      record.document["title"] = *title;
    }
  }
  const auto* twins = reader.value("twins", false);
  const auto* filter = reader.value("filter", false);
  if ((twins == nullptr) == (filter == nullptr)) {
    reader.add_error("",
                     "give exactly one of \"twins\" (an array of twin ids) and \"filter\" (an RFC 9535 "
                     "JSONPath query over the twins' Thing Descriptions)");
  }
  std::optional<std::string> filter_text;
  if (twins != nullptr) {
    const auto* list = twins->if_array();
    if (list == nullptr || list->empty() || list->size() > kMaxSelectionTwins) {
      reader.add_error("/twins", fmt::format("must be an array of 1 to {} twin ids", kMaxSelectionTwins));
    } else {
      boost::json::array ids;
      std::set<std::string_view> seen;
      for (std::size_t i = 0; i < list->size(); ++i) {
        const auto pointer = fmt::format("/twins/{}", i);
        const auto* text = (*list)[i].if_string();
        if (text == nullptr) {
          reader.add_error(pointer, "must be a twin id (a string)");
          continue;
        }
        if (auto ok = core::validate_id(*text, pointer, core::IdKind::iri); !ok) {
          errors.insert(errors.end(), ok.error().fields.begin(), ok.error().fields.end());
          continue;
        }
        if (!seen.insert(std::string_view(*text)).second) {
          reader.add_error(pointer, fmt::format("repeats the twin id '{}'", std::string_view(*text)));
          continue;
        }
        ids.emplace_back(*text);
      }
      record.document["twins"] = std::move(ids);
    }
  } else if (filter != nullptr) {
    const auto* text = filter->if_string();
    if (text == nullptr || text->empty() || text->size() > kMaxSelectionFilterBytes) {
      reader.add_error("/filter", fmt::format("must be an RFC 9535 JSONPath query of 1 to {} bytes",
                                              kMaxSelectionFilterBytes));
    } else {
      filter_text = std::string(*text);
    }
  }
  // Server-maintained members: echoing the stored value is fine, changing it is not.
  const auto stored = current != nullptr ? to_json(*current) : boost::json::object();
  if (const auto* object = document.if_object()) {
    for (auto member : kServerMembers) {
      const auto* v = object->if_contains(member);
      if (v == nullptr) continue;
      reader.ignore(member);
      const auto* was = stored.if_contains(member);
      if (was == nullptr || *was != *v) {
        errors.push_back({core::pointer_append("", member), "is maintained by twinbridge and cannot be set"});
      }
    }
  }
  reader.reject_unknown();
  if (auto ok = core::validation_result(std::move(errors)); !ok) return std::unexpected(ok.error());
  if (filter_text) {
    // Checked once the shape is right: a query that does not parse is malformed input (400), as in
    // GET /v1/twins?filter=.
    auto parsed = query::JsonPath::parse(*filter_text);
    if (!parsed) {
      core::Error e(Errc::bad_request,
                    "the filter is not an RFC 9535 JSONPath query: " + parsed.error().detail);
      e.fields.push_back({"/filter", parsed.error().detail});
      return std::unexpected(std::move(e));
    }
    record.document["filter"] = *filter_text;
  }
  return record;
}

void Selections::create(const core::Actor& actor, const boost::json::value& document,
                        store::Completion<store::SelectionRecord> done) {
  if (auto ok = may_select(actor.principal); !ok) return done(std::unexpected(ok.error()));
  auto record = from_document(document, nullptr, actor.principal.id);
  if (!record) return done(std::unexpected(record.error()));
  auto audit = core::audit_entry(actor, clock_.now(), "selection.create", "selection", record->id,
                                 boost::json::object{{"selection", record->document}});
  store_.create_selection(std::move(*record), std::move(audit), std::move(done));
}

void Selections::replace(const core::Actor& actor, const store::SelectionRecord& current,
                         const boost::json::value& document, store::Completion<store::SelectionRecord> done) {
  if (auto ok = may_select(actor.principal); !ok) return done(std::unexpected(ok.error()));
  if (current.owner != actor.principal.id) {
    return done(core::fail(Errc::not_found, fmt::format("you have no selection '{}'", current.id)));
  }
  auto record = from_document(document, &current, actor.principal.id);
  if (!record) return done(std::unexpected(record.error()));
  auto audit = core::audit_entry(actor, clock_.now(), "selection.replace", "selection", record->id,
                                 boost::json::object{{"selection", record->document}});
  store_.update_selection(std::move(*record), current.version, std::move(audit), std::move(done));
}

void Selections::remove(const core::Actor& actor, const store::SelectionRecord& current,
                        store::Completion<void> done) {
  if (auto ok = may_select(actor.principal); !ok) return done(std::unexpected(ok.error()));
  if (current.owner != actor.principal.id) {
    return done(core::fail(Errc::not_found, fmt::format("you have no selection '{}'", current.id)));
  }
  auto audit = core::audit_entry(actor, clock_.now(), "selection.delete", "selection", current.id);
  store_.delete_selection(current.owner, current.id, current.version, std::move(audit), std::move(done));
}

core::Result<store::Page<std::shared_ptr<const core::TwinView>>> Selections::resolve(
    const store::SelectionRecord& selection, const std::string& after, std::size_t limit,
    query::QueryBudget* budget) const {
  limit = std::max<std::size_t>(limit, 1);
  if (const auto* filter = selection.document.if_contains("filter");
      filter != nullptr && filter->is_string()) {
    auto path = query::JsonPath::parse(filter->get_string());
    if (!path) return std::unexpected(path.error());
    TwinDiscoveryQuery q;
    q.filter = std::move(*path);
    q.budget = budget;
    q.after = after;
    q.limit = limit;
    auto page = twins_.discover(q);
    if (budget != nullptr && !budget->ok()) return std::unexpected(budget->error("filter"));
    return page;
  }
  std::vector<std::string> ids;
  if (const auto* list = selection.document.if_contains("twins"); list != nullptr && list->is_array()) {
    for (const auto& id : list->get_array()) {
      if (id.is_string() && std::string_view(id.get_string()) > after) ids.emplace_back(id.get_string());
    }
  }
  std::sort(ids.begin(), ids.end());
  const auto now = clock_.now();
  store::Page<std::shared_ptr<const core::TwinView>> out;
  for (const auto& id : ids) {
    auto view = index_.get(id);
    if (!view || (view->expires() && *view->expires() <= now)) continue;
    if (out.items.size() == limit) {
      out.next_after = out.items.back()->id();
      break;
    }
    out.items.push_back(std::move(view));
  }
  return out;
}

}  // namespace twinbridge::dtif
