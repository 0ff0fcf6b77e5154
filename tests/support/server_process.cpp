#include "support/server_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <regex>
#include <stdexcept>

extern char** environ;

namespace twinbridge::testing {

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("twinbridge-test-" + std::to_string(rd()) + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string twinbridge_binary() {
  const char* bin = std::getenv("TWINBRIDGE_BIN");
  return bin != nullptr && *bin != '\0' ? bin : TB_DEFAULT_BIN;
}

ServerProcess::ServerProcess(const std::filesystem::path& data_dir, std::vector<std::string> extra_args,
                             std::map<std::string, std::string> env) {
  std::vector<std::string> args = {twinbridge_binary(), "serve",  "--listen",
                                   "127.0.0.1:0",       "--data", data_dir.string()};
  // Test upstreams listen on loopback: allow it (and nothing else), unless the test chose its own list.
  if (std::find(extra_args.begin(), extra_args.end(), "--outbound-allow") == extra_args.end()) {
    args.insert(args.end(), {"--outbound-allow", "loopback"});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // The child's environment: ours without TWINBRIDGE_* (so a developer's shell cannot change a test), plus
  // `env`.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("TWINBRIDGE_")) continue;
    env_strings.emplace_back(*e);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    throw std::runtime_error("cannot start " + args[0]);
  }
  stderr_fd_ = pipe_fds[0];
  reader_ = std::thread([this] {
    char chunk[4096];
    for (;;) {
      const auto n = ::read(stderr_fd_, chunk, sizeof chunk);
      if (n <= 0) {
        std::lock_guard lock(mutex_);
        eof_ = true;
        cv_.notify_all();
        break;
      }
      std::lock_guard lock(mutex_);
      log_.append(chunk, static_cast<std::size_t>(n));
      cv_.notify_all();
    }
  });
  if (!wait_for_log("listening on http://", std::chrono::seconds(30))) {
    stop(SIGKILL);
    throw std::runtime_error("twinbridge did not start listening; its log:\n" + log());
  }
  static const std::regex kUrl(R"(listening on http://127\.0\.0\.1:(\d+))");
  std::smatch m;
  const auto text = log();
  if (!std::regex_search(text, m, kUrl)) throw std::runtime_error("no port in the log:\n" + text);
  port_ = static_cast<std::uint16_t>(std::stoi(m[1].str()));
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && exit_code_ < 0) stop(SIGKILL);
  if (reader_.joinable()) reader_.join();
  if (stderr_fd_ >= 0) ::close(stderr_fd_);
}

bool ServerProcess::running() {
  if (exit_code_ >= 0) return false;
  int status = 0;
  const auto r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

int ServerProcess::stop(int signal, std::chrono::milliseconds timeout) {
  if (exit_code_ >= 0) return exit_code_;
  ::kill(pid_, signal);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      exit_code_ = 128 + SIGKILL;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (reader_.joinable()) reader_.join();
  return exit_code_;
}

std::string ServerProcess::log() const {
  std::lock_guard lock(mutex_);
  return log_;
}

bool ServerProcess::wait_for_log(const std::string& text, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return eof_ || log_.find(text) != std::string::npos; });
  return log_.find(text) != std::string::npos;
}

}  // namespace twinbridge::testing
