//go:build ignore

// Excluded from Go builds: the Go package here only embeds this file.

/*
 * cpeer: one side of podipc-bench's c-spin and c-block jobs, a C program
 * written against libpodipc (clients/c/include/podipc.h) and linked
 * statically against libpodipc.a.
 *
 * The benchmark creates the two Queue-mode channels (A to B, B to A) and
 * starts this program twice: side B first, then, once B has said it is
 * ready, side A. The loops are those of the Go harness
 * (bench/internal/harness/loops.go), with its stamps (a little-endian header
 * {u64 seq, u32 size, u32 flags} and a trailing u64 seq, checked on every
 * message) and its warm-up, budget and duration rules:
 *
 *   role=a kind=rtt   sends, waits for the echo, times each round trip
 *   role=b kind=rtt   echoes every message up to the one flagged last
 *   role=a kind=tput  streams warmup messages, then more for duration_ms
 *   role=b kind=tput  receives, checks, times the messages after the warm-up
 *
 * Other arguments (key=value): size= ab= ba= warmup= samples= budget_ms=
 * duration_ms= verify_every= cpu= wait=spin|block|hybrid timeout_s=.
 * The receiver of a stream compares the whole payload with the pattern
 * (memcmp) on one message in verify_every.
 *
 * Output, one JSON object a line on stdout: {"ready":true} once both
 * channels are attached, then, after the run and the peers' close,
 * {"done":true,"messages":N,"nanos":D,"samples_ns":[...]} (samples from side
 * A of rtt, messages and nanos from side B of a stream, zero or empty
 * otherwise); or {"error":"..."} and exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "podipc.h"

#define FLAG_LAST 1u
#define HEADER_LEN 16
#define TRAILER_LEN 8

struct params {
	const char *role, *kind, *ab, *ba, *wait;
	long size, warmup, samples, budget_ms, duration_ms, verify_every, cpu, timeout_s;
};

/* What a side reports when it is done. */
struct result {
	uint64_t *samples; /* side A of rtt: n timed round trips */
	long n;
	uint64_t messages, nanos; /* side B of a stream */
};

struct side {
	podipc_channel *ab, *ba;
	podipc_producer *out;
	podipc_consumer *in;
	char *msg, *buf;
	size_t size;
};

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	printf("{\"error\":");
	json_string(msg);
	printf("}\n");
	exit(1);
}

