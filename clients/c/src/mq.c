/*
 * The message-queue client: docs/mq-protocol.md, version 1, with the
 * semantics of pkg/mq (client.go, reconnect.go, peercred.go).
 *
 * Concurrency: one mutex (mq->mu) guards everything. There is no
 * background thread; a caller that has to wait drives the connection
 * (drive()): at most one thread at a time polls the socket without the
 * mutex (mq->polling) or dials a new connection (mq->dialing), the others
 * wait on mq->cond, which is broadcast whenever the state changes. The
 * socket is non-blocking and is read and written only with the mutex held,
 * so frames are never interleaved; a writer whose write would block polls
 * for both directions and drains what the broker sends meanwhile into the
 * input buffer, so a broker that stops reading until its own writes drain
 * cannot deadlock with us.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "podipc.h"
#include "internal.h"
#include "mqwire.h"

/* Detail messages are cut to their buffers on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define NS_PER_MS 1000000LL
#define FOREVER INT64_MAX
#define RETRY_DELAY_NS (100 * NS_PER_MS) /* an "unknown queue" after reconnecting is retried this often */
#define READ_CHUNK (64u << 10)
#define MAX_REQS (1u << 20) /* request slots; a request id is (slot generation << 20) | (slot + 1) */

enum { ST_CONNECTED, ST_DISCONNECTED, ST_CLOSED };
enum { K_SEND = 1, K_CONSUME, K_PING, K_REATTACH };
enum { R_FREE = 0, R_PENDING, R_DONE };

/* A request awaiting its answer: a send, a consume, a ping, or the CONSUME
 * that re-attaches a consumer after a reconnection. */
struct req {
	uint8_t kind, state;
	bool async;      /* its outcome goes to the completion queue */
	bool abandoned;  /* the waiter gave up: free it when answered */
	bool sent;       /* sent on the current connection */
	uint16_t gen;    /* slot generation, part of the wire id */
	uint32_t wire;   /* the id on the current connection */
	uint64_t seq;    /* creation order: resend order, and the async ticket */
	int64_t retry_at;/* monotonic ns: send again then ("unknown queue" after a reconnect); 0: not waiting */
	/* outcome */
	int rc;
	uint64_t id;
	uint8_t mode;
	uint32_t prefetch;
	char msg[200];
	/* what it sends */
	uint8_t priority;
	uint32_t ttl_ms;
	uint32_t block_ms;  /* 0: none */
	int64_t deadline;   /* monotonic ns of the send's broker timeout; FOREVER: none */
	uint32_t want_prefetch;
	uint8_t qlen;
	char queue[PI_MQ_MAX_QUEUE];
	uint8_t *body;
	size_t len;
	podipc_mq_consumer *consumer;
	struct req *next_done;
};

struct dlv {
	struct dlv *next;
	podipc_mq_delivery d;
	uint8_t body[];
};

struct podipc_mq_consumer {
	podipc_mq *mq;
	uint32_t id;
	uint32_t want_prefetch, prefetch;
	bool auto_ack;
	bool attached; /* confirmed by the broker (re-attached by a reconnection) */
	int closed_rc; /* non-zero: the broker ended it */
	char closed_msg[200];
	uint8_t qlen;
	char queue[PI_MQ_MAX_QUEUE];
	struct dlv *head, *tail;
	size_t count;
	struct dlv *lent; /* the delivery whose body the application holds */
};

struct podipc_mq {
	pthread_mutex_t mu;
	pthread_cond_t cond;

	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool check_uid;
	uint32_t broker_uid;
	bool reconnect;
	int64_t window_ns, min_backoff_ns, max_backoff_ns, declare_wait_ns, connect_timeout_ns, write_timeout_ns;

	int state;
	int fd;
	uint64_t gen; /* connection generation: bumped when a connection is lost */
	pi_mq_welcome limits;
	int closed_rc;
	char closed_msg[256];
	int goaway_rc; /* GOAWAY received on the current connection */
	char goaway_msg[200];

	uint8_t *rbuf;
	size_t rlen, roff, rcap;
	pi_buf out;
	size_t woff;

	bool polling, dialing;
	int kick_fd; /* an eventfd that wakes the poller */
	int stale_fd; /* a lost socket the poller still polls; closed when it returns */
	int64_t give_up_at, next_dial_at, backoff_ns, resumed_at;
	uint64_t rng;

	struct req **reqs;
	uint32_t nreqs;
	uint32_t *free_slots;
	uint32_t nfree;
	uint64_t next_seq;
	uint32_t retries; /* requests with retry_at set */
	uint32_t pending_sends;
	uint64_t pending_bytes;
	struct req *done_head, *done_tail;
	uint32_t async_open; /* async sends not yet claimed */
	uint32_t unclaimed;

	podipc_mq_consumer **consumers;
	size_t nconsumers, consumers_cap;
	uint32_t next_consumer;

	podipc_mq_stats stats;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t deadline_of(int64_t timeout_ns)
{
	if (timeout_ns < 0)
		return FOREVER;
	int64_t now = now_ns();
	return timeout_ns > FOREVER - now ? FOREVER : now + timeout_ns;
}

/* poll_ms converts a deadline into poll's timeout, rounded up. */
static int poll_ms(int64_t deadline)
{
	if (deadline == FOREVER)
		return -1;
	int64_t left = deadline - now_ns();
	if (left <= 0)
		return 0;
	int64_t ms = (left + NS_PER_MS - 1) / NS_PER_MS;
	return ms > 1000000000 ? 1000000000 : (int)ms;
}

static void wait_cond(podipc_mq *mq, int64_t deadline)
{
	if (deadline == FOREVER) {
		pthread_cond_wait(&mq->cond, &mq->mu);
		return;
	}
	struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
	pthread_cond_timedwait(&mq->cond, &mq->mu, &ts);
}

static uint32_t jitter(podipc_mq *mq, uint32_t n)
{
	mq->rng = mq->rng * 6364136223846793005ull + 1442695040888963407ull;
	return n ? (uint32_t)((mq->rng >> 33) % n) : 0;
}

/* ---- dialling (no lock held) ------------------------------------------ */

static int io_all(int fd, void *buf, size_t n, bool writing, const char *what)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t k = writing ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return pi_fail(PODIPC_ERR_TIMEOUT, "mq: %s: the broker did not answer in time", what);
		if (k < 0)
			return pi_sys(what);
		if (k == 0)
			return pi_fail(PODIPC_ERR_CLOSED, "mq: %s: the broker closed the connection", what);
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* dial connects to path, checks the broker's UID and performs the
 * handshake; on success *fdp is a non-blocking socket. */
static int dial(const char *path, bool check_uid, uint32_t uid, int64_t timeout_ns, int *fdp, pi_mq_welcome *w)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sa.sun_path)
		return pi_fail(PODIPC_ERR_INVALID, "mq: socket path %s is too long", path);
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pi_sys("mq: socket");
	int rc;
	char what[160];
	snprintf(what, sizeof what, "mq: connect %s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		rc = pi_sys(what);
		goto fail;
	}
	if (check_uid) {
		struct ucred cred;
		socklen_t cl = sizeof cred;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
			rc = pi_sys("mq: cannot tell who serves the broker socket: SO_PEERCRED");
			goto fail;
		}
		if (cred.uid != uid) {
			rc = pi_fail(PODIPC_ERR_IMPOSTOR, "mq: %s is served by pid %d as uid %u, the sidecar runs as uid %u",
			             path, (int)cred.pid, (unsigned)cred.uid, (unsigned)uid);
			goto fail;
		}
	}
	struct timeval tv = {.tv_sec = timeout_ns / 1000000000, .tv_usec = (timeout_ns % 1000000000) / 1000};
	if (tv.tv_sec == 0 && tv.tv_usec == 0)
		tv.tv_usec = 1000;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	uint8_t hello[PI_MQ_HELLO_SIZE], welcome[PI_MQ_WELCOME_SIZE];
	pi_mq_put_hello(hello, PI_MQ_VERSION, PI_MQ_VERSION);
	if ((rc = io_all(fd, hello, sizeof hello, true, "mq: handshake: HELLO")) ||
	    (rc = io_all(fd, welcome, sizeof welcome, false, "mq: handshake: WELCOME")) ||
	    (rc = pi_mq_parse_welcome(welcome, w)))
		goto fail;
	if (w->status != 0) {
		rc = pi_fail(pi_mq_code_error(w->status), "mq: the broker at %s refused the connection: %s", path,
		             pi_mq_code_name(w->status));
		goto fail;
	}
	if (w->version != PI_MQ_VERSION) {
		rc = pi_fail(PODIPC_ERR_VERSION, "mq: the broker chose protocol version %u", w->version);
		goto fail;
	}
	struct timeval zero = {0, 0};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof zero);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
		rc = pi_sys("mq: fcntl O_NONBLOCK");
		goto fail;
	}
	*fdp = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

