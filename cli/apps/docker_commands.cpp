// `cryptmap docker-plugin --socket PATH [--root DIR] [--key-file F]`: a Docker volume plugin
// (legacy plugin protocol: HTTP/1.1 POSTs on a unix socket, JSON bodies, Content-Type
// application/vnd.docker.plugins.v1+json) whose volumes are LUKS2 images holding ext4.
//
// Layout under ROOT (default /var/lib/cryptmap-docker):
//   volumes/NAME.img   the encrypted image;  volumes/NAME.json  {"key_file":..., "size":...}
//   mnt/NAME           the mount point handed to Docker
//   mapper/            the cryptmap mount dir (`cryptmap open --mount-dir ROOT/mapper`)
// Create: image + `cryptmap luksFormat` + `cryptmap open` + mkfs.ext4 on the mapped file + close.
// Mount: `cryptmap open`, `losetup -f --show` on the mapped file, `mount -t ext4`. Mounts are
// reference-counted per mount ID: the first Mount opens, the last Unmount (umount, losetup -d,
// cryptmap close) closes. A failed unmount keeps the volume open and says so.
// Requests are served one at a time, one request per connection (Connection: close).
// Volumes are rediscovered from ROOT/volumes on start; mounts do not survive a plugin restart
// (SIGTERM/SIGINT unmount and close everything first).
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "cli/apps/http.h"
#include "cli/apps/process.h"
#include "cli/commands.h"

namespace cryptmap::cli {
namespace {

namespace stdfs = std::filesystem;
using nlohmann::json;

constexpr const char* kContentType = "application/vnd.docker.plugins.v1+json";

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop.store(true); }

struct PluginArgs {
  std::string socket;
  std::string root = "/var/lib/cryptmap-docker";
  std::string key_file;
  std::string default_size = "1G";
  std::string pbkdf;
  std::string pbkdf_force_iterations;
  std::string pbkdf_memory;
};

struct Mounted {
  std::set<std::string> ids;
  std::string loop;
};

struct Reply {
  int status = 200;
  json body;
};

Reply err(int status, const std::string& msg) { return Reply{status, json{{"Err", msg}}}; }

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  if (!std::isalnum(static_cast<unsigned char>(n[0]))) return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-')
      return false;
  return true;
}

class Plugin {
 public:
  explicit Plugin(PluginArgs a) : a_(std::move(a)) {}

  bool init(std::string& why) {
    std::error_code ec;
    for (const char* sub : {"volumes", "mnt", "mapper"}) {
      stdfs::create_directories(a_.root + "/" + sub, ec);
      if (ec) {
        why = "cannot create " + a_.root + "/" + sub + ": " + ec.message();
        return false;
      }
    }
    ::chmod((a_.root + "/volumes").c_str(), 0700);
    return true;
  }

  Reply handle(const std::string& target, const json& body) {
    if (target == "/Plugin.Activate")
      return Reply{200, json{{"Implements", json::array({"VolumeDriver"})}}};
    if (target == "/VolumeDriver.Capabilities")
      return Reply{200, json{{"Capabilities", json{{"Scope", "local"}}}}};
    if (target == "/VolumeDriver.List") return list();
    static const std::set<std::string> kNamed{"/VolumeDriver.Create", "/VolumeDriver.Remove",
                                              "/VolumeDriver.Mount",  "/VolumeDriver.Unmount",
                                              "/VolumeDriver.Path",   "/VolumeDriver.Get"};
    if (kNamed.count(target) == 0) return err(404, "unknown endpoint " + target);
    if (!body.is_object() || !body.contains("Name") || !body["Name"].is_string())
      return err(400, "request body must be a JSON object with a string \"Name\"");
    std::string name = body["Name"].get<std::string>();
    if (!valid_name(name))
      return err(400, "invalid volume name '" + name +
                          "': use 1-64 of [A-Za-z0-9_.-], starting with a letter or digit");
    std::string id;
    if (body.contains("ID") && body["ID"].is_string()) id = body["ID"].get<std::string>();
    if (target == "/VolumeDriver.Create") {
      json opts = body.value("Opts", json::object());
      return create(name, opts.is_null() ? json::object() : opts);  // Go sends a nil map as null
    }
    if (!exists(name)) return err(404, "no such volume: " + name);
    if (target == "/VolumeDriver.Remove") return remove(name);
    if (target == "/VolumeDriver.Mount") return mount(name, id);
    if (target == "/VolumeDriver.Unmount") return unmount(name, id);
    if (target == "/VolumeDriver.Path")
      return Reply{200, json{{"Mountpoint", mountpoint_if_mounted(name)}}};
    json v{{"Name", name}, {"Status", json::object()}};
    if (mounted_.count(name)) v["Mountpoint"] = mnt(name);
    return Reply{200, json{{"Volume", v}}};
  }

