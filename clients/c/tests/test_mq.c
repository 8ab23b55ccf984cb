/* The message-queue client against a scripted in-process broker
 * (fakebroker.h), under ASan+UBSan in `make test`: sends and their
 * confirmations (also out of order and through a small window), errors,
 * consumers, partial frames, hostile frames, GOAWAY, the UID check and
 * reconnection. No Go toolchain needed. */
#include "fakebroker.h"

static podipc_mq_options no_reconnect = {.no_reconnect = 1, .uid_check = PODIPC_MQ_UID_NONE};

/* ---- sends ---- */

static void script_send(fb *b)
{
	fb_frame f;
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND);
	FB_EXPECT(b, f.len == 14 + 5 + 11);
	FB_EXPECT(b, f.p[4] == 7 && f.p[5] == 5);               /* priority, queue length */
	FB_EXPECT(b, pi_le32(f.p + 6) == 1500);                  /* ttl */
	FB_EXPECT(b, pi_le32(f.p + 10) > 0 && pi_le32(f.p + 10) <= 5000); /* the call's timeout */
	FB_EXPECT(b, memcmp(f.p + 14, "tasks", 5) == 0 && memcmp(f.p + 19, "hello world", 11) == 0);
	b->chunk = 1; /* the answer one byte at a time */
	fb_send_ok(b, pi_le32(f.p), 42);
	b->chunk = 0;
	/* a second send: answered with a broker error */
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND);
	fb_error(b, PI_MQ_ERROR, pi_le32(f.p), PI_MQ_CODE_QUEUE_FULL, "tasks holds 100 messages");
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND);
	fb_error(b, PI_MQ_ERROR, pi_le32(f.p), PI_MQ_CODE_UNKNOWN_QUEUE, "nope");
	FB_EXPECT(b, fb_next(b, &f) == -1); /* the client closes */
}

static void test_send(void)
{
	fb b;
	fb_listen(&b, "send.sock");
	fb_start(&b, script_send);
	podipc_mq *mq = NULL;
	CHECK_OK(podipc_mq_connect(b.path, &no_reconnect, &mq));
	podipc_mq_limits lim;
	podipc_mq_get_limits(mq, &lim);
	CHECK(lim.max_message == 1 << 15 && lim.max_pending_sends == 64 && lim.version == 1);
	podipc_mq_send_options so = {.priority = 7, .ttl_ms = 1500};
	uint64_t id = 0;
	CHECK_OK(podipc_mq_send(mq, "tasks", "hello world", 11, &so, 5000 * PODIPC_MS, &id));
	CHECK(id == 42);
	CHECK_RC(podipc_mq_send(mq, "tasks", "x", 1, NULL, 5000 * PODIPC_MS, NULL), PODIPC_ERR_QUEUE_FULL);
	CHECK(strstr(podipc_last_error(), "tasks holds 100 messages") != NULL);
	CHECK_RC(podipc_mq_send(mq, "other", "x", 1, NULL, 5000 * PODIPC_MS, NULL), PODIPC_ERR_UNKNOWN_QUEUE);
	/* refused before anything is sent */
	static char big[(1 << 15) + 1];
	CHECK_RC(podipc_mq_send(mq, "tasks", big, sizeof big, NULL, 5000 * PODIPC_MS, NULL), PODIPC_ERR_TOO_LARGE);
	CHECK_RC(podipc_mq_send(mq, "", "x", 1, NULL, 5000 * PODIPC_MS, NULL), PODIPC_ERR_INVALID);
	so.priority = 10;
	CHECK_RC(podipc_mq_send(mq, "tasks", "x", 1, &so, 5000 * PODIPC_MS, NULL), PODIPC_ERR_INVALID);
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
}

/* Async sends through a window of *(int *)b->arg sends, answered in
 * reverse order per batch. */
#define ASYNC_SENDS 23
static void script_window(fb *b)
{
	int window = *(int *)b->arg;
	FB_EXPECT(b, fb_accept(b) == 0);
	int seen = 0;
	while (seen < ASYNC_SENDS) {
		uint32_t reqs[4];
		int n = 0;
		fb_frame f;
		/* the client may not have more than the window unanswered: read
		 * that many, or fewer at the end */
		while (n < window && seen + n < ASYNC_SENDS) {
			FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND);
			reqs[n++] = pi_le32(f.p);
		}
		seen += n;
		for (int i = n - 1; i >= 0; i--)
			fb_send_ok(b, reqs[i], 1000 + (uint64_t)seen - (uint64_t)n + (uint64_t)i);
	}
	/* now the window is empty: nothing else arrives until the client closes */
	fb_frame f;
	FB_EXPECT(b, fb_next(b, &f) == -1);
}

