/* Unit and multi-process tests of libpodipc's shared-memory channels, run
 * under AddressSanitizer and UBSan by `make test`. */
#include "testing.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

static const int64_t SECOND = 1000000000;

static podipc_channel *create(const char *name, podipc_mode mode, podipc_overflow ov, uint32_t slot_size,
                              uint32_t slots)
{
	podipc_channel_options o = {.mode = mode, .overflow = ov, .slot_size = slot_size, .slot_count = slots};
	podipc_channel *ch = NULL;
	if (podipc_channel_create(test_path(name), &o, 0, &ch) != PODIPC_OK) {
		fprintf(stderr, "create %s: %s\n", name, podipc_last_error());
		exit(2);
	}
	return ch;
}

/* Writes a copy of a fresh channel's file with `edit` applied and returns
 * what opening it gives. */
static int open_edited(const char *name, void (*edit)(int fd))
{
	podipc_channel *ch = create(name, PODIPC_MODE_QUEUE, PODIPC_OVERFLOW_BLOCK, 64, 4);
	podipc_channel_close(ch);
	int fd = open(test_path(name), O_RDWR);
	edit(fd);
	close(fd);
	podipc_channel *got = NULL;
	int rc = podipc_channel_open(test_path(name), &got);
	podipc_channel_close(got);
	unlink(test_path(name));
	return rc;
}

static void put32_at(int fd, off_t off, uint32_t v) { (void)!pwrite(fd, &v, 4, off); }

/* Rewrites the header checksum, so that a field edit is judged on its own. */
static void fix_checksum(int fd);

static void edit_empty(int fd) { (void)!ftruncate(fd, 0); }
static void edit_short(int fd) { (void)!ftruncate(fd, 100); }
static void edit_magic(int fd) { (void)!pwrite(fd, "ELF\x7f....", 8, 0); }
static void edit_version(int fd) { put32_at(fd, 8, 2); fix_checksum(fd); }
static void edit_checksum(int fd) { put32_at(fd, 24, 128); }
static void edit_slot_count(int fd) { put32_at(fd, 32, 3); fix_checksum(fd); }
static void edit_stride(int fd) { put32_at(fd, 28, 64); fix_checksum(fd); }
static void edit_truncate(int fd) { struct stat st; fstat(fd, &st); (void)!ftruncate(fd, st.st_size - 64); }
static void edit_longer(int fd) { struct stat st; fstat(fd, &st); (void)!ftruncate(fd, st.st_size + 4096); }
static void edit_overwrite_queue(int fd) { put32_at(fd, 20, 2); fix_checksum(fd); }

/* CRC-32C, recomputed independently of the library's. */
static uint32_t crc32c_ref(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
	}
	return ~c;
}

static void fix_checksum(int fd)
{
	uint8_t b[72];
	(void)!pread(fd, b, sizeof b, 0);
	put32_at(fd, 72, crc32c_ref(b, sizeof b));
}

static void test_header_validation(void)
{
	CHECK_RC(open_edited("h-empty", edit_empty), PODIPC_ERR_TRUNCATED);
	CHECK_RC(open_edited("h-short", edit_short), PODIPC_ERR_TRUNCATED);
	CHECK_RC(open_edited("h-magic", edit_magic), PODIPC_ERR_NOT_CHANNEL);
	CHECK_RC(open_edited("h-version", edit_version), PODIPC_ERR_VERSION);
	CHECK_RC(open_edited("h-checksum", edit_checksum), PODIPC_ERR_CORRUPT);
	CHECK(strstr(podipc_last_error(), "checksum") != NULL);
	CHECK_RC(open_edited("h-slots", edit_slot_count), PODIPC_ERR_CORRUPT);
	CHECK(strstr(podipc_last_error(), "slotCount") != NULL);
	CHECK_RC(open_edited("h-stride", edit_stride), PODIPC_ERR_CORRUPT);
	CHECK(strstr(podipc_last_error(), "slotStride") != NULL);
	CHECK_RC(open_edited("h-trunc", edit_truncate), PODIPC_ERR_TRUNCATED);
	CHECK_RC(open_edited("h-long", edit_longer), PODIPC_ERR_CORRUPT);
	CHECK_RC(open_edited("h-overwrite", edit_overwrite_queue), PODIPC_ERR_CORRUPT);
	CHECK(strstr(podipc_last_error(), "overflow") != NULL);
}

