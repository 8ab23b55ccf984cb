/*
 * podipc-devshm: two containers of a pod sharing POSIX shared memory through
 * shm_open(3) on the /dev/shm that podipc injects (podipc.io/dev-shm: "true";
 * docs/annotations.md). The end-to-end test runs it as two containers.
 *
 *   podipc-devshm write NAME   create the object NAME (1 MiB), fill it, then
 *                              advance a counter in it every 10 ms until
 *                              SIGTERM, and unlink it
 *   podipc-devshm read NAME    wait up to 60 s for NAME, check its content,
 *                              see the writer's counter advance, print one
 *                              line and exit 0 (1 on any failure)
 *
 * The object's layout: a 64-byte header (magic, size, checksum of the
 * payload, counter), then the payload: byte k is (k * 7 + 3) mod 251.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OBJECT_SIZE (1u << 20)
#define HEADER_SIZE 64u
#define MAGIC 0x6d68735665645050ull /* "PPdevShm" */

struct header {
	_Atomic uint64_t magic; /* written last by the writer */
	uint64_t size;
	uint64_t checksum;
	_Atomic uint64_t counter;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static uint64_t checksum(const unsigned char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stopping) {
	}
}

static int fail(const char *what, const char *name)
{
	fprintf(stderr, "podipc-devshm: %s %s: %s\n", what, name, strerror(errno));
	return 1;
}

static int writer(const char *name)
{
	int fd = shm_open(name, O_CREAT | O_RDWR, 0644);
	if (fd < 0)
		return fail("shm_open", name);
	if (ftruncate(fd, OBJECT_SIZE) != 0)
		return fail("ftruncate", name);
	unsigned char *base = mmap(NULL, OBJECT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return fail("mmap", name);
	close(fd);
	struct header *h = (struct header *)base;
	unsigned char *payload = base + HEADER_SIZE;
	size_t n = OBJECT_SIZE - HEADER_SIZE;
	for (size_t k = 0; k < n; k++)
		payload[k] = (unsigned char)((k * 7 + 3) % 251);
	h->size = n;
	h->checksum = checksum(payload, n);
	atomic_store_explicit(&h->counter, 0, memory_order_relaxed);
	atomic_store_explicit(&h->magic, MAGIC, memory_order_release);
	printf("podipc-devshm: wrote /dev/shm%s (%zu bytes); advancing its counter until SIGTERM\n", name, n);
	fflush(stdout);
	while (!stopping) {
		atomic_fetch_add_explicit(&h->counter, 1, memory_order_release);
		sleep_ms(10);
	}
	if (shm_unlink(name) != 0)
		return fail("shm_unlink", name);
	printf("podipc-devshm: unlinked %s\n", name);
	return 0;
}

static int reader(const char *name)
{
	int fd = -1;
	for (int i = 0; i < 6000 && !stopping; i++) { /* 60 s */
		fd = shm_open(name, O_RDONLY, 0);
		if (fd >= 0) {
			struct stat st;
			if (fstat(fd, &st) == 0 && st.st_size == OBJECT_SIZE)
				break;
			close(fd);
			fd = -1;
		} else if (errno != ENOENT) {
			return fail("shm_open", name);
		}
		sleep_ms(10);
	}
	if (fd < 0) {
		fprintf(stderr, "podipc-devshm: %s did not appear in /dev/shm within 60 s\n", name);
		return 1;
	}
	const unsigned char *base = mmap(NULL, OBJECT_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return fail("mmap", name);
	close(fd);
	struct header *h = (struct header *)(uintptr_t)base;
	for (int i = 0; atomic_load_explicit(&h->magic, memory_order_acquire) != MAGIC; i++) {
		if (i == 6000 || stopping) {
			fprintf(stderr, "podipc-devshm: %s was never filled\n", name);
			return 1;
		}
		sleep_ms(10);
	}
	size_t n = OBJECT_SIZE - HEADER_SIZE;
	uint64_t sum = checksum(base + HEADER_SIZE, n);
	if (h->size != n || h->checksum != sum) {
		fprintf(stderr, "podipc-devshm: %s: size %llu checksum %#llx, want %zu and %#llx\n", name,
			(unsigned long long)h->size, (unsigned long long)h->checksum, n, (unsigned long long)sum);
		return 1;
	}
	uint64_t first = atomic_load_explicit(&h->counter, memory_order_acquire), now = first;
	for (int i = 0; i < 1000 && now == first && !stopping; i++) { /* 10 s */
		sleep_ms(10);
		now = atomic_load_explicit(&h->counter, memory_order_acquire);
	}
	if (now == first) {
		fprintf(stderr, "podipc-devshm: %s: the writer's counter stayed at %llu: not shared with a live writer\n",
			name, (unsigned long long)first);
		return 1;
	}
	printf("podipc-devshm: read /dev/shm%s: %zu bytes, checksum ok, the writer's counter advanced %llu -> %llu\n",
	       name, n, (unsigned long long)first, (unsigned long long)now);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "read") != 0) || argv[2][0] == '\0' ||
	    strchr(argv[2], '/') != NULL) {
		fprintf(stderr, "usage: podipc-devshm write|read NAME  (NAME without '/')\n");
		return 2;
	}
	char name[256];
	if (snprintf(name, sizeof name, "/%s", argv[2]) >= (int)sizeof name) {
		fprintf(stderr, "podipc-devshm: name too long\n");
		return 2;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	return strcmp(argv[1], "write") == 0 ? writer(name) : reader(name);
}
