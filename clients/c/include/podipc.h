/*
 * podipc.h: the podipc client library for C and C++ (libpodipc).
 *
 * libpodipc speaks podipc's shared-memory channel format natively
 * (docs/shm-layout.md, layout version 1): no Go runtime, no helper
 * process, and no system call on the data path unless a peer sleeps. It
 * is also a client of the message-queue broker (docs/mq-protocol.md); see
 * "mq" below, whose conventions differ in places (timeouts in ms).
 *
 * Conventions
 *   - Every function that can fail returns an int: PODIPC_OK (0) or a
 *     negative podipc_error. podipc_strerror() names it, and
 *     podipc_last_error() gives the calling thread's detailed message for
 *     the last failure (which header field is wrong, which system call
 *     failed and why). PODIPC_ERR_SYSTEM leaves errno set.
 *   - Timeouts are in nanoseconds: a negative timeout waits for ever,
 *     0 never waits (the "try" form), a positive one waits at most that
 *     long and then returns PODIPC_ERR_TIMEOUT.
 *   - Objects are opaque and created only by the *_open / *_create
 *     functions, which set *out on success and leave it untouched on
 *     failure.
 *
 * Ownership
 *   - A podipc_channel is a process-local handle on a channel file. Every
 *     producer, consumer and subscriber opened from it holds a reference:
 *     podipc_channel_close() may come before or after closing them, and the
 *     mapping goes when the last of them is closed.
 *   - A reserved slot (podipc_producer_reserve) or a borrowed message
 *     (podipc_consumer_borrow, podipc_subscriber_borrow) points into the
 *     shared mapping; the pointer is valid until the matching commit,
 *     abort or release, and must not be used afterwards. A peer holds at
 *     most one of them at a time.
 *
 * Thread-safety
 *   - podipc_channel: every function may be called from any thread
 *     concurrently (stats, reaping, opening peers, closing).
 *   - podipc_producer, podipc_consumer, podipc_subscriber: one thread at a
 *     time per object (no internal locking on the data path); different
 *     objects may be used by different threads concurrently. Open one peer
 *     per thread.
 *
 * Liveness
 *   Each peer keeps an open file description that holds an OFD lock for
 *   its entry in the peer table, so the kernel tells every other process
 *   when it dies. A message a dead consumer borrowed is redelivered; a slot
 *   a dead producer reserved is skipped. Forking does not copy a peer's
 *   registration to the child: do not use a parent's peers in a child.
 */
#ifndef PODIPC_H
#define PODIPC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PODIPC_API __attribute__((visibility("default")))
#else
#define PODIPC_API
#endif

#define PODIPC_VERSION_MAJOR 0
#define PODIPC_VERSION_MINOR 1
#define PODIPC_VERSION_PATCH 0

/* Timeouts are in nanoseconds; these make them readable. */
#define PODIPC_MS INT64_C(1000000)
#define PODIPC_SECOND INT64_C(1000000000)

/* The channel layout version this library reads and writes. */
#define PODIPC_SHM_LAYOUT_VERSION 1

/* Error codes, all negative. The classes match pkg/shm's sentinel errors
 * (-1 to -19) and pkg/mq's (-20 on; PODIPC_ERR_VERSION, _TIMEOUT,
 * _TOO_LARGE and _INVALID serve both). Codes are never renumbered. */