static void test_refuses_fifo_and_symlink(void)
{
	podipc_channel *ch = NULL;
	CHECK(mkfifo(test_path("fifo"), 0666) == 0);
	CHECK_RC(podipc_channel_open(test_path("fifo"), &ch), PODIPC_ERR_NOT_REGULAR);
	podipc_channel_close(create("real", PODIPC_MODE_QUEUE, PODIPC_OVERFLOW_BLOCK, 64, 4));
	char real[400];
	snprintf(real, sizeof real, "%s", test_path("real"));
	CHECK(symlink(real, test_path("link")) == 0);
	CHECK_RC(podipc_channel_open(test_path("link"), &ch), PODIPC_ERR_NOT_REGULAR);
	CHECK(ch == NULL);
	CHECK_RC(podipc_channel_open(test_path("missing"), &ch), PODIPC_ERR_SYSTEM);
	CHECK(errno == ENOENT);
}

static void test_create_rules(void)
{
	podipc_channel *ch = NULL;
	podipc_channel_options bad = {.slot_count = 3};
	CHECK_RC(podipc_channel_create(test_path("c-bad"), &bad, 0, &ch), PODIPC_ERR_INVALID);
	podipc_channel_options ow = {.mode = PODIPC_MODE_QUEUE, .overflow = PODIPC_OVERFLOW_OVERWRITE};
	CHECK_RC(podipc_channel_create(test_path("c-ow"), &ow, 0, &ch), PODIPC_ERR_INVALID);
	CHECK_OK(podipc_channel_create(test_path("c-ok"), NULL, 0600, &ch));
	podipc_channel_options got;
	podipc_channel_get_options(ch, &got);
	CHECK(got.mode == PODIPC_MODE_QUEUE && got.slot_size == PODIPC_DEFAULT_SLOT_SIZE &&
	      got.slot_count == PODIPC_DEFAULT_SLOT_COUNT && got.max_peers == PODIPC_DEFAULT_MAX_PEERS);
	struct stat st;
	CHECK(stat(test_path("c-ok"), &st) == 0 && (st.st_mode & 0777) == 0600);
	podipc_channel *again = NULL;
	CHECK_RC(podipc_channel_create(test_path("c-ok"), NULL, 0, &again), PODIPC_ERR_EXISTS);
	podipc_channel_close(ch);
}

static void test_queue_copy(void)
{
	podipc_channel *ch = create("q-copy", PODIPC_MODE_QUEUE, PODIPC_OVERFLOW_FAIL, 32, 4);
	podipc_producer *p = NULL;
	podipc_consumer *c = NULL;
	CHECK_OK(podipc_producer_open(ch, NULL, &p));
	CHECK_OK(podipc_consumer_open(ch, NULL, &c));
	podipc_channel_close(ch); /* the peers keep the mapping */
	char buf[32];
	size_t n;
	CHECK_RC(podipc_consumer_recv(c, buf, sizeof buf, &n, 0), PODIPC_ERR_EMPTY);
	CHECK_RC(podipc_consumer_recv(c, buf, sizeof buf, &n, SECOND / 100), PODIPC_ERR_TIMEOUT);
	for (int i = 0; i < 4; i++) {
		snprintf(buf, sizeof buf, "message %d", i);
		CHECK_OK(podipc_producer_send(p, buf, strlen(buf), -1));
	}
	CHECK_RC(podipc_producer_send(p, "x", 1, -1), PODIPC_ERR_FULL);
	char big[33] = {0};
	CHECK_RC(podipc_producer_send(p, big, sizeof big, 0), PODIPC_ERR_TOO_LARGE);
	/* A buffer too small keeps the message for the next call. */
	CHECK_RC(podipc_consumer_recv(c, buf, 3, &n, 0), PODIPC_ERR_TOO_LARGE);
	CHECK(n == 9);
	for (int i = 0; i < 4; i++) {
		char want[32];
		snprintf(want, sizeof want, "message %d", i);
		CHECK_OK(podipc_consumer_recv(c, buf, sizeof buf, &n, 0));
		CHECK(n == strlen(want) && memcmp(buf, want, n) == 0);
	}
	podipc_stats st;
	CHECK_OK(podipc_channel_stats(p ? ch : ch, &st));
	CHECK(st.sent == 4 && st.received == 4 && st.depth == 0 && st.producers == 1 && st.consumers == 1);
	CHECK_OK(podipc_producer_close(p));
	CHECK_OK(podipc_consumer_close(c));
}

