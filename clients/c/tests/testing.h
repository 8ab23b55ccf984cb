/* A minimal test harness: CHECK fails the current test with a message,
 * tests run in order and the binary exits non-zero if any failed. */
#ifndef PODIPC_TESTING_H
#define PODIPC_TESTING_H

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "podipc.h"

static int test_failed __attribute__((unused));
static const char *test_name __attribute__((unused));

#define CHECK(cond)                                                                                          \
	do {                                                                                                     \
		if (!(cond)) {                                                                                       \
			fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, test_name, #cond);          \
			test_failed = 1;                                                                                 \
			return;                                                                                          \
		}                                                                                                    \
	} while (0)

/* CHECK_RC(call, want): call returns want; otherwise prints both names and the detail. */
#define CHECK_RC(call, want)                                                                                 \
	do {                                                                                                     \
		int rc_ = (call);                                                                                    \
		if (rc_ != (want)) {                                                                                 \
			fprintf(stderr, "%s:%d: %s: %s returned %d (%s), want %d (%s); last error: %s\n", __FILE__,     \
			        __LINE__, test_name, #call, rc_, podipc_strerror(rc_), (want), podipc_strerror(want),   \
			        podipc_last_error());                                                                    \
			test_failed = 1;                                                                                 \
			return;                                                                                          \
		}                                                                                                    \
	} while (0)

#define CHECK_OK(call) CHECK_RC(call, PODIPC_OK)

#define RUN(fn)                                                                                              \
	do {                                                                                                     \
		int before_ = test_failed;                                                                           \
		test_failed = 0;                                                                                     \
		test_name = #fn;                                                                                     \
		fn();                                                                                                \
		fprintf(stderr, "%s %s\n", test_failed ? "FAIL" : "ok  ", #fn);                                      \
		test_failed |= before_;                                                                              \
	} while (0)

/* A fresh directory for channel files under $TMPDIR (a tmpfs in `make test`). */
static char test_dir[256];

static __attribute__((unused)) void make_test_dir(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(test_dir, sizeof test_dir, "%s/podipc-ctest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(test_dir)) {
		perror("mkdtemp");
		exit(2);
	}
}

static __attribute__((unused)) void remove_test_dir(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", test_dir);
}

/* path_in_test_dir returns a static path for name (one at a time). */
static __attribute__((unused)) const char *test_path(const char *name)
{
	static char p[400];
	snprintf(p, sizeof p, "%s/%s", test_dir, name);
	return p;
}

#endif