/* ---- requests ---------------------------------------------------------- */

static uint32_t wire_id(uint32_t slot, uint16_t gen) { return (uint32_t)(gen & 0xFFF) << 20 | (slot + 1); }

static struct req *lookup(podipc_mq *mq, uint32_t wire)
{
	uint32_t slot = (wire & (MAX_REQS - 1)) - 1;
	if ((wire & (MAX_REQS - 1)) == 0 || slot >= mq->nreqs)
		return NULL;
	struct req *r = mq->reqs[slot];
	return r && r->state == R_PENDING && r->sent && r->wire == wire ? r : NULL;
}

static uint32_t slot_of(const struct req *r) { return (r->wire & (MAX_REQS - 1)) - 1; }

/* new_req allocates a request slot; its wire id is set by assign(). */
static int new_req(podipc_mq *mq, uint8_t kind, struct req **out)
{
	if (mq->nfree == 0) {
		uint32_t n = mq->nreqs ? mq->nreqs * 2 : 64;
		if (n > MAX_REQS)
			n = MAX_REQS;
		if (n == mq->nreqs)
			return pi_fail(PODIPC_ERR_INVALID, "mq: %u requests are unanswered", mq->nreqs);
		struct req **t = realloc(mq->reqs, n * sizeof *t);
		if (!t)
			return pi_fail(PODIPC_ERR_SYSTEM, "mq: out of memory for requests");
		mq->reqs = t;
		uint32_t *f = realloc(mq->free_slots, n * sizeof *f);
		if (!f)
			return pi_fail(PODIPC_ERR_SYSTEM, "mq: out of memory for requests");
		mq->free_slots = f;
		for (uint32_t i = n; i > mq->nreqs; i--) {
			t[i - 1] = NULL;
			f[mq->nfree++] = i - 1;
		}
		mq->nreqs = n;
	}
	uint32_t slot = mq->free_slots[mq->nfree - 1];
	struct req *r = mq->reqs[slot];
	if (!r && !(r = calloc(1, sizeof *r)))
		return pi_fail(PODIPC_ERR_SYSTEM, "mq: out of memory for a request");
	mq->nfree--;
	uint16_t gen = r->gen;
	memset(r, 0, sizeof *r);
	r->gen = gen;
	r->wire = wire_id(slot, gen);
	r->kind = kind;
	r->state = R_PENDING;
	r->seq = ++mq->next_seq;
	r->deadline = FOREVER;
	mq->reqs[slot] = r;
	*out = r;
	return 0;
}

static void free_req(podipc_mq *mq, struct req *r)
{
	free(r->body);
	r->body = NULL;
	r->state = R_FREE;
	r->gen++;
	mq->free_slots[mq->nfree++] = slot_of(r);
}

/* ---- output ------------------------------------------------------------ */

static void lost(podipc_mq *mq, int rc);
static int read_some(podipc_mq *mq);
static int process(podipc_mq *mq);

/* kick wakes the thread polling the socket, if any: frames it waits for
 * may have been handled by another thread. */
static void kick(podipc_mq *mq)
{
	if (mq->polling) {
		uint64_t one = 1;
		(void)!write(mq->kick_fd, &one, sizeof one);
	}
}

/* flush writes the output buffer. A write that would block waits for the
 * socket (reading what arrives meanwhile) up to the write timeout. On
 * failure the connection is lost and the error returned. */
static int flush(podipc_mq *mq)
{
	int64_t give_up = 0;
	while (mq->state == ST_CONNECTED && mq->woff < mq->out.len) {
		ssize_t n = send(mq->fd, mq->out.p + mq->woff, mq->out.len - mq->woff, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			mq->woff += (size_t)n;
			give_up = 0;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			int rc = pi_sys("mq: write to the broker");
			lost(mq, rc);
			return rc;
		}
		if (!give_up)
			give_up = now_ns() + mq->write_timeout_ns;
		struct pollfd pfd = {.fd = mq->fd, .events = POLLOUT | POLLIN};
		int k = poll(&pfd, 1, poll_ms(give_up));
		if (k == 0) {
			int rc = pi_fail(PODIPC_ERR_CLOSED, "mq: the broker read nothing for %lld ms",
			                 (long long)(mq->write_timeout_ns / NS_PER_MS));
			lost(mq, rc);
			return rc;
		}
		if (k > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
			/* take what the broker sends meanwhile (it may wait for us to read) */
			int rc = read_some(mq);
			if (rc == 0)
				rc = process(mq);
			if (rc < 0) {
				lost(mq, rc);
				return rc;
			}
		}
	}
	if (mq->woff == mq->out.len)
		mq->out.len = mq->woff = 0;
	return mq->state == ST_CONNECTED ? 0 : pi_fail(PODIPC_ERR_CLOSED, "mq: not connected");
}