  void shutdown() {
    std::vector<std::string> names;
    for (const auto& [n, m] : mounted_) names.push_back(n);
    for (const auto& n : names) {
      auto ids = mounted_[n].ids;
      for (const auto& id : ids) unmount(n, id);
    }
  }

 private:
  std::string img(const std::string& n) const { return a_.root + "/volumes/" + n + ".img"; }
  std::string meta(const std::string& n) const { return a_.root + "/volumes/" + n + ".json"; }
  std::string mnt(const std::string& n) const { return a_.root + "/mnt/" + n; }
  std::string mapper() const { return a_.root + "/mapper"; }
  bool exists(const std::string& n) const {
    std::error_code ec;
    return stdfs::exists(img(n), ec) && stdfs::exists(meta(n), ec);
  }
  std::string mountpoint_if_mounted(const std::string& n) const {
    return mounted_.count(n) ? mnt(n) : std::string();
  }

  std::string key_file_of(const std::string& n) const {
    std::ifstream in(meta(n));
    try {
      json j = json::parse(in);
      return j.value("key_file", std::string());
    } catch (const std::exception&) {
      return std::string();
    }
  }

  int cm_open(const std::string& n, const std::string& key) {
    return apps::run(
        {apps::self_exe(), "open", img(n), n, "--mount-dir", mapper(), "--key-file", key});
  }
  int cm_close(const std::string& n) {
    return apps::run({apps::self_exe(), "close", n, "--mount-dir", mapper()});
  }

