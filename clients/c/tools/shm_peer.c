/*
 * podipc-shm-peer: a C participant of the conformance suite (and a small
 * command-line tool for shm channels). It speaks the suite's message
 * format (docs/clients.md, "The conformance suite"):
 *
 *   bytes 0-3   producer id (0xFFFFFFFF: the end marker, one per consumer)
 *   bytes 4-7   sequence number, from 0 per producer
 *   bytes 8-11  CRC-32C of bytes 16..len
 *   bytes 12-15 zero
 *   bytes 16..  payload: byte k is (id*31 + seq*7 + k) mod 256
 *
 * Commands (all print one line per event on stdout, errors on stderr):
 *   produce PATH ID COUNT SIZE   send COUNT messages of SIZE bytes
 *   end PATH N                   send N end markers
 *   consume PATH                 take messages until an end marker; print "got ID SEQ" each
 *   subscribe PATH COUNT [wait]  print "ready"; with "wait", read a line from stdin first;
 *                                then read until producer 0's message COUNT-1 and print
 *                                "received N lost L" (in order, checked)
 *   hold PATH                    borrow one message, print "held ID SEQ", then wait to be killed
 *   reserve PATH                 reserve a slot, print "reserved", then wait to be killed
 *   validate PATH                print the error class of opening PATH ("ok", "truncated", ...)
 *   stats PATH                   print the channel's counters
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "podipc.h"
#include "peer_msg.h"

static const int64_t TIMEOUT = 30LL * 1000000000; /* a peer never waits longer than this */

static void die(const char *what, int rc)
{
	fprintf(stderr, "podipc-shm-peer: %s: %s\n", what, rc ? podipc_last_error() : "failed");
	exit(1);
}

static podipc_channel *open_channel(const char *path)
{
	podipc_channel *ch = NULL;
	int rc = podipc_channel_open(path, &ch);
	if (rc)
		die("open", rc);
	return ch;
}

static int cmd_produce(const char *path, uint32_t id, uint32_t count, size_t size)
{
	podipc_producer *p = NULL;
	int rc = podipc_producer_open(open_channel(path), NULL, &p);
	if (rc)
		die("producer", rc);
	for (uint32_t seq = 0; seq < count; seq++) {
		void *buf;
		size_t cap;
		if ((rc = podipc_producer_reserve(p, TIMEOUT, &buf, &cap)))
			die("reserve", rc);
		if (size > cap || size < 16) {
			fprintf(stderr, "podipc-shm-peer: size %zu outside [16, %zu]\n", size, cap);
			return 1;
		}
		fill(buf, size, id, seq); /* zero copy: written in place */
		if ((rc = podipc_producer_commit(p, size)))
			die("commit", rc);
	}
	podipc_producer_close(p);
	printf("sent %u\n", count);
	return 0;
}

static int cmd_end(const char *path, uint32_t n)
{
	podipc_producer *p = NULL;
	int rc = podipc_producer_open(open_channel(path), NULL, &p);
	if (rc)
		die("producer", rc);
	uint32_t end[4] = {UINT32_MAX, 0, 0, 0};
	for (uint32_t i = 0; i < n; i++)
		if ((rc = podipc_producer_send(p, end, sizeof end, TIMEOUT)))
			die("send", rc);
	podipc_producer_close(p);
	return 0;
}