/* put_req appends r's frame under a fresh wire id and marks it sent. */
static int put_req(podipc_mq *mq, struct req *r)
{
	r->gen++;
	r->wire = wire_id(slot_of(r), r->gen);
	int rc;
	switch (r->kind) {
	case K_SEND: {
		uint32_t timeout = r->block_ms;
		if (r->deadline != FOREVER) {
			int64_t left = r->deadline - now_ns();
			timeout = left <= 0 ? 1 : (uint32_t)((left + NS_PER_MS - 1) / NS_PER_MS);
		}
		rc = pi_mq_put_send(&mq->out, r->wire, r->priority, r->ttl_ms, timeout, r->queue, r->qlen, r->body, r->len);
		break;
	}
	case K_CONSUME:
	case K_REATTACH:
		rc = pi_mq_put_consume(&mq->out, r->wire, r->consumer->id, r->want_prefetch, r->queue, r->qlen);
		break;
	default:
		rc = pi_mq_put_ping(&mq->out, r->wire);
	}
	if (rc == 0)
		r->sent = true;
	return rc;
}

/* submit sends r if connected; otherwise the next connection will. */
static int submit(podipc_mq *mq, struct req *r)
{
	if (mq->state != ST_CONNECTED)
		return 0;
	int rc = put_req(mq, r);
	if (rc)
		return rc;
	flush(mq); /* a failure is a lost connection: r is sent again on the next */
	return 0;
}

/* ---- outcomes ---------------------------------------------------------- */

static void finish_consumer(podipc_mq_consumer *c, int rc, const char *msg)
{
	if (c->closed_rc)
		return;
	c->closed_rc = rc;
	snprintf(c->closed_msg, sizeof c->closed_msg, "%s", msg);
}

/* complete resolves r with rc (msg: the detail) and hands it to its waiter. */
static void complete(podipc_mq *mq, struct req *r, int rc, const char *msg)
{
	r->rc = rc;
	snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
	r->state = R_DONE;
	if (r->retry_at) {
		r->retry_at = 0;
		mq->retries--;
	}
	if (r->kind == K_SEND) {
		mq->pending_sends--;
		mq->pending_bytes -= r->len;
		free(r->body);
		r->body = NULL;
	}
	if (r->kind == K_CONSUME || r->kind == K_REATTACH) {
		podipc_mq_consumer *c = r->consumer;
		if (c && rc == 0) {
			c->attached = true;
			c->auto_ack = r->mode == 2;
			c->prefetch = r->prefetch;
		} else if (c && r->kind == K_REATTACH) {
			char m[200];
			snprintf(m, sizeof m, "mq: consumer of %.*s not re-attached after reconnecting: %s", (int)c->qlen,
			         c->queue, r->msg);
			finish_consumer(c, rc, m);
		}
	}
	if (r->kind == K_REATTACH || r->abandoned) {
		if (r->async)
			mq->async_open--;
		free_req(mq, r);
	} else if (r->async) {
		if (mq->done_tail)
			mq->done_tail->next_done = r;
		else
			mq->done_head = r;
		mq->done_tail = r;
		mq->unclaimed++;
	}
	pthread_cond_broadcast(&mq->cond);
}

/* terminate closes mq for good with rc: every waiter gets it. */
static void terminate(podipc_mq *mq, int rc, const char *msg)
{
	if (mq->state == ST_CLOSED)
		return;
	mq->state = ST_CLOSED;
	mq->closed_rc = rc;
	snprintf(mq->closed_msg, sizeof mq->closed_msg, "%s", msg);
	for (uint32_t i = 0; i < mq->nreqs; i++) {
		struct req *r = mq->reqs[i];
		if (r && r->state == R_PENDING)
			complete(mq, r, rc, msg);
	}
	for (size_t i = 0; i < mq->nconsumers; i++)
		finish_consumer(mq->consumers[i], rc, msg);
	pthread_cond_broadcast(&mq->cond);
}

static void drop_socket(podipc_mq *mq)
{
	if (mq->fd < 0)
		return;
	shutdown(mq->fd, SHUT_RDWR); /* wakes a poller */
	if (mq->polling)
		mq->stale_fd = mq->fd;
	else
		close(mq->fd);
	mq->fd = -1;
	mq->rlen = mq->roff = 0;
	mq->out.len = mq->woff = 0;
}

/* lost handles the end of the current connection (rc says why; the detail
 * is in the thread's podipc_last_error): close, or reconnect. */
static void lost(podipc_mq *mq, int rc)
{
	if (mq->state != ST_CONNECTED)
		return;
	bool fatal = rc == PODIPC_ERR_PROTOCOL; /* the broker broke the protocol: do not retry */
	char msg[256];
	if (mq->goaway_rc) {
		rc = mq->goaway_rc;
		snprintf(msg, sizeof msg, "%s", mq->goaway_msg);
	} else {
		snprintf(msg, sizeof msg, "%s", podipc_last_error());
	}
	drop_socket(mq);
	mq->gen++;
	mq->goaway_rc = 0;
	if (!mq->reconnect || fatal) {
		terminate(mq, rc, msg);
		return;
	}
	int64_t now = now_ns();
	mq->state = ST_DISCONNECTED;
	mq->stats.disconnects++;
	mq->give_up_at = now + mq->window_ns;
	mq->next_dial_at = now;
	mq->backoff_ns = mq->min_backoff_ns;
	snprintf(mq->closed_msg, sizeof mq->closed_msg, "%s", msg);
	for (uint32_t i = 0; i < mq->nreqs; i++)
		if (mq->reqs[i] && mq->reqs[i]->state == R_PENDING)
			mq->reqs[i]->sent = false;
	pthread_cond_broadcast(&mq->cond);
}

/* ---- input ------------------------------------------------------------- */

/* read_some reads what the socket has (without blocking) into rbuf. The
 * buffer grows (doubling) only when what has arrived fills it, so a frame
 * header announcing a large frame reserves nothing until its bytes come
 * (docs/mq-protocol.md, "Frames"). */
