# `cmake --install` and the Debian package (`ninja package`, CPack's DEB generator).
#
# What goes where (GNUInstallDirs, relative to CMAKE_INSTALL_PREFIX: /usr/local by default,
# /usr in the .deb):
#   bin/cryptmap                          the program. bin, not sbin as cryptsetup: plain users
#                                         run it too (`vault`, `open` into $XDG_RUNTIME_DIR), and
#                                         Debian's default PATH for them has no sbin.
#   share/man/man8/cryptmap.8.gz          written at build time by `cryptmap --help-man`,
#                                         gzip -9n as Debian policy 12.1 asks
#   share/bash-completion/completions/cryptmap   by `cryptmap --help-bash-completion`
#   lib/systemd/system/cryptmap{,@}.service      examples/'s units, ExecStart pointing at the
#                                         installed program (CRYPTMAP_SYSTEMD_UNIT_DIR)
#   share/doc/cryptmap/                   README.md, examples/README.md, examples/cryptmaptab,
#                                         copyright (the bundled header-only libraries' terms)
# Nothing is installed under /etc: the example table has live entries, so it is documentation
# (the units only start when /etc/cryptmaptab exists and an administrator enabled them).
include(GNUInstallDirs)

install(TARGETS cryptmap RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_BINARY_DIR}/cli/cryptmap.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${PROJECT_BINARY_DIR}/cli/cryptmap.bash-completion
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME cryptmap)

# The units in examples/ name /usr/local/bin/cryptmap (where a plain `cmake --install` puts it);
# the installed copies name wherever this install puts it. The prefix is only known at install
# time (CPack installs with /usr), so the copies are written then.
set(CRYPTMAP_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where the systemd units go (relative to the install prefix, or absolute)")
foreach(unit cryptmap.service cryptmap@.service)
  install(CODE "
    file(READ [[${PROJECT_SOURCE_DIR}/examples/${unit}]] text)
    string(REPLACE /usr/local/bin/cryptmap \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/cryptmap\"
           text \"\${text}\")
    string(REPLACE /usr/share/doc/cryptmap \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\"
           text \"\${text}\")
    file(WRITE [[${PROJECT_BINARY_DIR}/units/${unit}]] \"\${text}\")")
  install(FILES ${PROJECT_BINARY_DIR}/units/${unit} DESTINATION ${CRYPTMAP_SYSTEMD_UNIT_DIR})
endforeach()

# The program compiles in two header-only libraries whose licences ask that their notice ship
# with binaries: CLI11 (BSD-3-Clause) and nlohmann-json (MIT). Their Debian copyright files are
# on any machine that builds cryptmap (the -dev packages), and are copied into ours.
set(copyright ${PROJECT_BINARY_DIR}/copyright)
file(WRITE ${copyright}
     "cryptmap: userspace dm-crypt/cryptsetup (README.md).\n\n"
     "The cryptmap program includes the following header-only libraries; their terms follow.\n")
foreach(dep libcli11-dev nlohmann-json3-dev)
  if(EXISTS /usr/share/doc/${dep}/copyright)
    file(READ /usr/share/doc/${dep}/copyright text)
    file(APPEND ${copyright} "\n==== ${dep} (/usr/share/doc/${dep}/copyright)\n\n${text}")
  endif()
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${copyright} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/examples/cryptmaptab
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES ${PROJECT_SOURCE_DIR}/examples/README.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# The .deb: `ninja -C build package` -> build/cryptmap_VERSION_ARCH.deb.
set(CRYPTMAP_DEB_MAINTAINER "cryptmap maintainers <maintainers@cryptmap.invalid>" CACHE STRING
    "Maintainer field of the .deb")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME cryptmap)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT ${CRYPTMAP_DEB_MAINTAINER})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "dm-crypt and cryptsetup in userspace (FUSE)")
# One string: the first line is the synopsis, CPack indents the rest as the long description.
string(CONCAT CPACK_DEBIAN_PACKAGE_DESCRIPTION
       "dm-crypt and cryptsetup in userspace (FUSE)\n"
       "cryptmap opens LUKS1, LUKS2, plain dm-crypt, BitLocker, FileVault 2 and\n"
       "TrueCrypt/VeraCrypt images without the kernel's device-mapper and serves\n"
       "each opened volume as one plain file in a FUSE mount directory. Images\n"
       "interoperate with cryptsetup byte for byte. Also: a plain user's\n"
       "encrypted folder (vault), a Docker/Podman volume plugin and\n"
       "crypttab-style tables with systemd units.")
# Shared libraries: dpkg-shlibdeps. fuse3 brings fusermount3 (mounts by plain users); vault and
# the volume plugin make and mount ext4 (e2fsprogs, fuse2fs).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "e2fsprogs, fuse2fs")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "cryptsetup-bin, podman, librbd1")
set(CPACK_STRIP_FILES ON)
# No maintainer scripts: nothing to create (no user, no /etc file), and the units are not
# enabled by the package; systemd sees them at its next daemon-reload.
include(CPack)