static void test_queue_zero_copy(void)
{
	podipc_channel *ch = create("q-zc", PODIPC_MODE_QUEUE, PODIPC_OVERFLOW_BLOCK, 64, 8);
	podipc_producer *p = NULL;
	podipc_consumer *c = NULL, *c2 = NULL;
	CHECK_OK(podipc_producer_open(ch, NULL, &p));
	CHECK_OK(podipc_consumer_open(ch, NULL, &c));
	CHECK_OK(podipc_consumer_open(ch, NULL, &c2));
	void *buf;
	size_t cap;
	CHECK_RC(podipc_producer_commit(p, 1), PODIPC_ERR_NOT_HELD);
	CHECK_OK(podipc_producer_reserve(p, 0, &buf, &cap));
	CHECK(cap == 64);
	CHECK_RC(podipc_producer_reserve(p, 0, &buf, &cap), PODIPC_ERR_OUTSTANDING);
	CHECK_RC(podipc_producer_commit(p, 65), PODIPC_ERR_TOO_LARGE);
	memcpy(buf, "abandoned", 9);
	CHECK_OK(podipc_producer_abort(p));
	CHECK_RC(podipc_producer_abort(p), PODIPC_ERR_NOT_HELD);
	CHECK_OK(podipc_producer_reserve(p, 0, &buf, &cap));
	memcpy(buf, "first", 5);
	CHECK_OK(podipc_producer_commit(p, 5));
	CHECK_RC(podipc_producer_commit(p, 5), PODIPC_ERR_NOT_HELD);
	CHECK_OK(podipc_producer_send(p, "second", 6, 0));

	const void *data;
	size_t n;
	CHECK_OK(podipc_consumer_borrow(c, 0, &data, &n));
	CHECK(n == 5 && memcmp(data, "first", 5) == 0); /* the aborted position was skipped */
	CHECK_RC(podipc_consumer_borrow(c, 0, &data, &n), PODIPC_ERR_OUTSTANDING);
	/* Closing while borrowing hands the message back for redelivery. */
	CHECK_OK(podipc_consumer_close(c));
	char got[2][8];
	for (int i = 0; i < 2; i++) {
		CHECK_OK(podipc_consumer_borrow(c2, 0, &data, &n));
		memcpy(got[i], data, n);
		got[i][n] = 0;
		CHECK_OK(podipc_consumer_release(c2));
	}
	CHECK_RC(podipc_consumer_release(c2), PODIPC_ERR_NOT_HELD);
	/* Redelivered messages come out of FIFO order. */
	CHECK((strcmp(got[0], "first") == 0 && strcmp(got[1], "second") == 0) ||
	      (strcmp(got[0], "second") == 0 && strcmp(got[1], "first") == 0));
	podipc_stats st;
	CHECK_OK(podipc_channel_stats(ch, &st));
	CHECK(st.redelivered == 1 && st.abandoned == 1 && st.sent == 2 && st.received == 3);
	CHECK_OK(podipc_producer_close(p));
	CHECK_OK(podipc_consumer_close(c2));
	CHECK_RC(podipc_subscriber_open(ch, NULL, &(podipc_subscriber *){NULL}), PODIPC_ERR_WRONG_MODE);
	podipc_channel_close(ch);
}