static int read_some(podipc_mq *mq)
{
	if (mq->roff && mq->roff == mq->rlen)
		mq->roff = mq->rlen = 0;
	for (;;) {
		if (mq->rcap - mq->rlen < READ_CHUNK / 4) {
			if (mq->roff) {
				memmove(mq->rbuf, mq->rbuf + mq->roff, mq->rlen - mq->roff);
				mq->rlen -= mq->roff;
				mq->roff = 0;
			}
			if (mq->rcap - mq->rlen < READ_CHUNK / 4) {
				size_t cap = mq->rcap ? mq->rcap * 2 : READ_CHUNK;
				uint8_t *p = realloc(mq->rbuf, cap);
				if (!p) {
					errno = ENOMEM;
					return pi_sys("mq: input buffer");
				}
				mq->rbuf = p;
				mq->rcap = cap;
			}
		}
		ssize_t n = recv(mq->fd, mq->rbuf + mq->rlen, mq->rcap - mq->rlen, MSG_DONTWAIT);
		if (n > 0) {
			mq->rlen += (size_t)n;
			if (mq->rlen < mq->rcap)
				return 0;
			continue; /* the buffer filled: there may be more */
		}
		if (n == 0) {
			if (mq->goaway_rc)
				return pi_fail(mq->goaway_rc, "%s", mq->goaway_msg);
			return pi_fail(PODIPC_ERR_CLOSED, "mq: the broker closed the connection%s",
			               mq->rlen > mq->roff ? " in the middle of a frame" : "");
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return pi_sys("mq: read from the broker");
	}
}

static podipc_mq_consumer *find_consumer(podipc_mq *mq, uint32_t id)
{
	for (size_t i = 0; i < mq->nconsumers; i++)
		if (mq->consumers[i]->id == id)
			return mq->consumers[i];
	return NULL;
}

static int deliver(podipc_mq *mq, const pi_mq_frame *f)
{
	podipc_mq_consumer *c = find_consumer(mq, f->consumer);
	if (!c)
		return 0; /* cancelled here; the broker requeues it */
	if (c->count >= 2 * (size_t)(c->prefetch ? c->prefetch : c->want_prefetch))
		return pi_fail(PODIPC_ERR_PROTOCOL, "the broker exceeded consumer %u's prefetch of %u", c->id, c->prefetch);
	struct dlv *d = malloc(sizeof *d + f->len);
	if (!d) {
		errno = ENOMEM;
		return pi_sys("mq: allocating a delivery");
	}
	memcpy(d->body, f->data, f->len);
	d->next = NULL;
	d->d = (podipc_mq_delivery){
		.body = d->body,
		.len = f->len,
		.id = f->id,
		.enqueued_at_ns = f->enqueued_at,
		.deliveries = f->deliveries,
		.priority = f->priority,
		.tag = f->tag,
		.connection = mq->gen,
	};
	if (c->tail)
		c->tail->next = d;
	else
		c->head = d;
	c->tail = d;
	c->count++;
	return 0;
}

/* answered handles an ERROR for r: the request may be kept for another try. */
static void answer_error(podipc_mq *mq, struct req *r, uint16_t code, const pi_mq_frame *f)
{
	bool resendable = mq->reconnect; /* re-attachments too: their queue may not be declared yet */
	if (resendable && code == PI_MQ_CODE_SHUTTING_DOWN) {
		r->sent = false; /* sent again on the next connection */
		return;
	}
	if (resendable && mq->declare_wait_ns > 0 && code == PI_MQ_CODE_UNKNOWN_QUEUE && mq->resumed_at &&
	    now_ns() - mq->resumed_at < mq->declare_wait_ns) {
		r->sent = false;
		r->retry_at = now_ns() + RETRY_DELAY_NS;
		mq->retries++;
		return;
	}
	char msg[200];
	snprintf(msg, sizeof msg, "mq broker: %s: %.*s", pi_mq_code_name(code), (int)f->len, (const char *)f->data);
	complete(mq, r, pi_mq_code_error(code), msg);
}

static int handle(podipc_mq *mq, const pi_mq_frame *f)
{
	struct req *r;
	switch (f->type) {
	case PI_MQ_SEND_OK:
		if ((r = lookup(mq, f->req))) {
			r->id = f->id;
			complete(mq, r, 0, NULL);
		}
		break;
	case PI_MQ_CONSUME_OK:
		if ((r = lookup(mq, f->req))) {
			r->mode = f->mode;
			r->prefetch = f->prefetch;
			complete(mq, r, 0, NULL);
		}
		break;
	case PI_MQ_CANCEL_OK:
		break; /* cancels are sent with request id 0 */
	case PI_MQ_PONG:
		if (f->id <= UINT32_MAX && (r = lookup(mq, (uint32_t)f->id)))
			complete(mq, r, 0, NULL);
		break;
	case PI_MQ_ERROR:
		if ((r = lookup(mq, f->req)))
			answer_error(mq, r, f->code, f);
		break;
	case PI_MQ_DELIVER:
		return deliver(mq, f);
	case PI_MQ_CONSUMER_CLOSED: {
		podipc_mq_consumer *c = find_consumer(mq, f->consumer);
		if (c) {
			char msg[200];
			snprintf(msg, sizeof msg, "mq broker: %s: %.*s", pi_mq_code_name(f->code), (int)f->len,
			         (const char *)f->data);
			c->attached = false;
			finish_consumer(c, pi_mq_code_error(f->code), msg);
		}
		break;
	}
	case PI_MQ_GOAWAY:
		mq->goaway_rc = pi_mq_code_error(f->code);
		snprintf(mq->goaway_msg, sizeof mq->goaway_msg, "mq broker: going away: %s: %.*s",
		         pi_mq_code_name(f->code), (int)f->len, (const char *)f->data);
		break;
	}
	return 0;
}

/* process handles every whole frame in rbuf and returns how many, or the
 * error that ends the connection. */
static int process(podipc_mq *mq)
{
	int any = 0;
	for (;;) {
		pi_mq_frame f;
		size_t used, need;
		int k = pi_mq_decode(mq->rbuf + mq->roff, mq->rlen - mq->roff, mq->limits.max_frame, &f, &used, &need);
		if (k < 0)
			return k;
		if (k == 0)
			break;
		mq->roff += used;
		any++;
		int rc = handle(mq, &f);
		if (rc)
			return rc;
		if (mq->state != ST_CONNECTED)
			break;
	}
	if (mq->roff == mq->rlen) {
		mq->roff = mq->rlen = 0;
		if (mq->rcap > (1u << 20)) { /* do not pin a large frame's buffer to an idle connection */
			free(mq->rbuf);
			mq->rbuf = NULL;
			mq->rcap = 0;
		}
	}
	if (any) {
		pthread_cond_broadcast(&mq->cond);
		kick(mq);
	}
	return any;
}

/* ---- reconnection ------------------------------------------------------ */

static int cmp_seq(const void *a, const void *b)
{
	uint64_t x = (*(struct req *const *)a)->seq, y = (*(struct req *const *)b)->seq;
	return x < y ? -1 : x > y;
}

/* drop_queued frees c's queued deliveries; stale: count them as dropped. */
static void drop_queued(podipc_mq *mq, podipc_mq_consumer *c, bool stale)
{
	while (c->head) {
		struct dlv *d = c->head;
		c->head = d->next;
		free(d);
		if (stale)
			mq->stats.stale_dropped++;
	}
	c->tail = NULL;
	c->count = 0;
}

/* resume makes fd the connection: it sends again, in their order, the
 * requests left unanswered and re-attaches the consumers. */
static void resume(podipc_mq *mq, int fd, const pi_mq_welcome *w)
{
	mq->fd = fd;
	mq->limits = *w;
	mq->state = ST_CONNECTED;
	mq->resumed_at = now_ns();
	mq->stats.reconnects++;
	struct req **pending = malloc((mq->nreqs + 1) * sizeof *pending);
	size_t n = 0;
	for (uint32_t i = 0; pending && i < mq->nreqs; i++) {
		struct req *r = mq->reqs[i];
		if (r && r->state == R_PENDING && !r->retry_at)
			pending[n++] = r;
	}
	if (pending)
		qsort(pending, n, sizeof *pending, cmp_seq);
	for (size_t i = 0; i < n; i++) {
		struct req *r = pending[i];
		if (r->kind == K_REATTACH) {
			put_req(mq, r);
			continue;
		}
		if (r->kind == K_SEND && r->deadline != FOREVER && r->deadline <= mq->resumed_at) {
			complete(mq, r, PODIPC_ERR_TIMEOUT, "mq: the send's timeout passed while the client was reconnecting");
			continue;
		}
		put_req(mq, r);
		mq->stats.resent++;
	}
	free(pending);
	for (size_t i = 0; i < mq->nconsumers; i++) {
		podipc_mq_consumer *c = mq->consumers[i];
		if (!c->attached || c->closed_rc)
			continue;
		c->attached = false; /* until the new CONSUME_OK */
		uint32_t prefetch = c->want_prefetch;
		if (c->auto_ack) /* at-most-once deliveries are not redelivered: they stay, and take room */
			prefetch = c->count >= prefetch ? 1 : prefetch - (uint32_t)c->count;
		else
			drop_queued(mq, c, true);
		if (prefetch > w->max_prefetch)
			prefetch = w->max_prefetch;
		struct req *r;
		if (new_req(mq, K_REATTACH, &r) == 0) {
			r->consumer = c;
			r->want_prefetch = prefetch;
			r->qlen = c->qlen;
			memcpy(r->queue, c->queue, c->qlen);
			put_req(mq, r);
		}
	}
	flush(mq);
	pthread_cond_broadcast(&mq->cond);
}

/* ---- driving ------------------------------------------------------------ */

static void send_retries(podipc_mq *mq, int64_t now, int64_t *next)
{
	for (uint32_t i = 0; mq->retries && i < mq->nreqs; i++) {
		struct req *r = mq->reqs[i];
		if (!r || r->state != R_PENDING || !r->retry_at)
			continue;
		if (r->retry_at > now) {
			if (r->retry_at < *next)
				*next = r->retry_at;
			continue;
		}
		r->retry_at = 0;
		mq->retries--;
		if (r->kind == K_SEND && r->deadline != FOREVER && r->deadline <= now) {
			complete(mq, r, PODIPC_ERR_TIMEOUT, "mq: the send's timeout passed while its queue was being declared");
			continue;
		}
		put_req(mq, r);
	}
	flush(mq);
}

/* drive makes progress on the connection for a caller waiting for some
 * condition, with mq->mu held: it handles what arrived, waits for input
 * or for another thread that does, or reconnects. It returns 0 when the
 * caller should look at its condition again, PODIPC_ERR_TIMEOUT when
 * deadline passed, or the reason the connection is closed. */
static int drive(podipc_mq *mq, int64_t deadline)
{
	if (mq->state == ST_CLOSED)
		return pi_fail(mq->closed_rc, "%s", mq->closed_msg);
	int64_t now = now_ns();
	bool expired = now >= deadline;
	int64_t wake = deadline;
	if (mq->state == ST_CONNECTED) {
		if (mq->retries)
			send_retries(mq, now, &wake);
		if (mq->state != ST_CONNECTED)
			return 0;
		if (mq->polling && !expired) {
			wait_cond(mq, wake);
			return 0;
		}
		if (mq->rlen > mq->roff) {
			int n = process(mq);
			if (n < 0) {
				lost(mq, n);
				return 0;
			}
			if (n > 0)
				return 0;
		}
		if (expired) {
			/* the "try" form still takes what the socket holds */
			int n = read_some(mq); /* reads are under the lock: fine while another thread polls */
			if (n == 0)
				n = process(mq);
			if (n < 0) {
				lost(mq, n);
				return 0;
			}
			return n > 0 ? 0 : pi_fail(PODIPC_ERR_TIMEOUT, "mq: timed out waiting for the broker");
		}
		int fd = mq->fd;
		uint64_t gen = mq->gen;
		mq->polling = true;
		pthread_mutex_unlock(&mq->mu);
		struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = mq->kick_fd, .events = POLLIN}};
		int k = poll(pfd, 2, poll_ms(wake));
		int err = errno;
		pthread_mutex_lock(&mq->mu);
		mq->polling = false;
		if (k > 0 && pfd[1].revents) {
			uint64_t v;
			(void)!read(mq->kick_fd, &v, sizeof v);
		}
		if (mq->stale_fd >= 0) {
			close(mq->stale_fd);
			mq->stale_fd = -1;
		}
		pthread_cond_broadcast(&mq->cond); /* another waiter may take over polling */
		if (mq->gen != gen || mq->state != ST_CONNECTED)
			return 0;
		if (k < 0 && err != EINTR) {
			errno = err;
			lost(mq, pi_sys("mq: poll"));
			return 0;
		}
		if (k <= 0 || !pfd[0].revents)
			return 0;
		int n = read_some(mq);
		if (n == 0)
			n = process(mq);
		if (n < 0)
			lost(mq, n);
		return 0;
	}
	if (expired)
		return pi_fail(PODIPC_ERR_TIMEOUT, "mq: timed out waiting for the broker to come back");
	/* disconnected */
	if (mq->dialing || mq->polling) {
		wait_cond(mq, wake);
		return 0;
	}
	if (now < mq->next_dial_at) {
		if (mq->next_dial_at < wake)
			wake = mq->next_dial_at;
		wait_cond(mq, wake); /* woken early by a state change, which is fine */
		return 0;
	}
	if (now >= mq->give_up_at) {
		char msg[256];
		snprintf(msg, sizeof msg, "mq: no broker at %s for %lld ms (lost: %.160s)", mq->path,
		         (long long)(mq->window_ns / NS_PER_MS), mq->closed_msg);
		terminate(mq, PODIPC_ERR_CLOSED, msg);
		return pi_fail(PODIPC_ERR_CLOSED, "%s", msg);
	}
	int64_t per = mq->connect_timeout_ns;
	if (mq->give_up_at - now < per)
		per = mq->give_up_at - now;
	mq->dialing = true;
	char path[sizeof mq->path];
	memcpy(path, mq->path, sizeof path);
	bool check = mq->check_uid;
	uint32_t uid = mq->broker_uid;
	pthread_mutex_unlock(&mq->mu);
	int fd = -1;
	pi_mq_welcome w;
	int rc = dial(path, check, uid, per, &fd, &w);
	pthread_mutex_lock(&mq->mu);
	mq->dialing = false;
	pthread_cond_broadcast(&mq->cond);
	if (mq->state != ST_DISCONNECTED) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	if (rc == 0) {
		resume(mq, fd, &w);
		return 0;
	}
	int64_t b = mq->backoff_ns;
	mq->next_dial_at = now_ns() + b / 2 + (int64_t)jitter(mq, (uint32_t)(b / 2 / 1000 + 1)) * 1000;
	mq->backoff_ns = 2 * b > mq->max_backoff_ns ? mq->max_backoff_ns : 2 * b;
	return 0;
}

