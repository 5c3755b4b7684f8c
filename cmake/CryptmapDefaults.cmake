# cryptmap_target_defaults(<target>): the one place for warnings, language level and sanitizers.
function(cryptmap_target_defaults tgt)
  target_compile_features(${tgt} PRIVATE cxx_std_20)
  target_compile_options(${tgt} PRIVATE
    -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wpedantic
    $<$<COMPILE_LANGUAGE:CXX>:-Wold-style-cast>)
  # clang checks the GUARDED_BY/REQUIRES annotations (base/thread_annotations.h); g++ has no
  # such analysis.
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    target_compile_options(${tgt} PRIVATE -Wthread-safety)
  endif()
  if(CRYPTMAP_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
  target_compile_definitions(${tgt} PRIVATE _FILE_OFFSET_BITS=64 _GNU_SOURCE)
  target_include_directories(${tgt} PRIVATE ${PROJECT_SOURCE_DIR})
endfunction()

if(CRYPTMAP_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(CRYPTMAP_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT CRYPTMAP_SANITIZE STREQUAL "")
  message(FATAL_ERROR "CRYPTMAP_SANITIZE must be '', 'address' or 'thread'")
endif()

# Sanitizer builds compile at -O1 with line tables only (-g1), as ASan's and TSan's documentation
# recommend: reports keep function, file and line, and the build takes less than half the time
# of -O2 -g (measured under ASan: luks2_json.cpp, daemon_commands.cpp, backing_store_test.cpp,
# 281 s -> 118 s of CPU together).
if(NOT CRYPTMAP_SANITIZE STREQUAL "" AND CMAKE_BUILD_TYPE STREQUAL "RelWithDebInfo")
  set(CMAKE_C_FLAGS_RELWITHDEBINFO "-O1 -g1 -DNDEBUG")
  set(CMAKE_CXX_FLAGS_RELWITHDEBINFO "-O1 -g1 -DNDEBUG")
endif()
