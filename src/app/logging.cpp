#include "app/logging.hpp"

#include <spdlog/async.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/time.hpp"

namespace twinbridge::app {

namespace {

class JsonLineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto ts = core::format_rfc3339(std::chrono::time_point_cast<std::chrono::microseconds>(msg.time));
    boost::json::object line{{"ts", ts},
                             {"level", spdlog::level::to_string_view(msg.level).data()},
                             {"logger", std::string_view(msg.logger_name.data(), msg.logger_name.size())},
                             {"msg", std::string_view(msg.payload.data(), msg.payload.size())}};
    const auto text = boost::json::serialize(line);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonLineFormatter>(); }
};

}  // namespace

void setup_logging(const std::string& level, const std::string& format) {
  // Lines are written by one background thread so that request threads never wait for the terminal or a pipe;
  // the queue blocks (never drops) when full. Warnings and errors are flushed at once, the rest every second
  // and at exit.
  spdlog::init_thread_pool(8192, 1);
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>("/dev/stderr");
  auto main = std::make_shared<spdlog::async_logger>("twinbridge", sink, spdlog::thread_pool(),
                                                     spdlog::async_overflow_policy::block);
  if (format == "json") {
    main->set_formatter(std::make_unique<JsonLineFormatter>());
  } else {
    main->set_formatter(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%fZ %l %n: %v",
                                                                    spdlog::pattern_time_type::utc));
  }
  main->set_level(spdlog::level::from_str(level));
  main->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(main);
  spdlog::flush_every(std::chrono::seconds(1));
}

void shutdown_logging() {
  auto logger = spdlog::default_logger();  // kept alive until the thread pool is joined
  spdlog::shutdown();                      // drops the loggers, then joins the thread pool's worker
  logger.reset();
}

}  // namespace twinbridge::app