/* ---- API ---------------------------------------------------------------- */

static int64_t ms_or(int v, int def) { return (int64_t)(v > 0 ? v : def) * NS_PER_MS; }

int podipc_mq_connect(const char *path, const podipc_mq_options *opts, podipc_mq **out)
{
	podipc_mq_options o = {0};
	if (opts)
		o = *opts;
	char buf[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];
	if (!path || !*path) {
		const char *s = getenv("PODIPC_MQ_SOCKET");
		const char *dir = getenv("PODIPC_DIR");
		if (s && *s)
			path = s;
		else if (dir && *dir) {
			snprintf(buf, sizeof buf, "%s/mq.sock", dir);
			path = buf;
		} else
			return pi_fail(PODIPC_ERR_INVALID, "mq: no broker socket: pass a path, or set PODIPC_MQ_SOCKET or PODIPC_DIR");
	}
	if (strlen(path) >= sizeof(((podipc_mq *)0)->path))
		return pi_fail(PODIPC_ERR_INVALID, "mq: socket path %s is too long", path);
	bool check = false;
	uint32_t uid = 0;
	switch (o.uid_check) {
	case PODIPC_MQ_UID_FROM_ENV: {
		const char *v = getenv("PODIPC_BROKER_UID");
		if (v && *v) {
			char *end;
			errno = 0;
			unsigned long u = strtoul(v, &end, 10);
			if (errno || *end || v[0] == '-' || u > 0x7FFFFFFFul)
				return pi_fail(PODIPC_ERR_INVALID, "mq: PODIPC_BROKER_UID=%s is not a UID", v);
			check = true;
			uid = (uint32_t)u;
		}
		break;
	}
	case PODIPC_MQ_UID_CHECK:
		check = true;
		uid = o.broker_uid;
		break;
	case PODIPC_MQ_UID_NONE:
		break;
	default:
		return pi_fail(PODIPC_ERR_INVALID, "mq: uid_check %d", (int)o.uid_check);
	}
	if (o.reconnect_window_ms < 0 || o.reconnect_min_backoff_ms < 0 || o.reconnect_max_backoff_ms < 0 ||
	    o.connect_timeout_ms < 0 || o.write_timeout_ms < 0 || o.declare_wait_ms < -1)
		return pi_fail(PODIPC_ERR_INVALID, "mq: negative option");
	int64_t min_b = ms_or(o.reconnect_min_backoff_ms, 50), max_b = ms_or(o.reconnect_max_backoff_ms, 2000);
	if (max_b < min_b)
		return pi_fail(PODIPC_ERR_INVALID, "mq: reconnect backoff %d to %d ms", o.reconnect_min_backoff_ms,
		               o.reconnect_max_backoff_ms);
	int64_t connect_timeout = ms_or(o.connect_timeout_ms, 5000);
	int fd;
	pi_mq_welcome w;
	int rc = dial(path, check, uid, connect_timeout, &fd, &w);
	if (rc)
		return rc;
	podipc_mq *mq = calloc(1, sizeof *mq);
	if (!mq) {
		close(fd);
		return pi_fail(PODIPC_ERR_SYSTEM, "mq: out of memory");
	}
	mq->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (mq->kick_fd < 0) {
		rc = pi_sys("mq: eventfd");
		close(fd);
		free(mq);
		return rc;
	}
	pthread_mutex_init(&mq->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&mq->cond, &ca);
	pthread_condattr_destroy(&ca);
	strcpy(mq->path, path);
	mq->check_uid = check;
	mq->broker_uid = uid;
	mq->reconnect = !o.no_reconnect;
	mq->window_ns = ms_or(o.reconnect_window_ms, 60000);
	mq->min_backoff_ns = min_b;
	mq->max_backoff_ns = max_b;
	mq->declare_wait_ns = o.declare_wait_ms < 0 ? 0 : ms_or(o.declare_wait_ms, 5000);
	mq->connect_timeout_ns = connect_timeout;
	mq->write_timeout_ns = ms_or(o.write_timeout_ms, 30000);
	mq->fd = fd;
	mq->stale_fd = -1;
	mq->limits = w;
	mq->state = ST_CONNECTED;
	mq->rng = (uint64_t)now_ns() ^ (uint64_t)getpid() << 32;
	*out = mq;
	return 0;
}