typedef enum podipc_error {
	PODIPC_OK = 0,
	PODIPC_ERR_SYSTEM = -1,          /* a system call failed; errno is set */
	PODIPC_ERR_INVALID = -2,         /* an argument or option is invalid */
	PODIPC_ERR_NOT_CHANNEL = -3,     /* the file is not a channel (magic) */
	PODIPC_ERR_VERSION = -4,         /* the file has a layout version this library does not read */
	PODIPC_ERR_CORRUPT = -5,         /* the header or ring holds values no channel can hold */
	PODIPC_ERR_TRUNCATED = -6,       /* the file is shorter than its header says (a kind of corrupt) */
	PODIPC_ERR_EXISTS = -7,          /* create: a file is at the path already */
	PODIPC_ERR_NO_SPACE = -8,        /* create: the file system has no room for the channel */
	PODIPC_ERR_FULL = -9,            /* no free slot, and the call does not wait */
	PODIPC_ERR_EMPTY = -10,          /* no message, and the call does not wait */
	PODIPC_ERR_TIMEOUT = -11,        /* the timeout passed */
	PODIPC_ERR_TOO_LARGE = -12,      /* a message does not fit the slot or the buffer */
	PODIPC_ERR_WRONG_MODE = -13,     /* the operation does not exist in this channel's mode */
	PODIPC_ERR_PRODUCER_EXISTS = -14,/* a broadcast channel already has a live producer */
	PODIPC_ERR_PEER_TABLE_FULL = -15,/* every peer entry is held by a live peer */
	PODIPC_ERR_OUTSTANDING = -16,    /* a reservation or borrowed message is still held */
	PODIPC_ERR_NOT_HELD = -17,       /* commit, abort or release with nothing held */
	PODIPC_ERR_LAPPED = -18,         /* a subscriber was lapped; see podipc_subscriber_lost */
	PODIPC_ERR_NOT_REGULAR = -19,    /* the path is a FIFO, a device, a directory or a symlink */
	/* Message queues (see "mq" below). Broker error codes map as the table
	 * in docs/mq-protocol.md says: 1 UNKNOWN_QUEUE, 2 and 5 QUEUE_FULL, 3
	 * TOO_LARGE, 4 TOO_MANY_PENDING, 6, 11 and 14 PROTOCOL, 7 SHUTDOWN, 8
	 * TOO_MANY_CONSUMERS, 9 QUEUE_DELETED, 10 BROKER_INTERNAL, 12 VERSION,
	 * 13 TOO_MANY_CONNECTIONS; any other code is BROKER_INTERNAL. */
	PODIPC_ERR_CLOSED = -20,         /* the connection or consumer is closed (or the broker was lost for good) */
	PODIPC_ERR_PROTOCOL = -21,       /* a peer broke the wire protocol: a hostile or corrupt frame */
	PODIPC_ERR_IMPOSTOR = -22,       /* the broker socket is served by a process of another UID */
	PODIPC_ERR_UNKNOWN_QUEUE = -23,  /* the broker has no queue of that name */
	PODIPC_ERR_QUEUE_FULL = -24,     /* the queue is full (Reject policy, or Block past the send's timeout) */
	PODIPC_ERR_TOO_MANY_PENDING = -25,     /* the connection's window of unconfirmed sends is full */
	PODIPC_ERR_TOO_MANY_CONSUMERS = -26,   /* the connection has as many consumers as the broker allows */
	PODIPC_ERR_TOO_MANY_CONNECTIONS = -27, /* the broker refused the connection */
	PODIPC_ERR_QUEUE_DELETED = -28,  /* the queue was removed from the configuration */
	PODIPC_ERR_SHUTDOWN = -29,       /* the broker is shutting down */
	PODIPC_ERR_BROKER_INTERNAL = -30,/* the broker failed (e.g. writing its journal) */
	PODIPC_ERR_STALE = -31           /* the delivery came on a connection lost since; the broker redelivers it */
} podipc_error;

/* A static string naming err (never NULL, also for unknown values). */
PODIPC_API const char *podipc_strerror(int err);

/* The calling thread's message for its last failed call: a static string
 * when nothing failed yet. Valid until the thread's next libpodipc call. */
PODIPC_API const char *podipc_last_error(void);

/* ---------------------------------------------------------------- shm -- */

typedef enum podipc_mode {
	PODIPC_MODE_QUEUE = 1,     /* each message to exactly one consumer */
	PODIPC_MODE_BROADCAST = 2  /* every message to every subscriber */
} podipc_mode;

