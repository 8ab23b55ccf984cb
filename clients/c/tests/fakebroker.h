/* A scripted in-process broker for the mq tests: it listens on a Unix
 * socket in the test directory, answers the handshake with a chosen
 * WELCOME, and then a test's script (run on a thread of its own) reads the
 * client's frames and writes what the test wants, hostile or not, in
 * pieces as small as one byte. */
#ifndef PODIPC_FAKEBROKER_H
#define PODIPC_FAKEBROKER_H

#include "testing.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "../src/mqwire.h"

typedef struct fb {
	char path[300];
	int lfd, cfd;
	pi_mq_welcome w;
	uint8_t status; /* WELCOME status */
	int chunk;      /* write in pieces of this many bytes (0: at once) */
	pthread_t thread;
	void (*script)(struct fb *);
	void *arg;
	int failed; /* the script saw something it did not expect */
	char why[200];
} fb;

#define FB_EXPECT(b, cond)                                                                                   \
	do {                                                                                                     \
		if (!(cond)) {                                                                                       \
			snprintf((b)->why, sizeof (b)->why, "%s:%d: %s", __FILE__, __LINE__, #cond);                    \
			(b)->failed = 1;                                                                                 \
			return;                                                                                          \
		}                                                                                                    \
	} while (0)

static inline pi_mq_welcome fb_default_welcome(void)
{
	return (pi_mq_welcome){.version = 1, .max_frame = 1 << 16, .max_message = 1 << 15, .max_pending_sends = 64,
	                       .max_pending_bytes = 1 << 20, .max_prefetch = 128, .max_consumers = 8};
}

static inline void fb_listen(fb *b, const char *name)
{
	memset(b, 0, sizeof *b);
	b->w = fb_default_welcome();
	b->cfd = -1;
	snprintf(b->path, sizeof b->path, "%s/%s", test_dir, name);
	unlink(b->path);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(b->path) >= sizeof sa.sun_path) {
		fprintf(stderr, "fake broker: path too long\n");
		exit(2);
	}
	memcpy(sa.sun_path, b->path, strlen(b->path) + 1);
	b->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (b->lfd < 0 || bind(b->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(b->lfd, 8) != 0) {
		perror("fake broker: listen");
		exit(2);
	}
}

static inline int fb_read_all(int fd, void *p, size_t n)
{
	uint8_t *q = p;
	while (n) {
		ssize_t k = read(fd, q, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		q += k;
		n -= (size_t)k;
	}
	return 0;
}

static inline void fb_write(fb *b, const void *p, size_t n)
{
	const uint8_t *q = p;
	while (n) {
		size_t step = b->chunk > 0 && (size_t)b->chunk < n ? (size_t)b->chunk : n;
		ssize_t k = send(b->cfd, q, step, MSG_NOSIGNAL);
		if (k <= 0)
			return; /* the client went away: the test's checks tell */
		q += k;
		n -= (size_t)k;
		if (b->chunk > 0)
			usleep(50); /* let the client see the pieces one by one */
	}
}

/* fb_accept takes the next connection and performs the handshake. */
static inline int fb_accept(fb *b)
{
	if (b->cfd >= 0)
		close(b->cfd);
	b->cfd = accept(b->lfd, NULL, NULL);
	if (b->cfd < 0)
		return -1;
	uint8_t hello[PI_MQ_HELLO_SIZE], w[PI_MQ_WELCOME_SIZE];
	if (fb_read_all(b->cfd, hello, sizeof hello) || memcmp(hello, "PDMQ", 4) || pi_le16(hello + 4) != 1)
		return -1;
	memcpy(w, "PDMQ", 4);
	pi_put16(w + 4, b->w.version);
	pi_put16(w + 6, b->status);
	pi_put32(w + 8, b->w.max_frame);
	pi_put32(w + 12, b->w.max_message);
	pi_put32(w + 16, b->w.max_pending_sends);
	pi_put32(w + 20, b->w.max_pending_bytes);
	pi_put32(w + 24, b->w.max_prefetch);
	pi_put32(w + 28, b->w.max_consumers);
	fb_write(b, w, sizeof w);
	return 0;
}

/* A client frame as the fake broker reads it. */
typedef struct fb_frame {
	uint8_t type;
	uint8_t p[1 << 16];
	size_t len;
} fb_frame;

/* fb_next reads the next client frame; -1 at end of stream. */
static inline int fb_next(fb *b, fb_frame *f)
{
	uint8_t hdr[5];
	if (fb_read_all(b->cfd, hdr, 5))
		return -1;
	uint32_t n = pi_le32(hdr);
	if (n == 0 || n - 1 > sizeof f->p)
		return -1;
	f->type = hdr[4];
	f->len = n - 1;
	return fb_read_all(b->cfd, f->p, f->len);
}

/* fb_put writes one broker frame of type t with the given payload. */
static inline void fb_put(fb *b, uint8_t t, const void *payload, size_t n)
{
	uint8_t *buf = malloc(5 + n);
	pi_put32(buf, (uint32_t)(n + 1));
	buf[4] = t;
	memcpy(buf + 5, payload, n);
	fb_write(b, buf, 5 + n);
	free(buf);
}

static inline void fb_send_ok(fb *b, uint32_t req, uint64_t id)
{
	uint8_t p[12];
	pi_put32(p, req);
	pi_put64(p + 4, id);
	fb_put(b, PI_MQ_SEND_OK, p, sizeof p);
}

static inline void fb_consume_ok(fb *b, uint32_t req, uint8_t mode, uint32_t prefetch)
{
	uint8_t p[9];
	pi_put32(p, req);
	p[4] = mode;
	pi_put32(p + 5, prefetch);
	fb_put(b, PI_MQ_CONSUME_OK, p, sizeof p);
}

static inline void fb_error(fb *b, uint8_t type, uint32_t id, uint16_t code, const char *text)
{
	uint8_t p[6 + 256];
	size_t n = strlen(text);
	pi_put32(p, id);
	pi_put16(p + 4, code);
	memcpy(p + 6, text, n);
	fb_put(b, type, p, 6 + n);
}

static inline void fb_goaway(fb *b, uint16_t code, const char *text)
{
	uint8_t p[2 + 256];
	size_t n = strlen(text);
	pi_put16(p, code);
	memcpy(p + 2, text, n);
	fb_put(b, PI_MQ_GOAWAY, p, 2 + n);
}

static inline void fb_deliver(fb *b, uint32_t consumer, uint64_t tag, uint64_t id, uint32_t deliveries, uint8_t prio,
                       const void *body, size_t n)
{
	uint8_t *p = malloc(33 + n);
	pi_put32(p, consumer);
	pi_put64(p + 4, tag);
	pi_put64(p + 12, id);
	pi_put64(p + 20, (uint64_t)1700000000123456789LL);
	pi_put32(p + 28, deliveries);
	p[32] = prio;
	memcpy(p + 33, body, n);
	fb_put(b, PI_MQ_DELIVER, p, 33 + n);
	free(p);
}

static inline void fb_pong(fb *b, uint64_t token)
{
	uint8_t p[8];
	pi_put64(p, token);
	fb_put(b, PI_MQ_PONG, p, 8);
}

static inline void *fb_run(void *arg)
{
	fb *b = arg;
	b->script(b);
	return NULL;
}

/* fb_start runs script on its own thread. */
static inline void fb_start(fb *b, void (*script)(fb *))
{
	b->script = script;
	if (pthread_create(&b->thread, NULL, fb_run, b) != 0) {
		perror("pthread_create");
		exit(2);
	}
}

/* fb_stop waits for the script and closes everything; non-zero if the
 * script failed (the reason printed). */
static inline int fb_stop(fb *b)
{
	pthread_join(b->thread, NULL);
	if (b->cfd >= 0)
		close(b->cfd);
	close(b->lfd);
	unlink(b->path);
	if (b->failed)
		fprintf(stderr, "fake broker: %s\n", b->why);
	return b->failed;
}

#endif
