//go:build ignore

// Excluded from Go builds: the Go package here only embeds this file.

/*
 * cring: the machine-limit baseline of podipc-bench.
 *
 * A minimal single-producer single-consumer ring of fixed-size slots in a
 * file on a tmpfs, shared by two processes (this program forks itself after
 * mapping the file). Both sides busy-poll; the producer copies a message into
 * a slot and publishes it with a release store of the head index, the
 * consumer copies it out and frees the slot with a release store of the tail
 * index (Lamport's ring with cached indices). Nothing here is specific to
 * podipc: it is the least work two processes can do to move a copied message.
 *
 * Modes (arguments are key=value):
 *   mode=rtt    size= slots= samples= warmup= budget_ms= cpu_a= cpu_b= dir= timeout_s=
 *   mode=tput   size= slots= duration_ms= warmup= cpu_a= cpu_b= dir= timeout_s=
 *   mode=memcpy size= duration_ms= cpu_a=
 * Each mode prints exactly one JSON object on stdout. Times are from
 * CLOCK_MONOTONIC; percentiles use the nearest-rank definition, like the Go
 * harness. Every message carries the harness's stamps: a little-endian
 * header {u64 seq, u32 size, u32 flags} and a trailing u64 seq, checked by
 * the receiving side.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CACHE_LINE 64
#define FLAG_LAST 1u

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield" ::: "memory")
#else
#define cpu_relax() __asm__ volatile("" ::: "memory")
#endif

struct ring {
	_Alignas(CACHE_LINE) _Atomic uint64_t head;
	_Alignas(CACHE_LINE) _Atomic uint64_t tail;
	_Alignas(CACHE_LINE) char slots[];
};

/* Written by side B, read by side A after B exits. */
struct control {
	_Alignas(CACHE_LINE) uint64_t received;
	uint64_t first_ns, last_ns, last_seq;
	uint64_t errors;
	char error[192];
};

struct params {
	const char *mode, *dir;
	long size, slots, samples, warmup, duration_ms, budget_ms, cpu_a, cpu_b, timeout_s;
};

struct producer {
	struct ring *r;
	uint64_t head, tail_cache;
};

struct consumer {
	struct ring *r;
	uint64_t tail, head_cache;
};

static long slots_n, slot_stride, msg_size;

static void die(const char *what)
{
	printf("{\"error\":\"%s: %s\"}\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(long cpu)
{
	cpu_set_t set;
	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set) != 0)
		die("sched_setaffinity");
}

static void put64(char *p, uint64_t v) { memcpy(p, &v, 8); }
static void put32(char *p, uint32_t v) { memcpy(p, &v, 4); }
static uint64_t get64(const char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void stamp(char *msg, uint64_t seq, uint32_t flags)
{
	put64(msg, seq);
	put32(msg + 8, (uint32_t)msg_size);
	put32(msg + 12, flags);
	put64(msg + msg_size - 8, seq);
}

/* check returns 0 when msg carries the stamps of message seq. */
static int check(const char *msg, uint64_t seq)
{
	return get64(msg) != seq || get32(msg + 8) != (uint32_t)msg_size ||
	       get64(msg + msg_size - 8) != seq;
}

static char *slot(struct ring *r, uint64_t i)
{
	return r->slots + (size_t)(i % (uint64_t)slots_n) * (size_t)slot_stride;
}

static void send_msg(struct producer *p, const char *msg)
{
	while (p->head - p->tail_cache >= (uint64_t)slots_n) {
		p->tail_cache = atomic_load_explicit(&p->r->tail, memory_order_acquire);
		if (p->head - p->tail_cache >= (uint64_t)slots_n)
			cpu_relax();
	}
	memcpy(slot(p->r, p->head), msg, (size_t)msg_size);
	p->head++;
	atomic_store_explicit(&p->r->head, p->head, memory_order_release);
}

static void recv_msg(struct consumer *c, char *buf)
{
	while (c->tail == c->head_cache) {
		c->head_cache = atomic_load_explicit(&c->r->head, memory_order_acquire);
		if (c->tail == c->head_cache)
			cpu_relax();
	}
	memcpy(buf, slot(c->r, c->tail), (size_t)msg_size);
	c->tail++;
	atomic_store_explicit(&c->r->tail, c->tail, memory_order_release);
}

static size_t ring_bytes(void)
{
	size_t b = sizeof(struct ring) + (size_t)slots_n * (size_t)slot_stride;
	return (b + 4095) & ~(size_t)4095;
}

static char *map_shared(const struct params *p, size_t len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/podipc-cring-%d", p->dir, (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		die("open ring file");
	unlink(path); /* the mapping keeps it alive; nothing to clean up on exit */
	if (ftruncate(fd, (off_t)len) != 0)
		die("ftruncate ring file");
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		die("mmap ring file");
	close(fd);
	memset(m, 0, len); /* fault every page in before timing */
	return m;
}

static char *alloc_msg(void)
{
	char *b = aligned_alloc(CACHE_LINE, (size_t)slot_stride);
	if (b == NULL)
		die("aligned_alloc");
	for (long i = 0; i < msg_size; i++)
		b[i] = (char)(i * 131 + 7);
	return b;
}

static void fail(struct control *ctl, const char *what, uint64_t seq)
{
	ctl->errors++;
	snprintf(ctl->error, sizeof ctl->error, "%s at message %llu", what,
		 (unsigned long long)seq);
}

/* fork_side_b runs fn in a child pinned to cpu_b and returns its pid. */
static pid_t fork_side_b(const struct params *p, void (*fn)(const struct params *, char *),
			 char *shared)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm((unsigned)p->timeout_s); /* alarms are not inherited */
		pin(p->cpu_b);
		fn(p, shared);
		_exit(0);
	}
	return pid;
}

