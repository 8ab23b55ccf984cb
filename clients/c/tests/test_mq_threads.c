/* One mq connection shared by many threads, run under ThreadSanitizer by
 * `make test`: blocking senders, an asynchronous sender, two consumers
 * (each used by its own thread) and a pinger on one podipc_mq, against a
 * small in-process broker that queues sends and delivers them within each
 * consumer's credit. Every message is confirmed and delivered exactly
 * once. */
#include "fakebroker.h"

#include <poll.h>
#include <stdatomic.h>
#include <sys/ioctl.h>

#define SENDERS 3
#define PER_SENDER 300
#define TOTAL ((SENDERS + 1) * PER_SENDER)
#define PREFETCH 8

/* ---- the broker: a FIFO queue "q", consumers with credit ---- */

typedef struct {
	uint32_t id;
	int credit;
} mini_consumer;

typedef struct {
	uint8_t body[16];
	size_t len;
} mini_msg;

static mini_msg queue[TOTAL];
static size_t q_head, q_tail;
static mini_consumer consumers[4];
static int nconsumers, next_rr;
static uint64_t next_tag = 1;

static void mini_deliver(fb *b)
{
	for (int tries = 0; q_head < q_tail && tries < nconsumers;) {
		mini_consumer *c = &consumers[next_rr++ % nconsumers];
		if (c->credit == 0) {
			tries++;
			continue;
		}
		tries = 0;
		c->credit--;
		mini_msg *m = &queue[q_head++];
		fb_deliver(b, c->id, next_tag++, q_head, 1, 0, m->body, m->len);
	}
}

static void script_mini(fb *b)
{
	fb_frame f;
	FB_EXPECT(b, fb_accept(b) == 0);
	while (fb_next(b, &f) == 0) {
		switch (f.type) {
		case PI_MQ_SEND: {
			FB_EXPECT(b, q_tail < TOTAL && f.len - 15 <= sizeof queue[0].body);
			mini_msg *m = &queue[q_tail++];
			m->len = f.len - 15;
			memcpy(m->body, f.p + 15, m->len);
			fb_send_ok(b, pi_le32(f.p), q_tail);
			break;
		}
		case PI_MQ_CONSUME:
			FB_EXPECT(b, nconsumers < 4);
			consumers[nconsumers++] = (mini_consumer){.id = pi_le32(f.p + 4), .credit = (int)pi_le32(f.p + 8)};
			fb_consume_ok(b, pi_le32(f.p), 1, pi_le32(f.p + 8));
			break;
		case PI_MQ_ACK:
			for (int i = 0; i < nconsumers; i++)
				if (consumers[i].id == pi_le32(f.p))
					consumers[i].credit += (int)((f.len - 4) / 8);
			break;
		case PI_MQ_PING:
			fb_pong(b, pi_le64(f.p));
			break;
		case PI_MQ_CANCEL:
			for (int i = 0; i < nconsumers; i++)
				if (consumers[i].id == pi_le32(f.p + 4))
					consumers[i].credit = 0;
			break;
		default:
			FB_EXPECT(b, !"a frame the test does not send");
		}
		mini_deliver(b);
	}
}

/* ---- the client's threads ---- */

typedef struct {
	podipc_mq *mq;
	podipc_mq_consumer *c;
	int id;
	int err;
	char why[300];
} worker;

static atomic_int received;
static atomic_uchar seen[SENDERS + 1][PER_SENDER];

static void failed(worker *w, int rc)
{
	w->err = rc;
	snprintf(w->why, sizeof w->why, "%s", podipc_last_error());
}

static void *send_blocking(void *arg)
{
	worker *w = arg;
	for (int i = 0; i < PER_SENDER; i++) {
		char body[16];
		int n = snprintf(body, sizeof body, "%d:%d", w->id, i);
		podipc_mq_send_options so = {.priority = (uint8_t)(i % 10)};
		int rc = podipc_mq_send(w->mq, "q", body, (size_t)n, &so, 10000 * PODIPC_MS, NULL);
		if (rc) {
			failed(w, rc);
			break;
		}
	}
	return NULL;
}

static void *send_async(void *arg)
{
	worker *w = arg;
	int claimed = 0;
	for (int i = 0; i < PER_SENDER; i++) {
		char body[16];
		int n = snprintf(body, sizeof body, "%d:%d", w->id, i);
		uint64_t t;
		int rc = podipc_mq_send_async(w->mq, "q", body, (size_t)n, NULL, 10000 * PODIPC_MS, &t);
		podipc_mq_confirm cf;
		while (rc == 0 && podipc_mq_confirm_next(w->mq, 0, &cf) == 0) {
			claimed++;
			rc = cf.result;
		}
		if (rc) {
			failed(w, rc);
			return NULL;
		}
	}
	while (claimed < PER_SENDER) {
		podipc_mq_confirm cf;
		int rc = podipc_mq_confirm_next(w->mq, 10000 * PODIPC_MS, &cf);
		if (rc == 0)
			rc = cf.result;
		if (rc) {
			failed(w, rc);
			return NULL;
		}
		claimed++;
	}
	return NULL;
}

