// `cryptmap vault create|open|close`: an encrypted folder for a plain user, no root and no loop
// device. The image is LUKS2 (made by `cryptmap luksFormat`) holding an ext4 file system made
// with mkfs.ext4 directly on the mapped file; `vault open` serves the volume through the user's
// cryptmap daemon (`cryptmap open`) and mounts its file system at DIR with fuse2fs.
//
// Each open vault has a state file, <state dir>/<hash of DIR>.state (key=value lines: image,
// name, mount_dir, dir, fuse_pid, watcher_pid), where <state dir> is
// $XDG_RUNTIME_DIR/cryptmap-vaults (or /tmp/cryptmap-vaults-<uid>). `vault close DIR` and the idle
// watcher read it.
//
// Closing order, never leaving the image half-closed: unmount DIR (fusermount -u), wait for
// fuse2fs to exit (it flushes the file system when it exits), then `cryptmap close NAME`. When the
// unmount fails (a program still uses DIR), nothing else happens and the vault stays usable.
//
// --idle D: a watcher process (`cryptmap vault watch DIR`, hidden) closes the vault after D without
// activity. Activity = fuse2fs made a read or write system call (every request of every program on
// DIR reaches fuse2fs as a read of /dev/fuse), sampled from /proc/<fuse2fs pid>/io. If the close
// fails because DIR is busy, the watcher waits another D.
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/apps/process.h"
#include "cli/apps/tab_commands.h"
#include "cli/commands.h"
#include "cli/terminal/progress.h"
#include "fs/control.h"

namespace cryptmap::cli {
using fs::default_mount_dir;
namespace {

namespace stdfs = std::filesystem;
using apps::RunOptions;

struct VaultArgs {
  std::string image;
  std::string dir;
  std::string size;
  std::string key_file;
  std::string mount_dir;
  std::string idle;
  std::string pbkdf;
  std::string pbkdf_force_iterations;
  std::string pbkdf_memory;
  std::string iter_time;
  bool read_only = false;
};

std::string state_dir() {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && *xdg != '\0' && ::geteuid() != 0)
    return std::string(xdg) + "/cryptmap-vaults";
  if (::geteuid() == 0) return "/run/cryptmap-vaults";
  return "/tmp/cryptmap-vaults-" + std::to_string(::getuid());
}

std::string state_path(const std::string& dir) {
  return state_dir() + "/" + apps::stable_hash(dir) + ".state";
}

using State = std::map<std::string, std::string>;

bool load_state(const std::string& dir, State& st) {
  std::ifstream in(state_path(dir));
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) st[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return st.count("name") != 0 && st.count("mount_dir") != 0;
}

bool save_state(const std::string& dir, const State& st) {
  std::error_code ec;
  stdfs::create_directories(state_dir(), ec);
  ::chmod(state_dir().c_str(), 0700);
  std::string tmp = state_path(dir) + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    for (const auto& [k, v] : st) out << k << '=' << v << '\n';
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), state_path(dir).c_str()) == 0;
}

pid_t pid_of(const State& st, const char* key) {
  auto it = st.find(key);
  if (it == st.end()) return -1;
  return static_cast<pid_t>(std::atol(it->second.c_str()));
}

std::string canonical_or_empty(const std::string& p) {
  std::error_code ec;
  auto c = stdfs::canonical(p, ec);
  return ec ? std::string() : c.string();
}

std::string volume_name(const std::string& image_abs) {
  return "vault-" + apps::stable_hash(image_abs).substr(0, 12);
}

std::string mount_dir_or_default(const std::string& m) {
  if (m.empty()) return default_mount_dir();
  std::error_code ec;
  auto a = stdfs::absolute(m, ec);
  return ec ? m : a.lexically_normal().string();
}

std::vector<std::string> open_argv(const std::string& image, const std::string& name,
                                   const std::string& mount_dir, const std::string& key_file,
                                   bool read_only) {
  std::vector<std::string> argv{apps::self_exe(), "open", image, name, "--mount-dir", mount_dir};
  if (!key_file.empty()) argv.insert(argv.end(), {"--key-file", key_file});
  if (read_only) argv.push_back("--readonly");
  return argv;
}

int close_volume(const std::string& name, const std::string& mount_dir) {
  return apps::run({apps::self_exe(), "close", name, "--mount-dir", mount_dir});
}