typedef enum podipc_overflow {
	PODIPC_OVERFLOW_BLOCK = 0,     /* a producer waits for room */
	PODIPC_OVERFLOW_FAIL = 1,      /* a producer gets PODIPC_ERR_FULL */
	PODIPC_OVERFLOW_OVERWRITE = 2  /* broadcast only: slow subscribers are lapped */
} podipc_overflow;

/* The shape of a channel, fixed at creation and stored in its header.
 * Zero fields take the defaults below (mode: queue). */
typedef struct podipc_channel_options {
	podipc_mode mode;
	podipc_overflow overflow;
	uint32_t slot_size;  /* largest message in bytes, <= 64 MiB; default 4096 */
	uint32_t slot_count; /* a power of two in [2, 2^24]; default 1024 */
	uint32_t max_peers;  /* peer table size, <= 4096; default 64 */
} podipc_channel_options;

#define PODIPC_DEFAULT_SLOT_SIZE 4096u
#define PODIPC_DEFAULT_SLOT_COUNT 1024u
#define PODIPC_DEFAULT_MAX_PEERS 64u

typedef enum podipc_wait {
	PODIPC_WAIT_HYBRID = 0, /* spin about 20 us, then sleep on a futex (default) */
	PODIPC_WAIT_SPIN = 1,   /* busy-poll: lowest latency, one CPU per waiter */
	PODIPC_WAIT_BLOCK = 2   /* sleep at once: no CPU while idle */
} podipc_wait;

/* How a peer waits. NULL where a podipc_peer_options pointer is taken means
 * all defaults; zero fields take the defaults too. */
typedef struct podipc_peer_options {
	podipc_wait wait;
	int64_t spin_ns;           /* how long PODIPC_WAIT_HYBRID spins; default 20 000 */
	int64_t liveness_check_ns; /* how often a blocked peer checks the peer in its way is alive; default 50 ms */
} podipc_peer_options;

/* A snapshot of a channel's counters and peers, as pkg/shm's Stats. */
typedef struct podipc_stats {
	podipc_mode mode;
	podipc_overflow overflow;
	uint32_t capacity;
	uint32_t slot_size;
	uint64_t depth;
	uint64_t sent, received, lost, redelivered, abandoned, reaped;
	uint64_t repaired; /* Queue slots whose state word was foreign (garbage), reset and skipped */
	uint32_t producers, consumers, subscribers, dead_peers;
} podipc_stats;

typedef struct podipc_channel podipc_channel;
typedef struct podipc_producer podipc_producer;
typedef struct podipc_consumer podipc_consumer;
typedef struct podipc_subscriber podipc_subscriber;

/* Creates a channel file at path (which must not exist) with file mode
 * `perm` (0 means 0666; the umask does not apply) and opens it. The file
 * appears fully initialised or not at all. Channels are normally created
 * by the podipc sidecar; this is for tests and standalone use. */
PODIPC_API int podipc_channel_create(const char *path, const podipc_channel_options *opts, unsigned perm,
                          podipc_channel **out);

/* Opens an existing channel file, validating its header first (§1.1 of
 * docs/shm-layout.md): PODIPC_ERR_TRUNCATED, _NOT_CHANNEL, _VERSION or
 * _CORRUPT, with the field named by podipc_last_error(). */
PODIPC_API int podipc_channel_open(const char *path, podipc_channel **out);

/* Drops the caller's reference; the mapping goes with the last peer.
 * NULL is a no-op. */
PODIPC_API void podipc_channel_close(podipc_channel *ch);

/* The channel's shape as stored in its header. */
PODIPC_API void podipc_channel_get_options(const podipc_channel *ch, podipc_channel_options *out);

PODIPC_API int podipc_channel_stats(podipc_channel *ch, podipc_stats *out);

/* Recovers every registered peer whose process is gone (what the sidecar
 * does periodically); *recovered (if not NULL) is how many. */
PODIPC_API int podipc_channel_reap_dead_peers(podipc_channel *ch, unsigned *recovered);

/* Producers. In broadcast mode there is one live producer per channel
 * across all processes (PODIPC_ERR_PRODUCER_EXISTS). */
