#include "cli/luks_common.h"

#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>

#include "base/exit_code.h"

namespace cryptmap::cli {

int report(const Error& e) {
  if (e.code == Errc::kBadKey || e.code == Errc::kNotFound) {
    // cryptsetup's own wording first ("No key available with this passphrase.").
    std::cerr << e.what;
    if (e.detail[0]) std::cerr << " " << e.detail.data();
    std::cerr << "\n";
  } else if (e.detail[0] && e.detail_view().back() == '.' && e.sys_errno == 0) {
    std::cerr << e.detail.data() << "\n";  // already a full cryptsetup-style sentence
  } else {
    std::cerr << e.message() << "\n";
  }
  return exit_code_for(e);
}

void add_pbkdf_options(CLI::App* c, PbkdfArgs& a, const char* hash_help, const char* pbkdf_help) {
  c->add_option("--hash", a.hash, hash_help);
  c->add_option("--pbkdf", a.pbkdf, pbkdf_help)
      ->check(CLI::IsMember({"pbkdf2", "argon2i", "argon2id"}));
  c->add_option("-i,--iter-time", a.iter_time_ms, "PBKDF iteration time (in ms)");
  c->add_option("--pbkdf-force-iterations", a.pbkdf_force_iterations,
                "PBKDF iterations cost (forced, disables benchmark)");
  c->add_option("--pbkdf-memory", a.pbkdf_memory, "PBKDF memory cost limit (KiB)");
  c->add_option("--pbkdf-parallel", a.pbkdf_parallel, "PBKDF parallel cost");
}

volume::PbkdfOptions pbkdf_of(const PbkdfArgs& a) {
  volume::PbkdfOptions p;
  p.type = a.pbkdf;
  p.hash = a.hash;
  if (a.iter_time_ms) p.iter_time_ms = a.iter_time_ms;
  if (a.pbkdf_force_iterations) p.force_iterations = a.pbkdf_force_iterations;
  if (a.pbkdf_memory) p.memory_kib = a.pbkdf_memory;
  if (a.pbkdf_parallel) p.parallel = a.pbkdf_parallel;
  return p;
}

Result<void> prepare_header_file(const std::string& path, std::uint64_t bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return fail(make_sys_error(errno, "Cannot create header file"));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(make_sys_error(errno, "Cannot stat header file"));
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) < bytes &&
      ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
    return fail(make_sys_error(errno, "Cannot extend header file"));
  return ok();
}

}  // namespace cryptmap::cli