static void async_window(int by_bytes)
{
	fb b;
	fb_listen(&b, "window.sock");
	int window = by_bytes ? 1 : 4;
	if (by_bytes)
		b.w.max_pending_bytes = 7; /* bodies of 4 to 6 bytes: one at a time (one always goes) */
	else
		b.w.max_pending_sends = 4;
	b.arg = &window;
	fb_start(&b, script_window);
	podipc_mq *mq = NULL;
	CHECK_OK(podipc_mq_connect(b.path, &no_reconnect, &mq));
	uint64_t tickets[ASYNC_SENDS];
	int claimed = 0;
	uint8_t seen[ASYNC_SENDS] = {0};
	for (int i = 0; i < ASYNC_SENDS; i++) {
		char body[16];
		snprintf(body, sizeof body, "msg%d", i);
		CHECK_OK(podipc_mq_send_async(mq, "q", body, strlen(body), NULL, 5000 * PODIPC_MS, &tickets[i]));
		podipc_mq_stats st;
		podipc_mq_get_stats(mq, &st);
		CHECK(st.pending_sends <= (uint32_t)window);
	}
	podipc_mq_confirm cf;
	while (claimed < ASYNC_SENDS) {
		CHECK_OK(podipc_mq_confirm_next(mq, 5000 * PODIPC_MS, &cf));
		CHECK(cf.result == PODIPC_OK);
		int k = -1;
		for (int i = 0; i < ASYNC_SENDS; i++)
			if (tickets[i] == cf.ticket)
				k = i;
		CHECK(k >= 0 && !seen[k]);
		CHECK(cf.id == 1000 + (uint64_t)k);
		seen[k] = 1;
		claimed++;
	}
	CHECK_RC(podipc_mq_confirm_next(mq, 0, &cf), PODIPC_ERR_EMPTY);
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
}

static void test_async_window(void) { async_window(0); }
static void test_async_window_bytes(void) { async_window(1); }

/* A send that times out is abandoned: its late answer is dropped and
 * frees the window. */
static void script_late(fb *b)
{
	fb_frame f;
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND);
	uint32_t req = pi_le32(f.p);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_PING); /* the client gave up on the send */
	fb_send_ok(b, req, 9);
	fb_pong(b, pi_le64(f.p));
	FB_EXPECT(b, fb_next(b, &f) == -1);
}

static void test_send_timeout(void)
{
	fb b;
	fb_listen(&b, "late.sock");
	fb_start(&b, script_late);
	podipc_mq *mq = NULL;
	CHECK_OK(podipc_mq_connect(b.path, &no_reconnect, &mq));
	CHECK_RC(podipc_mq_send(mq, "q", "slow", 4, NULL, 30 * PODIPC_MS, NULL), PODIPC_ERR_TIMEOUT);
	podipc_mq_stats st;
	podipc_mq_get_stats(mq, &st);
	CHECK(st.pending_sends == 1 && st.pending_bytes == 4);
	CHECK_OK(podipc_mq_ping(mq, 5000 * PODIPC_MS));
	podipc_mq_get_stats(mq, &st);
	CHECK(st.pending_sends == 0 && st.pending_bytes == 0 && st.unclaimed == 0);
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
}

