/*
 * podipc.h: the podipc client library for C and C++ (libpodipc).
 *
 * libpodipc speaks podipc's shared-memory channel format natively
 * (docs/shm-layout.md, layout version 1): no Go runtime, no helper
 * process, and no system call on the data path unless a peer sleeps.
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

/* The channel layout version this library reads and writes. */
#define PODIPC_SHM_LAYOUT_VERSION 1

/* Error codes, all negative. The classes match pkg/shm's sentinel errors. */
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
	PODIPC_ERR_NOT_REGULAR = -19     /* the path is a FIFO, a device, a directory or a symlink */
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

#ifdef __cplusplus
}
#endif

#endif /* PODIPC_H */