static void wait_side_b(pid_t pid)
{
	int status;
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("{\"error\":\"side B ended abnormally (status %d)\"}\n", status);
		exit(1);
	}
}

static struct ring *ring_at(char *shared, int i)
{
	return (struct ring *)(shared + 4096 + (size_t)i * ring_bytes());
}

static void rtt_side_b(const struct params *p, char *shared)
{
	(void)p;
	struct control *ctl = (struct control *)shared;
	struct consumer in = {.r = ring_at(shared, 0)};
	struct producer out = {.r = ring_at(shared, 1)};
	char *buf = alloc_msg();
	for (uint64_t seq = 0;; seq++) {
		recv_msg(&in, buf);
		if (check(buf, seq))
			fail(ctl, "bad stamp", seq);
		send_msg(&out, buf);
		if (get32(buf + 12) & FLAG_LAST) {
			ctl->received = seq + 1;
			return;
		}
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* rank returns the nearest-rank percentile num/den of sorted s[0..n). */
static uint64_t rank(const uint64_t *s, long n, long num, long den)
{
	long idx = (n * num + den - 1) / den - 1;
	if (idx < 0)
		idx = 0;
	return s[idx];
}

static void run_rtt(const struct params *p)
{
	char *shared = map_shared(p, 4096 + 2 * ring_bytes());
	struct control *ctl = (struct control *)shared;
	pid_t pid = fork_side_b(p, rtt_side_b, shared);
	struct producer out = {.r = ring_at(shared, 0)};
	struct consumer in = {.r = ring_at(shared, 1)};
	char *msg = alloc_msg(), *buf = alloc_msg();
	uint64_t *s = calloc((size_t)p->samples, sizeof *s);
	if (s == NULL)
		die("calloc");
	/* Like the Go harness: with a budget, the warm-up ends after a tenth of
	 * it at the latest, and the run, with fewer samples, once it is spent,
	 * so that a slow machine does not stretch the run. The last message
	 * says so to side B. */
	long bad = 0, n = 0;
	uint64_t start = now_ns(), budget = (uint64_t)p->budget_ms * 1000000u;
	int warm = 0, last = 0;
	for (long i = 0; !last; i++) {
		uint64_t elapsed = now_ns() - start;
		warm = warm || i >= p->warmup || (budget > 0 && elapsed > budget / 10);
		last = warm && (n == p->samples - 1 || (budget > 0 && elapsed > budget));
		stamp(msg, (uint64_t)i, last ? FLAG_LAST : 0);
		uint64_t t0 = now_ns();
		send_msg(&out, msg);
		recv_msg(&in, buf);
		uint64_t t1 = now_ns();
		bad += check(buf, (uint64_t)i);
		if (warm)
			s[n++] = t1 - t0;
	}
	wait_side_b(pid);
	if (bad || ctl->errors) {
		printf("{\"error\":\"%ld bad replies; side B: %llu errors %s\"}\n", bad,
		       (unsigned long long)ctl->errors, ctl->error);
		exit(1);
	}
	uint64_t sum = 0;
	for (long i = 0; i < n; i++)
		sum += s[i];
	qsort(s, (size_t)n, sizeof *s, cmp_u64);
	printf("{\"mode\":\"rtt\",\"size\":%ld,\"samples\":%ld,\"min_ns\":%llu,"
	       "\"mean_ns\":%llu,\"p50_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu,"
	       "\"max_ns\":%llu}\n",
	       p->size, n, (unsigned long long)s[0], (unsigned long long)(sum / (uint64_t)n),
	       (unsigned long long)rank(s, n, 50, 100), (unsigned long long)rank(s, n, 99, 100),
	       (unsigned long long)rank(s, n, 999, 1000), (unsigned long long)s[n - 1]);
}

static void tput_side_b(const struct params *p, char *shared)
{
	struct control *ctl = (struct control *)shared;
	struct consumer in = {.r = ring_at(shared, 0)};
	char *buf = alloc_msg();
	for (uint64_t seq = 0;; seq++) {
		recv_msg(&in, buf);
		if (check(buf, seq)) {
			fail(ctl, "bad stamp", seq);
			return;
		}
		if (seq == (uint64_t)p->warmup)
			ctl->first_ns = now_ns();
		if (get32(buf + 12) & FLAG_LAST) {
			ctl->last_ns = now_ns();
			ctl->last_seq = seq;
			ctl->received = seq + 1;
			return;
		}
	}
}

static void run_tput(const struct params *p)
{
	char *shared = map_shared(p, 4096 + ring_bytes());
	struct control *ctl = (struct control *)shared;
	pid_t pid = fork_side_b(p, tput_side_b, shared);
	struct producer out = {.r = ring_at(shared, 0)};
	char *msg = alloc_msg();
	uint64_t check_mask = msg_size >= 65536 ? 0 : 255;
	uint64_t end = 0;
	int last = 0;
	for (uint64_t seq = 0; !last; seq++) {
		if (seq == (uint64_t)p->warmup)
			end = now_ns() + (uint64_t)p->duration_ms * 1000000u;
		else if (seq > (uint64_t)p->warmup && (seq & check_mask) == 0 && now_ns() >= end)
			last = 1;
		stamp(msg, seq, last ? FLAG_LAST : 0);
		send_msg(&out, msg);
	}
	wait_side_b(pid);
	if (ctl->errors) {
		printf("{\"error\":\"side B: %s\"}\n", ctl->error);
		exit(1);
	}
	uint64_t msgs = ctl->last_seq - (uint64_t)p->warmup;
	printf("{\"mode\":\"tput\",\"size\":%ld,\"messages\":%llu,\"seconds\":%.9f}\n", p->size,
	       (unsigned long long)msgs, (double)(ctl->last_ns - ctl->first_ns) / 1e9);
}

static void run_memcpy(const struct params *p)
{
	char *src = alloc_msg(), *dst = alloc_msg();
	memset(dst, 0, (size_t)msg_size);
	uint64_t n = 0, start = now_ns(), end = start + (uint64_t)p->duration_ms * 1000000u, t;
	do {
		for (int i = 0; i < 16; i++) {
			memcpy(dst, src, (size_t)msg_size);
			__asm__ volatile("" : : "r"(dst) : "memory");
		}
		n += 16;
		t = now_ns();
	} while (t < end);
	double secs = (double)(t - start) / 1e9;
	printf("{\"mode\":\"memcpy\",\"size\":%ld,\"copies\":%llu,\"seconds\":%.9f}\n", p->size,
	       (unsigned long long)n, secs);
}

static long arg_long(const char *v, const char *key)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || end == v) {
		printf("{\"error\":\"bad value for %s: %s\"}\n", key, v);
		exit(2);
	}
	return x;
}