static void test_broadcast(void)
{
	podipc_channel *ch = create("b", PODIPC_MODE_BROADCAST, PODIPC_OVERFLOW_BLOCK, 16, 4);
	podipc_producer *p = NULL, *p2 = NULL;
	podipc_subscriber *s1 = NULL, *s2 = NULL;
	CHECK_OK(podipc_producer_open(ch, NULL, &p));
	CHECK_RC(podipc_producer_open(ch, NULL, &p2), PODIPC_ERR_PRODUCER_EXISTS);
	CHECK_OK(podipc_subscriber_open(ch, NULL, &s1));
	CHECK_OK(podipc_subscriber_open(ch, NULL, &s2));
	for (uint32_t i = 0; i < 4; i++)
		CHECK_OK(podipc_producer_send(p, &i, sizeof i, 0));
	/* The slowest subscriber holds the producer back. */
	uint32_t v = 99;
	CHECK_RC(podipc_producer_send(p, &v, sizeof v, 0), PODIPC_ERR_FULL);
	size_t n;
	for (uint32_t i = 0; i < 4; i++) {
		CHECK_OK(podipc_subscriber_recv(s1, &v, sizeof v, &n, 0));
		CHECK(n == 4 && v == i);
	}
	CHECK_RC(podipc_producer_send(p, &v, sizeof v, SECOND / 100), PODIPC_ERR_TIMEOUT);
	const void *data;
	CHECK_OK(podipc_subscriber_borrow(s2, 0, &data, &n));
	CHECK(n == 4 && memcmp(data, &(uint32_t){0}, 4) == 0);
	CHECK_OK(podipc_subscriber_release(s2));
	v = 4;
	CHECK_OK(podipc_producer_send(p, &v, sizeof v, 0));
	CHECK_OK(podipc_subscriber_close(s2)); /* a departed subscriber stops holding it back */
	for (v = 5; v < 8; v++)
		CHECK_OK(podipc_producer_send(p, &v, sizeof v, 0));
	CHECK_RC(podipc_subscriber_open(ch, NULL, &s2), PODIPC_OK);
	CHECK_RC(podipc_subscriber_recv(s2, &v, sizeof v, &n, 0), PODIPC_ERR_EMPTY); /* starts at the tail */
	CHECK_RC(podipc_consumer_open(ch, NULL, &(podipc_consumer *){NULL}), PODIPC_ERR_WRONG_MODE);
	CHECK_OK(podipc_producer_close(p));
	CHECK_OK(podipc_producer_open(ch, NULL, &p2)); /* the producer lock went with p */
	CHECK_OK(podipc_producer_close(p2));
	CHECK_OK(podipc_subscriber_close(s1));
	CHECK_OK(podipc_subscriber_close(s2));
	podipc_channel_close(ch);
}

static void test_broadcast_lapped(void)
{
	podipc_channel *ch = create("b-lap", PODIPC_MODE_BROADCAST, PODIPC_OVERFLOW_OVERWRITE, 16, 4);
	podipc_producer *p = NULL;
	podipc_subscriber *s = NULL;
	CHECK_OK(podipc_producer_open(ch, NULL, &p));
	CHECK_OK(podipc_subscriber_open(ch, NULL, &s));
	for (uint32_t i = 0; i < 10; i++)
		CHECK_OK(podipc_producer_send(p, &i, sizeof i, 0));
	uint32_t v;
	size_t n;
	CHECK_RC(podipc_subscriber_recv(s, &v, sizeof v, &n, 0), PODIPC_ERR_LAPPED);
	CHECK(podipc_subscriber_lost(s) == 7); /* positions 0..6 are gone; 7, 8, 9 remain */
	for (uint32_t i = 7; i < 10; i++) {
		CHECK_OK(podipc_subscriber_recv(s, &v, sizeof v, &n, 0));
		CHECK(v == i);
	}
	/* A borrowed message overwritten before release is reported at release. */
	uint32_t i = 10;
	CHECK_OK(podipc_producer_send(p, &i, sizeof i, 0));
	const void *data;
	CHECK_OK(podipc_subscriber_borrow(s, 0, &data, &n));
	for (i = 11; i < 16; i++)
		CHECK_OK(podipc_producer_send(p, &i, sizeof i, 0));
	CHECK_RC(podipc_subscriber_release(s), PODIPC_ERR_LAPPED);
	podipc_stats st;
	CHECK_OK(podipc_channel_stats(ch, &st));
	CHECK(st.lost == 7 + podipc_subscriber_lost(s));
	CHECK_OK(podipc_producer_close(p));
	CHECK_OK(podipc_subscriber_close(s));
	podipc_channel_close(ch);
}

/* A child process that dies holding a borrowed message or a reservation:
 * the message is redelivered and the reserved position skipped. */