/* Every broker code maps as docs/mq-protocol.md and podipc.h say. */
static void test_code_mapping(void)
{
	static const int want[] = {
		[1] = PODIPC_ERR_UNKNOWN_QUEUE, [2] = PODIPC_ERR_QUEUE_FULL, [3] = PODIPC_ERR_TOO_LARGE,
		[4] = PODIPC_ERR_TOO_MANY_PENDING, [5] = PODIPC_ERR_QUEUE_FULL, [6] = PODIPC_ERR_PROTOCOL,
		[7] = PODIPC_ERR_SHUTDOWN, [8] = PODIPC_ERR_TOO_MANY_CONSUMERS, [9] = PODIPC_ERR_QUEUE_DELETED,
		[10] = PODIPC_ERR_BROKER_INTERNAL, [11] = PODIPC_ERR_PROTOCOL, [12] = PODIPC_ERR_VERSION,
		[13] = PODIPC_ERR_TOO_MANY_CONNECTIONS, [14] = PODIPC_ERR_PROTOCOL, [15] = PODIPC_ERR_BROKER_INTERNAL,
		[16] = PODIPC_ERR_BROKER_INTERNAL,
	};
	for (uint16_t code = 1; code < sizeof want / sizeof want[0]; code++) {
		if (pi_mq_code_error(code) != want[code])
			fprintf(stderr, "code %u maps to %d\n", code, pi_mq_code_error(code));
		CHECK(pi_mq_code_error(code) == want[code]);
	}
	CHECK(pi_mq_code_error(65535) == PODIPC_ERR_BROKER_INTERNAL);
	CHECK(strcmp(pi_mq_code_name(5), "timeout") == 0 && strcmp(pi_mq_code_name(999), "unknown code") == 0);
}

/* ---- consumers ---- */

static void script_consume(fb *b)
{
	fb_frame f;
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_CONSUME);
	uint32_t consumer = pi_le32(f.p + 4);
	FB_EXPECT(b, pi_le32(f.p + 8) == 128); /* prefetch 1000 capped at max_prefetch */
	FB_EXPECT(b, f.p[12] == 4 && memcmp(f.p + 13, "jobs", 4) == 0);
	fb_consume_ok(b, pi_le32(f.p), 1, 3);
	/* three deliveries: the first whole, the second split across writes,
	 * the third one byte at a time */
	fb_deliver(b, consumer, 11, 101, 1, 2, "alpha", 5);
	b->chunk = 7;
	fb_deliver(b, consumer, 12, 102, 2, 0, "bravo!", 6);
	b->chunk = 1;
	fb_deliver(b, consumer, 13, 103, 1, 9, "", 0);
	b->chunk = 0;
	/* ACK 11, NACK(requeue) 12, NACK(dead-letter) 13, then PING */
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_ACK && f.len == 12);
	FB_EXPECT(b, pi_le32(f.p) == consumer && pi_le64(f.p + 4) == 11);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_NACK && f.len == 13);
	FB_EXPECT(b, f.p[4] == 1 && pi_le64(f.p + 5) == 12);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_NACK && f.p[4] == 0 && pi_le64(f.p + 5) == 13);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_PING && f.len == 8);
	fb_pong(b, pi_le64(f.p));
	/* the queue goes away */
	fb_error(b, PI_MQ_CONSUMER_CLOSED, consumer, PI_MQ_CODE_QUEUE_DELETED, "jobs removed");
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_CANCEL && pi_le32(f.p + 4) == consumer);
	FB_EXPECT(b, fb_next(b, &f) == -1);
}

static void test_consume(void)
{
	fb b;
	fb_listen(&b, "consume.sock");
	fb_start(&b, script_consume);
	podipc_mq *mq = NULL;
	CHECK_OK(podipc_mq_connect(b.path, &no_reconnect, &mq));
	podipc_mq_consumer *c = NULL;
	CHECK_RC(podipc_mq_consume(mq, "jobs", 0, 1000 * PODIPC_MS, &c), PODIPC_ERR_INVALID);
	CHECK_OK(podipc_mq_consume(mq, "jobs", 1000, 5000 * PODIPC_MS, &c));
	CHECK(podipc_mq_consumer_prefetch(c) == 3 && !podipc_mq_consumer_auto_ack(c));
	/* each body is valid until the next receive: look at it before */
	podipc_mq_delivery d[3], x;
	CHECK_OK(podipc_mq_receive(c, 5000 * PODIPC_MS, &d[0]));
	CHECK(d[0].len == 5 && memcmp(d[0].body, "alpha", 5) == 0 && d[0].id == 101 && d[0].priority == 2);
	CHECK(d[0].deliveries == 1 && d[0].enqueued_at_ns == 1700000000123456789LL);
	CHECK_OK(podipc_mq_receive(c, 5000 * PODIPC_MS, &d[1]));
	CHECK(d[1].deliveries == 2 && d[1].len == 6 && memcmp(d[1].body, "bravo!", 6) == 0 && d[1].id == 102);
	CHECK_OK(podipc_mq_receive(c, 5000 * PODIPC_MS, &d[2]));
	CHECK(d[2].len == 0 && d[2].priority == 9);
	CHECK_RC(podipc_mq_receive(c, 0, &x), PODIPC_ERR_TIMEOUT);
	CHECK_OK(podipc_mq_ack(c, &d[0]));
	CHECK_OK(podipc_mq_nack(c, &d[1], 1));
	CHECK_OK(podipc_mq_nack(c, &d[2], 0));
	CHECK_OK(podipc_mq_ping(mq, 5000 * PODIPC_MS));
	CHECK_RC(podipc_mq_receive(c, 5000 * PODIPC_MS, &x), PODIPC_ERR_QUEUE_DELETED);
	CHECK(strstr(podipc_last_error(), "jobs removed") != NULL);
	CHECK_OK(podipc_mq_consumer_close(c));
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
}