void podipc_mq_close(podipc_mq *mq)
{
	if (!mq)
		return;
	pthread_mutex_lock(&mq->mu);
	if (mq->state == ST_CONNECTED)
		flush(mq);
	if (mq->fd >= 0)
		close(mq->fd);
	if (mq->stale_fd >= 0)
		close(mq->stale_fd);
	close(mq->kick_fd);
	for (size_t i = 0; i < mq->nconsumers; i++) {
		podipc_mq_consumer *c = mq->consumers[i];
		drop_queued(mq, c, false);
		free(c->lent);
		free(c);
	}
	free(mq->consumers);
	for (uint32_t i = 0; i < mq->nreqs; i++) {
		if (mq->reqs[i])
			free(mq->reqs[i]->body);
		free(mq->reqs[i]);
	}
	free(mq->reqs);
	free(mq->free_slots);
	free(mq->rbuf);
	pi_buf_free(&mq->out);
	pthread_mutex_unlock(&mq->mu);
	pthread_mutex_destroy(&mq->mu);
	pthread_cond_destroy(&mq->cond);
	free(mq);
}

void podipc_mq_get_limits(podipc_mq *mq, podipc_mq_limits *out)
{
	pthread_mutex_lock(&mq->mu);
	*out = (podipc_mq_limits){
		.version = mq->limits.version,
		.max_frame = mq->limits.max_frame,
		.max_message = mq->limits.max_message,
		.max_pending_sends = mq->limits.max_pending_sends,
		.max_pending_bytes = mq->limits.max_pending_bytes,
		.max_prefetch = mq->limits.max_prefetch,
		.max_consumers = mq->limits.max_consumers,
	};
	pthread_mutex_unlock(&mq->mu);
}

void podipc_mq_get_stats(podipc_mq *mq, podipc_mq_stats *out)
{
	pthread_mutex_lock(&mq->mu);
	*out = mq->stats;
	out->connected = mq->state == ST_CONNECTED;
	out->pending_sends = mq->pending_sends;
	out->pending_bytes = mq->pending_bytes;
	out->unclaimed = mq->unclaimed;
	pthread_mutex_unlock(&mq->mu);
}

static int check_queue(const char *queue, size_t *qlen)
{
	*qlen = queue ? strlen(queue) : 0;
	if (*qlen == 0 || *qlen > PI_MQ_MAX_QUEUE)
		return pi_fail(PODIPC_ERR_INVALID, "mq: queue name of %zu bytes (1 to 255)", *qlen);
	return 0;
}

