/* Threads on one channel, run under ThreadSanitizer by `make test`: every
 * queue message is taken exactly once, every broadcast message is seen by
 * every subscriber in order, with each wait strategy. */
#include "testing.h"

#include <pthread.h>
#include <stdint.h>

#define PER_PRODUCER 20000
#define PRODUCERS 2
#define CONSUMERS 2

typedef struct {
	podipc_channel *ch;
	int id;
	podipc_wait wait;
	uint8_t *seen; /* consumers: PRODUCERS*PER_PRODUCER flags */
	pthread_mutex_t *mu;
	int err;
	long got;
} worker;

typedef struct {
	uint32_t producer, seq;
} record;

static void *produce(void *arg)
{
	worker *w = arg;
	podipc_peer_options o = {.wait = w->wait};
	podipc_producer *p = NULL;
	if ((w->err = podipc_producer_open(w->ch, &o, &p)) != 0)
		return NULL;
	for (uint32_t i = 0; i < PER_PRODUCER && !w->err; i++) {
		record r = {(uint32_t)w->id, i};
		w->err = podipc_producer_send(p, &r, sizeof r, -1);
	}
	podipc_producer_close(p);
	return NULL;
}

static void *consume(void *arg)
{
	worker *w = arg;
	podipc_peer_options o = {.wait = w->wait};
	podipc_consumer *c = NULL;
	if ((w->err = podipc_consumer_open(w->ch, &o, &c)) != 0)
		return NULL;
	for (;;) {
		const void *data;
		size_t n;
		if ((w->err = podipc_consumer_borrow(c, 10 * 1000000000LL, &data, &n)) != 0)
			break;
		record r;
		memcpy(&r, data, sizeof r);
		if ((w->err = podipc_consumer_release(c)) != 0)
			break;
		if (r.producer == UINT32_MAX)
			break; /* the end marker: one per consumer */
		size_t k = (size_t)r.producer * PER_PRODUCER + r.seq;
		pthread_mutex_lock(w->mu);
		w->seen[k]++;
		pthread_mutex_unlock(w->mu);
		w->got++;
	}
	podipc_consumer_close(c);
	return NULL;
}

static void run_queue(podipc_wait wait)
{
	char name[32];
	snprintf(name, sizeof name, "threads-q-%d", (int)wait);
	podipc_channel_options opts = {.mode = PODIPC_MODE_QUEUE, .slot_size = 64, .slot_count = 64};
	podipc_channel *ch = NULL;
	CHECK_OK(podipc_channel_create(test_path(name), &opts, 0, &ch));
	static uint8_t seen[PRODUCERS * PER_PRODUCER];
	memset(seen, 0, sizeof seen);
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	worker ws[PRODUCERS + CONSUMERS];
	pthread_t ts[PRODUCERS + CONSUMERS];
	for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
		ws[i] = (worker){.ch = ch, .id = i, .wait = wait, .seen = seen, .mu = &mu};
		CHECK(pthread_create(&ts[i], NULL, i < PRODUCERS ? produce : consume, &ws[i]) == 0);
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(ts[i], NULL);
	podipc_producer *p = NULL;
	CHECK_OK(podipc_producer_open(ch, NULL, &p));
	for (int i = 0; i < CONSUMERS; i++) {
		record end = {UINT32_MAX, 0};
		CHECK_OK(podipc_producer_send(p, &end, sizeof end, -1));
	}
	podipc_producer_close(p);
	long total = 0;
	for (int i = PRODUCERS; i < PRODUCERS + CONSUMERS; i++) {
		pthread_join(ts[i], NULL);
		total += ws[i].got;
	}
	for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
		CHECK_RC(ws[i].err, PODIPC_OK);
	CHECK(total == PRODUCERS * PER_PRODUCER);
	for (size_t k = 0; k < sizeof seen; k++)
		CHECK(seen[k] == 1);
	podipc_stats st;
	CHECK_OK(podipc_channel_stats(ch, &st));
	CHECK(st.repaired == 0); /* contention alone never makes a word look foreign */
	podipc_channel_close(ch);
}

static void test_queue_hybrid(void) { run_queue(PODIPC_WAIT_HYBRID); }
static void test_queue_block(void) { run_queue(PODIPC_WAIT_BLOCK); }
static void test_queue_spin(void) { run_queue(PODIPC_WAIT_SPIN); }

static void *subscribe(void *arg)
{
	worker *w = arg;
	podipc_subscriber *s = (podipc_subscriber *)w->seen;
	for (uint32_t want = 0; want < PER_PRODUCER; want++) {
		uint32_t v;
		size_t n;
		if ((w->err = podipc_subscriber_recv(s, &v, sizeof v, &n, 10 * 1000000000LL)) != 0)
			break;
		if (v != want) {
			w->err = PODIPC_ERR_CORRUPT;
			break;
		}
		w->got++;
	}
	return NULL;
}

static void test_broadcast_in_order(void)
{
	podipc_channel_options opts = {.mode = PODIPC_MODE_BROADCAST, .slot_size = 16, .slot_count = 32};
	podipc_channel *ch = NULL;
	CHECK_OK(podipc_channel_create(test_path("threads-b"), &opts, 0, &ch));
	worker ws[2];
	pthread_t ts[2];
	for (int i = 0; i < 2; i++) {
		podipc_subscriber *s = NULL;
		podipc_peer_options o = {.wait = i ? PODIPC_WAIT_BLOCK : PODIPC_WAIT_HYBRID};
		CHECK_OK(podipc_subscriber_open(ch, &o, &s));
		ws[i] = (worker){.ch = ch, .seen = (uint8_t *)s};
	}
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&ts[i], NULL, subscribe, &ws[i]) == 0);
	podipc_producer *p = NULL;
	CHECK_OK(podipc_producer_open(ch, NULL, &p));
	for (uint32_t v = 0; v < PER_PRODUCER; v++)
		CHECK_OK(podipc_producer_send(p, &v, sizeof v, -1));
	for (int i = 0; i < 2; i++) {
		pthread_join(ts[i], NULL);
		CHECK_RC(ws[i].err, PODIPC_OK);
		CHECK(ws[i].got == PER_PRODUCER);
		podipc_subscriber_close((podipc_subscriber *)ws[i].seen);
	}
	podipc_producer_close(p);
	podipc_channel_close(ch);
}

int main(void)
{
	make_test_dir();
	RUN(test_queue_hybrid);
	RUN(test_queue_block);
	RUN(test_queue_spin);
	RUN(test_broadcast_in_order);
	remove_test_dir();
	return test_failed ? 1 : 0;
}