/* The "try" form (timeout 0) takes what has arrived without waiting. */
static void script_try(fb *b)
{
	fb_frame f;
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_CONSUME);
	fb_consume_ok(b, pi_le32(f.p), 2, 4); /* at most once */
	fb_deliver(b, pi_le32(f.p + 4), 1, 1, 1, 0, "now", 3);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_CREDIT && pi_le32(f.p + 4) == 1);
	FB_EXPECT(b, fb_next(b, &f) == -1);
}

static void test_try_receive(void)
{
	fb b;
	fb_listen(&b, "try.sock");
	fb_start(&b, script_try);
	podipc_mq *mq = NULL;
	CHECK_OK(podipc_mq_connect(b.path, &no_reconnect, &mq));
	podipc_mq_consumer *c = NULL;
	CHECK_OK(podipc_mq_consume(mq, "q", 4, 5000 * PODIPC_MS, &c));
	CHECK(podipc_mq_consumer_auto_ack(c));
	podipc_mq_delivery d;
	int rc = PODIPC_ERR_TIMEOUT;
	for (int i = 0; i < 5000000 && rc == PODIPC_ERR_TIMEOUT; i++) /* never waits: only polls the socket */
		rc = podipc_mq_receive(c, 0, &d);
	CHECK_OK(rc);
	CHECK(d.len == 3 && memcmp(d.body, "now", 3) == 0);
	CHECK_OK(podipc_mq_ack(c, &d)); /* at most once: nothing to do */
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
}

/* ---- hostile frames ---- */

typedef struct {
	const char *name;
	uint8_t bytes[64];
	size_t len;
} hostile;

static const hostile hostiles[] = {
	{"length over max_frame", {0x01, 0x00, 0x01, 0x00, 0x81}, 5},
	{"length 0", {0, 0, 0, 0}, 4},
	{"unknown type", {1, 0, 0, 0, 0x99}, 5},
	{"client-to-broker type", {9, 0, 0, 0, 0x01, 1, 0, 0, 0, 7, 1, 'q', 0}, 13},
	{"short SEND_OK", {4, 0, 0, 0, 0x81, 1, 2, 3}, 8},
	{"long PONG", {10, 0, 0, 0, 0x87, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 14},
	{"short DELIVER", {5, 0, 0, 0, 0x84, 1, 0, 0, 0}, 9},
	{"CONSUME_OK mode 3", {10, 0, 0, 0, 0x82, 1, 0, 0, 0, 3, 1, 0, 0, 0}, 14},
	{"ERROR code 0", {7, 0, 0, 0, 0x85, 1, 0, 0, 0, 0, 0}, 11},
	{"GOAWAY without code", {2, 0, 0, 0, 0x88, 1}, 6},
};

static const hostile *current;

static void script_hostile(fb *b)
{
	fb_frame f;
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_PING);
	b->chunk = 3;
	fb_write(b, current->bytes, current->len);
	/* the client drops the connection, without reconnecting */
	while (fb_next(b, &f) == 0)
		;
}