static int cmd_consume(const char *path)
{
	podipc_consumer *c = NULL;
	int rc = podipc_consumer_open(open_channel(path), NULL, &c);
	if (rc)
		die("consumer", rc);
	for (;;) {
		const void *data;
		size_t n;
		if ((rc = podipc_consumer_borrow(c, TIMEOUT, &data, &n)))
			die("borrow", rc);
		uint32_t id, seq;
		if (check(data, n, &id, &seq) != 0) {
			fprintf(stderr, "podipc-shm-peer: a malformed message of %zu bytes\n", n);
			return 1;
		}
		if ((rc = podipc_consumer_release(c)))
			die("release", rc);
		if (id == UINT32_MAX)
			break;
		printf("got %u %u\n", id, seq);
	}
	podipc_consumer_close(c);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_subscribe(const char *path, uint32_t count, int wait_stdin)
{
	podipc_subscriber *s = NULL;
	int rc = podipc_subscriber_open(open_channel(path), NULL, &s);
	if (rc)
		die("subscriber", rc);
	printf("ready\n");
	fflush(stdout);
	if (wait_stdin) {
		char line[16];
		if (!fgets(line, sizeof line, stdin))
			return 1;
	}
	uint64_t received = 0, lost = 0;
	int64_t last = -1;
	uint8_t buf[1 << 16];
	while (last + 1 < (int64_t)count) {
		size_t n;
		rc = podipc_subscriber_recv(s, buf, sizeof buf, &n, TIMEOUT);
		if (rc == PODIPC_ERR_LAPPED) {
			lost += podipc_subscriber_lost(s);
			last += (int64_t)podipc_subscriber_lost(s);
			continue;
		}
		if (rc)
			die("recv", rc);
		uint32_t id, seq;
		if (check(buf, n, &id, &seq) != 0 || id != 0) {
			fprintf(stderr, "podipc-shm-peer: a malformed message of %zu bytes\n", n);
			return 1;
		}
		if (last >= 0 && (int64_t)seq != last + 1) {
			fprintf(stderr, "podipc-shm-peer: message %u after %lld\n", seq, (long long)last);
			return 1;
		}
		last = seq;
		received++;
	}
	podipc_subscriber_close(s);
	printf("received %llu lost %llu\n", (unsigned long long)received, (unsigned long long)lost);
	return 0;
}

_Noreturn static void wait_to_be_killed(void)
{
	for (;;)
		pause();
}

static int cmd_hold(const char *path)
{
	podipc_consumer *c = NULL;
	int rc = podipc_consumer_open(open_channel(path), NULL, &c);
	if (rc)
		die("consumer", rc);
	const void *data;
	size_t n;
	if ((rc = podipc_consumer_borrow(c, TIMEOUT, &data, &n)))
		die("borrow", rc);
	uint32_t id, seq;
	if (check(data, n, &id, &seq) != 0)
		return 1;
	printf("held %u %u\n", id, seq);
	fflush(stdout);
	wait_to_be_killed();
}

static int cmd_reserve(const char *path)
{
	podipc_producer *p = NULL;
	int rc = podipc_producer_open(open_channel(path), NULL, &p);
	if (rc)
		die("producer", rc);
	void *buf;
	size_t cap;
	if ((rc = podipc_producer_reserve(p, TIMEOUT, &buf, &cap)))
		die("reserve", rc);
	memset(buf, 0xAB, cap); /* half-written garbage nobody may ever read */
	printf("reserved\n");
	fflush(stdout);
	wait_to_be_killed();
}

static int cmd_validate(const char *path)
{
	podipc_channel *ch = NULL;
	int rc = podipc_channel_open(path, &ch);
	const char *name;
	switch (rc) {
	case PODIPC_OK: name = "ok"; break;
	case PODIPC_ERR_TRUNCATED: name = "truncated"; break;
	case PODIPC_ERR_NOT_CHANNEL: name = "not-channel"; break;
	case PODIPC_ERR_VERSION: name = "version"; break;
	case PODIPC_ERR_CORRUPT: name = "corrupt"; break;
	case PODIPC_ERR_NOT_REGULAR: name = "not-regular"; break;
	default: die("open", rc); return 1;
	}
	printf("%s\n", name);
	podipc_channel_close(ch);
	return 0;
}

static int cmd_stats(const char *path)
{
	podipc_channel *ch = open_channel(path);
	podipc_stats st;
	int rc = podipc_channel_stats(ch, &st);
	if (rc)
		die("stats", rc);
	printf("sent %llu received %llu lost %llu redelivered %llu abandoned %llu reaped %llu depth %llu "
	       "producers %u consumers %u subscribers %u dead %u\n",
	       (unsigned long long)st.sent, (unsigned long long)st.received, (unsigned long long)st.lost,
	       (unsigned long long)st.redelivered, (unsigned long long)st.abandoned, (unsigned long long)st.reaped,
	       (unsigned long long)st.depth, st.producers, st.consumers, st.subscribers, st.dead_peers);
	podipc_channel_close(ch);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: podipc-shm-peer produce PATH ID COUNT SIZE | end PATH N | consume PATH |\n"
	                "       subscribe PATH COUNT [wait] | hold PATH | reserve PATH | validate PATH | stats PATH\n");
	exit(2);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		usage();
	const char *cmd = argv[1], *path = argv[2];
	if (strcmp(cmd, "produce") == 0 && argc == 6)
		return cmd_produce(path, (uint32_t)strtoul(argv[3], NULL, 10), (uint32_t)strtoul(argv[4], NULL, 10),
		                   strtoul(argv[5], NULL, 10));
	if (strcmp(cmd, "end") == 0 && argc == 4)
		return cmd_end(path, (uint32_t)strtoul(argv[3], NULL, 10));
	if (strcmp(cmd, "consume") == 0 && argc == 3)
		return cmd_consume(path);
	if (strcmp(cmd, "subscribe") == 0 && (argc == 4 || argc == 5))
		return cmd_subscribe(path, (uint32_t)strtoul(argv[3], NULL, 10), argc == 5 && strcmp(argv[4], "wait") == 0);
	if (strcmp(cmd, "hold") == 0 && argc == 3)
		return cmd_hold(path);
	if (strcmp(cmd, "reserve") == 0 && argc == 3)
		return cmd_reserve(path);
	if (strcmp(cmd, "validate") == 0 && argc == 3)
		return cmd_validate(path);
	if (strcmp(cmd, "stats") == 0 && argc == 3)
		return cmd_stats(path);
	usage();
	return 2;
}
