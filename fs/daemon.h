// The cryptmap daemon: one process per mount directory, serving every volume opened into it.
//
// Life cycle: the CLI unlocks a volume in the foreground, then either hands the volume key to a
// running daemon over the control socket (fs/control.h), or starts one: `serve()` opens that
// first volume (volume/open.h), mounts the directory (keeping requests in arrival order when the
// volume orders its writes: a zoned volume), adds the volume, binds the control socket and
// reports success (only then does the CLI exit 0), then serves until the last volume is closed
// or SIGINT/SIGTERM/SIGHUP (flush every volume, unmount, exit 0). A spawned daemon is a fresh
// exec of this binary (`cryptmap daemon --mount-dir DIR --handoff-fd N`, hidden verb) that
// receives the first request over an inherited socketpair, so no state from the CLI process
// (threads, TBB) leaks into it and the key never appears on a command line.
//
// The daemon calls harden_process() (not dumpable, no core files), logs through the injected
// spdlog logger (never keys), and handles control requests one at a time on its main thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "fs/control.h"
#include "volume/volume.h"

namespace spdlog {
class logger;
}

namespace cryptmap::fs {

struct DaemonOptions {
  ControlPaths paths;
  bool fuse_debug = false;
  FuseTransport fuse_transport = FuseTransport::kAuto;  // --fuse-transport
  std::shared_ptr<spdlog::logger> logger;               // null: spdlog's default logger
};

// Runs a daemon for `opts.paths` whose first volume is `first`. `report` is called exactly once:
// with exit_code 0 once the mount is live, the volume added and the socket listening, or with
// the failure (then serve() returns that exit code without serving). Returns the exit code.
int serve(const DaemonOptions& opts, Request first,
          const std::function<void(const Reply&)>& report);

// The message a user sees for an error from the open path ("Device X does not exist or access
// denied.", "No key available with this passphrase.", or the error's own text).
std::string user_message(const Error& e, const std::string& object);

}  // namespace cryptmap::fs
