#pragma once
// The OpenAPI 3.1 document of twinbridge's HTTP API: src/http/openapi.json with the published JSON Schemas it
// names inlined, bundled at build time (cmake/openapi_bundle.py) and compiled into the binary. Tests check
// that every route of the router is described in it and that every request body example is accepted.

#include <string_view>

namespace twinbridge::http {

std::string_view openapi_document();

}  // namespace twinbridge::http