int vault_create(const VaultArgs& a, const CommandContext& ctx) {
  unsigned long long bytes = 0;
  if (!apps::parse_size(a.size, bytes)) {
    std::fprintf(stderr,
                 "Invalid --size '%s': use a number with an optional K, M, G or T suffix.\n",
                 a.size.c_str());
    return kExitUsage;
  }
  constexpr unsigned long long kMin = 32ULL << 20;
  if (bytes < kMin) {
    std::fprintf(stderr,
                 "Vault size %llu bytes is too small: use at least 32M (16 MiB go to the "
                 "LUKS2 header).\n",
                 bytes);
    return kExitUsage;
  }
  std::error_code ec;
  if (stdfs::exists(a.image, ec)) {
    std::fprintf(stderr,
                 "%s already exists; vault create never overwrites a file: choose a new path.\n",
                 a.image.c_str());
    return kExitBusy;
  }
  {
    std::ofstream f(a.image, std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "Cannot create %s: check the directory exists and is writable.\n",
                   a.image.c_str());
      return kExitBadDevice;
    }
  }
  stdfs::resize_file(a.image, bytes, ec);
  auto discard = [&] {
    std::error_code e2;
    stdfs::remove(a.image, e2);
  };
  if (ec) {
    std::fprintf(stderr, "Cannot size %s to %llu bytes: %s.\n", a.image.c_str(), bytes,
                 ec.message().c_str());
    discard();
    return kExitBadDevice;
  }
  Progress progress(Progress::wanted(ctx));
  progress.step(1, 3,
                "Formatting " + a.image + " as LUKS2 (the key derivation takes a few seconds)");
  std::vector<std::string> fmt{apps::self_exe(), "luksFormat", "--batch-mode", "--type", "luks2"};
  if (!a.key_file.empty()) fmt.insert(fmt.end(), {"--key-file", a.key_file});
  if (!a.pbkdf.empty()) fmt.insert(fmt.end(), {"--pbkdf", a.pbkdf});
  if (!a.pbkdf_force_iterations.empty())
    fmt.insert(fmt.end(), {"--pbkdf-force-iterations", a.pbkdf_force_iterations});
  if (!a.pbkdf_memory.empty()) fmt.insert(fmt.end(), {"--pbkdf-memory", a.pbkdf_memory});
  if (!a.iter_time.empty()) fmt.insert(fmt.end(), {"--iter-time", a.iter_time});
  fmt.push_back(a.image);
  if (int rc = apps::run(fmt); rc != 0) {
    std::fprintf(stderr, "Formatting %s failed (exit %d); the file was removed.\n", a.image.c_str(),
                 rc);
    discard();
    return rc;
  }
  std::string image_abs = canonical_or_empty(a.image);
  std::string name = volume_name(image_abs);
  std::string mount_dir = mount_dir_or_default(a.mount_dir);
  progress.step(2, 3, "Unlocking the new volume");
  auto open_cmd = open_argv(image_abs, name, mount_dir, a.key_file, false);
  for (auto& w : logging_args(ctx)) open_cmd.push_back(std::move(w));
  if (int rc = apps::run(open_cmd); rc != 0) {
    std::fprintf(stderr, "Opening the new vault %s failed (exit %d); the file was removed.\n",
                 a.image.c_str(), rc);
    discard();
    return rc;
  }
  std::string owner = std::to_string(::getuid()) + ":" + std::to_string(::getgid());
  progress.step(3, 3, "Making the ext4 file system (" + std::to_string(bytes >> 20) + " MiB)");
  int mk = apps::run({"mkfs.ext4", "-F", "-q", "-L", "cryptmap-vault", "-E", "root_owner=" + owner,
                      mount_dir + "/" + name});
  int cl = close_volume(name, mount_dir);
  if (mk != 0 || cl != 0) {
    std::fprintf(stderr,
                 "Making the file system in %s failed (mkfs.ext4 exit %d, close exit %d)%s.\n",
                 a.image.c_str(), mk, cl, cl == 0 ? "; the file was removed" : "");
    if (cl == 0) discard();
    return kExitUsage;
  }
  std::printf("Vault %s created (%llu bytes). Open it with: cryptmap vault open %s DIR\n",
              a.image.c_str(), bytes, a.image.c_str());
  return kExitOk;
}