static void check_rc(int rc, const char *what, uint64_t seq)
{
	if (rc != PODIPC_OK)
		fail("%s %llu: %s: %s", what, (unsigned long long)seq, podipc_strerror(rc), podipc_last_error());
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put64(char *p, uint64_t v) { memcpy(p, &v, 8); }
static void put32(char *p, uint32_t v) { memcpy(p, &v, 4); }
static uint64_t get64(const char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void stamp(char *msg, size_t size, uint64_t seq, uint32_t flags)
{
	put64(msg, seq);
	put32(msg + 8, (uint32_t)size);
	put32(msg + 12, flags);
	put64(msg + size - TRAILER_LEN, seq);
}

static void check_stamps(const char *msg, size_t len, size_t size, uint64_t seq)
{
	if (len != size)
		fail("corrupt message: message %llu has %zu bytes, want %zu", (unsigned long long)seq, len, size);
	uint64_t head = get64(msg), tail = get64(msg + size - TRAILER_LEN);
	uint32_t n = get32(msg + 8);
	if (head != seq || tail != seq || n != (uint32_t)size)
		fail("corrupt message: want message %llu of %zu bytes, got header seq %llu size %u, trailer seq %llu",
		     (unsigned long long)seq, size, (unsigned long long)head, n, (unsigned long long)tail);
}

/* new_message returns a buffer holding the harness's payload pattern. */
static char *new_message(size_t size)
{
	char *b = malloc(size);
	if (b == NULL)
		fail("malloc %zu bytes", size);
	for (size_t i = 0; i < size; i++)
		b[i] = (char)(i * 131 + 7);
	return b;
}

static void send_msg(struct side *s, const char *msg, uint64_t seq)
{
	check_rc(podipc_producer_send(s->out, msg, s->size, -1), "send message", seq);
}

/* recv_msg copies the next message into s->buf and returns its length. */
static size_t recv_msg(struct side *s, uint64_t seq)
{
	size_t len = 0;
	check_rc(podipc_consumer_recv(s->in, s->buf, s->size, &len, -1), "receive message", seq);
	return len;
}

static void ping(const struct params *p, struct side *s, struct result *r)
{
	uint64_t *samples = malloc((size_t)p->samples * sizeof *samples);
	if (samples == NULL)
		fail("malloc samples");
	uint64_t base = now_ns(), budget = (uint64_t)p->budget_ms * 1000000u;
	long n = 0;
	int warm = 0, last = 0;
	for (uint64_t seq = 0; !last; seq++) {
		uint64_t now = now_ns() - base;
		warm = warm || seq >= (uint64_t)p->warmup || (budget > 0 && now > budget / 10);
		last = warm && (n == p->samples - 1 || (budget > 0 && now > budget));
		stamp(s->msg, s->size, seq, last ? FLAG_LAST : 0);
		uint64_t t0 = now_ns();
		send_msg(s, s->msg, seq);
		size_t len = recv_msg(s, seq);
		uint64_t t1 = now_ns();
		check_stamps(s->buf, len, s->size, seq);
		if (warm)
			samples[n++] = t1 - t0;
	}
	r->samples = samples;
	r->n = n;
}

static void echo(struct side *s)
{
	for (uint64_t seq = 0;; seq++) {
		check_stamps(s->buf, recv_msg(s, seq), s->size, seq);
		int last = (get32(s->buf + 12) & FLAG_LAST) != 0;
		send_msg(s, s->buf, seq);
		if (last)
			return;
	}
}

static void stream(const struct params *p, struct side *s)
{
	/* Reading the clock for every small message would cost more than the
	 * transport's work: look every 256 messages, as the Go sender does. */
	uint64_t clock_mask = s->size >= 64 << 10 ? 0 : 255;
	uint64_t start = 0, duration = (uint64_t)p->duration_ms * 1000000u;
	int last = 0;
	for (uint64_t seq = 0; !last; seq++) {
		if (seq == (uint64_t)p->warmup)
			start = now_ns();
		else if (seq > (uint64_t)p->warmup && (seq & clock_mask) == 0)
			last = now_ns() - start >= duration;
		stamp(s->msg, s->size, seq, last ? FLAG_LAST : 0);
		send_msg(s, s->msg, seq);
	}
}

static void drain(const struct params *p, struct side *s, struct result *r)
{
	uint64_t warmup = (uint64_t)p->warmup, every = (uint64_t)(p->verify_every > 0 ? p->verify_every : 1);
	uint64_t first = 0;
	for (uint64_t seq = 0;; seq++) {
		size_t len = recv_msg(s, seq);
		if (seq == warmup)
			first = now_ns();
		check_stamps(s->buf, len, s->size, seq);
		const char *msg = s->buf;
		if (seq % every == 0 &&
		    memcmp(msg + HEADER_LEN, s->msg + HEADER_LEN, s->size - HEADER_LEN - TRAILER_LEN) != 0)
			fail("corrupt message: message %llu payload differs from the pattern", (unsigned long long)seq);
		if (get32(msg + 12) & FLAG_LAST) {
			uint64_t end = now_ns();
			if (seq <= warmup)
				fail("stream ended at message %llu, within the %llu warm-up messages",
				     (unsigned long long)seq, (unsigned long long)warmup);
			r->messages = seq - warmup;
			r->nanos = end - first;
			return;
		}
	}
}

static podipc_channel *open_channel(const char *path)
{
	podipc_channel *ch = NULL;
	int rc = podipc_channel_open(path, &ch);
	if (rc != PODIPC_OK)
		fail("open channel %s: %s: %s", path, podipc_strerror(rc), podipc_last_error());
	return ch;
}

/* attach opens the channels and, for side A, a producer on A to B and a
 * consumer on B to A; side B the other way round. */
static void attach(const struct params *p, struct side *s)
{
	podipc_peer_options opts = {.wait = PODIPC_WAIT_HYBRID};
	if (strcmp(p->wait, "spin") == 0)
		opts.wait = PODIPC_WAIT_SPIN;
	else if (strcmp(p->wait, "block") == 0)
		opts.wait = PODIPC_WAIT_BLOCK;
	else if (strcmp(p->wait, "hybrid") != 0)
		fail("unknown wait %s", p->wait);
	s->ab = open_channel(p->ab);
	s->ba = open_channel(p->ba);
	int a = strcmp(p->role, "a") == 0;
	check_rc(podipc_producer_open(a ? s->ab : s->ba, &opts, &s->out), "open producer", 0);
	check_rc(podipc_consumer_open(a ? s->ba : s->ab, &opts, &s->in), "open consumer", 0);
	s->size = (size_t)p->size;
	s->msg = new_message(s->size);
	s->buf = new_message(s->size);
}

static void detach(struct side *s)
{
	check_rc(podipc_producer_close(s->out), "close producer", 0);
	check_rc(podipc_consumer_close(s->in), "close consumer", 0);
	podipc_channel_close(s->ab);
	podipc_channel_close(s->ba);
	free(s->msg);
	free(s->buf);
}

static long arg_long(const char *v, const char *key)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || end == v)
		fail("bad value for %s: %s", key, v);
	return x;
}