/* start_send checks a send, waits for room in the window and submits it. */
static int start_send(podipc_mq *mq, const char *queue, const void *body, size_t len,
                      const podipc_mq_send_options *opts, int64_t deadline, bool async, struct req **out)
{
	podipc_mq_send_options so = {0};
	if (opts)
		so = *opts;
	size_t qlen;
	int rc = check_queue(queue, &qlen);
	if (rc)
		return rc;
	if (so.priority > PI_MQ_MAX_PRIORITY)
		return pi_fail(PODIPC_ERR_INVALID, "mq: priority %u > %u", so.priority, PI_MQ_MAX_PRIORITY);
	if (len && !body)
		return pi_fail(PODIPC_ERR_INVALID, "mq: NULL body of %zu bytes", len);
	if (len > mq->limits.max_message)
		return pi_fail(PODIPC_ERR_TOO_LARGE, "mq: %zu bytes, broker limit %u", len, mq->limits.max_message);
	for (;;) {
		if (mq->state == ST_CLOSED)
			return pi_fail(mq->closed_rc, "%s", mq->closed_msg);
		if (mq->pending_sends == 0 || (mq->pending_sends < mq->limits.max_pending_sends &&
		                               mq->pending_bytes + len <= mq->limits.max_pending_bytes))
			break;
		if ((rc = drive(mq, deadline)))
			return rc;
	}
	struct req *r;
	if ((rc = new_req(mq, K_SEND, &r)))
		return rc;
	if (len && !(r->body = malloc(len))) {
		free_req(mq, r);
		return pi_fail(PODIPC_ERR_SYSTEM, "mq: out of memory for a %zu-byte send", len);
	}
	if (len)
		memcpy(r->body, body, len);
	r->len = len;
	r->priority = so.priority;
	r->ttl_ms = so.ttl_ms;
	r->block_ms = so.block_timeout_ms;
	r->async = async;
	r->qlen = (uint8_t)qlen;
	memcpy(r->queue, queue, qlen);
	if (so.block_timeout_ms)
		r->deadline = now_ns() + (int64_t)so.block_timeout_ms * NS_PER_MS;
	else if (!async)
		r->deadline = deadline;
	mq->pending_sends++;
	mq->pending_bytes += len;
	if (async)
		mq->async_open++;
	if ((rc = submit(mq, r))) { /* out of memory: undo */
		mq->pending_sends--;
		mq->pending_bytes -= len;
		if (async)
			mq->async_open--;
		free_req(mq, r);
		return rc;
	}
	*out = r;
	return 0;
}

/* await waits for r's answer, takes its outcome and frees it; on timeout
 * it abandons r (its answer is dropped when it comes). */
static int await(podipc_mq *mq, struct req *r, int64_t deadline)
{
	while (r->state == R_PENDING) {
		int rc = drive(mq, deadline);
		if (rc && r->state == R_PENDING) {
			r->abandoned = true;
			return rc;
		}
	}
	int rc = r->rc;
	if (rc)
		pi_fail(rc, "%s", r->msg);
	return rc;
}

int podipc_mq_send(podipc_mq *mq, const char *queue, const void *body, size_t len,
                   const podipc_mq_send_options *opts, int64_t timeout_ns, uint64_t *id)
{
	int64_t deadline = deadline_of(timeout_ns);
	pthread_mutex_lock(&mq->mu);
	struct req *r;
	int rc = start_send(mq, queue, body, len, opts, deadline, false, &r);
	if (rc == 0) {
		rc = await(mq, r, deadline);
		if (r->state == R_DONE) {
			if (rc == 0 && id)
				*id = r->id;
			free_req(mq, r);
		}
	}
	pthread_mutex_unlock(&mq->mu);
	return rc;
}

int podipc_mq_send_async(podipc_mq *mq, const char *queue, const void *body, size_t len,
                         const podipc_mq_send_options *opts, int64_t timeout_ns, uint64_t *ticket)
{
	pthread_mutex_lock(&mq->mu);
	struct req *r;
	int rc = start_send(mq, queue, body, len, opts, deadline_of(timeout_ns), true, &r);
	if (rc == 0 && ticket)
		*ticket = r->seq;
	pthread_mutex_unlock(&mq->mu);
	return rc;
}

int podipc_mq_confirm_next(podipc_mq *mq, int64_t timeout_ns, podipc_mq_confirm *out)
{
	int64_t deadline = deadline_of(timeout_ns);
	int rc = 0;
	pthread_mutex_lock(&mq->mu);
	while (!mq->done_head) {
		if (mq->async_open == 0) {
			rc = pi_fail(PODIPC_ERR_EMPTY, "mq: no asynchronous send is waiting for its confirmation");
			goto out;
		}
		if ((rc = drive(mq, deadline)) && !mq->done_head)
			goto out; /* (closing the connection resolves every send) */
	}
	rc = 0;
	struct req *r = mq->done_head;
	mq->done_head = r->next_done;
	if (!mq->done_head)
		mq->done_tail = NULL;
	mq->unclaimed--;
	mq->async_open--;
	*out = (podipc_mq_confirm){.ticket = r->seq, .result = r->rc, .id = r->id};
	if (r->rc)
		pi_fail(r->rc, "%s", r->msg);
	free_req(mq, r);
out:
	pthread_mutex_unlock(&mq->mu);
	return rc;
}

int podipc_mq_ping(podipc_mq *mq, int64_t timeout_ns)
{
	int64_t deadline = deadline_of(timeout_ns);
	pthread_mutex_lock(&mq->mu);
	struct req *r;
	int rc = mq->state == ST_CLOSED ? pi_fail(mq->closed_rc, "%s", mq->closed_msg) : new_req(mq, K_PING, &r);
	if (rc == 0 && (rc = submit(mq, r)) != 0)
		free_req(mq, r);
	else if (rc == 0) {
		rc = await(mq, r, deadline);
		if (r->state == R_DONE)
			free_req(mq, r);
	}
	pthread_mutex_unlock(&mq->mu);
	return rc;
}

static void remove_consumer(podipc_mq *mq, podipc_mq_consumer *c)
{
	for (size_t i = 0; i < mq->nconsumers; i++)
		if (mq->consumers[i] == c) {
			mq->consumers[i] = mq->consumers[--mq->nconsumers];
			break;
		}
	/* Its CONSUME in flight, if any, is forgotten: a CANCEL follows it. */
	for (uint32_t i = 0; i < mq->nreqs; i++) {
		struct req *r = mq->reqs[i];
		if (r && r->state == R_PENDING && r->consumer == c) {
			if (r->retry_at) {
				r->retry_at = 0;
				mq->retries--;
			}
			free_req(mq, r);
		}
	}
}