// Unmounts, waits for fuse2fs, closes the volume. `from_watcher`: do not signal the watcher.
int close_vault(const std::string& dir, const State& st, bool from_watcher) {
  pid_t fuse_pid = pid_of(st, "fuse_pid");
  if (apps::is_mountpoint(dir)) {
    int rc = apps::run({"fusermount", "-u", dir}, RunOptions{false, from_watcher, {}});
    if (rc != 0) {
      std::fprintf(stderr,
                   "Cannot unmount the vault at %s (a program still uses it?): close the "
                   "files and shells using it and retry. The vault stays open.\n",
                   dir.c_str());
      return kExitBusy;
    }
  }
  if (!apps::wait_gone(fuse_pid, std::chrono::seconds(120))) {
    std::fprintf(stderr,
                 "fuse2fs (pid %d) did not exit after unmounting %s; the volume stays open "
                 "so no data is lost. Retry `cryptmap vault close %s` later.\n",
                 static_cast<int>(fuse_pid), dir.c_str(), dir.c_str());
    return kExitBusy;
  }
  pid_t watcher = pid_of(st, "watcher_pid");
  if (!from_watcher && watcher > 0 && apps::process_alive(watcher)) ::kill(watcher, SIGTERM);
  int rc = close_volume(st.at("name"), st.at("mount_dir"));
  if (rc != 0) {
    std::fprintf(stderr,
                 "The file system at %s is unmounted but closing volume %s failed (exit %d): "
                 "run `cryptmap close %s --mount-dir %s`.\n",
                 dir.c_str(), st.at("name").c_str(), rc, st.at("name").c_str(),
                 st.at("mount_dir").c_str());
    return rc;
  }
  std::error_code ec;
  stdfs::remove(state_path(dir), ec);
  return kExitOk;
}