  Reply list() const {
    json vols = json::array();
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(a_.root + "/volumes", ec)) {
      if (e.path().extension() != ".json") continue;
      std::string n = e.path().stem().string();
      if (!valid_name(n) || !exists(n)) continue;
      json v{{"Name", n}};
      if (mounted_.count(n)) v["Mountpoint"] = mnt(n);
      vols.push_back(v);
    }
    return Reply{200, json{{"Volumes", vols}}};
  }

  Reply create(const std::string& n, const json& opts) {
    if (!opts.is_object()) return err(400, "Opts must be a JSON object");
    for (const auto& [k, v] : opts.items()) {
      if (k != "size" && k != "key-file" && k != "keyfile")
        return err(400,
                   "unknown option '" + k + "' for volume " + n + ": known are size and key-file");
      if (!v.is_string()) return err(400, "option '" + k + "' must be a string");
    }
    if (exists(n)) return Reply{200, json{{"Err", ""}}};  // Docker may re-create: idempotent
    std::string size = opts.value("size", a_.default_size);
    std::string key = opts.value("key-file", opts.value("keyfile", a_.key_file));
    unsigned long long bytes = 0;
    if (!apps::parse_size(size, bytes) || bytes < (32ULL << 20))
      return err(400, "invalid size '" + size + "' for volume " + n +
                          ": use e.g. 512M or 2G (at least 32M)");
    if (key.empty())
      return err(400, "no key file for volume " + n +
                          ": pass -o key-file=PATH or start the plugin with --key-file");
    std::error_code ec;
    if (::access(key.c_str(), R_OK) != 0)
      return err(400, "key file " + key + " for volume " + n +
                          " is not readable: " + std::strerror(errno));
    key = stdfs::absolute(key, ec).string();
    auto discard = [&] {
      std::error_code e2;
      stdfs::remove(img(n), e2);
      stdfs::remove(meta(n), e2);
    };
    {
      std::ofstream f(img(n), std::ios::binary);
      if (!f) return err(500, "cannot create " + img(n));
    }
    stdfs::resize_file(img(n), bytes, ec);
    if (ec) {
      discard();
      return err(500, "cannot size " + img(n) + ": " + ec.message());
    }
    std::vector<std::string> fmt{apps::self_exe(), "luksFormat", "--batch-mode", "--type", "luks2",
                                 "--key-file",     key};
    if (!a_.pbkdf.empty()) fmt.insert(fmt.end(), {"--pbkdf", a_.pbkdf});
    if (!a_.pbkdf_force_iterations.empty())
      fmt.insert(fmt.end(), {"--pbkdf-force-iterations", a_.pbkdf_force_iterations});
    if (!a_.pbkdf_memory.empty()) fmt.insert(fmt.end(), {"--pbkdf-memory", a_.pbkdf_memory});
    fmt.push_back(img(n));
    if (int rc = apps::run(fmt); rc != 0) {
      discard();
      return err(500, "luksFormat of volume " + n + " failed (exit " + std::to_string(rc) +
                          "); see the plugin's stderr");
    }
    if (int rc = cm_open(n, key); rc != 0) {
      discard();
      return err(500, "opening new volume " + n + " failed (exit " + std::to_string(rc) + ")");
    }
    int mk = apps::run({"mkfs.ext4", "-F", "-q", "-L", n.substr(0, 16), mapper() + "/" + n});
    int cl = cm_close(n);
    if (mk != 0 || cl != 0) {
      if (cl == 0) discard();
      return err(500, "making ext4 on volume " + n + " failed (mkfs.ext4 exit " +
                          std::to_string(mk) + ", close exit " + std::to_string(cl) + ")");
    }
    {
      std::ofstream m(meta(n), std::ios::trunc);
      m << json{{"key_file", key}, {"size", bytes}}.dump() << '\n';
      if (!m.flush()) {
        discard();
        return err(500, "cannot write " + meta(n));
      }
    }
    return Reply{200, json{{"Err", ""}}};
  }

  Reply remove(const std::string& n) {
    if (mounted_.count(n))
      return err(409, "volume " + n + " is mounted (" + std::to_string(mounted_[n].ids.size()) +
                          " users); unmount it first");
    std::error_code ec;
    stdfs::remove(img(n), ec);
    if (ec) return err(500, "cannot remove " + img(n) + ": " + ec.message());
    stdfs::remove(meta(n), ec);
    stdfs::remove(mnt(n), ec);
    return Reply{200, json{{"Err", ""}}};
  }

  Reply mount(const std::string& n, const std::string& id) {
    if (id.empty()) return err(400, "Mount of volume " + n + " needs a string \"ID\"");
    auto it = mounted_.find(n);
    if (it != mounted_.end()) {
      it->second.ids.insert(id);
      return Reply{200, json{{"Mountpoint", mnt(n)}, {"Err", ""}}};
    }
    std::string key = key_file_of(n);
    if (key.empty()) return err(500, "metadata " + meta(n) + " is unreadable or names no key file");
    if (int rc = cm_open(n, key); rc != 0)
      return err(500, "unlocking volume " + n + " failed (cryptmap open exit " +
                          std::to_string(rc) +
                          (rc == 2   ? ": wrong key file?"
                           : rc == 5 ? ": already open?"
                                     : "") +
                          ")");
    std::string loop;
    int rc = apps::run_capture({"losetup", "-f", "--show", mapper() + "/" + n}, loop);
    if (rc != 0 || loop.rfind("/dev/loop", 0) != 0) {
      cm_close(n);
      return err(500, "attaching a loop device to volume " + n + " failed (losetup exit " +
                          std::to_string(rc) + ")");
    }
    std::error_code ec;
    stdfs::create_directories(mnt(n), ec);
    rc = apps::run({"mount", "-t", "ext4", loop, mnt(n)});
    if (rc != 0) {
      apps::run({"losetup", "-d", loop});
      cm_close(n);
      return err(500, "mounting volume " + n + " (" + loop + ") at " + mnt(n) +
                          " failed (mount exit " + std::to_string(rc) + ")");
    }
    mounted_[n] = Mounted{{id}, loop};
    return Reply{200, json{{"Mountpoint", mnt(n)}, {"Err", ""}}};
  }

  Reply unmount(const std::string& n, const std::string& id) {
    auto it = mounted_.find(n);
    if (it == mounted_.end() || it->second.ids.count(id) == 0)
      return err(400, "volume " + n + " is not mounted for ID '" + id + "'");
    if (it->second.ids.size() > 1) {
      it->second.ids.erase(id);
      return Reply{200, json{{"Err", ""}}};
    }
    if (int rc = apps::run({"umount", mnt(n)}); rc != 0)
      return err(500, "unmounting " + mnt(n) + " failed (umount exit " + std::to_string(rc) +
                          "; busy?); volume " + n + " stays mounted");
    if (int rc = apps::run({"losetup", "-d", it->second.loop}); rc != 0)
      return err(500, "detaching " + it->second.loop + " from volume " + n + " failed (exit " +
                          std::to_string(rc) + ")");
    int rc = cm_close(n);
    for (int i = 0; i < 20 && rc == kExitBusy;
         ++i) {  // loop detach releases the file asynchronously
      ::usleep(250000);
      rc = cm_close(n);
    }
    mounted_.erase(it);
    if (rc != 0)
      return err(
          500, "closing volume " + n + " failed (cryptmap close exit " + std::to_string(rc) + ")");
    return Reply{200, json{{"Err", ""}}};
  }

  PluginArgs a_;
  std::map<std::string, Mounted> mounted_;
};

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

