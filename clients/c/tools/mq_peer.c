/*
 * podipc-mq-peer: a C participant of the message-queue conformance suite.
 * It speaks the suite's message format (tools/peer_msg.h, docs/clients.md)
 * over a broker's socket. One line per event on stdout, flushed at once:
 *
 *   send SOCKET QUEUE ID COUNT SIZE [PRIORITY]
 *       sends COUNT messages of SIZE (>= 16) bytes, pipelined, each
 *       confirmed by the broker; prints "sent COUNT"
 *   consume SOCKET QUEUE COUNT PREFETCH MODE
 *       MODE ack, nack (dead-letter) or hold (settle nothing); prints
 *       "ready" once the consumer is attached, "msg ID SEQ DELIVERIES" per
 *       delivery, and after COUNT of them (COUNT 0: after the first end
 *       marker, settled and printed like any message) and a PING round
 *       trip (every settlement applied) "done N", N the deliveries printed
 *
 * Errors: "error CLASS: message" on stdout and exit status 1 (CLASS as in
 * class_of below); usage errors on stderr with status 2. With
 * $PODIPC_BROKER_UID set the broker's UID is checked (class impostor).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "podipc.h"
#include "peer_msg.h"

static const int64_t TIMEOUT_NS = 30 * PODIPC_SECOND; /* a peer never waits longer than this */

/* class_of names an error class as the conformance suite compares them. */
static const char *class_of(int rc)
{
	switch (rc) {
	case PODIPC_ERR_SYSTEM: return "system";
	case PODIPC_ERR_INVALID: return "invalid";
	case PODIPC_ERR_VERSION: return "version";
	case PODIPC_ERR_TIMEOUT: return "timeout";
	case PODIPC_ERR_TOO_LARGE: return "too_large";
	case PODIPC_ERR_CLOSED: return "closed";
	case PODIPC_ERR_PROTOCOL: return "protocol";
	case PODIPC_ERR_IMPOSTOR: return "impostor";
	case PODIPC_ERR_UNKNOWN_QUEUE: return "not_found";
	case PODIPC_ERR_QUEUE_FULL: return "queue_full";
	case PODIPC_ERR_TOO_MANY_PENDING: return "too_many_pending";
	case PODIPC_ERR_TOO_MANY_CONSUMERS: return "too_many_consumers";
	case PODIPC_ERR_TOO_MANY_CONNECTIONS: return "too_many_connections";
	case PODIPC_ERR_QUEUE_DELETED: return "queue_deleted";
	case PODIPC_ERR_SHUTDOWN: return "shutdown";
	case PODIPC_ERR_BROKER_INTERNAL: return "internal";
	case PODIPC_ERR_STALE: return "stale";
	}
	return "unknown";
}