static void parse(int argc, char **argv, struct params *p)
{
	struct {
		const char *key;
		const char **val;
	} strs[] = {{"role", &p->role}, {"kind", &p->kind}, {"ab", &p->ab}, {"ba", &p->ba}, {"wait", &p->wait}};
	struct {
		const char *key;
		long *val;
	} longs[] = {{"size", &p->size},	     {"warmup", &p->warmup},
		     {"samples", &p->samples},	     {"budget_ms", &p->budget_ms},
		     {"duration_ms", &p->duration_ms}, {"verify_every", &p->verify_every},
		     {"cpu", &p->cpu},		     {"timeout_s", &p->timeout_s}};
	for (int i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (eq == NULL)
			fail("argument %s is not key=value", argv[i]);
		const char *key = argv[i], *val = eq + 1;
		size_t n = (size_t)(eq - key);
		int known = 0;
		for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++)
			if (strlen(strs[k].key) == n && strncmp(key, strs[k].key, n) == 0)
				*strs[k].val = val, known = 1;
		for (size_t k = 0; k < sizeof longs / sizeof longs[0]; k++)
			if (strlen(longs[k].key) == n && strncmp(key, longs[k].key, n) == 0)
				*longs[k].val = arg_long(val, longs[k].key), known = 1;
		if (!known)
			fail("unknown argument %s", key);
	}
	if (p->ab == NULL || p->ba == NULL || p->size < HEADER_LEN + TRAILER_LEN || p->samples < 1 || p->warmup < 1 ||
	    p->duration_ms < 1 || (strcmp(p->role, "a") != 0 && strcmp(p->role, "b") != 0))
		fail("need ab=, ba=, role=a|b, size>=%d, samples>=1, warmup>=1, duration_ms>=1",
		     HEADER_LEN + TRAILER_LEN);
}

int main(int argc, char **argv)
{
	struct params p = {.role = "", .kind = "", .wait = "spin", .samples = 1000, .warmup = 100,
			   .duration_ms = 1000, .verify_every = 1024, .cpu = -1, .timeout_s = 600};
	parse(argc, argv, &p);
	alarm((unsigned)p.timeout_s); /* a watchdog: a wedged side must not spin forever */
	if (p.cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET((int)p.cpu, &set);
		if (sched_setaffinity(0, sizeof set, &set) != 0)
			fail("sched_setaffinity cpu %ld: %s", p.cpu, strerror(errno));
	}
	struct side s = {0};
	attach(&p, &s);
	printf("{\"ready\":true}\n");
	fflush(stdout);

	struct result r = {0};
	int a = strcmp(p.role, "a") == 0;
	if (strcmp(p.kind, "rtt") == 0 && a)
		ping(&p, &s, &r);
	else if (strcmp(p.kind, "rtt") == 0)
		echo(&s);
	else if (strcmp(p.kind, "tput") == 0 && a)
		stream(&p, &s);
	else if (strcmp(p.kind, "tput") == 0)
		drain(&p, &s, &r);
	else
		fail("unknown kind %s", p.kind);
	detach(&s);

	printf("{\"done\":true,\"messages\":%llu,\"nanos\":%llu,\"samples_ns\":[", (unsigned long long)r.messages,
	       (unsigned long long)r.nanos);
	for (long i = 0; i < r.n; i++)
		printf(i ? ",%llu" : "%llu", (unsigned long long)r.samples[i]);
	printf("]}\n");
	free(r.samples);
	return 0;
}
