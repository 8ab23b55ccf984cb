/*
 * podipc-example-c: the C counterpart of the Go example apps (examples/app),
 * on libpodipc. Run in an injected pod's container (it finds the pod's
 * channels and broker through $PODIPC_DIR), or beside `make demo`'s sidecar.
 *
 *   podipc-example-c consume [--shm NAME]... [--mq QUEUE]... [--interval SECONDS]
 *       takes every message of each shared-memory Queue channel and each
 *       queue (acknowledging it), and prints each one's rate and latency
 *       every interval (default 5 s) until SIGTERM, then the totals
 *   podipc-example-c produce [--shm NAME]... [--mq QUEUE]... [--rate N] [--mq-rate N]
 *                            [--size BYTES] [--duration SECONDS]
 *       sends stamped messages to each channel (N/s, default 1000) and each
 *       queue (default 100/s, confirmed) until SIGTERM or the duration,
 *       then prints what it sent
 *
 * Messages carry the examples' stamp (examples/app/internal/appkit): bytes
 * 0-7 the send time in Unix nanoseconds, 8-15 a sequence number, both
 * little-endian; so Go, C and Python example apps read each other's.
 * One thread per channel or queue; libpodipc's objects are used by the
 * thread that opened them (podipc.h, Thread-safety).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "podipc.h"

#define MAX_ENDPOINTS 16
#define STAMP_SIZE 16

static atomic_int stopping;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&stopping, 1);
}

static int64_t now_ns(int clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void put_u64(unsigned char *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *b)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static void sleep_ns(int64_t ns)
{
	if (ns <= 0)
		return;
	struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !atomic_load(&stopping)) {
	}
}

/* An endpoint is one channel or queue and the thread that serves it. */
struct endpoint {
	const char *name;
	int is_mq;
	pthread_t thread;
	/* produce */
	int rate, size;
	int64_t until_ns; /* CLOCK_MONOTONIC; 0: no end */
	/* counters, read by the reporting thread */
	atomic_ulong messages, bytes, total;
	atomic_long latency_sum_ns, latency_max_ns;
	int failed;
};

static const char *dir(void)
{
	const char *d = getenv("PODIPC_DIR");
	return d && *d ? d : "/var/run/podipc";
}

static void fail(struct endpoint *e, const char *what, int err)
{
	fprintf(stderr, "podipc-example-c: %s %s: %s: %s\n", e->is_mq ? "queue" : "channel", e->name, what,
	        podipc_last_error());
	(void)err;
	e->failed = 1;
	atomic_store(&stopping, 1);
}

/* open_channel waits for the sidecar to create the channel file. */
static int open_channel(struct endpoint *e, podipc_channel **ch)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/shm/%s", dir(), e->name);
	for (;;) {
		int err = podipc_channel_open(path, ch);
		if (err == PODIPC_OK)
			return 0;
		if (!(err == PODIPC_ERR_SYSTEM && errno == ENOENT) || atomic_load(&stopping)) {
			fail(e, "open", err);
			return -1;
		}
		sleep_ns(50000000);
	}
}

/* connect_broker waits for the sidecar's broker to listen. */
static int connect_broker(struct endpoint *e, podipc_mq **mq)
{
	for (;;) {
		int err = podipc_mq_connect(NULL, NULL, mq);
		if (err == PODIPC_OK)
			return 0;
		if (!(err == PODIPC_ERR_SYSTEM && (errno == ENOENT || errno == ECONNREFUSED)) || atomic_load(&stopping)) {
			fail(e, "connect", err);
			return -1;
		}
		sleep_ns(50000000);
	}
}

static void observe(struct endpoint *e, const void *msg, size_t len)
{
	atomic_fetch_add(&e->messages, 1);
	atomic_fetch_add(&e->total, 1);
	atomic_fetch_add(&e->bytes, len);
	if (len >= STAMP_SIZE) {
		long lat = (long)(now_ns(CLOCK_REALTIME) - (int64_t)get_u64(msg));
		if (lat < 0)
			lat = 0;
		atomic_fetch_add(&e->latency_sum_ns, lat);
		long max = atomic_load(&e->latency_max_ns);
		while (lat > max && !atomic_compare_exchange_weak(&e->latency_max_ns, &max, lat)) {
		}
	}
}

