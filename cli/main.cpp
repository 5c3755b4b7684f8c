// cryptmap: dm-crypt and cryptsetup in userspace. Verbs register themselves through
// cli/commands.h; this file only builds the app and sets the process-wide defaults.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdlib>

#include "cli/commands.h"
#include "cli/manual.h"

int main(int argc, char** argv) {
  using namespace cryptmap::cli;  // NOLINT(google-build-using-namespace): main only
  // Until a verb sets up its own logging, log lines (a store's warning while a dump opens an NBD
  // or RBD image) go to stderr: stdout carries the verb's output.
  spdlog::set_default_logger(spdlog::stderr_color_mt("cryptmap-cli"));
  CLI::App app{
      "cryptmap - dm-crypt/cryptsetup in userspace: open LUKS1/LUKS2/plain images and "
      "serve their plaintext as files through FUSE"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags (-v, --debug) may follow the verb
  CommandContext ctx;
  app.add_flag("-v,--verbose", ctx.verbosity, "More log output (repeat for more)");
  app.add_flag_callback(
      "--debug", [&ctx] { ctx.verbosity = 2; }, "Debug log output");
  app.add_flag("-q,--batch-mode", ctx.batch_mode, "Do not ask for confirmation");
  app.add_option("--log-level", ctx.log_level, "trace, debug, info, warn, error, off")
      ->check(
          CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "critical", "off"}));
  app.add_option("--log-target", ctx.log_target,
                 "Where a daemon started by this command logs: syslog (= journal), stderr or file "
                 "(<mount-dir>.log). Default: stderr with -f; file when started from a terminal; "
                 "otherwise (services, scripts) syslog when something listens on /dev/log, "
                 "else file")
      ->check(CLI::IsMember({"syslog", "journal", "stderr", "file"}));
  // Ceph RBD images (rbd:POOL/IMAGE): the client settings every verb's store open uses
  // (volume/store/rbd_backing_store.h); set in the environment so the one-shot verbs and the
  // daemon's open (pin_rbd_client) see the same.
  app.add_option_function<std::string>(
      "--ceph-conf", [](const std::string& p) { ::setenv("CEPH_CONF", p.c_str(), 1); },
      "rbd: images: the Ceph configuration file (default $CEPH_CONF, else "
      "/etc/ceph/ceph.conf)");
  app.add_option_function<std::string>(
      "--ceph-id", [](const std::string& id) { ::setenv("CRYPTMAP_CEPH_ID", id.c_str(), 1); },
      "rbd: images: the Ceph client id (client.ID; default $CRYPTMAP_CEPH_ID, else admin)");
  add_daemon_commands(app, ctx);
  add_luks_commands(app, ctx);
  add_reencrypt_commands(app, ctx);
  add_bitlk_commands(app, ctx);
  add_vault_commands(app, ctx);
  add_docker_commands(app, ctx);
  add_tcrypt_commands(app, ctx);
  add_zone_commands(app, ctx);
  add_benchmark_commands(app, ctx);
  add_manual_flags(app, CRYPTMAP_VERSION);  // last: the documents walk every verb above
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? cryptmap::kExitOk : cryptmap::kExitUsage;
  }
  return ctx.exit_code;
}