static void test_hostile_frames(void)
{
	for (size_t i = 0; i < sizeof hostiles / sizeof hostiles[0]; i++) {
		current = &hostiles[i];
		fb b;
		fb_listen(&b, "hostile.sock");
		b.w.max_frame = 4096;
		b.w.max_message = 4000;
		fb_start(&b, script_hostile);
		podipc_mq *mq = NULL;
		/* reconnection on: a protocol violation is still final */
		podipc_mq_options o = {.uid_check = PODIPC_MQ_UID_NONE};
		CHECK_OK(podipc_mq_connect(b.path, &o, &mq));
		int rc = podipc_mq_ping(mq, 5000 * PODIPC_MS);
		if (rc != PODIPC_ERR_PROTOCOL)
			fprintf(stderr, "hostile frame %s: %d %s\n", current->name, rc, podipc_last_error());
		CHECK(rc == PODIPC_ERR_PROTOCOL);
		CHECK_RC(podipc_mq_send(mq, "q", "x", 1, NULL, 1000 * PODIPC_MS, NULL), PODIPC_ERR_PROTOCOL);
		podipc_mq_stats st;
		podipc_mq_get_stats(mq, &st);
		CHECK(!st.connected && st.reconnects == 0);
		podipc_mq_close(mq);
		CHECK(fb_stop(&b) == 0);
	}
}

/* ---- GOAWAY, refusals, UID ---- */

static void script_goaway(fb *b)
{
	fb_frame f;
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND);
	fb_goaway(b, PI_MQ_CODE_SHUTTING_DOWN, "restarting");
	shutdown(b->cfd, SHUT_RDWR);
}

static void test_goaway(void)
{
	fb b;
	fb_listen(&b, "goaway.sock");
	fb_start(&b, script_goaway);
	podipc_mq *mq = NULL;
	CHECK_OK(podipc_mq_connect(b.path, &no_reconnect, &mq));
	CHECK_RC(podipc_mq_send(mq, "q", "x", 1, NULL, 5000 * PODIPC_MS, NULL), PODIPC_ERR_SHUTDOWN);
	CHECK(strstr(podipc_last_error(), "restarting") != NULL);
	CHECK_RC(podipc_mq_ping(mq, 1000 * PODIPC_MS), PODIPC_ERR_SHUTDOWN);
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
}

/* Accepts *(int *)b->arg connections (one if arg is NULL), each served
 * with nothing but the handshake until the client closes it. */
static void script_accept_only(fb *b)
{
	int n = b->arg ? *(int *)b->arg : 1;
	for (int i = 0; i < n; i++) {
		if (fb_accept(b) == 0) {
			fb_frame f;
			while (fb_next(b, &f) == 0)
				;
		}
	}
}

static void test_refusals(void)
{
	struct {
		uint16_t status;
		uint32_t max_frame;
		int want;
	} cases[] = {
		{PI_MQ_CODE_TOO_MANY_CONNS, 1 << 16, PODIPC_ERR_TOO_MANY_CONNECTIONS},
		{PI_MQ_CODE_VERSION, 1 << 16, PODIPC_ERR_VERSION},
		{PI_MQ_CODE_SHUTTING_DOWN, 1 << 16, PODIPC_ERR_SHUTDOWN},
		{0, 100, PODIPC_ERR_PROTOCOL}, /* implausible limits */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		fb b;
		fb_listen(&b, "refuse.sock");
		b.status = (uint8_t)cases[i].status;
		b.w.max_frame = cases[i].max_frame;
		if (b.w.max_message > b.w.max_frame)
			b.w.max_message = 50;
		fb_start(&b, script_accept_only);
		podipc_mq *mq = NULL;
		CHECK_RC(podipc_mq_connect(b.path, NULL, &mq), cases[i].want);
		CHECK(mq == NULL);
		CHECK(fb_stop(&b) == 0);
	}
	podipc_mq *mq = NULL;
	CHECK_RC(podipc_mq_connect(test_path("nobody.sock"), NULL, &mq), PODIPC_ERR_SYSTEM);
}