static void *consume_shm(void *arg)
{
	struct endpoint *e = arg;
	podipc_channel *ch;
	podipc_consumer *c;
	if (open_channel(e, &ch) != 0)
		return NULL;
	int err = podipc_consumer_open(ch, NULL, &c);
	podipc_channel_close(ch); /* the consumer keeps the mapping */
	if (err != PODIPC_OK) {
		fail(e, "consumer", err);
		return NULL;
	}
	while (!atomic_load(&stopping)) {
		const void *data;
		size_t len;
		err = podipc_consumer_borrow(c, 200000000, &data, &len); /* wakes to see SIGTERM */
		if (err == PODIPC_ERR_TIMEOUT)
			continue;
		if (err != PODIPC_OK) {
			fail(e, "borrow", err);
			break;
		}
		observe(e, data, len); /* read in place */
		podipc_consumer_release(c);
	}
	podipc_consumer_close(c);
	return NULL;
}

static void *consume_mq(void *arg)
{
	struct endpoint *e = arg;
	podipc_mq *mq;
	podipc_mq_consumer *k;
	if (connect_broker(e, &mq) != 0)
		return NULL;
	int err;
	/* The sidecar declares the queue as it applies the pod's configuration. */
	while ((err = podipc_mq_consume(mq, e->name, 256, 5000 * PODIPC_MS, &k)) == PODIPC_ERR_UNKNOWN_QUEUE && !atomic_load(&stopping))
		sleep_ns(50000000);
	if (err != PODIPC_OK) {
		fail(e, "consume", err);
		podipc_mq_close(mq);
		return NULL;
	}
	while (!atomic_load(&stopping)) {
		podipc_mq_delivery d;
		err = podipc_mq_receive(k, 200 * PODIPC_MS, &d);
		if (err == PODIPC_ERR_TIMEOUT)
			continue;
		if (err != PODIPC_OK) {
			fail(e, "receive", err);
			break;
		}
		observe(e, d.body, d.len);
		if ((err = podipc_mq_ack(k, &d)) != PODIPC_OK && err != PODIPC_ERR_STALE) {
			fail(e, "ack", err);
			break;
		}
	}
	podipc_mq_ping(mq, 1000 * PODIPC_MS); /* the last acks are applied */
	podipc_mq_close(mq);
	return NULL;
}

static void *produce_shm(void *arg)
{
	struct endpoint *e = arg;
	podipc_channel *ch;
	podipc_producer *p;
	if (open_channel(e, &ch) != 0)
		return NULL;
	int err = podipc_producer_open(ch, NULL, &p);
	podipc_channel_close(ch);
	if (err != PODIPC_OK) {
		fail(e, "producer", err);
		return NULL;
	}
	int64_t start = now_ns(CLOCK_MONOTONIC), period = e->rate > 0 ? 1000000000 / e->rate : 0;
	for (uint64_t seq = 0; !atomic_load(&stopping); seq++) {
		int64_t now = now_ns(CLOCK_MONOTONIC);
		if (e->until_ns && now >= e->until_ns)
			break;
		sleep_ns(start + (int64_t)seq * period - now);
		void *buf;
		size_t cap;
		err = podipc_producer_reserve(p, 200000000, &buf, &cap);
		if (err == PODIPC_ERR_TIMEOUT) {
			seq--;
			continue;
		}
		if (err != PODIPC_OK) {
			fail(e, "reserve", err);
			break;
		}
		size_t n = (size_t)e->size < cap ? (size_t)e->size : cap;
		memset(buf, 0, n);
		put_u64(buf, (uint64_t)now_ns(CLOCK_REALTIME)); /* written in place: zero copy */
		put_u64((unsigned char *)buf + 8, seq);
		if ((err = podipc_producer_commit(p, n)) != PODIPC_OK) {
			fail(e, "commit", err);
			break;
		}
		atomic_fetch_add(&e->total, 1);
	}
	podipc_producer_close(p);
	return NULL;
}

static void *produce_mq(void *arg)
{
	struct endpoint *e = arg;
	podipc_mq *mq;
	if (connect_broker(e, &mq) != 0)
		return NULL;
	unsigned char *msg = calloc(1, (size_t)e->size);
	int64_t start = now_ns(CLOCK_MONOTONIC), period = e->rate > 0 ? 1000000000 / e->rate : 0;
	for (uint64_t seq = 0; msg && !atomic_load(&stopping); seq++) {
		int64_t now = now_ns(CLOCK_MONOTONIC);
		if (e->until_ns && now >= e->until_ns)
			break;
		sleep_ns(start + (int64_t)seq * period - now);
		put_u64(msg, (uint64_t)now_ns(CLOCK_REALTIME));
		put_u64(msg + 8, seq);
		int err = podipc_mq_send(mq, e->name, msg, (size_t)e->size, NULL, 30000 * PODIPC_MS, NULL);
		if (err == PODIPC_ERR_UNKNOWN_QUEUE && seq == 0 && !atomic_load(&stopping)) {
			/* Not declared yet: the sidecar is applying the pod's configuration. */
			sleep_ns(50000000);
			seq--;
			start = now_ns(CLOCK_MONOTONIC);
			continue;
		}
		if (err != PODIPC_OK) {
			fail(e, "send", err);
			break;
		}
		atomic_fetch_add(&e->total, 1);
	}
	free(msg);
	podipc_mq_close(mq);
	return NULL;
}