static void test_dead_peers_recovered(void)
{
	podipc_channel *ch = create("dead", PODIPC_MODE_QUEUE, PODIPC_OVERFLOW_BLOCK, 32, 8);
	podipc_producer *p = NULL;
	CHECK_OK(podipc_producer_open(ch, NULL, &p));
	CHECK_OK(podipc_producer_send(p, "held by the dead", 16, 0));
	int ready[2];
	CHECK(pipe(ready) == 0);
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		CHECK(kids[k] >= 0);
		if (kids[k] == 0) {
			podipc_channel *cc = NULL;
			if (podipc_channel_open(test_path("dead"), &cc) != 0)
				_exit(3);
			const void *data;
			size_t n;
			void *buf;
			if (k == 0) {
				podipc_consumer *c = NULL;
				if (podipc_consumer_open(cc, NULL, &c) != 0 || podipc_consumer_borrow(c, SECOND, &data, &n) != 0)
					_exit(4);
			} else {
				podipc_producer *pp = NULL;
				if (podipc_producer_open(cc, NULL, &pp) != 0 || podipc_producer_reserve(pp, SECOND, &buf, &n) != 0)
					_exit(5);
			}
			(void)!write(ready[1], "x", 1);
			pause(); /* killed here */
			_exit(6);
		}
		char x;
		CHECK(read(ready[0], &x, 1) == 1);
	}
	CHECK_OK(podipc_producer_send(p, "after", 5, 0));
	for (int k = 0; k < 2; k++) {
		kill(kids[k], SIGKILL);
		int status;
		CHECK(waitpid(kids[k], &status, 0) == kids[k] && WIFSIGNALED(status));
	}
	close(ready[0]);
	close(ready[1]);
	podipc_stats st;
	CHECK_OK(podipc_channel_stats(ch, &st));
	CHECK(st.dead_peers == 2);
	unsigned reaped = 0;
	CHECK_OK(podipc_channel_reap_dead_peers(ch, &reaped));
	CHECK(reaped == 2);
	podipc_consumer *c = NULL;
	CHECK_OK(podipc_consumer_open(ch, NULL, &c));
	char buf[32];
	size_t n;
	int seen_held = 0, seen_after = 0;
	for (int i = 0; i < 2; i++) {
		CHECK_OK(podipc_consumer_recv(c, buf, sizeof buf, &n, SECOND));
		seen_held += n == 16 && memcmp(buf, "held by the dead", 16) == 0;
		seen_after += n == 5 && memcmp(buf, "after", 5) == 0;
	}
	CHECK(seen_held == 1 && seen_after == 1);
	CHECK_RC(podipc_consumer_recv(c, buf, sizeof buf, &n, 0), PODIPC_ERR_EMPTY);
	CHECK_OK(podipc_channel_stats(ch, &st));
	CHECK(st.reaped == 2 && st.redelivered == 1 && st.abandoned == 1 && st.dead_peers == 0);
	CHECK_OK(podipc_consumer_close(c));
	CHECK_OK(podipc_producer_close(p));
	podipc_channel_close(ch);
}

/* A consumer blocked on an empty queue wakes when another process sends. */
static void test_block_wakes_across_processes(void)
{
	podipc_channel *ch = create("wake", PODIPC_MODE_QUEUE, PODIPC_OVERFLOW_BLOCK, 32, 8);
	podipc_peer_options block = {.wait = PODIPC_WAIT_BLOCK};
	podipc_consumer *c = NULL;
	CHECK_OK(podipc_consumer_open(ch, &block, &c));
	pid_t kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		podipc_channel *cc = NULL;
		podipc_producer *p = NULL;
		if (podipc_channel_open(test_path("wake"), &cc) != 0 || podipc_producer_open(cc, NULL, &p) != 0)
			_exit(3);
		/* Wait until the parent sleeps: its waiter count is in the header. */
		for (;;) {
			podipc_stats st;
			podipc_channel_stats(cc, &st);
			uint32_t waiters;
			int fd = open(test_path("wake"), O_RDONLY);
			(void)!pread(fd, &waiters, 4, 0x184);
			close(fd);
			if (waiters)
				break;
			usleep(1000);
		}
		_exit(podipc_producer_send(p, "wake up", 7, 0) == 0 ? 0 : 4);
	}
	char buf[32];
	size_t n;
	CHECK_OK(podipc_consumer_recv(c, buf, sizeof buf, &n, 10 * SECOND));
	CHECK(n == 7 && memcmp(buf, "wake up", 7) == 0);
	int status;
	CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_OK(podipc_consumer_close(c));
	podipc_channel_close(ch);
}