static void test_uid_and_env(void)
{
	fb b;
	podipc_mq *mq = NULL;
	/* the option: another UID than ours is an impostor */
	fb_listen(&b, "mq.sock");
	int conns = 3; /* two impostor checks, one success */
	b.arg = &conns;
	fb_start(&b, script_accept_only);
	podipc_mq_options o = {.uid_check = PODIPC_MQ_UID_CHECK, .broker_uid = (uint32_t)getuid() + 1};
	CHECK_RC(podipc_mq_connect(b.path, &o, &mq), PODIPC_ERR_IMPOSTOR);
	CHECK(strstr(podipc_last_error(), "served by pid") != NULL);
	/* the environment: $PODIPC_DIR/mq.sock, $PODIPC_BROKER_UID */
	char uid[16];
	snprintf(uid, sizeof uid, "%u", (unsigned)getuid() + 1);
	setenv("PODIPC_DIR", test_dir, 1);
	setenv("PODIPC_BROKER_UID", uid, 1);
	CHECK_RC(podipc_mq_connect(NULL, NULL, &mq), PODIPC_ERR_IMPOSTOR);
	setenv("PODIPC_BROKER_UID", "not-a-uid", 1);
	CHECK_RC(podipc_mq_connect(NULL, NULL, &mq), PODIPC_ERR_INVALID);
	snprintf(uid, sizeof uid, "%u", (unsigned)getuid());
	setenv("PODIPC_BROKER_UID", uid, 1);
	CHECK_OK(podipc_mq_connect(NULL, NULL, &mq));
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
	/* $PODIPC_MQ_SOCKET wins over $PODIPC_DIR */
	setenv("PODIPC_MQ_SOCKET", test_path("elsewhere.sock"), 1);
	CHECK_RC(podipc_mq_connect(NULL, NULL, &mq), PODIPC_ERR_SYSTEM);
	CHECK(strstr(podipc_last_error(), "elsewhere.sock") != NULL);
	unsetenv("PODIPC_MQ_SOCKET");
	unsetenv("PODIPC_DIR");
	unsetenv("PODIPC_BROKER_UID");
	CHECK_RC(podipc_mq_connect(NULL, NULL, &mq), PODIPC_ERR_INVALID);
}

/* ---- reconnection ---- */

static void script_reconnect(fb *b)
{
	fb_frame f;
	/* connection 1: a consumer with one delivery, a send left unanswered,
	 * then the broker dies */
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_CONSUME);
	uint32_t consumer = pi_le32(f.p + 4);
	fb_consume_ok(b, pi_le32(f.p), 1, 4);
	fb_deliver(b, consumer, 77, 1, 1, 0, "old", 3);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND);
	FB_EXPECT(b, f.len == 14 + 1 + 4 && memcmp(f.p + 15, "keep", 4) == 0);
	fb_deliver(b, consumer, 78, 2, 1, 0, "queued", 6); /* queued at the client when the broker dies */
	close(b->cfd);
	b->cfd = -1;
	/* connection 2: refused while "shutting down" */
	b->status = PI_MQ_CODE_SHUTTING_DOWN;
	FB_EXPECT(b, fb_accept(b) == 0);
	b->status = 0;
	/* connection 3: the send again (code 7 first: kept for the next
	 * connection), then the consumer re-attached */
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND && memcmp(f.p + 15, "keep", 4) == 0);
	fb_error(b, PI_MQ_ERROR, pi_le32(f.p), PI_MQ_CODE_SHUTTING_DOWN, "going");
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_CONSUME && pi_le32(f.p + 4) == consumer);
	fb_consume_ok(b, pi_le32(f.p), 1, 4);
	fb_goaway(b, PI_MQ_CODE_SHUTTING_DOWN, "restart");
	close(b->cfd);
	b->cfd = -1;
	/* connection 4: the send a third time and the consumer again, both
	 * answered "unknown queue" (just after a reconnection: retried), then
	 * confirmed */
	FB_EXPECT(b, fb_accept(b) == 0);
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_SEND && memcmp(f.p + 15, "keep", 4) == 0);
	fb_error(b, PI_MQ_ERROR, pi_le32(f.p), PI_MQ_CODE_UNKNOWN_QUEUE, "not declared yet");
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_CONSUME);
	fb_error(b, PI_MQ_ERROR, pi_le32(f.p), PI_MQ_CODE_UNKNOWN_QUEUE, "not declared yet");
	for (int i = 0; i < 2; i++) { /* the retries, in either order */
		FB_EXPECT(b, fb_next(b, &f) == 0 && (f.type == PI_MQ_SEND || f.type == PI_MQ_CONSUME));
		if (f.type == PI_MQ_SEND)
			fb_send_ok(b, pi_le32(f.p), 5);
		else
			fb_consume_ok(b, pi_le32(f.p), 1, 4);
	}
	fb_deliver(b, consumer, 90, 2, 2, 0, "queued", 6); /* the redelivery */
	FB_EXPECT(b, fb_next(b, &f) == 0 && f.type == PI_MQ_ACK && pi_le64(f.p + 4) == 90);
	while (fb_next(b, &f) == 0)
		;
}