int main(int argc, char **argv)
{
	struct params p = {.mode = "", .dir = "/dev/shm", .slots = 1024, .samples = 1000,
			   .warmup = 100, .duration_ms = 1000, .cpu_a = -1, .cpu_b = -1,
			   .timeout_s = 600};
	struct {
		const char *key;
		long *val;
	} longs[] = {{"size", &p.size},		  {"slots", &p.slots},	   {"samples", &p.samples},
		     {"warmup", &p.warmup},	  {"duration_ms", &p.duration_ms},
		     {"budget_ms", &p.budget_ms},
		     {"cpu_a", &p.cpu_a},	  {"cpu_b", &p.cpu_b},	   {"timeout_s", &p.timeout_s}};
	for (int i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (eq == NULL) {
			printf("{\"error\":\"argument %s is not key=value\"}\n", argv[i]);
			return 2;
		}
		*eq = '\0';
		const char *key = argv[i], *val = eq + 1;
		int known = 0;
		if (strcmp(key, "mode") == 0)
			p.mode = val, known = 1;
		else if (strcmp(key, "dir") == 0)
			p.dir = val, known = 1;
		for (size_t k = 0; k < sizeof longs / sizeof longs[0]; k++)
			if (strcmp(key, longs[k].key) == 0)
				*longs[k].val = arg_long(val, key), known = 1;
		if (!known) {
			printf("{\"error\":\"unknown argument %s\"}\n", key);
			return 2;
		}
	}
	if (p.size < 24 || p.slots < 1 || p.samples < 1 || p.warmup < 1 || p.duration_ms < 1) {
		printf("{\"error\":\"need size>=24, slots>=1, samples>=1, warmup>=1, duration_ms>=1\"}\n");
		return 2;
	}
	msg_size = p.size;
	slots_n = p.slots;
	slot_stride = (p.size + CACHE_LINE - 1) & ~(long)(CACHE_LINE - 1);
	alarm((unsigned)p.timeout_s); /* a watchdog: a wedged side must not spin forever */
	pin(p.cpu_a);
	if (strcmp(p.mode, "rtt") == 0)
		run_rtt(&p);
	else if (strcmp(p.mode, "tput") == 0)
		run_tput(&p);
	else if (strcmp(p.mode, "memcpy") == 0)
		run_memcpy(&p);
	else {
		printf("{\"error\":\"unknown mode %s\"}\n", p.mode);
		return 2;
	}
	return 0;
}
