// Clang thread-safety annotations (-Wthread-safety), as LevelDB and Abseil use them: the
// compiler checks that a member marked GUARDED_BY(mu_) is touched only with mu_ held and that a
// function marked REQUIRES(mu_) is called with it held. Under g++ they expand to nothing; CI's
// clang build (.ci/test.sh, "thread-safety") turns every violation into an error.
// Use them with the annotated types of base/mutex.h (std::mutex itself carries no annotations).
#pragma once

#if defined(__clang__)
#define CRYPTMAP_TSA(x) __attribute__((x))
#else
#define CRYPTMAP_TSA(x)
#endif

#define CAPABILITY(x) CRYPTMAP_TSA(capability(x))
#define SCOPED_CAPABILITY CRYPTMAP_TSA(scoped_lockable)
#define GUARDED_BY(x) CRYPTMAP_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) CRYPTMAP_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) CRYPTMAP_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) CRYPTMAP_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) CRYPTMAP_TSA(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) CRYPTMAP_TSA(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) CRYPTMAP_TSA(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) CRYPTMAP_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) CRYPTMAP_TSA(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) CRYPTMAP_TSA(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) CRYPTMAP_TSA(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) CRYPTMAP_TSA(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) CRYPTMAP_TSA(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) CRYPTMAP_TSA(assert_capability(x))
#define RETURN_CAPABILITY(x) CRYPTMAP_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS CRYPTMAP_TSA(no_thread_safety_analysis)