PODIPC_API int podipc_producer_open(podipc_channel *ch, const podipc_peer_options *opts, podipc_producer **out);

/* Claims the next slot: *buf (slot_size bytes) is written in place, then
 * committed or aborted. Full ring: waits up to timeout_ns under
 * PODIPC_OVERFLOW_BLOCK, PODIPC_ERR_FULL under PODIPC_OVERFLOW_FAIL or a
 * zero timeout; never waits under PODIPC_OVERFLOW_OVERWRITE. */
PODIPC_API int podipc_producer_reserve(podipc_producer *p, int64_t timeout_ns, void **buf, size_t *cap);
/* Publishes the first len bytes of the reserved slot as one message. */
PODIPC_API int podipc_producer_commit(podipc_producer *p, size_t len);
/* Gives the reserved slot up unsent (consumers skip it). */
PODIPC_API int podipc_producer_abort(podipc_producer *p);
/* Copies msg into the next slot and commits it (reserve + commit). */
PODIPC_API int podipc_producer_send(podipc_producer *p, const void *msg, size_t len, int64_t timeout_ns);
/* Aborts an outstanding reservation and unregisters; frees p. NULL: no-op. */
PODIPC_API int podipc_producer_close(podipc_producer *p);

/* Consumers (queue mode; PODIPC_ERR_WRONG_MODE otherwise). */
PODIPC_API int podipc_consumer_open(podipc_channel *ch, const podipc_peer_options *opts, podipc_consumer **out);
/* Waits for the next message and lends it in place until release. If the
 * process dies before release, the message goes to another consumer. */
PODIPC_API int podipc_consumer_borrow(podipc_consumer *c, int64_t timeout_ns, const void **data, size_t *len);
PODIPC_API int podipc_consumer_release(podipc_consumer *c);
/* Copies the next message into buf. A buffer too small gives
 * PODIPC_ERR_TOO_LARGE with *len set to the message's size; the message is
 * kept for the next recv or borrow. */
PODIPC_API int podipc_consumer_recv(podipc_consumer *c, void *buf, size_t cap, size_t *len, int64_t timeout_ns);
/* Hands a borrowed message back for redelivery and unregisters; frees c. */
PODIPC_API int podipc_consumer_close(podipc_consumer *c);

/* Subscribers (broadcast mode). A subscriber sees every message committed
 * after it subscribed, in order. PODIPC_ERR_LAPPED: the producer
 * overwrote messages it had not read (PODIPC_OVERFLOW_OVERWRITE);
 * podipc_subscriber_lost() says how many, and the next call goes on with
 * the oldest message still in the ring. */
PODIPC_API int podipc_subscriber_open(podipc_channel *ch, const podipc_peer_options *opts, podipc_subscriber **out);
PODIPC_API int podipc_subscriber_borrow(podipc_subscriber *s, int64_t timeout_ns, const void **data, size_t *len);
/* Under PODIPC_OVERFLOW_OVERWRITE, release returns PODIPC_ERR_LAPPED if the
 * slot was overwritten while borrowed: discard what was read. */
PODIPC_API int podipc_subscriber_release(podipc_subscriber *s);
PODIPC_API int podipc_subscriber_recv(podipc_subscriber *s, void *buf, size_t cap, size_t *len, int64_t timeout_ns);
/* Messages lost in the last PODIPC_ERR_LAPPED. */
PODIPC_API uint64_t podipc_subscriber_lost(const podipc_subscriber *s);
PODIPC_API int podipc_subscriber_close(podipc_subscriber *s);

