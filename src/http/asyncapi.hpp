#pragma once
// The AsyncAPI 3.0 document of twinbridge's messages outside request/response: the twin stream (/v1/stream
// over WebSocket, /v1/stream/events), the Server-Sent Events of /events and /v1/system-events, and the MQTT
// topics twinbridge subscribes to. src/http/asyncapi.json, checked and compiled into the binary at build time
// (cmake/openapi_bundle.py). Tests check that its channels and messages resolve, that every example is valid
// against its payload schema, and that every event the SSE routes send is described.

#include <string_view>

namespace twinbridge::http {

std::string_view asyncapi_document();

}  // namespace twinbridge::http