static void fail(int rc, const char *what)
{
	printf("error %s: %s: %s\n", class_of(rc), what, podipc_last_error());
	fflush(stdout);
	exit(1);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static uint32_t number(const char *s, const char *what)
{
	char *end;
	unsigned long v = strtoul(s, &end, 0);
	if (!*s || *end || v > UINT32_MAX) {
		fprintf(stderr, "podipc-mq-peer: %s %s is not a number\n", what, s);
		exit(2);
	}
	return (uint32_t)v;
}

static podipc_mq *connect_to(const char *sock)
{
	podipc_mq *mq = NULL;
	int rc = podipc_mq_connect(sock, NULL, &mq);
	if (rc)
		fail(rc, "connect");
	return mq;
}

/* take_confirm claims one send's outcome. */
static void take_confirm(podipc_mq *mq, int64_t timeout_ns)
{
	podipc_mq_confirm cf;
	int rc = podipc_mq_confirm_next(mq, timeout_ns, &cf);
	if (rc)
		fail(rc, "waiting for a confirmation");
	if (cf.result)
		fail(cf.result, "send");
}

static int cmd_send(const char *sock, const char *queue, uint32_t id, uint32_t count, uint32_t size, uint32_t prio)
{
	if (size < 16 || prio > 9) {
		fprintf(stderr, "podipc-mq-peer: size %u < 16 or priority %u > 9\n", size, prio);
		return 2;
	}
	podipc_mq *mq = connect_to(sock);
	uint8_t *buf = malloc(size);
	if (!buf)
		return 2;
	podipc_mq_send_options so = {.priority = (uint8_t)prio};
	uint32_t confirmed = 0;
	for (uint32_t seq = 0; seq < count; seq++) {
		fill(buf, size, id, seq);
		uint64_t ticket;
		int rc = podipc_mq_send_async(mq, queue, buf, size, &so, TIMEOUT_NS, &ticket);
		if (rc)
			fail(rc, "send");
		/* collect what has been answered, without waiting */
		podipc_mq_stats st;
		podipc_mq_get_stats(mq, &st);
		for (; st.unclaimed > 0; st.unclaimed--, confirmed++)
			take_confirm(mq, 0);
	}
	for (; confirmed < count; confirmed++)
		take_confirm(mq, TIMEOUT_NS);
	free(buf);
	podipc_mq_close(mq);
	say("sent %u\n", count);
	return 0;
}

static int cmd_consume(const char *sock, const char *queue, uint32_t count, uint32_t prefetch, const char *mode)
{
	int m = !strcmp(mode, "ack") ? 0 : !strcmp(mode, "nack") ? 1 : !strcmp(mode, "hold") ? 2 : -1;
	if (m < 0 || prefetch == 0) {
		fprintf(stderr, "podipc-mq-peer: MODE %s is not ack, nack or hold, or PREFETCH is 0\n", mode);
		return 2;
	}
	podipc_mq *mq = connect_to(sock);
	podipc_mq_consumer *c = NULL;
	int rc = podipc_mq_consume(mq, queue, prefetch, TIMEOUT_NS, &c);
	if (rc)
		fail(rc, "consume");
	say("ready\n");
	uint32_t got = 0;
	for (int last = 0; !last && (count == 0 || got < count); got++) {
		podipc_mq_delivery d;
		if ((rc = podipc_mq_receive(c, TIMEOUT_NS, &d)))
			fail(rc, "receive");
		uint32_t id, seq;
		if (check(d.body, d.len, &id, &seq) != 0) {
			say("error corrupt: message %llu of %zu bytes fails its check\n", (unsigned long long)d.id, d.len);
			exit(1);
		}
		say("msg %u %u %u\n", id, seq, d.deliveries);
		last = count == 0 && id == 0xFFFFFFFFu;
		if (m == 0)
			rc = podipc_mq_ack(c, &d);
		else if (m == 1)
			rc = podipc_mq_nack(c, &d, 0);
		if (rc)
			fail(rc, m == 0 ? "ack" : "nack");
	}
	if ((rc = podipc_mq_ping(mq, TIMEOUT_NS)))
		fail(rc, "ping");
	say("done %u\n", got);
	podipc_mq_close(mq); /* held deliveries were never settled: the broker requeues them */
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: podipc-mq-peer send SOCKET QUEUE ID COUNT SIZE [PRIORITY]\n"
	                "       podipc-mq-peer consume SOCKET QUEUE COUNT PREFETCH ack|nack|hold\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc >= 7 && argc <= 8 && !strcmp(argv[1], "send"))
		return cmd_send(argv[2], argv[3], number(argv[4], "ID"), number(argv[5], "COUNT"), number(argv[6], "SIZE"),
		                argc == 8 ? number(argv[7], "PRIORITY") : 0);
	if (argc == 7 && !strcmp(argv[1], "consume"))
		return cmd_consume(argv[2], argv[3], number(argv[4], "COUNT"), number(argv[5], "PREFETCH"), argv[6]);
	return usage();
}