int vault_open(const VaultArgs& a, const CommandContext& ctx) {
  std::string image_abs = canonical_or_empty(a.image);
  if (image_abs.empty()) {
    std::fprintf(stderr, "Vault image %s does not exist.\n", a.image.c_str());
    return kExitBadDevice;
  }
  std::string dir = canonical_or_empty(a.dir);
  std::error_code ec;
  if (dir.empty() || !stdfs::is_directory(dir, ec)) {
    std::fprintf(stderr, "Mount point %s is not an existing directory: create it first.\n",
                 a.dir.c_str());
    return kExitUsage;
  }
  if (apps::is_mountpoint(dir)) {
    std::fprintf(stderr, "%s is already a mount point; close what is mounted there first.\n",
                 dir.c_str());
    return kExitBusy;
  }
  unsigned long long idle_s = 0;
  if (!a.idle.empty() && !apps::parse_duration(a.idle, idle_s)) {
    std::fprintf(stderr, "Invalid --idle '%s': use e.g. 90s, 15m or 2h.\n", a.idle.c_str());
    return kExitUsage;
  }
  std::string name = volume_name(image_abs);
  std::string mount_dir = mount_dir_or_default(a.mount_dir);
  auto open_cmd = open_argv(image_abs, name, mount_dir, a.key_file, a.read_only);
  for (auto& w : logging_args(ctx)) open_cmd.push_back(std::move(w));
  if (int rc = apps::run(open_cmd); rc != 0) return rc;
  std::string mapped = mount_dir + "/" + name;
  std::error_code e2;
  stdfs::create_directories(state_dir(), e2);
  ::chmod(state_dir().c_str(), 0700);
  std::string log = state_path(dir) + ".log";
  std::vector<std::string> fuse{"fuse2fs", mapped, dir, "-f"};
  if (a.read_only) fuse.insert(fuse.end(), {"-o", "ro"});
  pid_t fuse_pid = apps::spawn_detached(fuse, log);
  bool mounted = false;
  for (int i = 0; i < 400 && fuse_pid > 0; ++i) {
    if (apps::is_mountpoint(dir)) {
      mounted = true;
      break;
    }
    if (!apps::process_alive(fuse_pid)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!mounted) {
    if (fuse_pid > 0 && apps::process_alive(fuse_pid)) {
      ::kill(fuse_pid, SIGTERM);
      apps::wait_gone(fuse_pid, std::chrono::seconds(10));
    }
    std::ifstream l(log);
    std::string text((std::istreambuf_iterator<char>(l)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "fuse2fs could not mount %s at %s%s%s\nThe volume was closed again.\n",
                 mapped.c_str(), dir.c_str(), text.empty() ? "." : ":\n", text.c_str());
    close_volume(name, mount_dir);
    return kExitUsage;
  }
  State st{{"image", image_abs},
           {"name", name},
           {"mount_dir", mount_dir},
           {"dir", dir},
           {"fuse_pid", std::to_string(fuse_pid)},
           {"idle_s", std::to_string(idle_s)}};
  if (idle_s > 0) {
    pid_t w = apps::spawn_detached({apps::self_exe(), "vault", "watch", dir}, log);
    st["watcher_pid"] = std::to_string(w);
  }
  if (!save_state(dir, st)) {
    std::fprintf(stderr, "Cannot write the vault state file %s; closing the vault again.\n",
                 state_path(dir).c_str());
    close_vault(dir, st, false);
    return kExitUsage;
  }
  std::printf("Vault %s is open at %s\n", image_abs.c_str(), dir.c_str());
  return kExitOk;
}

int vault_close(const VaultArgs& a) {
  std::string dir = canonical_or_empty(a.dir);
  if (dir.empty()) dir = a.dir;
  State st;
  if (!load_state(dir, st)) {
    std::fprintf(stderr, "%s is not an open vault (no state file %s).\n", a.dir.c_str(),
                 state_path(dir).c_str());
    return kExitBadDevice;
  }
  return close_vault(dir, st, false);
}

bool fuse_io_counters(pid_t pid, std::string& out) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/io");
  if (!in) return false;
  std::string line;
  out.clear();
  while (std::getline(in, line)) {
    if (line.rfind("syscr:", 0) == 0 || line.rfind("syscw:", 0) == 0) out += line;
  }
  return !out.empty();
}

int vault_watch(const VaultArgs& a) {
  std::string dir = a.dir;
  State st;
  for (int i = 0; i < 100 && !load_state(dir, st); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (st.empty()) return kExitBadDevice;
  pid_t fuse_pid = pid_of(st, "fuse_pid");
  auto idle = std::chrono::seconds(std::atoll(st["idle_s"].c_str()));
  if (idle.count() <= 0) return kExitUsage;
  auto step = std::chrono::milliseconds(std::clamp<long long>(idle.count() * 250, 1000, 10000));
  std::string last;
  fuse_io_counters(fuse_pid, last);
  auto last_activity = std::chrono::steady_clock::now();
  while (true) {
    std::this_thread::sleep_for(step);
    if (!apps::process_alive(fuse_pid)) return kExitOk;  // closed by someone else
    std::string now_counters;
    fuse_io_counters(fuse_pid, now_counters);
    auto now = std::chrono::steady_clock::now();
    if (now_counters != last) {
      last = now_counters;
      last_activity = now;
      continue;
    }
    if (now - last_activity < idle) continue;
    std::fprintf(stderr, "vault at %s idle for %llds: closing\n", dir.c_str(),
                 static_cast<long long>(idle.count()));
    int rc = close_vault(dir, st, true);
    if (rc == kExitOk) return kExitOk;
    last_activity = std::chrono::steady_clock::now();  // busy: try again after another period
    fuse_io_counters(fuse_pid, last);
  }
}

}  // namespace

void add_vault_commands(CLI::App& app, CommandContext& ctx) {
  apps::add_tab_commands(app, ctx);  // tab-open, tab-close (cli/apps/tab_commands.h)
  CLI::App* vault =
      app.add_subcommand("vault", "Encrypted folder for a plain user (LUKS2 + ext4 + fuse2fs)");
  vault->require_subcommand(1);
  auto a = std::make_shared<VaultArgs>();

  CLI::App* create = vault->add_subcommand("create", "Create a vault image: LUKS2 holding ext4");
  create->add_option("path", a->image, "New image file (must not exist)")->required();
  create->add_option("--size", a->size, "Image size, e.g. 512M or 2G (at least 32M)")->required();
  create->add_option("--key-file,-d", a->key_file, "Passphrase file (- = stdin)");
  create->add_option("--mount-dir", a->mount_dir, "cryptmap mount dir used while formatting");
  create->add_option("--pbkdf", a->pbkdf, "PBKDF: argon2id (default), argon2i, pbkdf2");
  create->add_option("--pbkdf-force-iterations", a->pbkdf_force_iterations, "PBKDF iterations");
  create->add_option("--pbkdf-memory", a->pbkdf_memory, "PBKDF memory cost (KiB)");
  create->add_option("--iter-time,-i", a->iter_time, "PBKDF iteration time (ms)");
  create->callback([&ctx, a] { ctx.exit_code = vault_create(*a, ctx); });

  CLI::App* open = vault->add_subcommand("open", "Unlock a vault and mount its files at DIR");
  open->add_option("path", a->image, "Vault image")->required();
  open->add_option("dir", a->dir, "Existing empty directory to mount at")->required();
  open->add_option("--key-file,-d", a->key_file, "Passphrase file (- = stdin)");
  open->add_option("--idle", a->idle, "Close after this long without activity (e.g. 15m)");
  open->add_option("--mount-dir", a->mount_dir, "cryptmap mount dir (default: the user's)");
  open->add_flag("--readonly,-r", a->read_only, "Open read-only");
  open->callback([&ctx, a] { ctx.exit_code = vault_open(*a, ctx); });

  CLI::App* close = vault->add_subcommand("close", "Unmount DIR and close its vault");
  close->add_option("dir", a->dir, "Where the vault is mounted")->required();
  close->callback([&ctx, a] { ctx.exit_code = vault_close(*a); });

  CLI::App* watch = vault->add_subcommand("watch", "Internal: the --idle watcher");
  watch->group("");
  watch->add_option("dir", a->dir)->required();
  watch->callback([&ctx, a] { ctx.exit_code = vault_watch(*a); });
}

}  // namespace cryptmap::cli
