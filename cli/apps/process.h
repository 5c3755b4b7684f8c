// Small process and mount helpers for the application verbs (vault, docker-plugin): run a program
// and wait for it, start a detached helper, watch a pid go away, ask whether a directory is a
// mount point. The application verbs drive cryptmap's own verbs as subprocesses of
// /proc/self/exe, which keeps them independent of the daemon's internal APIs.
//
// Ownership: nothing is retained; every function is a free function.
// Thread-safety: run()/spawn_detached() fork; call them from a single-threaded process (the CLI).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace cryptmap::cli::apps {

// The absolute path of the running cryptmap binary (readlink /proc/self/exe).
std::string self_exe();

struct RunOptions {
  bool quiet_stdout = false;  // stdout -> /dev/null
  bool quiet_stderr = false;  // stderr -> /dev/null
  std::string stdin_file;     // non-empty: stdin is redirected from this file
};

// Runs argv (argv[0] is looked up in PATH when it has no '/'), waits for it and returns its exit
// code, 128+N when killed by signal N, or 127 when it could not be started.
int run(const std::vector<std::string>& argv, const RunOptions& opt = {});

// Like run(), but returns the child's stdout in `out` (trailing newline removed).
int run_capture(const std::vector<std::string>& argv, std::string& out);

// Starts argv in a new session with stdin from /dev/null and stdout+stderr appended to
// `log_path` (/dev/null when empty). Returns the pid, or -1 when fork failed.
pid_t spawn_detached(const std::vector<std::string>& argv, const std::string& log_path);

// True while `pid` exists and is not a zombie.
bool process_alive(pid_t pid);

// Polls until `pid` is gone (true) or `timeout` passed (false). Reaps it if it is our child.
bool wait_gone(pid_t pid, std::chrono::milliseconds timeout);

// True when `dir` (absolute, no trailing '/') is the mount point of some mount in this
// process's mount namespace (from /proc/self/mountinfo; works even where stat() would get EACCES
// on a FUSE mount of another user).
bool is_mountpoint(const std::string& dir);

// The super-block options (after " - fstype source") of the topmost mount at `dir` in the
// mountinfo text include `option` (e.g. FUSE's "allow_other"). False when `dir` is no mount.
bool mountinfo_has_option(const std::string& mountinfo, const std::string& dir,
                          const std::string& option);
// The same for this process's /proc/self/mountinfo.
bool mount_has_option(const std::string& dir, const std::string& option);

// 64-bit FNV-1a of `s` as 16 hex digits (stable names for state files and volume names).
std::string stable_hash(const std::string& s);

// Parses "512M", "1G", "4096", "64KiB" ... into bytes; false on garbage or overflow.
bool parse_size(const std::string& text, unsigned long long& bytes);

// Parses "90s", "15m", "2h", "30" (seconds) into seconds; false on garbage or zero.
bool parse_duration(const std::string& text, unsigned long long& seconds);

}  // namespace cryptmap::cli::apps
