// The server's lifetime under load: started and stopped many times (SIGTERM) while clients keep calling every
// kind of route (plain, authenticated, store writes, queries on the worker pool, event streams), it must exit
// 0 every time. In the ASan build a use after free during shutdown (the finding: a pending accept coroutine
// destroyed with its io_context) aborts the process, so the exit code catches it.

#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"
#include "support/server_process.hpp"

namespace twinbridge::testing {
namespace {

const std::string kToken = "lifecycle-admin-token-0123456789";
constexpr int kCycles = 12;

std::string td(int i) {
  return R"({"@context":"https://www.w3.org/2022/wot/td/v1.1","title":"t)" + std::to_string(i) +
         R"(","securityDefinitions":{"n":{"scheme":"nosec"}},"security":"n"})";
}

// Keeps calling the server until told to stop; every failure to connect or read is expected once the server
// goes away, so nothing is asserted about the answers.
void load(std::uint16_t port, int worker, const std::atomic<bool>& stop) {
  const std::vector<std::pair<std::string, std::string>> auth = {{"Authorization", "Bearer " + kToken}};
  for (int i = 0; !stop; ++i) {
    try {
      switch (i % 5) {
        case 0:
          fetch(port, {"GET", "/healthz"});
          break;
        case 1:
          fetch(port, {"GET", "/v1/principals/me", "", auth});
          break;
        case 2: {
          auto headers = auth;
          headers.emplace_back("Content-Type", "application/td+json");
          fetch(port, {"PUT", "/things/urn:life:" + std::to_string(worker) + "-" + std::to_string(i), td(i),
                       headers});
          break;
        }
        case 3:
          fetch(port, {"GET", "/search/jsonpath?query=%24..title", "", auth});
          break;
        case 4: {
          // A stream left open: the shutdown has to end it.
          Connection c(port, std::chrono::milliseconds(200));
          c.send(serialize(Request("GET", "/events", "", auth)));
          c.read_until("\r\n\r\n");
          break;
        }
      }
    } catch (const std::exception&) {
      // the server is starting or stopping
    }
  }
}

TEST(Lifecycle, StartAndStopUnderLoadAlwaysExitsCleanly) {
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    TempDir dir;
    ServerProcess server(dir.path(), {"--threads", "2", "--shutdown-grace-ms", "2000"},
                         {{"TWINBRIDGE_ADMIN_TOKEN", kToken}});
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    // Every other cycle stops an idle server: the drain then ends at once, with the acceptors' last
    // operations still pending.
    const int workers = cycle % 2 == 0 ? 3 : 0;
    for (int w = 0; w < workers; ++w) clients.emplace_back(load, server.port(), w, std::cref(stop));
    // Let the clients get going: wait (at most 10 s) until the access log shows writes and queries.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (workers > 0 && std::chrono::steady_clock::now() < deadline) {
      const auto log = server.log();
      if (log.find("/search/jsonpath") != std::string::npos &&
          log.find("/things/urn:life:") != std::string::npos)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const int code = server.stop(SIGTERM);
    stop = true;
    for (auto& t : clients) t.join();
    ASSERT_EQ(code, 0) << "cycle " << cycle << ":\n" << server.log();
    EXPECT_NE(server.log().find("twinbridge stopped"), std::string::npos) << server.log();
  }
}

}  // namespace
}  // namespace twinbridge::testing