/* ---- foreign slot words (docs/shm-layout.md §2.5) ---------------------- */

/* A second mapping of a channel file, for a test that writes garbage into
 * it as a misbehaving participant would. */
typedef struct {
	uint8_t *base;
	size_t size;
	uint64_t slots, stride, mask;
} forger;

static int forger_open(forger *f, const char *name)
{
	int fd = open(test_path(name), O_RDWR);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		return -1;
	f->size = (size_t)st.st_size;
	f->base = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (f->base == MAP_FAILED)
		return -1;
	uint32_t stride, count;
	memcpy(&stride, f->base + 0x1C, 4);
	memcpy(&count, f->base + 0x20, 4);
	memcpy(&f->slots, f->base + 0x30, 8);
	f->stride = stride;
	f->mask = count - 1;
	return 0;
}

static uint64_t *forger_word(forger *f, uint64_t pos)
{
	return (uint64_t *)(f->base + f->slots + (pos & f->mask) * f->stride);
}
static uint64_t forger_tail(forger *f) { return __atomic_load_n((uint64_t *)(f->base + 0x80), __ATOMIC_SEQ_CST); }
static void forge(forger *f, uint64_t pos, uint64_t seq, uint32_t state, uint32_t owner)
{
	__atomic_store_n(forger_word(f, pos), seq << 16 | (uint64_t)(state & 0xF) << 12 | (owner & 0xFFF), __ATOMIC_SEQ_CST);
}

/* A Queue channel of 8 slots whose head and tail went round twice. */
static podipc_channel *forge_ring(const char *name, podipc_producer **p, podipc_consumer **c, forger *f)
{
	podipc_channel *ch = create(name, PODIPC_MODE_QUEUE, PODIPC_OVERFLOW_FAIL, 64, 8);
	char buf[64];
	size_t n;
	if (podipc_producer_open(ch, NULL, p) != PODIPC_OK || podipc_consumer_open(ch, NULL, c) != PODIPC_OK ||
	    forger_open(f, name) != 0)
		goto fail;
	for (int i = 0; i < 2 * 8 + 3; i++)
		if (podipc_producer_send(*p, "warm-up", 7, 0) != PODIPC_OK ||
		    podipc_consumer_recv(*c, buf, sizeof buf, &n, 0) != PODIPC_OK)
			goto fail;
	return ch;
fail:
	fprintf(stderr, "forge_ring %s: %s\n", name, podipc_last_error());
	exit(2);
}

static void forge_close(podipc_channel *ch, podipc_producer *p, podipc_consumer *c, forger *f, const char *name)
{
	podipc_producer_close(p);
	podipc_consumer_close(c);
	podipc_channel_close(ch);
	munmap(f->base, f->size);
	unlink(test_path(name));
}

/* Sends count messages one at a time; each must come out intact, in order,
 * and nothing else. Returns 0 on success. */
static int flows_intact(podipc_producer *p, podipc_consumer *c, int count)
{
	char msg[64], buf[64];
	size_t n;
	for (int i = 0; i < count; i++) {
		int len = snprintf(msg, sizeof msg, "message %d of %d", i, count);
		if (podipc_producer_send(p, msg, (size_t)len, 0) != PODIPC_OK) {
			fprintf(stderr, "send %d: %s\n", i, podipc_last_error());
			return -1;
		}
		int rc = podipc_consumer_recv(c, buf, sizeof buf, &n, 0);
		if (rc != PODIPC_OK || n != (size_t)len || memcmp(buf, msg, n) != 0) {
			fprintf(stderr, "recv %d: rc %d (%s), %zu bytes\n", i, rc, podipc_last_error(), n);
			return -1;
		}
	}
	return podipc_consumer_recv(c, buf, sizeof buf, &n, 0) == PODIPC_ERR_EMPTY ? 0 : -1;
}