/* ----------------------------------------------------------------- mq -- */
/*
 * Message queues: a client of the podipc broker (the sidecar) speaking
 * docs/mq-protocol.md, version 1, natively over its Unix socket.
 *
 * Conventions
 *   - A call's timeout is in nanoseconds, as for shm: negative waits for
 *     ever, 0 does not wait (PODIPC_ERR_TIMEOUT at once if the answer is not
 *     there), a positive one waits at most that long (PODIPC_ERR_TIMEOUT);
 *     the socket is polled with millisecond resolution, rounded up.
 *     PODIPC_MS and PODIPC_SECOND help: podipc_mq_receive(c, 5 * PODIPC_SECOND, &d).
 *     Durations in the option structs below are in milliseconds, as on
 *     the wire.
 *   - A broker ERROR reaches the caller as its podipc_error (the mapping is
 *     in the enum's comment) and podipc_last_error() holds the broker's
 *     code name and text: "queue full: mq broker: queue full: ...".
 *
 * Objects, ownership and thread-safety
 *   - podipc_mq, a connection, is protected by a mutex: every podipc_mq_*
 *     function taking a podipc_mq may be called from any number of threads
 *     at once (sends, confirmations, pings, consume, stats), and so may the
 *     consumer functions for *different* consumers. Whichever thread waits
 *     reads the socket for all of them (there is no background thread): a
 *     confirmation or delivery another thread waits for is handed to it.
 *     podipc_mq_close() must be the last call on the connection and on its
 *     consumers, made when no other thread uses them; it frees the
 *     consumers still open. A connection is not usable in a forked child.
 *   - podipc_mq_consumer: one thread at a time per consumer (receive, ack,
 *     nack, close); different consumers may be used by different threads.
 *   - A podipc_mq_delivery's body points into a buffer the library owns,
 *     and the application reads it in place (the library copies a body
 *     once, out of its socket buffer into the delivery's as it decodes the
 *     frame; never to the application). It is valid until the delivery is
 *     acknowledged or rejected, or until the next podipc_mq_receive() or
 *     podipc_mq_consumer_close() on the same consumer, whichever is first.
 *     The other fields are plain values: a delivery may be acknowledged
 *     after the next receive (only the body pointer is gone).
 *
 * Reconnection
 *   By default a connection rides through a broker restart as the Go
 *   client does: once its socket is lost it dials again (backoff 50 ms
 *   doubling to 2 s, with jitter, for a window of 60 s), sends again, in
 *   their order, every request the old broker had not answered (so a send
 *   is confirmed at least once), re-attaches every consumer, and retries
 *   for 5 s a request answered "unknown queue" just after reconnecting.
 *   Meanwhile calls wait as if the broker were slow. Deliveries of the
 *   lost connection that are still queued are dropped (the broker
 *   redelivers them); settling one already received gives
 *   PODIPC_ERR_STALE. After the window, or with no_reconnect at the first
 *   loss, the connection is closed: every call fails with the reason
 *   (PODIPC_ERR_CLOSED, or the GOAWAY's code, e.g. PODIPC_ERR_SHUTDOWN). A
 *   protocol violation by the broker is never retried. There is no
 *   background thread: the loss is noticed, and the broker dialled again,
 *   by whichever thread waits on the connection (or makes the next call on
 *   an idle one); the window counts from when the loss is noticed.
 */

typedef struct podipc_mq podipc_mq;
typedef struct podipc_mq_consumer podipc_mq_consumer;

typedef enum podipc_mq_uid_check {
	PODIPC_MQ_UID_FROM_ENV = 0, /* check $PODIPC_BROKER_UID if it is set (default) */
	PODIPC_MQ_UID_CHECK = 1,    /* check broker_uid */
	PODIPC_MQ_UID_NONE = 2      /* check nothing */
} podipc_mq_uid_check;

/* Connection options; NULL or zero fields take the defaults. */
typedef struct podipc_mq_options {
	/* The broker's socket is checked with SO_PEERCRED on every connection:
	 * a process of another UID serving it is PODIPC_ERR_IMPOSTOR. */
	podipc_mq_uid_check uid_check;
	uint32_t broker_uid;             /* with PODIPC_MQ_UID_CHECK */
	int no_reconnect;                /* non-zero: close at the first loss of the broker */
	int reconnect_window_ms;         /* default 60 000 */
	int reconnect_min_backoff_ms;    /* default 50 */
	int reconnect_max_backoff_ms;    /* default 2 000 */
	int declare_wait_ms;             /* default 5 000; -1: do not retry "unknown queue" */
	int connect_timeout_ms;          /* one dial and handshake; default 5 000 */
	int write_timeout_ms;            /* a broker that does not read for this long is lost; default 30 000 */
} podipc_mq_options;

