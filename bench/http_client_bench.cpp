// How long connect::HttpClient takes to give up on a peer that accepts the connection and never answers, for
// several deadlines: the call must end at its deadline (ratio to the deadline near 1), never when the peer
// gives up. Moved here from the unit tests, which assert the outcome ("timed out after N ms"), never a
// duration.
//
//   build/release/bench/bench_http_client
//
// The peer is a loopback listening socket that is never accepted from: the kernel completes the handshake and
// takes the request, and nothing ever answers.

#include <benchmark/benchmark.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "connect/http_client.hpp"

namespace {

namespace asio = boost::asio;
using namespace twinbridge;

void HangingPeerTimeout(benchmark::State& state) {
  const std::chrono::milliseconds deadline(state.range(0));
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread thread([&] { io.run(); });
  connect::HttpClient client(io, connect::HttpClientOptions{});

  asio::io_context peer_io;
  asio::ip::tcp::acceptor peer(peer_io, {asio::ip::make_address("127.0.0.1"), 0});
  const std::string url = "http://127.0.0.1:" + std::to_string(peer.local_endpoint().port()) + "/health";

  double total_ms = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    std::promise<core::Result<connect::HttpResponse>> done;
    auto result = done.get_future();
    connect::HttpRequest req;
    req.url = url;
    req.timeout = deadline;
    client.send(std::move(req),
                [&done](core::Result<connect::HttpResponse> r) { done.set_value(std::move(r)); });
    const auto r = result.get();
    const auto took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    if (r) state.SkipWithError("the hanging peer answered");
    total_ms += took.count();
    state.SetIterationTime(took.count() / 1000);
  }
  state.counters["took_ms"] = benchmark::Counter(total_ms / static_cast<double>(state.iterations()));
  state.counters["ratio_to_deadline"] = benchmark::Counter(
      total_ms / static_cast<double>(state.iterations()) / static_cast<double>(deadline.count()));
  work.reset();
  thread.join();
}

BENCHMARK(HangingPeerTimeout)
    ->Arg(50)
    ->Arg(300)
    ->Arg(1000)
    ->UseManualTime()
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
