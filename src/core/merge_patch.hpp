#pragma once
// JSON Merge Patch (RFC 7396).

#include <boost/json/value.hpp>

namespace twinbridge::core {

// Applies `patch` to `target` as RFC 7396 section 2 describes and returns the result.
boost::json::value merge_patch(boost::json::value target, const boost::json::value& patch);

// A merge patch that turns `from` into `to` (merge_patch(from, merge_diff(from, to)) == to when `to` holds no
// null member values, which merge patches cannot express). Objects are compared member by member; anything
// else is replaced whole. An empty object means "no change".
boost::json::value merge_diff(const boost::json::value& from, const boost::json::value& to);

}  // namespace twinbridge::core
