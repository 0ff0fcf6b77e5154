// stream_bench: the figures of twinbridge's live stream and state ingestion (issue #8 §7), each printed
// beside what it is compared with, measured in the same run. bench/stream.sh starts twinbridge and Mosquitto,
// creates the principals, their API keys, the twin system and its twins, and passes ports, keys and pids
// here.
//
//   latency  WebSocket subscribers (GET /v1/stream, subscribed by ids) and a publisher that POSTs batches of
//            state changes at a fixed rate, each change stamped with its send time (steady clock: the
//            processes of one machine share it); the send -> receive latency of durable changes, then of
//            ephemeral ones, beside the fdatasync latency of the data directory's file system.
//   fanout   1,000 WebSocket subscribers on the same twins and a publisher as fast as the deliveries follow
//            (a closed loop: at most --window changes not yet delivered to every subscriber, so that no queue
//            grows without bound): deliveries/s; then Mosquitto with 1,000 libmosquitto subscribers of
//            messages of the same size, and a publisher under the same loop, QoS 0 and QoS 1.
//   ingest   durable state updates/s: batched POST /v1/twin-systems/{id}/state over several connections, then
//            the same batches published to the twin system's MQTT state topic, counted once they are stored.
//
// Threads: the subscribers' connections run on --threads event loops, one thread each; the publisher runs on
// a thread of its own; the main thread sets up, samples the counters at the edges of the measured window and
// prints. Counters are atomics written by one thread each; latency samples are read once their thread ended.

#include <fcntl.h>
#include <mosquitto.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace twinbridge::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
using asio::ip::tcp;
using namespace std::chrono_literals;

// The stamp properties of the bench's TDs (bench/stream.sh): a durable integer and an ephemeral one.
constexpr std::string_view kDurableStamp = "bench_t";
constexpr std::string_view kEphemeralStamp = "bench_e";

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::chrono::steady_clock::time_point at_ns(std::int64_t ns) {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}

void sleep_until_ns(std::int64_t ns) {
  std::this_thread::sleep_until(at_ns(ns));
}

// 1234567 -> "1,234,567".
std::string grouped(double value) {
  auto digits = fmt::format("{:.0f}", value);
  const std::size_t first = digits.starts_with('-') ? 1 : 0;
  for (auto i = digits.size(); i > first + 3; i -= 3) digits.insert(i - 3, ",");
  return digits;
}

std::string millis(double ns) {
  return fmt::format("{:.3f} ms", ns / 1e6);
}

struct Percentiles {
  std::size_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;  // nanoseconds
};

Percentiles percentiles(std::vector<std::int64_t> samples) {
  Percentiles out;
  out.count = samples.size();
  if (samples.empty()) return out;
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1) + 0.5);
    return static_cast<double>(samples[std::min(i, samples.size() - 1)]);
  };
  out.p50 = at(0.50);
  out.p90 = at(0.90);
  out.p99 = at(0.99);
  out.max = static_cast<double>(samples.back());
  return out;
}

std::string describe(const Percentiles& p) {
  if (p.count == 0) return "no samples";
  return fmt::format("p50 {}  p90 {}  p99 {}  max {}  ({} samples)", millis(p.p50), millis(p.p90),
                     millis(p.p99), millis(p.max), grouped(static_cast<double>(p.count)));
}

// The integer after `"key":` in `text`, if any.
std::optional<std::int64_t> integer_after(std::string_view text, std::string_view key) {
  std::string pattern;
  pattern.reserve(key.size() + 3);
  pattern.append("\"").append(key).append("\":");
  const auto at = text.find(pattern);
  if (at == std::string_view::npos) return std::nullopt;
  const char* first = text.data() + at + pattern.size();
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(first, text.data() + text.size(), value);
  if (ec != std::errc{} || end == first) return std::nullopt;
  return value;
}

// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat; 0 for pid 0.
double cpu_seconds(int pid) {
  if (pid <= 0) return 0;
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  std::getline(in, line);
  const auto paren = line.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(line.substr(paren + 2));
  std::string field;
  double ticks = 0;
  // After the command: state is field 3; utime and stime are fields 14 and 15.
  for (int n = 3; n <= 15 && fields >> field; ++n) {
    if (n >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// What the bench talks to: twinbridge, the credentials stream.sh made, the twins it registered.
struct Target {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string viewer_key;     // a metaverse-system principal (twins:read): the subscribers
  std::string publisher_key;  // the twin-system principal that holds the twins: the publisher
  std::string system = "bench-stream";
  std::string twin_prefix = "urn:bench:stream:";
  std::size_t twins = 1000;  // twin ids are <prefix>000000 .. <prefix><twins - 1>
  int server_pid = 0;        // for the server's CPU time in the measured window (0: not shown)
  std::size_t threads = 1;   // event loops (threads) of the subscribers

  std::string twin(std::size_t i) const { return fmt::format("{}{:06d}", twin_prefix, i % twins); }
  tcp::endpoint endpoint() const { return {asio::ip::make_address(host), port}; }
};

// ---- HTTP: blocking calls for set-up and checks; an asynchronous keep-alive connection for publishing -----

struct Answer {
  unsigned status = 0;
  std::string body;
};

Answer http_call(const Target& t, http::verb verb, const std::string& target, const std::string& key,
                 std::string body = {}) {
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(t.endpoint());
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, t.host);
  req.set(http::field::authorization, "Bearer " + key);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
  }
  http::write(socket, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::uint64_t{256} << 20);
  http::read(socket, buffer, parser);
  beast::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  return {parser.get().result_int(), parser.get().body()};
}

// {"changes":[{"twin":..,"patch":{"properties":{"<key>":<stamp><extra>}}}, ...]} for `count` twins from
// `first` on (modulo the twins).
std::string batch_body(const Target& t, std::size_t first, std::size_t count, std::string_view key,
                       std::int64_t stamp, std::string_view extra = {}) {
  std::string out = R"({"changes":[)";
  out.reserve(count * (t.twin_prefix.size() + key.size() + extra.size() + 64));
  for (std::size_t k = 0; k < count; ++k) {
    fmt::format_to(std::back_inserter(out), R"({}{{"twin":"{}","patch":{{"properties":{{"{}":{}{}}}}}}})",
                   k == 0 ? "" : ",", t.twin(first + k), key, stamp, extra);
  }
  out += "]}";
  return out;
}

// One keep-alive HTTP connection of a publisher. Its coroutine is the only user.
class Poster {
 public:
  Poster(asio::any_io_executor executor, const Target& target) : target_(target), socket_(executor) {}

  asio::awaitable<void> connect() {
    co_await socket_.async_connect(target_.endpoint(), asio::use_awaitable);
    socket_.set_option(tcp::no_delay(true));
  }

  // POSTs `body` to the twin system's state route; the answer's status, its body in `answer`.
  asio::awaitable<unsigned> post_state(std::string body, std::string& answer) {
    http::request<http::string_body> req{http::verb::post, "/v1/twin-systems/" + target_.system + "/state",
                                         11};
    req.set(http::field::host, target_.host);
    req.set(http::field::authorization, "Bearer " + target_.publisher_key);
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    co_await http::async_write(socket_, req, asio::use_awaitable);
    http::response<http::string_body> res;
    co_await http::async_read(socket_, buffer_, res, asio::use_awaitable);
    answer = std::move(res.body());
    co_return res.result_int();
  }

 private:
  const Target& target_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

// What a publisher did. One publisher coroutine writes one of these; read once it ended.
struct PublishStats {
  std::uint64_t requests = 0;
  std::uint64_t sent = 0;                // changes sent
  std::uint64_t accepted = 0;            // changes the answers accepted
  std::uint64_t failed = 0;              // requests answered other than 200, or changes refused
  std::uint64_t late = 0;                // paced batches sent more than one interval after their time
  std::uint64_t in_window = 0;           // changes sent with a stamp in the measured window
  std::uint64_t expected_in_window = 0;  // deliveries they should make (followers of each twin)
  std::int64_t last_answer_ns = 0;
  std::vector<std::int64_t> answer_ns;  // send -> answer of the requests sent in the window
  std::string first_problem;

  void add(const PublishStats& o) {
    answer_ns.insert(answer_ns.end(), o.answer_ns.begin(), o.answer_ns.end());
    requests += o.requests;
    sent += o.sent;
    accepted += o.accepted;
    failed += o.failed;
    late += o.late;
    in_window += o.in_window;
    expected_in_window += o.expected_in_window;
    last_answer_ns = std::max(last_answer_ns, o.last_answer_ns);
    if (first_problem.empty()) first_problem = o.first_problem;
  }
};

// The stamps of the measured window: samples and sends count when their stamp is in [from, until).
struct Window {
  std::int64_t from = std::numeric_limits<std::int64_t>::max();
  std::int64_t until = std::numeric_limits<std::int64_t>::min();
  bool contains(std::int64_t stamp) const { return stamp >= from && stamp < until; }
};

constexpr std::int64_t kStall = 1'000'000'000;

struct PublishPlan {
  std::size_t connections = 4;
  std::size_t batch = 50;
  double rate = 10'000;        // changes/s over all connections; 0: as fast as answers come
  std::size_t first_twin = 0;  // batches cycle over twins [first_twin, first_twin + span)
  std::size_t span = 1000;
  std::string_view key = kDurableStamp;  // the stamped property
  std::string extra;                     // more members of each change's properties
  std::int64_t start_ns = 0, end_ns = 0;
  Window window;
  const std::vector<std::uint32_t>* followers = nullptr;  // subscribers following each twin
  // Closed loop (fan-out): at most `in_flight` changes published and not yet delivered to all `fan`
  // subscribers; a publisher waits for room at most kStall, then sends anyway (counted as late).
  std::size_t in_flight = 0;
  std::size_t fan = 0;
  std::function<std::uint64_t()> delivered;         // deliveries so far, all subscribers
  std::atomic<std::uint64_t>* published = nullptr;  // changes sent so far, all connections
};

void note_answer(PublishStats& stats, unsigned status, const std::string& answer, std::size_t batch) {
  ++stats.requests;
  stats.sent += batch;
  stats.last_answer_ns = now_ns();
  if (status != 200) {
    ++stats.failed;
    if (stats.first_problem.empty())
      stats.first_problem = fmt::format("{} {}", status, answer.substr(0, 300));
    return;
  }
  const auto accepted = integer_after(answer, "accepted").value_or(0);
  stats.accepted += static_cast<std::uint64_t>(accepted);
  if (static_cast<std::size_t>(accepted) != batch) {
    stats.failed += batch - static_cast<std::size_t>(accepted);
    if (stats.first_problem.empty()) stats.first_problem = answer.substr(0, 300);
  }
}

// Connection `k` of `plan.connections` sends batches k, k + connections, ...: paced at plan.rate, or each as
// soon as the previous one was answered.
asio::awaitable<void> publish(const Target& target, const PublishPlan& plan, std::size_t k,
                              PublishStats& stats) {
  try {
    Poster poster(co_await asio::this_coro::executor, target);
    co_await poster.connect();
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto interval = plan.rate > 0
                              ? static_cast<std::int64_t>(1e9 * static_cast<double>(plan.batch) / plan.rate)
                              : std::int64_t{0};
    std::string answer;
    for (std::size_t j = k;; j += plan.connections) {
      const auto due = plan.start_ns + static_cast<std::int64_t>(j) * interval;
      if (interval > 0 && due >= plan.end_ns) break;
      if (interval > 0 && now_ns() < due) {
        timer.expires_at(at_ns(due));
        co_await timer.async_wait(asio::use_awaitable);
      }
      if (plan.in_flight > 0) {
        const auto give_up = now_ns() + kStall;
        const auto over = [&] {
          return plan.published->load() * plan.fan > plan.delivered() + plan.in_flight * plan.fan;
        };
        while (over() && now_ns() < give_up) {
          timer.expires_after(100us);
          co_await timer.async_wait(asio::use_awaitable);
        }
        if (over()) ++stats.late;
        plan.published->fetch_add(plan.batch);
      }
      const auto stamp = now_ns();
      if (stamp >= plan.end_ns) break;
      if (interval > 0 && stamp - due > interval) ++stats.late;
      const auto first = plan.first_twin + (j * plan.batch) % plan.span;
      if (plan.window.contains(stamp)) {
        stats.in_window += plan.batch;
        if (plan.followers != nullptr) {
          for (std::size_t n = 0; n < plan.batch; ++n) {
            stats.expected_in_window += (*plan.followers)[(first + n) % target.twins];
          }
        }
      }
      const auto status = co_await poster.post_state(
          batch_body(target, first, plan.batch, plan.key, stamp, plan.extra), answer);
      note_answer(stats, status, answer, plan.batch);
      if (plan.window.contains(stamp)) stats.answer_ns.push_back(stats.last_answer_ns - stamp);
    }
  } catch (const std::exception& e) {
    if (stats.first_problem.empty()) stats.first_problem = e.what();
    ++stats.failed;
  }
}

// Runs the plan's connections on an event loop of their own until plan.end_ns; blocks.
PublishStats run_publishers(const Target& target, const PublishPlan& plan) {
  asio::io_context io(1);
  std::vector<PublishStats> stats(plan.connections);
  for (std::size_t k = 0; k < plan.connections; ++k) {
    asio::co_spawn(io, publish(target, plan, k, stats[k]), asio::detached);
  }
  io.run();
  PublishStats total;
  for (const auto& s : stats) total.add(s);
  return total;
}

// ---- Event loops of the subscribers ---------------------------------------------------------------------

class Loops {
 public:
  explicit Loops(std::size_t n) {
    for (std::size_t i = 0; i < std::max<std::size_t>(n, 1); ++i) {
      ios_.push_back(std::make_unique<asio::io_context>(1));
      guards_.emplace_back(ios_.back()->get_executor());
    }
    for (auto& io : ios_) threads_.emplace_back([&io = *io] { io.run(); });
  }
  ~Loops() { stop(); }
  Loops(const Loops&) = delete;
  Loops& operator=(const Loops&) = delete;

  std::size_t size() const { return ios_.size(); }
  asio::io_context& at(std::size_t i) { return *ios_[i % ios_.size()]; }

  // Stops every loop and joins its thread; what was running on them is dropped with them.
  void stop() {
    for (auto& io : ios_) io->stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::vector<std::unique_ptr<asio::io_context>> ios_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
};

// Per event loop (one thread writes it). Atomics are sampled by the main thread while the loop runs.
struct Counters {
  std::atomic<std::uint64_t> changes{0};    // change messages (durable or live)
  std::atomic<std::uint64_t> conflated{0};  // state messages standing for changes not sent (slow reader)
  std::atomic<std::uint64_t> bytes{0};      // of change messages
  std::atomic<std::uint64_t> other{0};
  std::vector<std::int64_t> durable_ns;  // latencies of changes stamped in the window; read once stopped
  std::vector<std::int64_t> ephemeral_ns;
};

struct Totals {
  std::uint64_t changes = 0, conflated = 0, bytes = 0, other = 0;
};

template <class C>
Totals totals(const std::vector<std::unique_ptr<C>>& counters) {
  Totals t;
  for (const auto& c : counters) {
    t.changes += c->changes.load(std::memory_order_relaxed);
    t.conflated += c->conflated.load(std::memory_order_relaxed);
    t.bytes += c->bytes.load(std::memory_order_relaxed);
    t.other += c->other.load(std::memory_order_relaxed);
  }
  return t;
}

// ---- WebSocket subscribers of /v1/stream ----------------------------------------------------------------

struct StreamShared {
  explicit StreamShared(const Target& t) : target(t) {}

  const Target& target;
  std::atomic<std::size_t> subscribed{0};
  std::atomic<std::size_t> failed{0};
  std::atomic<std::size_t> ended{0};
  std::atomic<bool> closing{false};  // errors are expected: the bench closes the connections
  std::atomic<std::int64_t> window_from{std::numeric_limits<std::int64_t>::max()};
  std::atomic<std::int64_t> window_until{std::numeric_limits<std::int64_t>::min()};
  std::mutex mutex;
  std::string first_problem;  // under mutex

  void problem(std::string text) {
    std::lock_guard lock(mutex);
    if (first_problem.empty()) first_problem = std::move(text);
  }
  bool in_window(std::int64_t stamp) const {
    return stamp >= window_from.load(std::memory_order_relaxed) &&
           stamp < window_until.load(std::memory_order_relaxed);
  }
};

void on_stream_message(std::string_view text, std::int64_t received, StreamShared& shared,
                       Counters& counters) {
  if (text.find(R"("type":"change")") != std::string_view::npos) {
    counters.changes.fetch_add(1, std::memory_order_relaxed);
    counters.bytes.fetch_add(text.size(), std::memory_order_relaxed);
    const bool live = text.find(R"("ephemeral":true)") != std::string_view::npos;
    const auto stamp = integer_after(text, live ? kEphemeralStamp : kDurableStamp);
    if (stamp && shared.in_window(*stamp)) {
      (live ? counters.ephemeral_ns : counters.durable_ns).push_back(received - *stamp);
    }
    return;
  }
  if (text.find(R"("reason":"conflated")") != std::string_view::npos) {
    counters.conflated.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (text.find(R"("type":"subscribed")") != std::string_view::npos) {
    shared.subscribed.fetch_add(1);
    return;
  }
  if (text.find(R"("type":"error")") != std::string_view::npos ||
      text.find(R"("type":"closed")") != std::string_view::npos) {
    shared.problem(std::string(text.substr(0, 300)));
  }
  counters.other.fetch_add(1, std::memory_order_relaxed);
}

// A WebSocket frame at the start of `data` (RFC 6455 §5.2), when all of it is there. The server's frames
// are unmasked; a masked one is a protocol error.
struct Frame {
  bool fin = false;
  unsigned opcode = 0;
  std::string_view payload;
  std::size_t size = 0;  // header and payload
};

std::optional<Frame> next_frame(std::string_view data) {
  if (data.size() < 2) return std::nullopt;
  const auto byte = [&](std::size_t i) {
    return static_cast<std::uint64_t>(static_cast<unsigned char>(data[i]));
  };
  if ((byte(1) & 0x80) != 0) throw std::runtime_error("the server sent a masked frame");
  std::uint64_t length = byte(1) & 0x7f;
  std::size_t header = 2;
  if (length == 126) {
    if (data.size() < 4) return std::nullopt;
    length = (byte(2) << 8) | byte(3);
    header = 4;
  } else if (length == 127) {
    if (data.size() < 10) return std::nullopt;
    length = 0;
    for (std::size_t i = 2; i < 10; ++i) length = (length << 8) | byte(i);
    header = 10;
  }
  if (data.size() - header < length) return std::nullopt;
  return Frame{(byte(0) & 0x80) != 0, static_cast<unsigned>(byte(0) & 0x0f), data.substr(header, length),
               header + length};
}

// A client's frame (masked, RFC 6455 §5.3; the key is zero, which leaves the payload as it is) of at most
// 125 bytes: a pong or a close.
std::string client_frame(unsigned opcode, std::string_view payload) {
  std::string frame;
  frame += static_cast<char>(0x80 | opcode);
  frame += static_cast<char>(0x80 | std::min<std::size_t>(payload.size(), 125));
  frame.append(4, '\0');
  frame += payload.substr(0, 125);
  return frame;
}

// One WebSocket client of /v1/stream. Used on its event loop only.
struct Subscriber {
  explicit Subscriber(asio::io_context& io) : ws(io) {}
  websocket::stream<tcp::socket> ws;
};

asio::awaitable<void> subscribe_and_read(Subscriber& sub, StreamShared& shared, Counters& counters,
                                         std::string subscribe) {
  auto& ws = sub.ws;
  try {
    co_await ws.next_layer().async_connect(shared.target.endpoint(), asio::use_awaitable);
    ws.next_layer().set_option(tcp::no_delay(true));
    ws.read_message_max(std::size_t{64} << 20);
    ws.set_option(
        websocket::stream_base::decorator([key = shared.target.viewer_key](websocket::request_type& req) {
          req.set(http::field::authorization, "Bearer " + key);
          req.set(http::field::sec_websocket_protocol, "twinbridge.v1");
        }));
    co_await ws.async_handshake(shared.target.host, "/v1/stream", asio::use_awaitable);
    co_await ws.async_write(asio::buffer(subscribe), asio::use_awaitable);
    // From here the frames are read off the socket (RFC 6455 §5.2; a server's frames are not masked), many
    // per read, as wrk reads HTTP answers: a coroutine resumption per message cost the bench ~3.5 µs of CPU
    // per delivery, more than the server spends on it, on the two cores the server needs.
    auto& socket = ws.next_layer();
    std::vector<char> buffer(std::size_t{1} << 16);
    std::size_t have = 0;
    std::string message;  // a message in several frames
    for (;;) {
      if (have == buffer.size()) buffer.resize(buffer.size() * 2);
      have += co_await socket.async_read_some(asio::buffer(buffer.data() + have, buffer.size() - have),
                                              asio::use_awaitable);
      const auto received = now_ns();
      std::size_t at = 0;
      while (auto frame = next_frame(std::string_view(buffer.data() + at, have - at))) {
        at += frame->size;
        switch (frame->opcode) {
          case 0x0:  // continuation
            message += frame->payload;
            if (frame->fin) on_stream_message(message, received, shared, counters);
            break;
          case 0x1:
          case 0x2:
            if (frame->fin) {
              on_stream_message(frame->payload, received, shared, counters);
            } else {
              message.assign(frame->payload);
            }
            break;
          case 0x8:  // the server's close: the bench closes (or the server ended the stream)
            if (!shared.closing.load()) {
              shared.failed.fetch_add(1);
              shared.problem("the server closed a subscriber's connection");
            }
            shared.ended.fetch_add(1);
            co_return;
          case 0x9: {  // ping: pong with its payload
            const auto pong = client_frame(0xA, frame->payload);
            co_await asio::async_write(socket, asio::buffer(pong), asio::use_awaitable);
            break;
          }
          default:
            break;
        }
      }
      std::memmove(buffer.data(), buffer.data() + at, have - at);
      have -= at;
    }
  } catch (const boost::system::system_error& e) {
    if (!shared.closing.load()) {
      shared.failed.fetch_add(1);
      shared.problem(fmt::format("a subscriber ended: {}", e.code().message()));
    }
  }
  shared.ended.fetch_add(1);
}

// The subscribers of a run: their event loops, their counters (one per loop), their connections.
class StreamSubscribers {
 public:
  StreamSubscribers(const Target& target, std::size_t threads) : shared(target), loops_(threads) {
    for (std::size_t i = 0; i < loops_.size(); ++i) counters.push_back(std::make_unique<Counters>());
  }
  ~StreamSubscribers() { loops_.stop(); }
  StreamSubscribers(const StreamSubscribers&) = delete;
  StreamSubscribers& operator=(const StreamSubscribers&) = delete;

  // Connects `n` subscribers, subscriber s to the twins twins_of(s); returns once all are subscribed and had
  // their snapshot (throws when one failed or after 60 s).
  template <class TwinsOf>
  void open(std::size_t n, TwinsOf twins_of) {
    for (std::size_t s = 0; s < n; ++s) {
      std::string ids;
      for (const auto twin : twins_of(s)) {
        ids += fmt::format("{}\"{}\"", ids.empty() ? "" : ",", shared.target.twin(twin));
      }
      auto command = fmt::format(R"({{"type":"subscribe","id":"s{}","twins":[{}]}})", s, ids);
      subscribers_.push_back(std::make_unique<Subscriber>(loops_.at(s)));
      asio::co_spawn(
          loops_.at(s),
          subscribe_and_read(*subscribers_.back(), shared, *counters[s % loops_.size()], std::move(command)),
          asio::detached);
    }
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (shared.subscribed.load() + shared.failed.load() < n) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("subscribers not subscribed in 60 s");
      }
      std::this_thread::sleep_for(10ms);
    }
    if (shared.failed.load() > 0) throw std::runtime_error("a subscriber failed: " + shared.first_problem);
    std::this_thread::sleep_for(500ms);  // the snapshots
  }

  // Closes every connection with the closing handshake (within 10 s), then stops the loops.
  void close() {
    shared.closing = true;
    for (std::size_t s = 0; s < subscribers_.size(); ++s) {
      // A close frame (code 1000) written on the socket: the reader is the bench's own (subscribe_and_read).
      asio::post(loops_.at(s), [&socket = subscribers_[s]->ws.next_layer()] {
        if (!socket.is_open()) return;
        auto frame = std::make_shared<const std::string>(client_frame(0x8, std::string_view("\x03\xe8", 2)));
        asio::async_write(socket, asio::buffer(*frame), [frame](const beast::error_code&, std::size_t) {});
      });
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (shared.ended.load() < subscribers_.size() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    loops_.stop();
  }

  StreamShared shared;
  std::vector<std::unique_ptr<Counters>> counters;

 private:
  Loops loops_;
  std::vector<std::unique_ptr<Subscriber>> subscribers_;  // destroyed before the loops: their sockets
};

// ---- The store's group commits, from twinbridge's /metrics ------------------------------------------------

// A Prometheus histogram: cumulative counts by upper bound.
struct Histogram {
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative count)
  double count = 0, sum = 0;

  Histogram minus(const Histogram& earlier) const {
    Histogram d = *this;
    for (std::size_t i = 0; i < d.buckets.size() && i < earlier.buckets.size(); ++i) {
      d.buckets[i].second -= earlier.buckets[i].second;
    }
    d.count -= earlier.count;
    d.sum -= earlier.sum;
    return d;
  }
  // The upper bound of the bucket holding quantile q.
  double quantile(double q) const {
    for (const auto& [le, n] : buckets) {
      if (n >= q * count) return le;
    }
    return std::numeric_limits<double>::infinity();
  }
};

Histogram histogram(std::string_view metrics, std::string_view name) {
  Histogram h;
  std::istringstream lines{std::string(metrics)};
  std::string line;
  const auto bucket = std::string(name) + "_bucket{le=\"";
  while (std::getline(lines, line)) {
    if (line.starts_with(bucket)) {
      const auto le = line.substr(bucket.size(), line.find('"', bucket.size()) - bucket.size());
      const auto value = std::stod(line.substr(line.rfind(' ') + 1));
      h.buckets.emplace_back(le == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(le), value);
    } else if (line.starts_with(std::string(name) + "_count ")) {
      h.count = std::stod(line.substr(line.rfind(' ') + 1));
    } else if (line.starts_with(std::string(name) + "_sum ")) {
      h.sum = std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return h;
}

struct Commits {
  Histogram duration, writes;
};

Commits commits(const Target& t) {
  const auto answer = http_call(t, http::verb::get, "/metrics", t.viewer_key);
  return {histogram(answer.body, "twinbridge_store_commit_duration_seconds"),
          histogram(answer.body, "twinbridge_store_commit_writes")};
}

std::string describe(const Commits& c, double seconds) {
  if (c.duration.count <= 0) return "no commits";
  return fmt::format(
      "{:.0f} commits/s, {:.1f} writes each, commit time mean {:.2f} ms, p50 <= {} ms, p99 <= {} ms",
      c.duration.count / seconds, c.writes.sum / c.writes.count, 1e3 * c.duration.sum / c.duration.count,
      1e3 * c.duration.quantile(0.5), 1e3 * c.duration.quantile(0.99));
}

// ---- Loopback TCP round trips between two threads of this process: the machine's floor -----------------

Percentiles loopback_round_trips(std::size_t rounds) {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  client.set_option(tcp::no_delay(true));
  tcp::socket server = acceptor.accept();
  server.set_option(tcp::no_delay(true));
  std::thread echo([&] {
    std::array<char, 64> buf{};
    beast::error_code ec;
    for (std::size_t i = 0; i < rounds; ++i) {
      asio::read(server, asio::buffer(buf), ec);
      if (!ec) asio::write(server, asio::buffer(buf), ec);
      if (ec) return;
    }
  });
  std::array<char, 64> buf{};
  std::vector<std::int64_t> samples;
  for (std::size_t i = 0; i < rounds; ++i) {
    const auto start = now_ns();
    asio::write(client, asio::buffer(buf));
    asio::read(client, asio::buffer(buf));
    samples.push_back(now_ns() - start);
    std::this_thread::sleep_for(200us);  // each round trip wakes a sleeping thread, as a change does
  }
  echo.join();
  return percentiles(std::move(samples));
}

// ---- fdatasync of the data directory's file system ------------------------------------------------------

Percentiles fdatasync_latency(const std::string& dir, std::size_t rounds) {
  const auto path = dir + "/bench-fdatasync.probe";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  const std::string block(4096, 'x');
  std::vector<std::int64_t> samples;
  samples.reserve(rounds);
  for (std::size_t i = 0; i < rounds; ++i) {
    const auto start = now_ns();
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      ::close(fd);
      throw std::runtime_error("write + fdatasync failed in " + dir);
    }
    samples.push_back(now_ns() - start);
  }
  ::close(fd);
  ::unlink(path.c_str());
  return percentiles(std::move(samples));
}

// ---- latency --------------------------------------------------------------------------------------------

struct LatencyOptions {
  std::size_t subscribers = 100;
  std::size_t twins_per_subscriber = 10;
  double rate = 10'000;
  std::size_t batch = 50;
  std::size_t connections = 4;
  double duration = 10;
  double warmup = 2;
  std::string data_dir;
  std::size_t fsync_rounds = 1000;
};

int run_latency(const Target& target, const LatencyOptions& o) {
  fmt::print(
      "latency: {} subscribers x {} twins each (of {}), {} changes/s in batches of {} over {} connections, "
      "{} s measured after {} s\n",
      o.subscribers, o.twins_per_subscriber, target.twins, grouped(o.rate), o.batch, o.connections,
      o.duration, o.warmup);
  std::optional<Percentiles> fsync;
  if (!o.data_dir.empty()) fsync = fdatasync_latency(o.data_dir, o.fsync_rounds);
  const auto loopback = loopback_round_trips(2000);

  std::vector<std::uint32_t> followers(target.twins, 0);
  const auto twins_of = [&](std::size_t s) {
    std::vector<std::size_t> ids;
    for (std::size_t k = 0; k < o.twins_per_subscriber; ++k)
      ids.push_back((s * o.twins_per_subscriber + k) % target.twins);
    return ids;
  };
  for (std::size_t s = 0; s < o.subscribers; ++s) {
    for (const auto twin : twins_of(s)) ++followers[twin];
  }

  StreamSubscribers subscribers(target, target.threads);
  subscribers.open(o.subscribers, twins_of);
  auto& shared = subscribers.shared;
  const auto& counters = subscribers.counters;

  struct Phase {
    std::string_view name;
    std::string_view key;
    PublishStats published;
    Totals before, after;
    double server_cpu = 0, bench_cpu = 0;
    Commits commits_before, commits_after;
  };
  std::vector<Phase> phases(2);
  phases[0].name = "durable";
  phases[0].key = kDurableStamp;
  phases[1].name = "ephemeral";
  phases[1].key = kEphemeralStamp;
  for (auto& phase : phases) {
    PublishPlan plan;
    plan.connections = o.connections;
    plan.batch = o.batch;
    plan.rate = o.rate;
    plan.span = target.twins;
    plan.key = phase.key;
    plan.followers = &followers;
    plan.start_ns = now_ns() + 100'000'000;
    plan.window.from = plan.start_ns + static_cast<std::int64_t>(o.warmup * 1e9);
    plan.window.until = plan.window.from + static_cast<std::int64_t>(o.duration * 1e9);
    plan.end_ns = plan.window.until;
    shared.window_from = plan.window.from;
    shared.window_until = plan.window.until;
    std::thread sampler([&] {
      sleep_until_ns(plan.window.from);
      phase.before = totals(counters);
      phase.server_cpu = -cpu_seconds(target.server_pid);
      phase.bench_cpu = -cpu_seconds(::getpid());
      phase.commits_before = commits(target);
      sleep_until_ns(plan.window.until);
      phase.server_cpu += cpu_seconds(target.server_pid);
      phase.bench_cpu += cpu_seconds(::getpid());
      phase.commits_after = commits(target);
    });
    phase.published = run_publishers(target, plan);
    sampler.join();
    std::this_thread::sleep_for(1s);  // the last deliveries
    phase.after = totals(counters);
  }
  subscribers.close();

  std::vector<std::int64_t> durable, ephemeral;
  for (const auto& c : counters) {
    durable.insert(durable.end(), c->durable_ns.begin(), c->durable_ns.end());
    ephemeral.insert(ephemeral.end(), c->ephemeral_ns.begin(), c->ephemeral_ns.end());
  }
  const auto d = percentiles(std::move(durable));
  const auto e = percentiles(std::move(ephemeral));
  for (const auto& phase : phases) {
    const auto& p = phase.published;
    const auto& lat = phase.key == kDurableStamp ? d : e;
    fmt::print(
        "  {:<9}  sent {} changes ({} accepted, {} failed, {} batches late), in the window {} ({}/s); "
        "delivered {} of {} expected in the window; conflated states {}; server CPU {:.0f} %, bench CPU "
        "{:.0f} %\n",
        phase.name, grouped(static_cast<double>(p.sent)), grouped(static_cast<double>(p.accepted)), p.failed,
        p.late, grouped(static_cast<double>(p.in_window)),
        grouped(static_cast<double>(p.in_window) / o.duration), grouped(static_cast<double>(lat.count)),
        grouped(static_cast<double>(p.expected_in_window)), phase.after.conflated - phase.before.conflated,
        100 * phase.server_cpu / o.duration, 100 * phase.bench_cpu / o.duration);
    if (!p.first_problem.empty()) fmt::print("             first problem: {}\n", p.first_problem);
  }
  for (const auto& phase : phases) {
    fmt::print("  {:<44} {}\n", fmt::format("(HTTP POST -> answer, {})", phase.name),
               describe(percentiles(phase.published.answer_ns)));
    const Commits c{phase.commits_after.duration.minus(phase.commits_before.duration),
                    phase.commits_after.writes.minus(phase.commits_before.writes)};
    fmt::print("  {:<44} {}\n", fmt::format("(store during {})", phase.name), describe(c, o.duration));
  }
  if (!shared.first_problem.empty()) fmt::print("  subscriber problem: {}\n", shared.first_problem);
  fmt::print("  {:<44} {}\n", "durable change -> subscriber", describe(d));
  if (fsync) fmt::print("  {:<44} {}\n", "  beside it: write 4 KiB + fdatasync", describe(*fsync));
  fmt::print("  {:<44} {}\n", "ephemeral change -> subscriber", describe(e));
  fmt::print("  {:<44} {}\n", "  beside it: loopback TCP round trip", describe(loopback));
  fmt::print("  targets: durable p50 <= 1 ms, p99 <= 5 ms: {}; ephemeral p50 <= 0.3 ms, p99 <= 2 ms: {}\n",
             d.count > 0 && d.p50 <= 1e6 && d.p99 <= 5e6 ? "met" : "MISSED",
             e.count > 0 && e.p50 <= 0.3e6 && e.p99 <= 2e6 ? "met" : "MISSED");
  return 0;
}

// ---- Mosquitto: subscribers driven by epoll on a few threads, and a publisher ----------------------------

struct MqttCounters : Counters {
  std::atomic<std::size_t> subscribed{0};
  std::atomic<std::size_t> failed{0};
};

// The measured window as the subscriber threads read it (set once they run).
struct SharedWindow {
  std::atomic<std::int64_t> from{std::numeric_limits<std::int64_t>::max()};
  std::atomic<std::int64_t> until{std::numeric_limits<std::int64_t>::min()};
  bool contains(std::int64_t stamp) const {
    return stamp >= from.load(std::memory_order_relaxed) && stamp < until.load(std::memory_order_relaxed);
  }
};

struct MqttClient {
  mosquitto* mosq = nullptr;
  MqttCounters* counters = nullptr;
  const SharedWindow* window = nullptr;
  bool alive = true;
};

struct MosquittoLib {
  MosquittoLib() { mosquitto_lib_init(); }
  ~MosquittoLib() { mosquitto_lib_cleanup(); }
};

void set_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// Reads what the socket holds: libmosquitto reads one packet per call (several recv() each).
void drain_reads(MqttClient& c) {
  for (int n = 0; n < 4096 && c.alive; ++n) {
    errno = 0;
    const int rc = mosquitto_loop_read(c.mosq, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      c.alive = false;
      c.counters->failed.fetch_add(1);
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
  }
  if (c.alive && mosquitto_want_write(c.mosq)) mosquitto_loop_write(c.mosq, 1);
}

// One turn of a publisher's network loop: waits up to `timeout_ms` for its socket, reads what came, writes
// what is queued. (mosquitto_loop() uses select(), which cannot watch a descriptor above FD_SETSIZE, and a
// thousand subscribers take more descriptors than that.)
void pump(mosquitto* m, int timeout_ms) {
  pollfd p{mosquitto_socket(m), static_cast<short>(POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0)), 0};
  if (::poll(&p, 1, timeout_ms) > 0) {
    if ((p.revents & POLLIN) != 0) {
      for (int n = 0; n < 4096; ++n) {
        errno = 0;
        if (mosquitto_loop_read(m, 1) != MOSQ_ERR_SUCCESS || errno == EAGAIN || errno == EWOULDBLOCK) break;
      }
    }
    if (mosquitto_want_write(m)) mosquitto_loop_write(m, 1);
  }
  mosquitto_loop_misc(m);
}

constexpr const char* kFanoutFilter = "bench/fanout/+";

// A thread of MQTT subscribers: connects each client, subscribes it to kFanoutFilter at QoS 1 and reads until
// `running` turns false.
void mqtt_subscribers(std::vector<MqttClient*> clients, const std::string& host, int port,
                      const std::atomic<bool>& running) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  for (auto* c : clients) {
    mosquitto_user_data_set(c->mosq, c);
    mosquitto_connect_callback_set(c->mosq, [](mosquitto* m, void*, int rc) {
      if (rc == 0) mosquitto_subscribe(m, nullptr, kFanoutFilter, 1);
    });
    mosquitto_subscribe_callback_set(c->mosq, [](mosquitto*, void* self, int, int, const int*) {
      static_cast<MqttClient*>(self)->counters->subscribed.fetch_add(1);
    });
    mosquitto_message_callback_set(c->mosq, [](mosquitto*, void* self, const mosquitto_message* m) {
      const auto received = now_ns();
      auto& client = *static_cast<MqttClient*>(self);
      auto& counters = *client.counters;
      counters.changes.fetch_add(1, std::memory_order_relaxed);
      counters.bytes.fetch_add(static_cast<std::uint64_t>(m->payloadlen), std::memory_order_relaxed);
      const auto stamp = integer_after(
          std::string_view(static_cast<const char*>(m->payload), static_cast<std::size_t>(m->payloadlen)),
          kDurableStamp);
      if (stamp && client.window->contains(*stamp)) counters.durable_ns.push_back(received - *stamp);
    });
    if (mosquitto_connect(c->mosq, host.c_str(), port, 600) != MOSQ_ERR_SUCCESS) {
      c->alive = false;
      c->counters->failed.fetch_add(1);
      continue;
    }
    const int fd = mosquitto_socket(c->mosq);
    set_nonblocking(fd);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    while (mosquitto_want_write(c->mosq)) mosquitto_loop_write(c->mosq, 1);
  }
  std::vector<epoll_event> events(512);
  auto sweep = std::chrono::steady_clock::now();
  while (running.load(std::memory_order_relaxed)) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 5);
    for (int i = 0; i < n; ++i)
      drain_reads(*static_cast<MqttClient*>(events[static_cast<std::size_t>(i)].data.ptr));
    if (std::chrono::steady_clock::now() - sweep > 50ms) {
      sweep = std::chrono::steady_clock::now();
      for (auto* c : clients) {
        if (!c->alive) continue;
        if (mosquitto_want_write(c->mosq)) mosquitto_loop_write(c->mosq, 1);
        mosquitto_loop_misc(c->mosq);
      }
    }
  }
  for (auto* c : clients) {
    if (c->alive) mosquitto_disconnect(c->mosq);
  }
  ::close(ep);
}

// ---- fanout ---------------------------------------------------------------------------------------------

struct FanoutOptions {
  std::size_t subscribers = 1000;
  std::size_t twins = 10;  // the twins every subscriber follows (the first ones)
  std::size_t connections = 2;
  double duration = 10;
  double warmup = 2;
  bool ephemeral = false;
  std::string mqtt_host = "127.0.0.1";
  int mqtt_port = 0;
  int broker_pid = 0;
  bool peer_only = false;         // Mosquitto only
  std::vector<int> qos = {0, 1};  // the peer runs
  std::size_t window = 20;        // changes published and not yet delivered to every subscriber, at most
};

struct FanoutResult {
  std::string name;
  double published_per_s = 0;
  double deliveries_per_s = 0;
  double conflated_per_s = 0;
  double bytes_per_delivery = 0;
  double server_cpu = 0, bench_cpu = 0;  // CPU seconds per second of the window
  Percentiles latency;
  std::uint64_t late = 0;  // sends that found no room in the window within kStall
  std::string problem;
};

// Samples counters at the window's edges (from the calling thread); fills the rates of `out`.
template <class C>
void sample_window(const std::vector<std::unique_ptr<C>>& counters, const Window& window, double duration,
                   int server_pid, FanoutResult& out) {
  sleep_until_ns(window.from);
  const auto before = totals(counters);
  const auto server0 = cpu_seconds(server_pid), bench0 = cpu_seconds(::getpid());
  sleep_until_ns(window.until);
  const auto after = totals(counters);
  out.server_cpu = (cpu_seconds(server_pid) - server0) / duration;
  out.bench_cpu = (cpu_seconds(::getpid()) - bench0) / duration;
  out.deliveries_per_s = static_cast<double>(after.changes - before.changes) / duration;
  out.conflated_per_s = static_cast<double>(after.conflated - before.conflated) / duration;
  out.bytes_per_delivery = after.changes > before.changes
                               ? static_cast<double>(after.bytes - before.bytes) /
                                     static_cast<double>(after.changes - before.changes)
                               : 0;
}

FanoutResult fanout_twinbridge(const Target& target, const FanoutOptions& o) {
  FanoutResult out;
  out.name = fmt::format("twinbridge /v1/stream, {} changes", o.ephemeral ? "ephemeral" : "durable");
  StreamSubscribers subscribers(target, target.threads);
  auto& shared = subscribers.shared;
  const auto& counters = subscribers.counters;
  subscribers.open(o.subscribers, [&](std::size_t) {
    std::vector<std::size_t> ids(o.twins);
    for (std::size_t k = 0; k < o.twins; ++k) ids[k] = k;
    return ids;
  });
  PublishPlan plan;
  plan.connections = o.connections;
  plan.batch = o.twins;
  plan.rate = 0;
  plan.span = o.twins;
  plan.key = o.ephemeral ? kEphemeralStamp : kDurableStamp;
  std::atomic<std::uint64_t> sent{0};
  plan.in_flight = o.window;
  plan.fan = o.subscribers;
  plan.published = &sent;
  plan.delivered = [&counters] { return totals(counters).changes; };
  plan.start_ns = now_ns();
  plan.window.from = plan.start_ns + static_cast<std::int64_t>(o.warmup * 1e9);
  plan.window.until = plan.window.from + static_cast<std::int64_t>(o.duration * 1e9);
  plan.end_ns = plan.window.until;
  shared.window_from = plan.window.from;
  shared.window_until = plan.window.until;
  PublishStats published;
  std::thread publisher([&] { published = run_publishers(target, plan); });
  sample_window(counters, plan.window, o.duration, target.server_pid, out);
  publisher.join();
  subscribers.close();
  std::vector<std::int64_t> samples;
  for (const auto& c : counters) {
    const auto& v = o.ephemeral ? c->ephemeral_ns : c->durable_ns;
    samples.insert(samples.end(), v.begin(), v.end());
  }
  out.latency = percentiles(std::move(samples));
  out.published_per_s = static_cast<double>(published.in_window) / o.duration;
  out.late = published.late;
  out.problem = published.first_problem.empty() ? shared.first_problem : published.first_problem;
  return out;
}

// A message of the same shape and size as twinbridge's change message, stamped.
std::string mqtt_change(std::size_t seq, const std::string& twin, std::int64_t stamp, std::size_t size) {
  auto text = fmt::format(
      R"({{"type":"change","seq":{},"twin":"{}","version":{},"patch":{{"properties":{{"{}":{}}}}},)"
      R"("ingestedAt":"2026-12-01T12:00:00.000000Z","channel":"http","pad":""}})",
      seq, twin, seq, kDurableStamp, stamp);
  if (text.size() < size) text.insert(text.size() - 2, size - text.size(), 'x');
  return text;
}

FanoutResult fanout_mosquitto(const Target& target, const FanoutOptions& o, int qos,
                              std::size_t message_size) {
  FanoutResult out;
  out.name = fmt::format("Mosquitto, QoS {} (subscribers QoS 1)", qos);
  SharedWindow shared_window;
  Window window;
  std::vector<std::unique_ptr<MqttCounters>> counters;
  const auto threads = std::max<std::size_t>(target.threads, 1);
  for (std::size_t i = 0; i < threads; ++i) counters.push_back(std::make_unique<MqttCounters>());
  std::vector<std::unique_ptr<MqttClient>> clients;
  std::vector<std::vector<MqttClient*>> per_thread(threads);
  for (std::size_t s = 0; s < o.subscribers; ++s) {
    auto c = std::make_unique<MqttClient>();
    c->mosq = mosquitto_new(fmt::format("bench-sub-{}-{}", qos, s).c_str(), true, nullptr);
    mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    c->counters = counters[s % threads].get();
    c->window = &shared_window;
    per_thread[s % threads].push_back(c.get());
    clients.push_back(std::move(c));
  }
  std::atomic<bool> running{true};
  std::vector<std::thread> readers;
  for (std::size_t i = 0; i < threads; ++i) {
    readers.emplace_back(mqtt_subscribers, per_thread[i], o.mqtt_host, o.mqtt_port, std::cref(running));
  }
  const auto subscribed = [&] {
    std::size_t n = 0, failed = 0;
    for (const auto& c : counters) {
      n += c->subscribed.load();
      failed += c->failed.load();
    }
    return std::pair{n, failed};
  };
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    const auto [n, failed] = subscribed();
    if (failed > 0) {
      out.problem = fmt::format("{} MQTT subscribers failed", failed);
      break;
    }
    if (n >= o.subscribers) break;
    if (std::chrono::steady_clock::now() > deadline) {
      out.problem = fmt::format("only {} of {} MQTT subscribers subscribed in 60 s", n, o.subscribers);
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  const auto start = now_ns() + 100'000'000;
  window.from = start + static_cast<std::int64_t>(o.warmup * 1e9);
  window.until = window.from + static_cast<std::int64_t>(o.duration * 1e9);
  shared_window.from = window.from;
  shared_window.until = window.until;

  // The publisher, on a thread of its own.
  std::uint64_t published_in_window = 0;
  std::uint64_t late = 0;
  std::thread publisher([&] {
    mosquitto* pub = mosquitto_new(fmt::format("bench-pub-{}", qos).c_str(), true, nullptr);
    mosquitto_int_option(pub, MOSQ_OPT_TCP_NODELAY, 1);
    if (mosquitto_connect(pub, o.mqtt_host.c_str(), o.mqtt_port, 600) != MOSQ_ERR_SUCCESS) return;
    sleep_until_ns(start);
    std::uint64_t sent = 0;
    std::vector<std::string> topics;
    for (std::size_t k = 0; k < o.twins; ++k) topics.push_back(fmt::format("bench/fanout/{}", k));
    // Closed loop, as for twinbridge: at most o.window messages not yet delivered to every subscriber.
    std::int64_t waiting_since = 0;
    while (now_ns() < window.until) {
      bool room = sent * o.subscribers <= totals(counters).changes + o.window * o.subscribers;
      if (!room) {
        const auto now = now_ns();
        if (waiting_since == 0) waiting_since = now;
        room = now - waiting_since > kStall;
        if (room) ++late;
      }
      if (room) {
        waiting_since = 0;
        for (std::size_t k = 0; k < o.twins; ++k) {
          const auto stamp = now_ns();
          const auto payload = mqtt_change(sent, target.twin(k), stamp, message_size);
          mosquitto_publish(pub, nullptr, topics[k].c_str(), static_cast<int>(payload.size()), payload.data(),
                            qos, false);
          ++sent;
          if (window.contains(stamp)) ++published_in_window;
        }
      }
      pump(pub, 0);
      if (!room) std::this_thread::sleep_for(50us);
    }
    mosquitto_disconnect(pub);
    mosquitto_destroy(pub);
  });
  sample_window(counters, window, o.duration, o.broker_pid, out);
  publisher.join();
  std::this_thread::sleep_for(200ms);
  running = false;
  for (auto& t : readers) t.join();
  for (auto& c : clients) mosquitto_destroy(c->mosq);
  std::vector<std::int64_t> samples;
  for (const auto& c : counters) samples.insert(samples.end(), c->durable_ns.begin(), c->durable_ns.end());
  out.latency = percentiles(std::move(samples));
  out.published_per_s = static_cast<double>(published_in_window) / o.duration;
  out.late = late;
  return out;
}

int run_fanout(const Target& target, const FanoutOptions& o) {
  fmt::print(
      "fanout: {} subscribers, each following the same {} twins (topics); publishers as fast as deliveries "
      "follow (at most {} changes not yet delivered to every subscriber); "
      "{} s measured after {} s; {} client thread(s)\n",
      o.subscribers, o.twins, o.window, o.duration, o.warmup, target.threads);
  std::vector<FanoutResult> results;
  if (!o.peer_only) results.push_back(fanout_twinbridge(target, o));
  const auto size =
      results.empty() ? std::size_t{187} : static_cast<std::size_t>(results.front().bytes_per_delivery);
  if (o.mqtt_port > 0) {
    std::this_thread::sleep_for(1s);
    MosquittoLib lib;
    for (const int qos : o.qos) {
      results.push_back(fanout_mosquitto(target, o, qos, size > 0 ? size : 200));
      std::this_thread::sleep_for(1s);
    }
  }
  fmt::print("  {:<46} {:>12} {:>14} {:>11} {:>6} {:>11} {:>15} {:>10}  {}\n", "server", "published/s",
             "deliveries/s", "conflated/s", "bytes", "server CPU", "per server CPU-s", "bench CPU",
             "latency (set by the window)");
  for (const auto& r : results) {
    fmt::print("  {:<46} {:>12} {:>14} {:>11} {:>6.0f} {:>10.0f}% {:>15} {:>9.0f}%  p50 {} p99 {}\n", r.name,
               grouped(r.published_per_s), grouped(r.deliveries_per_s), grouped(r.conflated_per_s),
               r.bytes_per_delivery, 100 * r.server_cpu,
               r.server_cpu > 0 ? grouped(r.deliveries_per_s / r.server_cpu) : std::string("-"),
               100 * r.bench_cpu, millis(r.latency.p50), millis(r.latency.p99));
    if (r.late > 0) fmt::print("    {} sends found no room in the window within 1 s\n", r.late);
    if (!r.problem.empty()) fmt::print("    problem: {}\n", r.problem);
  }
  if (!o.peer_only) {
    fmt::print("  target: >= 300,000 deliveries/s to 1,000 WebSocket subscribers: {}\n",
               results.front().deliveries_per_s >= 300'000 ? "met" : "MISSED");
  }
  return 0;
}

// ---- ingest ---------------------------------------------------------------------------------------------

struct IngestOptions {
  std::size_t batch = 100;
  std::size_t connections = 16;
  double duration = 10;
  std::string mqtt_host = "127.0.0.1";
  int mqtt_port = 0;
  std::string topic_prefix = "twinbridge/state/";
  std::size_t mqtt_window = 200;  // messages published and not yet stored (below Mosquitto's queue of 1,000)
};

constexpr std::string_view kIngestValues = R"(,"temperature":21.5,"mode":"running")";

// The sum of the state versions of every twin (each accepted durable change adds one).
std::int64_t version_sum(const Target& t) {
  std::int64_t sum = 0;
  for (std::size_t first = 0; first < t.twins; first += 100) {
    std::string query;
    for (std::size_t i = first; i < std::min(first + 100, t.twins); ++i) {
      query += fmt::format("{}id={}", query.empty() ? "?" : "&", t.twin(i));
    }
    const auto answer = http_call(t, http::verb::get, "/v1/twin-states" + query, t.viewer_key);
    boost::system::error_code ec;
    const auto doc = boost::json::parse(answer.body, ec);
    const auto* items = !ec && doc.is_object() ? doc.as_object().if_contains("items") : nullptr;
    if (answer.status != 200 || items == nullptr || !items->is_array()) {
      throw std::runtime_error(
          fmt::format("GET /v1/twin-states: {} {}", answer.status, answer.body.substr(0, 300)));
    }
    for (const auto& item : items->as_array()) {
      const auto* v = item.is_object() ? item.as_object().if_contains("version") : nullptr;
      if (v != nullptr) sum += v->to_number<std::int64_t>();
    }
  }
  return sum;
}

// The durable stamp of a twin's state as the server reads it (-1: none).
std::int64_t stored_stamp(const Target& t, std::size_t twin) {
  const auto answer = http_call(t, http::verb::get, "/v1/twins/" + t.twin(twin) + "/state", t.viewer_key);
  if (answer.status != 200) return -1;
  boost::system::error_code ec;
  const auto doc = boost::json::parse(answer.body, ec);
  const auto* props = !ec && doc.is_object() ? doc.as_object().if_contains("properties") : nullptr;
  const auto* v =
      props != nullptr && props->is_object() ? props->as_object().if_contains(kDurableStamp) : nullptr;
  return v != nullptr && v->is_int64() ? v->as_int64() : -1;
}

// Changes the MQTT sync has stored so far (twinbridge_mqtt_messages_total{outcome="applied"} counts changes).
std::int64_t mqtt_applied(const Target& t) {
  const auto answer = http_call(t, http::verb::get, "/metrics", t.viewer_key);
  const std::string_view key = "twinbridge_mqtt_messages_total{outcome=\"applied\"} ";
  const auto at = answer.body.find(key);
  if (at == std::string::npos) throw std::runtime_error("no MQTT sync metrics on /metrics");
  return static_cast<std::int64_t>(std::stod(answer.body.substr(at + key.size(), 32)));
}

int run_ingest(const Target& target, const IngestOptions& o) {
  fmt::print("ingest: batches of {} changes of distinct twins (of {}), {} s each\n", o.batch, target.twins,
             o.duration);
  // Batched HTTP.
  PublishPlan plan;
  plan.connections = o.connections;
  plan.batch = o.batch;
  plan.rate = 0;
  plan.span = target.twins;
  plan.extra = std::string(kIngestValues);
  plan.start_ns = now_ns();
  plan.end_ns = plan.start_ns + static_cast<std::int64_t>(o.duration * 1e9);
  plan.window = {plan.start_ns, plan.end_ns};
  const auto server0 = cpu_seconds(target.server_pid);
  const auto commits0 = commits(target);
  const auto http = run_publishers(target, plan);
  const auto commits1 = commits(target);
  const double http_s = static_cast<double>(http.last_answer_ns - plan.start_ns) / 1e9;
  const auto http_cpu = (cpu_seconds(target.server_pid) - server0) / http_s;
  fmt::print("  {:<58} {:>12} updates/s  ({} requests over {} connections, {} failed, server CPU {:.0f} %)\n",
             "HTTP POST /v1/twin-systems/{id}/state (fsync before 200)",
             grouped(static_cast<double>(http.accepted) / http_s),
             grouped(static_cast<double>(http.requests)), o.connections, http.failed, 100 * http_cpu);
  if (!http.first_problem.empty()) fmt::print("    first problem: {}\n", http.first_problem);
  fmt::print("    store: {}\n", describe(Commits{commits1.duration.minus(commits0.duration),
                                                 commits1.writes.minus(commits0.writes)},
                                         http_s));
  double mqtt_rate = 0;
  if (o.mqtt_port > 0) {
    MosquittoLib lib;
    const auto topic = o.topic_prefix + target.system;
    mosquitto* pub = mosquitto_new("bench-ingest", true, nullptr);
    mosquitto_int_option(pub, MOSQ_OPT_TCP_NODELAY, 1);
    if (mosquitto_connect(pub, o.mqtt_host.c_str(), o.mqtt_port, 600) != MOSQ_ERR_SUCCESS) {
      throw std::runtime_error("cannot connect to the MQTT broker");
    }
    const auto send = [&](const std::string& payload) {
      return mosquitto_publish(pub, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(),
                               1, false);
    };
    // twinbridge subscribes to the state topic once it sees the twin system: wait until a probe is stored.
    const auto probe_deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
      const auto stamp = now_ns();
      send(batch_body(target, 0, 1, kDurableStamp, stamp, kIngestValues));
      const auto until = std::chrono::steady_clock::now() + 300ms;
      bool stored = false;
      while (!stored && std::chrono::steady_clock::now() < until) {
        pump(pub, 10);
        stored = stored_stamp(target, 0) == stamp;
      }
      if (stored) break;
      if (std::chrono::steady_clock::now() > probe_deadline) {
        throw std::runtime_error("twinbridge stored nothing published on " + topic + " within 30 s");
      }
    }
    // Closed loop: at most o.mqtt_window messages published and not yet stored (twinbridge's count of applied
    // changes on /metrics), so that no queue overflows (Mosquitto drops what exceeds a client's queue).
    const auto before = version_sum(target);
    const auto applied0 = mqtt_applied(target);
    const auto start = now_ns();
    const auto end = start + static_cast<std::int64_t>(o.duration * 1e9);
    const auto warm = start + std::min<std::int64_t>(1'000'000'000, (end - start) / 5);  // the rate from here
    std::uint64_t sent = 0;                                                              // messages
    std::int64_t applied = 0;  // changes stored since start
    std::int64_t polled = 0;
    std::optional<std::pair<std::int64_t, std::int64_t>> at_warm;  // (time, applied)
    const auto server1 = cpu_seconds(target.server_pid);
    const auto commits2 = commits(target);
    while (now_ns() < end) {
      if (now_ns() - polled > 5'000'000) {
        applied = mqtt_applied(target) - applied0;
        polled = now_ns();
        if (!at_warm && polled >= warm) at_warm.emplace(polled, applied);
      }
      if (static_cast<std::int64_t>(sent * o.batch) - applied <
          static_cast<std::int64_t>(o.mqtt_window * o.batch)) {
        if (send(batch_body(target, (sent * o.batch) % target.twins, o.batch, kDurableStamp, now_ns(),
                            kIngestValues)) == MOSQ_ERR_SUCCESS) {
          ++sent;
        }
        pump(pub, 0);
      } else {
        pump(pub, 1);
      }
    }
    const auto stored_in_time = mqtt_applied(target) - applied0;
    const auto measured_until = now_ns();
    const auto commits3 = commits(target);
    const auto mqtt_cpu = (cpu_seconds(target.server_pid) - server1) / o.duration;
    // Then the rest: everything sent must be stored (nothing dropped on the way).
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (mqtt_applied(target) - applied0 < static_cast<std::int64_t>(sent * o.batch) &&
           std::chrono::steady_clock::now() < deadline) {
      pump(pub, 10);
    }
    const auto stored_all = mqtt_applied(target) - applied0;
    mosquitto_disconnect(pub);
    mosquitto_destroy(pub);
    const auto versions = version_sum(target) - before;
    mqtt_rate = at_warm ? static_cast<double>(stored_in_time - at_warm->second) /
                              (static_cast<double>(measured_until - at_warm->first) / 1e9)
                        : 0;
    fmt::print(
        "  {:<58} {:>12} updates/s  ({} messages of {} changes; {} of {} stored in the end, state versions "
        "+{}; server CPU {:.0f} %)\n",
        fmt::format("MQTT {} (QoS 1, stored)", topic), grouped(mqtt_rate), grouped(static_cast<double>(sent)),
        o.batch, grouped(static_cast<double>(stored_all)), grouped(static_cast<double>(sent * o.batch)),
        grouped(static_cast<double>(versions)), 100 * mqtt_cpu);
    fmt::print("    store: {}\n", describe(Commits{commits3.duration.minus(commits2.duration),
                                                   commits3.writes.minus(commits2.writes)},
                                           o.duration));
  }
  const double http_rate = static_cast<double>(http.accepted) / http_s;
  fmt::print("  target: >= 50,000 durable updates/s: HTTP {}{}\n", http_rate >= 50'000 ? "met" : "MISSED",
             o.mqtt_port > 0 ? fmt::format(", MQTT {}", mqtt_rate >= 50'000 ? "met" : "MISSED") : "");
  return 0;
}

}  // namespace twinbridge::bench

int main(int argc, char** argv) {
  using namespace twinbridge::bench;
  CLI::App app{"twinbridge live stream and state ingestion benchmarks (bench/stream.sh drives them)"};
  app.require_subcommand(1);
  Target target;
  const auto common = [&](CLI::App* sub) {
    sub->add_option("--host", target.host, "twinbridge's address");
    sub->add_option("--port", target.port, "twinbridge's port")->required();
    sub->add_option("--viewer-key", target.viewer_key, "API key of the subscribers (twins:read)")->required();
    sub->add_option("--publisher-key", target.publisher_key, "API key of the twins' holder (twins:publish)")
        ->required();
    sub->add_option("--system", target.system, "the twin system");
    sub->add_option("--twin-prefix", target.twin_prefix, "twin ids are <prefix>000000, <prefix>000001, ...");
    sub->add_option("--twins", target.twins, "twins the system has");
    sub->add_option("--server-pid", target.server_pid, "twinbridge's pid, for its CPU time");
    sub->add_option("--threads", target.threads, "event loops (threads) of the subscribers");
  };

  LatencyOptions latency;
  auto* lat = app.add_subcommand("latency", "change -> WebSocket subscriber latency, durable and ephemeral");
  common(lat);
  lat->add_option("--subscribers", latency.subscribers);
  lat->add_option("--twins-per-subscriber", latency.twins_per_subscriber);
  lat->add_option("--rate", latency.rate, "changes/s");
  lat->add_option("--batch", latency.batch, "changes per POST");
  lat->add_option("--connections", latency.connections, "publisher connections");
  lat->add_option("--duration", latency.duration, "seconds measured per phase");
  lat->add_option("--warmup", latency.warmup, "seconds before the measured window");
  lat->add_option("--data-dir", latency.data_dir, "twinbridge's data directory (fdatasync latency beside)");
  lat->add_option("--fsync-rounds", latency.fsync_rounds);

  FanoutOptions fanout;
  auto* fan = app.add_subcommand("fanout", "deliveries/s to many subscribers, beside Mosquitto");
  common(fan);
  fan->add_option("--subscribers", fanout.subscribers);
  fan->add_option("--fanout-twins", fanout.twins, "twins (topics) every subscriber follows");
  fan->add_option("--connections", fanout.connections, "publisher connections");
  fan->add_option("--duration", fanout.duration);
  fan->add_option("--warmup", fanout.warmup);
  fan->add_flag("--ephemeral", fanout.ephemeral, "publish ephemeral changes instead of durable ones");
  fan->add_option("--mqtt-port", fanout.mqtt_port, "Mosquitto's port (0: no peer)");
  fan->add_flag("--peer-only", fanout.peer_only, "measure Mosquitto only");
  fan->add_option("--qos", fanout.qos, "QoS levels of the Mosquitto runs")->delimiter(',');
  fan->add_option("--broker-pid", fanout.broker_pid, "Mosquitto's pid, for its CPU time");
  fan->add_option("--window", fanout.window,
                  "changes published and not yet delivered to every subscriber, at most (closed loop)");

  IngestOptions ingest;
  auto* ing = app.add_subcommand("ingest", "durable state updates/s over batched HTTP and MQTT");
  common(ing);
  ing->add_option("--batch", ingest.batch, "changes per request or message");
  ing->add_option("--connections", ingest.connections, "HTTP connections");
  ing->add_option("--duration", ingest.duration);
  ing->add_option("--mqtt-port", ingest.mqtt_port, "the broker twinbridge syncs from (0: HTTP only)");
  ing->add_option("--mqtt-state-topic-prefix", ingest.topic_prefix);
  ing->add_option("--mqtt-window", ingest.mqtt_window);

  CLI11_PARSE(app, argc, argv);
  try {
    if (lat->parsed()) return run_latency(target, latency);
    if (fan->parsed()) return run_fanout(target, fanout);
    if (ing->parsed()) return run_ingest(target, ingest);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stream_bench: %s\n", e.what());
    return 1;
  }
  return 2;
}
