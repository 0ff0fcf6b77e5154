#pragma once
// JSON Merge Patch (RFC 7396).

#include <boost/json/value.hpp>

namespace twinbridge::core {

// Applies `patch` to `target` as RFC 7396 section 2 describes and returns the result.
boost::json::value merge_patch(boost::json::value target, const boost::json::value& patch);

}  // namespace twinbridge::core