/* The limits the broker announced in WELCOME (docs/mq-protocol.md). The
 * client honours all of them: frames over max_frame are refused, sends
 * over max_message fail with PODIPC_ERR_TOO_LARGE before they are sent,
 * sends wait for room in the max_pending_sends / max_pending_bytes window,
 * prefetch is capped at max_prefetch and consumers at max_consumers
 * (PODIPC_ERR_TOO_MANY_CONSUMERS). */
typedef struct podipc_mq_limits {
	uint16_t version;
	uint32_t max_frame, max_message, max_pending_sends, max_pending_bytes, max_prefetch, max_consumers;
} podipc_mq_limits;

typedef struct podipc_mq_send_options {
	uint8_t priority;          /* 0 (lowest, default) ... 9 */
	uint32_t ttl_ms;           /* time to live from arrival at the broker; 0: the queue's default */
	/* How long the broker may hold the send while the queue is full (Block
	 * policy), after which it fails with PODIPC_ERR_QUEUE_FULL. 0: for
	 * podipc_mq_send the call's timeout; for podipc_mq_send_async as long
	 * as the connection lives. */
	uint32_t block_timeout_ms;
} podipc_mq_send_options;

/* The outcome of an asynchronous send (podipc_mq_confirm_next). */
typedef struct podipc_mq_confirm {
	uint64_t ticket;  /* what podipc_mq_send_async returned */
	int result;       /* PODIPC_OK: queued (and journaled, for a persistent queue); else the error */
	uint64_t id;      /* the message's id in its queue, when result is PODIPC_OK */
} podipc_mq_confirm;

/* A message handed to a consumer (see the lifetime of body above). */
typedef struct podipc_mq_delivery {
	const void *body;
	size_t len;
	uint64_t id;            /* the message's id in its queue */
	int64_t enqueued_at_ns; /* Unix time, ns, when the broker queued it */
	uint32_t deliveries;    /* 1 on the first delivery, +1 per redelivery */
	uint8_t priority;
	uint64_t tag;           /* opaque: the broker's delivery tag */
	uint64_t connection;    /* opaque: the connection the delivery came on */
} podipc_mq_delivery;

/* Connection counters, as pkg/mq's ClientStats, and the send window. */
typedef struct podipc_mq_stats {
	int connected;
	uint64_t disconnects, reconnects, resent, stale_dropped;
	uint32_t pending_sends;     /* sends not yet confirmed */
	uint64_t pending_bytes;     /* their body bytes */
	uint32_t unclaimed;         /* async outcomes not yet taken with podipc_mq_confirm_next */
} podipc_mq_stats;

/* Connects to the broker at path (NULL: $PODIPC_MQ_SOCKET, else
 * $PODIPC_DIR/mq.sock) and performs the handshake. Fails at once if no
 * broker answers (PODIPC_ERR_SYSTEM with errno, e.g. ENOENT or
 * ECONNREFUSED), with PODIPC_ERR_IMPOSTOR if the UID check fails, or with
 * the refusal's code (PODIPC_ERR_VERSION, _TOO_MANY_CONNECTIONS,
 * _SHUTDOWN); reconnection applies to a connection once made. */
PODIPC_API int podipc_mq_connect(const char *path, const podipc_mq_options *opts, podipc_mq **out);

/* Closes the connection and frees it and its remaining consumers. Sends
 * not yet confirmed are abandoned (the broker may or may not queue them);
 * unacknowledged deliveries are redelivered by the broker. NULL: no-op. */
PODIPC_API void podipc_mq_close(podipc_mq *mq);