/* Words of every state (and an unknown one) whose sequence no healthy ring
 * can hold at the next position: the producer repairs the slot and skips
 * the position, nothing is delivered from it, the ring goes on, and the
 * repair is counted. */
static void test_foreign_words(void)
{
	static const uint32_t states[] = {0, 1, 2, 3, 4, 5, 9};
	static const int64_t offsets[] = {3, -3, 16, -16, 41};
	for (size_t si = 0; si < sizeof states / sizeof *states; si++) {
		for (size_t oi = 0; oi < sizeof offsets / sizeof *offsets; oi++) {
			podipc_producer *p;
			podipc_consumer *c;
			forger f;
			podipc_channel *ch = forge_ring("foreign", &p, &c, &f);
			uint64_t pos = forger_tail(&f);
			forge(&f, pos, pos + (uint64_t)offsets[oi], states[si], 1);
			int flowed = flows_intact(p, c, 3 * 8);
			podipc_stats st;
			int rc = podipc_channel_stats(ch, &st);
			forge_close(ch, p, c, &f, "foreign");
			if (flowed != 0 || rc != PODIPC_OK || st.repaired != 1 || st.sent != st.received)
				fprintf(stderr, "state %u, sequence %+lld: flowed %d, repaired %llu, sent %llu, received %llu\n",
				        states[si], (long long)offsets[oi], flowed, (unsigned long long)st.repaired,
				        (unsigned long long)st.sent, (unsigned long long)st.received);
			CHECK(flowed == 0 && rc == PODIPC_OK && st.repaired == 1 && st.sent == st.received);
		}
	}
}

/* Issue 11: a REDELIVER word naming another slot's position, which a
 * producer holds reserved, with the redelivery generation bumped. The
 * consumer must not hand out the reservation; the committed message comes
 * out once, and the forged slot is repaired when the ring reaches it. */
static void test_foreign_redeliver(void)
{
	podipc_producer *p;
	podipc_consumer *c;
	forger f;
	podipc_channel *ch = forge_ring("foreign-redeliver", &p, &c, &f);
	void *res;
	size_t cap, n;
	char buf[64];
	CHECK_OK(podipc_producer_reserve(p, 0, &res, &cap));
	uint64_t reserved = forger_tail(&f) - 1;
	memcpy(res, "uncommitted", 11);
	forge(&f, reserved + 2, reserved, 5, 0);
	__atomic_fetch_add((uint64_t *)(f.base + 0x280), 1, __ATOMIC_SEQ_CST);
	CHECK_RC(podipc_consumer_recv(c, buf, sizeof buf, &n, 0), PODIPC_ERR_EMPTY);
	memcpy(res, "committed", 9);
	CHECK_OK(podipc_producer_commit(p, 9));
	CHECK_OK(podipc_consumer_recv(c, buf, sizeof buf, &n, 0));
	CHECK(n == 9 && memcmp(buf, "committed", 9) == 0);
	CHECK(flows_intact(p, c, 3 * 8) == 0);
	podipc_stats st;
	CHECK_OK(podipc_channel_stats(ch, &st));
	CHECK(st.repaired == 1 && st.redelivered == 0 && st.sent == st.received);
	forge_close(ch, p, c, &f, "foreign-redeliver");
}

static void test_strerror(void)
{
	for (int e = 0; e >= PODIPC_ERR_STALE; e--) /* the last code */
		CHECK(strcmp(podipc_strerror(e), "unknown podipc error") != 0);
	CHECK(strcmp(podipc_strerror(-1000), "unknown podipc error") == 0);
	CHECK_RC(podipc_producer_send(NULL, "x", 1, 0), PODIPC_ERR_INVALID);
	CHECK(podipc_producer_close(NULL) == PODIPC_OK);
}

int main(void)
{
	make_test_dir();
	RUN(test_header_validation);
	RUN(test_refuses_fifo_and_symlink);
	RUN(test_create_rules);
	RUN(test_queue_copy);
	RUN(test_queue_zero_copy);
	RUN(test_broadcast);
	RUN(test_broadcast_lapped);
	RUN(test_dead_peers_recovered);
	RUN(test_block_wakes_across_processes);
	RUN(test_foreign_words);
	RUN(test_foreign_redeliver);
	RUN(test_strerror);
	remove_test_dir();
	return test_failed ? 1 : 0;
}