/* cancel detaches c at the broker (no answer awaited) and forgets it. */
static void cancel(podipc_mq *mq, podipc_mq_consumer *c)
{
	remove_consumer(mq, c);
	if (mq->state == ST_CONNECTED && pi_mq_put_cancel(&mq->out, 0, c->id) == 0)
		flush(mq);
	drop_queued(mq, c, false);
	free(c->lent);
	free(c);
}

int podipc_mq_consume(podipc_mq *mq, const char *queue, uint32_t prefetch, int64_t timeout_ns, podipc_mq_consumer **out)
{
	int64_t deadline = deadline_of(timeout_ns);
	size_t qlen;
	int rc = check_queue(queue, &qlen);
	if (rc)
		return rc;
	if (prefetch == 0)
		return pi_fail(PODIPC_ERR_INVALID, "mq: prefetch 0");
	pthread_mutex_lock(&mq->mu);
	podipc_mq_consumer *c = NULL;
	struct req *r = NULL;
	if (mq->state == ST_CLOSED) {
		rc = pi_fail(mq->closed_rc, "%s", mq->closed_msg);
		goto out;
	}
	if (mq->nconsumers >= mq->limits.max_consumers) {
		rc = pi_fail(PODIPC_ERR_TOO_MANY_CONSUMERS, "mq: the connection has %zu consumers, the broker's limit",
		             mq->nconsumers);
		goto out;
	}
	if (mq->nconsumers == mq->consumers_cap) {
		size_t n = mq->consumers_cap ? 2 * mq->consumers_cap : 8;
		podipc_mq_consumer **t = realloc(mq->consumers, n * sizeof *t);
		if (!t) {
			rc = pi_fail(PODIPC_ERR_SYSTEM, "mq: out of memory");
			goto out;
		}
		mq->consumers = t;
		mq->consumers_cap = n;
	}
	if (!(c = calloc(1, sizeof *c))) {
		rc = pi_fail(PODIPC_ERR_SYSTEM, "mq: out of memory");
		goto out;
	}
	if (prefetch > mq->limits.max_prefetch)
		prefetch = mq->limits.max_prefetch;
	do
		c->id = ++mq->next_consumer;
	while (c->id == 0 || find_consumer(mq, c->id));
	c->mq = mq;
	c->want_prefetch = prefetch;
	c->qlen = (uint8_t)qlen;
	memcpy(c->queue, queue, qlen);
	if ((rc = new_req(mq, K_CONSUME, &r))) {
		free(c);
		goto out;
	}
	mq->consumers[mq->nconsumers++] = c;
	r->consumer = c;
	r->want_prefetch = prefetch;
	r->qlen = (uint8_t)qlen;
	memcpy(r->queue, queue, qlen);
	if ((rc = submit(mq, r)) == 0)
		rc = await(mq, r, deadline);
	if (r->state != R_PENDING)
		free_req(mq, r); /* else cancel() forgets it */
	if (rc) {
		char msg[sizeof ((struct req *)0)->msg];
		snprintf(msg, sizeof msg, "%s", podipc_last_error());
		cancel(mq, c);
		pi_fail(rc, "mq: consume %s: %s", queue, msg);
		goto out;
	}
	*out = c;
out:
	pthread_mutex_unlock(&mq->mu);
	return rc;
}

uint32_t podipc_mq_consumer_prefetch(podipc_mq_consumer *c)
{
	pthread_mutex_lock(&c->mq->mu);
	uint32_t p = c->prefetch;
	pthread_mutex_unlock(&c->mq->mu);
	return p;
}

int podipc_mq_consumer_auto_ack(podipc_mq_consumer *c)
{
	pthread_mutex_lock(&c->mq->mu);
	int a = c->auto_ack;
	pthread_mutex_unlock(&c->mq->mu);
	return a;
}

int podipc_mq_receive(podipc_mq_consumer *c, int64_t timeout_ns, podipc_mq_delivery *d)
{
	podipc_mq *mq = c->mq;
	int64_t deadline = deadline_of(timeout_ns);
	int rc = 0;
	pthread_mutex_lock(&mq->mu);
	free(c->lent);
	c->lent = NULL;
	for (;;) {
		struct dlv *x = c->head;
		if (x) {
			c->head = x->next;
			if (!c->head)
				c->tail = NULL;
			c->count--;
			if (!c->auto_ack && x->d.connection != mq->gen) {
				free(x);
				mq->stats.stale_dropped++;
				continue;
			}
			if (c->auto_ack && mq->state == ST_CONNECTED && x->d.connection == mq->gen &&
			    pi_mq_put_credit(&mq->out, c->id, 1) == 0)
				flush(mq);
			*d = x->d;
			c->lent = x;
			break;
		}
		if (c->closed_rc) {
			rc = pi_fail(c->closed_rc, "%s", c->closed_msg);
			break;
		}
		if ((rc = drive(mq, deadline)))
			break;
	}
	pthread_mutex_unlock(&mq->mu);
	return rc;
}

static int settle(podipc_mq_consumer *c, const podipc_mq_delivery *d, uint8_t type, int requeue)
{
	podipc_mq *mq = c->mq;
	int rc = 0;
	pthread_mutex_lock(&mq->mu);
	if (c->lent && c->lent->d.tag == d->tag && c->lent->d.connection == d->connection) {
		free(c->lent);
		c->lent = NULL;
	}
	if (c->auto_ack)
		goto out;
	if (c->closed_rc) {
		rc = pi_fail(c->closed_rc, "%s", c->closed_msg);
		goto out;
	}
	if (d->connection != mq->gen || mq->state != ST_CONNECTED) {
		rc = pi_fail(PODIPC_ERR_STALE, "mq: message %llu of queue %.*s came on a connection lost since; the "
		             "broker redelivers it", (unsigned long long)d->id, (int)c->qlen, c->queue);
		goto out;
	}
	if ((rc = pi_mq_put_settle(&mq->out, type, c->id, requeue, d->tag)) == 0 && (rc = flush(mq)) != 0)
		rc = pi_fail(PODIPC_ERR_STALE, "mq: the connection was lost before the %s of message %llu was written; "
		             "the broker redelivers it", type == PI_MQ_ACK ? "ACK" : "NACK", (unsigned long long)d->id);
out:
	pthread_mutex_unlock(&mq->mu);
	return rc;
}

int podipc_mq_ack(podipc_mq_consumer *c, const podipc_mq_delivery *d) { return settle(c, d, PI_MQ_ACK, 0); }

int podipc_mq_nack(podipc_mq_consumer *c, const podipc_mq_delivery *d, int requeue)
{
	return settle(c, d, PI_MQ_NACK, requeue);
}

int podipc_mq_consumer_close(podipc_mq_consumer *c)
{
	if (!c)
		return 0;
	podipc_mq *mq = c->mq;
	pthread_mutex_lock(&mq->mu);
	cancel(mq, c);
	pthread_mutex_unlock(&mq->mu);
	return 0;
}
