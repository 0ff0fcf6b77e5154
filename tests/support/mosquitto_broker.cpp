#include "support/mosquitto_broker.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

extern char** environ;

namespace twinbridge::testing {

namespace {

using namespace std::chrono_literals;

constexpr auto kStartDeadline = 15s;
constexpr auto kStopDeadline = 15s;
constexpr int kPortAttempts = 20;

std::string mosquitto_binary() {
  const char* bin = std::getenv("MOSQUITTO_BIN");
  return bin != nullptr && *bin != '\0' ? bin : "/usr/sbin/mosquitto";
}

// A port that was free on 127.0.0.1 a moment ago (the kernel's pick for port 0).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot pick a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string current_user() {
  const passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "root";
}

}  // namespace

MosquittoBroker::MosquittoBroker(std::string listener_options)
    : listener_options_(std::move(listener_options)) {
  for (int attempt = 1;; ++attempt) {
    port_ = free_port();
    try {
      start();
      return;
    } catch (const std::runtime_error&) {
      // Another process may have taken the port between free_port() and the broker's bind.
      if (attempt == kPortAttempts || log().find("Address already in use") == std::string::npos) throw;
    }
  }
}

MosquittoBroker::~MosquittoBroker() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

std::string MosquittoBroker::url(bool tls) const {
  return std::string(tls ? "mqtts" : "mqtt") + "://127.0.0.1:" + std::to_string(port_);
}

std::string MosquittoBroker::log() const {
  return read_file(dir() / "mosquitto.log") + read_file(dir() / "stderr.log");
}

void MosquittoBroker::write_config() const {
  std::ofstream config(dir() / "mosquitto.conf", std::ios::trunc);
  // The listener's options come after the defaults they may change (the last setting wins).
  config << "listener " << port_ << " 127.0.0.1\n"
         << "allow_anonymous true\n"
         << listener_options_ << (listener_options_.empty() || listener_options_.back() == '\n' ? "" : "\n")
         << "persistence true\n"
         << "persistence_location " << dir().string() << "/\n"
         << "persistence_file mosquitto.db\n"
         << "log_dest file " << (dir() / "mosquitto.log").string() << "\n"
         << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
         << "user " << current_user() << "\n";
  if (!config) throw std::runtime_error("cannot write the Mosquitto configuration");
}

void MosquittoBroker::start() {
  write_config();
  // Each start appends to the log: "running" lines of earlier starts must not count.
  const auto log_size_before = read_file(dir() / "mosquitto.log").size();
  std::vector<std::string> args = {mosquitto_binary(), "-c", (dir() / "mosquitto.conf").string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  const auto stderr_path = (dir() / "stderr.log").string();
  posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error("cannot start " + args[0]);
  }
  const auto deadline = std::chrono::steady_clock::now() + kStartDeadline;
  for (;;) {
    if (!running()) throw std::runtime_error("mosquitto exited at start; its log:\n" + log());
    const auto text = read_file(dir() / "mosquitto.log");
    if (text.size() > log_size_before && text.find(" running", log_size_before) != std::string::npos) return;
    if (std::chrono::steady_clock::now() > deadline) {
      stop();
      throw std::runtime_error("mosquitto did not start listening; its log:\n" + log());
    }
    std::this_thread::sleep_for(5ms);
  }
}

bool MosquittoBroker::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

void MosquittoBroker::stop() {
  if (!running()) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + kStopDeadline;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
}

void MosquittoBroker::restart(bool forget_state) {
  stop();
  if (forget_state) std::filesystem::remove(dir() / "mosquitto.db");
  // The same port: another process may hold it for a moment (it was free when first picked).
  const auto deadline = std::chrono::steady_clock::now() + kStartDeadline;
  for (;;) {
    try {
      start();
      return;
    } catch (const std::runtime_error&) {
      if (std::chrono::steady_clock::now() > deadline ||
          log().find("Address already in use") == std::string::npos) {
        throw;
      }
    }
    std::this_thread::sleep_for(50ms);
  }
}

}  // namespace twinbridge::testing