static void *consume(void *arg)
{
	worker *w = arg;
	podipc_mq_consumer *c = NULL;
	int rc = podipc_mq_consume(w->mq, "q", PREFETCH, 10000 * PODIPC_MS, &c);
	if (rc) {
		failed(w, rc);
		return NULL;
	}
	while (atomic_load(&received) < TOTAL) {
		podipc_mq_delivery d;
		rc = podipc_mq_receive(c, 50 * PODIPC_MS, &d);
		if (rc == PODIPC_ERR_TIMEOUT)
			continue;
		if (rc) {
			failed(w, rc);
			break;
		}
		char body[17] = {0};
		memcpy(body, d.body, d.len < 16 ? d.len : 16);
		int sender, seq;
		if (sscanf(body, "%d:%d", &sender, &seq) != 2 || sender < 0 || sender > SENDERS || seq < 0 ||
		    seq >= PER_SENDER || atomic_exchange(&seen[sender][seq], 1)) {
			snprintf(w->why, sizeof w->why, "bad or duplicate message %s", body);
			w->err = -1;
			break;
		}
		atomic_fetch_add(&received, 1);
		if ((rc = podipc_mq_ack(c, &d))) {
			failed(w, rc);
			break;
		}
	}
	podipc_mq_consumer_close(c);
	return NULL;
}

static void *ping(void *arg)
{
	worker *w = arg;
	for (int i = 0; i < 100; i++) {
		int rc = podipc_mq_ping(w->mq, 10000 * PODIPC_MS);
		if (rc) {
			failed(w, rc);
			break;
		}
	}
	return NULL;
}

static void test_shared_connection(void)
{
	fb b;
	fb_listen(&b, "threads.sock");
	b.w.max_pending_sends = 16; /* senders wait for room now and then */
	fb_start(&b, script_mini);
	podipc_mq_options o = {.no_reconnect = 1, .uid_check = PODIPC_MQ_UID_NONE};
	podipc_mq *mq = NULL;
	CHECK_OK(podipc_mq_connect(b.path, &o, &mq));
	enum { N = SENDERS + 4 };
	worker w[N];
	pthread_t t[N];
	for (int i = 0; i < N; i++) {
		w[i] = (worker){.mq = mq, .id = i};
		void *(*fn)(void *) = i < SENDERS ? send_blocking : i == SENDERS ? send_async : i < N - 1 ? consume : ping;
		CHECK(pthread_create(&t[i], NULL, fn, &w[i]) == 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < N; i++) {
		if (w[i].err)
			fprintf(stderr, "worker %d: %d: %s\n", i, w[i].err, w[i].why);
		CHECK(w[i].err == 0);
	}
	CHECK(atomic_load(&received) == TOTAL);
	podipc_mq_stats st;
	podipc_mq_get_stats(mq, &st);
	CHECK(st.pending_sends == 0 && st.unclaimed == 0 && st.disconnects == 0);
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
}

/* A sender whose write blocks reads what the broker sends meanwhile; a
 * delivery it reads that way still reaches the thread waiting for it in
 * podipc_mq_receive (polling the socket), which it wakes. */
#define BIG 30000
#define BIG_SENDS 30

static void script_blocked_writer(fb *b)
{
	fb_frame f;
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_CONSUME);
	uint32_t consumer = pi_le32(f.p + 4);
	fb_consume_ok(b, pi_le32(f.p), 1, 4);
	/* read nothing until the client's writes back up */
	int queued = 0;
	for (int i = 0; i < 10000 && queued < 100000; i++) {
		struct pollfd p = {.fd = b->cfd, .events = POLLIN};
		poll(&p, 1, 1);
		if (ioctl(b->cfd, FIONREAD, &queued) != 0)
			break;
	}
	FB_EXPECT(b, queued >= 100000);
	fb_deliver(b, consumer, 1, 1, 1, 0, "meanwhile", 9);
	for (int i = 0; i < BIG_SENDS; i++) {
		FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND);
		fb_send_ok(b, pi_le32(f.p), (uint64_t)i);
	}
	while (fb_next(b, &f) == 0)
		;
}

static void *receive_one(void *arg)
{
	worker *w = arg;
	podipc_mq_delivery d;
	int rc = podipc_mq_receive(w->c, 10000 * PODIPC_MS, &d);
	if (rc)
		failed(w, rc);
	else if (d.len != 9 || memcmp(d.body, "meanwhile", 9) != 0)
		w->err = -1;
	return NULL;
}

static void test_blocked_writer_wakes_receiver(void)
{
	fb b;
	fb_listen(&b, "blocked.sock");
	fb_start(&b, script_blocked_writer);
	podipc_mq_options o = {.no_reconnect = 1, .uid_check = PODIPC_MQ_UID_NONE};
	podipc_mq *mq = NULL;
	CHECK_OK(podipc_mq_connect(b.path, &o, &mq));
	podipc_mq_consumer *c = NULL;
	CHECK_OK(podipc_mq_consume(mq, "q", 4, 5000 * PODIPC_MS, &c));
	worker w = {.mq = mq, .c = c};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, receive_one, &w) == 0);
	static uint8_t body[BIG];
	for (int i = 0; i < BIG_SENDS; i++) {
		uint64_t ticket;
		CHECK_OK(podipc_mq_send_async(mq, "q", body, sizeof body, NULL, 10000 * PODIPC_MS, &ticket));
	}
	pthread_join(t, NULL);
	if (w.err)
		fprintf(stderr, "receiver: %d %s\n", w.err, w.why);
	CHECK(w.err == 0);
	for (int i = 0; i < BIG_SENDS; i++) {
		podipc_mq_confirm cf;
		CHECK_OK(podipc_mq_confirm_next(mq, 10000 * PODIPC_MS, &cf));
		CHECK(cf.result == 0);
	}
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
}

int main(void)
{
	make_test_dir();
	RUN(test_shared_connection);
	RUN(test_blocked_writer_wakes_receiver);
	remove_test_dir();
	return test_failed;
}