/* The limits of the current (or last) connection. */
PODIPC_API void podipc_mq_get_limits(podipc_mq *mq, podipc_mq_limits *out);
PODIPC_API void podipc_mq_get_stats(podipc_mq *mq, podipc_mq_stats *out);

/* Sends len bytes of body to queue and waits for the broker's confirmation
 * (SEND_OK) at most timeout_ns, including the wait for room in the send
 * window; *id (if not NULL) is the message's id. opts may be NULL. On
 * PODIPC_ERR_TIMEOUT the message may or may not have been queued. */
PODIPC_API int podipc_mq_send(podipc_mq *mq, const char *queue, const void *body, size_t len,
                              const podipc_mq_send_options *opts, int64_t timeout_ns, uint64_t *id);

/* Sends without waiting for the confirmation, so that many sends are in
 * flight (pipelined). Waits at most timeout_ns only for room in the send
 * window (PODIPC_ERR_TIMEOUT). The body is copied: the caller may reuse it
 * at once. *ticket identifies the send; its outcome must be taken with
 * podipc_mq_confirm_next (each outcome is kept until it is taken). */
PODIPC_API int podipc_mq_send_async(podipc_mq *mq, const char *queue, const void *body, size_t len,
                                    const podipc_mq_send_options *opts, int64_t timeout_ns, uint64_t *ticket);

/* Takes the next outcome of an asynchronous send, in the order the broker
 * answered them, waiting at most timeout_ns. PODIPC_OK with *out set (its
 * result may be an error); PODIPC_ERR_EMPTY if no asynchronous send is
 * unanswered or unclaimed; PODIPC_ERR_TIMEOUT. */
PODIPC_API int podipc_mq_confirm_next(podipc_mq *mq, int64_t timeout_ns, podipc_mq_confirm *out);

/* A round trip to the broker (PING/PONG). Because the broker handles a
 * connection's frames in order, it also means every earlier ack and nack
 * of this connection has been applied. */
PODIPC_API int podipc_mq_ping(podipc_mq *mq, int64_t timeout_ns);

/* Attaches a consumer to queue with prefetch (>= 1; capped at the broker's
 * max_prefetch) and waits for the broker's CONSUME_OK. */
PODIPC_API int podipc_mq_consume(podipc_mq *mq, const char *queue, uint32_t prefetch, int64_t timeout_ns,
                                 podipc_mq_consumer **out);

/* The prefetch the broker granted. */
PODIPC_API uint32_t podipc_mq_consumer_prefetch(podipc_mq_consumer *c);
/* Non-zero if the queue delivers at most once: ack and nack do nothing
 * (and the client returns credit as messages are received). */
PODIPC_API int podipc_mq_consumer_auto_ack(podipc_mq_consumer *c);

/* Waits at most timeout_ns for the next delivery. After the broker ended
 * the consumer (PODIPC_ERR_QUEUE_DELETED) or the connection closed, the
 * deliveries already received come first, then the reason. */
PODIPC_API int podipc_mq_receive(podipc_mq_consumer *c, int64_t timeout_ns, podipc_mq_delivery *d);

/* Acknowledges / rejects a delivery of c (nack: requeue non-zero puts it
 * back for redelivery, zero dead-letters it). Pipelined: they return once
 * the frame is written to the socket (podipc_mq_ping waits until it is
 * applied). PODIPC_ERR_STALE if the delivery came on a connection lost
 * since (the broker redelivers it). */
PODIPC_API int podipc_mq_ack(podipc_mq_consumer *c, const podipc_mq_delivery *d);
PODIPC_API int podipc_mq_nack(podipc_mq_consumer *c, const podipc_mq_delivery *d, int requeue);

/* Detaches the consumer (CANCEL; the broker redelivers what it has not
 * acknowledged) and frees it. NULL: no-op. */
PODIPC_API int podipc_mq_consumer_close(podipc_mq_consumer *c);

#ifdef __cplusplus
}
#endif

#endif /* PODIPC_H */