static void test_reconnect(void)
{
	fb b;
	fb_listen(&b, "reconnect.sock");
	fb_start(&b, script_reconnect);
	podipc_mq *mq = NULL;
	podipc_mq_options o = {.uid_check = PODIPC_MQ_UID_NONE, .reconnect_min_backoff_ms = 5,
	                       .reconnect_max_backoff_ms = 20, .reconnect_window_ms = 5000};
	CHECK_OK(podipc_mq_connect(b.path, &o, &mq));
	podipc_mq_consumer *c = NULL;
	CHECK_OK(podipc_mq_consume(mq, "q", 4, 5000 * PODIPC_MS, &c));
	podipc_mq_delivery old;
	CHECK_OK(podipc_mq_receive(c, 5000 * PODIPC_MS, &old));
	CHECK(old.len == 3 && memcmp(old.body, "old", 3) == 0);
	uint64_t id = 0;
	CHECK_OK(podipc_mq_send(mq, "q", "keep", 4, NULL, 10000 * PODIPC_MS, &id));
	CHECK(id == 5);
	CHECK_RC(podipc_mq_ack(c, &old), PODIPC_ERR_STALE);
	podipc_mq_delivery d;
	CHECK_OK(podipc_mq_receive(c, 5000 * PODIPC_MS, &d)); /* the stale "queued" was dropped; this is its redelivery */
	CHECK(d.deliveries == 2 && d.len == 6 && d.tag == 90);
	CHECK_OK(podipc_mq_ack(c, &d));
	podipc_mq_stats st;
	podipc_mq_get_stats(mq, &st);
	CHECK(st.connected && st.disconnects == 2 && st.reconnects == 2);
	CHECK(st.resent == 2 && st.stale_dropped >= 1 && st.pending_sends == 0);
	podipc_mq_close(mq);
	CHECK(fb_stop(&b) == 0);
}

/* The window passes without a broker: every waiter fails with CLOSED. */
static void script_die(fb *b)
{
	fb_frame f;
	if (fb_accept(b) == 0 && fb_next(b, &f) == 0) {
		close(b->cfd);
		b->cfd = -1;
		close(b->lfd); /* no broker any more */
		b->lfd = -1;
		unlink(b->path);
	}
}

static void test_reconnect_gives_up(void)
{
	fb b;
	fb_listen(&b, "gone.sock");
	fb_start(&b, script_die);
	podipc_mq *mq = NULL;
	podipc_mq_options o = {.uid_check = PODIPC_MQ_UID_NONE, .reconnect_min_backoff_ms = 5,
	                       .reconnect_max_backoff_ms = 20, .reconnect_window_ms = 200};
	CHECK_OK(podipc_mq_connect(b.path, &o, &mq));
	uint64_t t;
	CHECK_OK(podipc_mq_send_async(mq, "q", "x", 1, NULL, 1000 * PODIPC_MS, &t));
	podipc_mq_confirm cf;
	CHECK_OK(podipc_mq_confirm_next(mq, 5000 * PODIPC_MS, &cf));
	CHECK(cf.ticket == t && cf.result == PODIPC_ERR_CLOSED);
	CHECK(strstr(podipc_last_error(), "no broker") != NULL);
	CHECK_RC(podipc_mq_ping(mq, 1000 * PODIPC_MS), PODIPC_ERR_CLOSED);
	podipc_mq_close(mq);
	pthread_join(b.thread, NULL);
}

int main(void)
{
	make_test_dir();
	RUN(test_send);
	RUN(test_async_window);
	RUN(test_async_window_bytes);
	RUN(test_send_timeout);
	RUN(test_code_mapping);
	RUN(test_consume);
	RUN(test_try_receive);
	RUN(test_hostile_frames);
	RUN(test_goaway);
	RUN(test_refusals);
	RUN(test_uid_and_env);
	RUN(test_reconnect);
	RUN(test_reconnect_gives_up);
	remove_test_dir();
	return test_failed;
}