static void report(struct endpoint *eps, int n, double elapsed_s, double window_s)
{
	for (int i = 0; i < n; i++) {
		struct endpoint *e = &eps[i];
		unsigned long m = atomic_exchange(&e->messages, 0), b = atomic_exchange(&e->bytes, 0);
		long sum = atomic_exchange(&e->latency_sum_ns, 0), max = atomic_exchange(&e->latency_max_ns, 0);
		printf("[%4.0fs] %-3s %-24s %9.0f msg/s %8.2f MiB/s  latency mean %.1fus max %.1fus\n", elapsed_s,
		       e->is_mq ? "mq" : "shm", e->name, m / window_s, b / window_s / (1 << 20),
		       m ? sum / 1e3 / m : 0.0, max / 1e3);
	}
	fflush(stdout);
}

static int usage(void)
{
	fprintf(stderr, "usage: podipc-example-c consume [--shm NAME]... [--mq QUEUE]... [--interval SECONDS]\n"
	                "       podipc-example-c produce [--shm NAME]... [--mq QUEUE]... [--rate N] [--mq-rate N]\n"
	                "                                [--size BYTES] [--duration SECONDS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "consume") != 0 && strcmp(argv[1], "produce") != 0))
		return usage();
	int producing = strcmp(argv[1], "produce") == 0;
	static struct endpoint eps[MAX_ENDPOINTS];
	int n = 0, rate = 1000, mq_rate = 100, size = 256;
	double interval = 5, duration = 0;
	for (int i = 2; i < argc; i++) {
		const char *flag = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!val)
			return usage();
		i++;
		if (!strcmp(flag, "--shm") || !strcmp(flag, "--mq")) {
			if (n == MAX_ENDPOINTS)
				return usage();
			eps[n].name = val;
			eps[n++].is_mq = !strcmp(flag, "--mq");
		} else if (!strcmp(flag, "--rate")) {
			rate = atoi(val);
		} else if (!strcmp(flag, "--mq-rate")) {
			mq_rate = atoi(val);
		} else if (!strcmp(flag, "--size")) {
			size = atoi(val);
		} else if (!strcmp(flag, "--interval")) {
			interval = atof(val);
		} else if (!strcmp(flag, "--duration")) {
			duration = atof(val);
		} else {
			return usage();
		}
	}
	if (n == 0 || size < STAMP_SIZE || interval <= 0 || rate < 0 || mq_rate < 0)
		return usage();

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int64_t start = now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < n; i++) {
		struct endpoint *e = &eps[i];
		e->rate = e->is_mq ? mq_rate : rate;
		e->size = size;
		e->until_ns = duration > 0 ? start + (int64_t)(duration * 1e9) : 0;
		void *(*fn)(void *) = producing ? (e->is_mq ? produce_mq : produce_shm) : (e->is_mq ? consume_mq : consume_shm);
		if (pthread_create(&e->thread, NULL, fn, e) != 0) {
			fprintf(stderr, "podipc-example-c: cannot start a thread\n");
			return 1;
		}
	}
	if (!producing) {
		int64_t last = start;
		while (!atomic_load(&stopping)) {
			sleep_ns((int64_t)(interval * 1e9) - (now_ns(CLOCK_MONOTONIC) - last));
			int64_t now = now_ns(CLOCK_MONOTONIC);
			if (now - last >= (int64_t)(interval * 1e9)) {
				report(eps, n, (now - start) / 1e9, (now - last) / 1e9);
				last = now;
			}
		}
	}
	int failed = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(eps[i].thread, NULL);
		failed |= eps[i].failed;
		printf("[total] %-3s %-24s %lu messages %s\n", eps[i].is_mq ? "mq" : "shm", eps[i].name,
		       atomic_load(&eps[i].total), producing ? "sent" : "received");
	}
	return failed;
}
