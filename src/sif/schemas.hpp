#pragma once
// The published JSON Schemas of SIF resources (compiled in from schemas/*.schema.json).

#include <string_view>

namespace twinbridge::sif {

// 3rd-party system registrations (TPSR), served at /schemas/third-party-system.json.
std::string_view third_party_system_schema();

}  // namespace twinbridge::sif