void serve_connection(int fd, Plugin& plugin) {
  apps::HttpRequestParser parser;
  apps::HttpParse st = apps::HttpParse::kIncomplete;
  char buf[8192];
  while (st == apps::HttpParse::kIncomplete) {
    pollfd p{fd, POLLIN, 0};
    int pr = ::poll(&p, 1, 10000);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return;  // timeout: drop the connection
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    st = parser.feed(std::string_view(buf, static_cast<size_t>(n)));
  }
  Reply r;
  if (st == apps::HttpParse::kBad) {
    r = err(parser.error_status(), "bad request: " + parser.error());
  } else if (parser.request().method != "POST") {
    r = err(405, "use POST for " + parser.request().target);
  } else {
    json body = json::object();
    const std::string& text = parser.request().body;
    bool ok = true;
    if (!text.empty()) {
      try {
        body = json::parse(text);
      } catch (const json::exception& e) {
        ok = false;
        r = err(400, std::string("request body is not valid JSON: ") + e.what());
      }
    }
    if (ok) r = plugin.handle(parser.request().target, body);
    std::fprintf(stderr, "%s -> %d%s%s\n", parser.request().target.c_str(), r.status,
                 r.body.contains("Err") && !r.body["Err"].get<std::string>().empty() ? " " : "",
                 r.body.contains("Err") ? r.body["Err"].get<std::string>().c_str() : "");
  }
  write_all(fd, apps::http_response(r.status, kContentType, r.body.dump()));
}

int run_plugin(const PluginArgs& a) {
  sockaddr_un addr{};
  if (a.socket.empty() || a.socket.size() >= sizeof addr.sun_path) {
    std::fprintf(stderr, "Socket path '%s' is empty or too long (max %zu bytes).\n",
                 a.socket.c_str(), sizeof addr.sun_path - 1);
    return kExitUsage;
  }
  Plugin plugin(a);
  std::string why;
  if (!plugin.init(why)) {
    std::fprintf(stderr, "%s\n", why.c_str());
    return kExitUsage;
  }
  struct stat sb {};
  if (::lstat(a.socket.c_str(), &sb) == 0) {
    if (!S_ISSOCK(sb.st_mode)) {
      std::fprintf(stderr, "%s exists and is not a socket; refusing to replace it.\n",
                   a.socket.c_str());
      return kExitBusy;
    }
    ::unlink(a.socket.c_str());  // stale socket of an earlier run
  }
  int ls = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, a.socket.data(), a.socket.size());
  if (ls < 0 || ::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(ls, 16) != 0) {
    std::fprintf(stderr, "Cannot listen on %s: %s.\n", a.socket.c_str(), std::strerror(errno));
    if (ls >= 0) ::close(ls);
    return kExitBusy;
  }
  ::chmod(a.socket.c_str(), 0660);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  std::fprintf(stderr, "cryptmap docker-plugin: serving %s (volumes in %s)\n", a.socket.c_str(),
               a.root.c_str());
  while (!g_stop.load()) {
    pollfd p{ls, POLLIN, 0};
    if (::poll(&p, 1, 500) <= 0) continue;
    int c = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    serve_connection(c, plugin);
    ::close(c);
  }
  ::close(ls);
  ::unlink(a.socket.c_str());
  plugin.shutdown();
  std::fprintf(stderr, "cryptmap docker-plugin: stopped\n");
  return kExitOk;
}

}  // namespace

void add_docker_commands(CLI::App& app, CommandContext& ctx) {
  auto a = std::make_shared<PluginArgs>();
  CLI::App* c = app.add_subcommand("docker-plugin",
                                   "Serve encrypted volumes to Docker (volume plugin protocol)");
  c->add_option("--socket", a->socket,
                "Unix socket to listen on (Docker looks in /run/docker/plugins/NAME.sock)")
      ->required();
  c->add_option("--root", a->root, "Where images, mount points and the mapper dir live")
      ->capture_default_str();
  c->add_option("--key-file,-d", a->key_file, "Default passphrase file for new volumes");
  c->add_option("--default-size", a->default_size, "Size of volumes created without -o size")
      ->capture_default_str();
  c->add_option("--pbkdf", a->pbkdf, "PBKDF for new volumes (argon2id, argon2i, pbkdf2)");
  c->add_option("--pbkdf-force-iterations", a->pbkdf_force_iterations,
                "PBKDF iterations for new volumes");
  c->add_option("--pbkdf-memory", a->pbkdf_memory, "PBKDF memory cost for new volumes (KiB)");
  c->callback([&ctx, a] { ctx.exit_code = run_plugin(*a); });
}

}  // namespace cryptmap::cli
