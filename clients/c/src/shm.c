/*
 * Shared-memory channels: docs/shm-layout.md, layout version 1.
 *
 * Section numbers (§) refer to that document; each function here follows
 * the pseudo-code there and pkg/shm, the Go implementation, step by step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "podipc.h"
#include "internal.h"

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "the channel layout is defined for 64-bit little-endian machines (x86-64, arm64)"
#endif

/* ---- layout (§1) -------------------------------------------------------- */

#define MAGIC "PODIPCSH"
#define LINE_SIZE 128u
#define SLOT_ALIGN 64u
#define PAGE 4096u

#define OFF_TAIL 0x080u
#define OFF_HEAD 0x100u
#define OFF_DATA 0x180u
#define OFF_SPACE 0x200u
#define OFF_CONTROL 0x280u
#define OFF_RETIRED 0x300u
#define HEADER_BYTES 0x400u

#define CFG_MAGIC 0
#define CFG_VERSION 8
#define CFG_HEADER_BYTES 12
#define CFG_MODE 16
#define CFG_OVERFLOW 20
#define CFG_SLOT_SIZE 24
#define CFG_SLOT_STRIDE 28
#define CFG_SLOT_COUNT 32
#define CFG_MAX_PEERS 36
#define CFG_PEERS_OFF 40
#define CFG_SLOTS_OFF 48
#define CFG_FILE_SIZE 56
#define CFG_CREATED 64
#define CFG_CHECKSUM 72

#define CTL_REDELIVER_GEN 0
#define CTL_REDELIVER_SCANNED 8
#define CTL_PEER_HIGH_WATER 16
#define CTL_SUBSCRIBER_EPOCH 20
#define CTL_PRODUCER_LOCK 24

#define RET_SENT 0
#define RET_RECEIVED 8
#define RET_LOST 16
#define RET_REDELIVERED 24
#define RET_ABANDONED 32
#define RET_REAPED 40
#define RET_REPAIRED 48 /* foreign slot words reset (docs/shm-layout.md §2.5) */

#define PEER_BYTES 128u
#define PEER_STATE 0
#define PEER_ROLE 4
#define PEER_PID 8
#define PEER_GENERATION 12
#define PEER_STARTED 16
#define PEER_CURSOR 24
#define PEER_SENT 32
#define PEER_RECEIVED 40
#define PEER_LOST 48
#define PEER_REDELIVERED 56
#define PEER_ABANDONED 64

#define PEER_FREE 0u
#define PEER_ACTIVE 1u

#define ROLE_PRODUCER 1u
#define ROLE_CONSUMER 2u
#define ROLE_SUBSCRIBER 3u

#define SLOT_LEN 8
#define SLOT_HEADER 16u

#define MAX_SLOT_SIZE (64u << 20)
#define MAX_SLOT_COUNT (1u << 24)
#define MAX_PEERS 4096u
#define MAX_FILE_SIZE (1ull << 40)

/* Queue state word (§2.1): seq (48 bits) | state (4) | owner (12). */
#define ST_FREE 0u
#define ST_WRITING 1u
#define ST_FULL 2u
#define ST_READING 3u
#define ST_ABANDONED 4u
#define ST_REDELIVER 5u
#define SEQ_SHIFT 16
#define STATE_SHIFT 12
#define STATE_MASK 0xFull
#define OWNER_MASK 0xFFFull

#define NO_OWNER UINT32_MAX
#define MAX_CLAIM_ATTEMPTS (1 << 20)

static inline uint64_t pack(uint64_t pos, uint32_t state, uint32_t owner)
{
	return pos << SEQ_SHIFT | ((uint64_t)state & STATE_MASK) << STATE_SHIFT | ((uint64_t)owner & OWNER_MASK);
}
static inline uint32_t w_state(uint64_t w) { return (uint32_t)(w >> STATE_SHIFT) & STATE_MASK; }
static inline uint32_t w_owner(uint64_t w) { return (uint32_t)(w & OWNER_MASK); }
/* Signed distance from pos to the 48-bit sequence in w, modulo 2^48. */
static inline int64_t seqdiff(uint64_t w, uint64_t pos)
{
	return (int64_t)(((w >> SEQ_SHIFT) - pos) << 16) >> 16;
}
static inline uint64_t stamp_writing(uint64_t p) { return (p + 1) << 1 | 1; }
static inline uint64_t stamp_committed(uint64_t p) { return (p + 1) << 1; }

#if defined(__x86_64__)
#define cpu_relax() __builtin_ia32_pause()
#define store_store() __asm__ __volatile__("" ::: "memory")
#define load_load() __asm__ __volatile__("" ::: "memory")
#else
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#define store_store() __asm__ __volatile__("dmb ishst" ::: "memory")
#define load_load() __asm__ __volatile__("dmb ishld" ::: "memory")
#endif

typedef _Atomic uint64_t au64;
typedef _Atomic uint32_t au32;

/* Little-endian field access (the layout is little-endian; so are the
 * machines it is defined for, but spell the intent out). */
static inline uint32_t le32(const uint8_t *b) { uint32_t v; memcpy(&v, b, 4); return v; }
static inline uint64_t le64(const uint8_t *b) { uint64_t v; memcpy(&v, b, 8); return v; }
static inline void put32(uint8_t *b, uint32_t v) { memcpy(b, &v, 4); }
static inline void put64(uint8_t *b, uint64_t v) { memcpy(b, &v, 8); }

static inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

typedef struct geometry {
	uint32_t mode, overflow, slot_size, slot_stride, slot_count, max_peers;
	uint64_t peers_offset, slots_offset, file_size;
	int64_t created;
} geometry;

static geometry compute_geometry(uint32_t mode, uint32_t overflow, uint32_t slot_size, uint32_t slot_count,
                                 uint32_t max_peers)
{
	geometry g = {.mode = mode, .overflow = overflow, .slot_size = slot_size, .slot_count = slot_count,
	              .max_peers = max_peers};
	g.slot_stride = (uint32_t)align_up(SLOT_HEADER + (uint64_t)slot_size, SLOT_ALIGN);
	g.peers_offset = HEADER_BYTES;
	g.slots_offset = align_up(g.peers_offset + (uint64_t)max_peers * PEER_BYTES, PAGE);
	g.file_size = g.slots_offset + (uint64_t)slot_count * g.slot_stride;
	return g;
}

/* Range checks shared by create (PODIPC_ERR_INVALID) and open
 * (PODIPC_ERR_CORRUPT): *field names the offending field. */
static const char *validate_shape(uint32_t mode, uint32_t overflow, uint64_t slot_size, uint64_t slot_count,
                                  uint64_t max_peers, char *why, size_t whylen)
{
	if (mode != PODIPC_MODE_QUEUE && mode != PODIPC_MODE_BROADCAST) {
		snprintf(why, whylen, "unknown mode %u", mode);
		return "mode";
	}
	if (overflow > PODIPC_OVERFLOW_OVERWRITE) {
		snprintf(why, whylen, "unknown overflow policy %u", overflow);
		return "overflow";
	}
	if (overflow == PODIPC_OVERFLOW_OVERWRITE && mode != PODIPC_MODE_BROADCAST) {
		snprintf(why, whylen, "overflow overwrite is only valid in broadcast mode");
		return "overflow";
	}
	if (slot_size > MAX_SLOT_SIZE) {
		snprintf(why, whylen, "slot size %llu outside [0, %u]", (unsigned long long)slot_size, MAX_SLOT_SIZE);
		return "slotSize";
	}
	if (slot_count < 2 || slot_count > MAX_SLOT_COUNT || (slot_count & (slot_count - 1)) != 0) {
		snprintf(why, whylen, "slot count %llu is not a power of two in [2, %u]", (unsigned long long)slot_count,
		         MAX_SLOT_COUNT);
		return "slotCount";
	}
	if (max_peers < 1 || max_peers > MAX_PEERS) {
		snprintf(why, whylen, "max peers %llu outside [1, %u]", (unsigned long long)max_peers, MAX_PEERS);
		return "maxPeers";
	}
	geometry g = compute_geometry(mode, overflow, (uint32_t)slot_size, (uint32_t)slot_count, (uint32_t)max_peers);
	if (g.file_size > MAX_FILE_SIZE) {
		snprintf(why, whylen, "channel would need %llu bytes, limit %llu", (unsigned long long)g.file_size,
		         (unsigned long long)MAX_FILE_SIZE);
		return "fileSize";
	}
	return NULL;
}

static int header_err(int code, const char *field, const char *fmt, ...) PI_PRINTF(3, 4);
static int header_err(int code, const char *field, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	return pi_fail(code, "header field %s: %s", field, why);
}

/* §1.1 validation, in the document's order. b holds the first n bytes of a
 * file of file_size bytes. */
static int decode_config(const uint8_t *b, size_t n, uint64_t file_size, geometry *out)
{
	if (file_size < HEADER_BYTES || n < LINE_SIZE)
		return header_err(PODIPC_ERR_TRUNCATED, "size", "file is %llu bytes, smaller than the %u-byte header",
		                  (unsigned long long)file_size, HEADER_BYTES);
	if (memcmp(b + CFG_MAGIC, MAGIC, 8) != 0)
		return header_err(PODIPC_ERR_NOT_CHANNEL, "magic", "the file does not start with \"%s\"", MAGIC);
	uint32_t v = le32(b + CFG_VERSION);
	if (v != PODIPC_SHM_LAYOUT_VERSION)
		return header_err(PODIPC_ERR_VERSION, "version", "layout version %u, this library reads %u", v,
		                  PODIPC_SHM_LAYOUT_VERSION);
	uint32_t got = le32(b + CFG_CHECKSUM), want = pi_crc32c(b, CFG_CHECKSUM);
	if (got != want)
		return header_err(PODIPC_ERR_CORRUPT, "checksum", "header checksum %#08x, computed %#08x", got, want);
	uint32_t hb = le32(b + CFG_HEADER_BYTES);
	if (hb != HEADER_BYTES)
		return header_err(PODIPC_ERR_CORRUPT, "headerBytes", "%u, want %u", hb, HEADER_BYTES);
	uint32_t mode = le32(b + CFG_MODE), overflow = le32(b + CFG_OVERFLOW);
	uint32_t slot_size = le32(b + CFG_SLOT_SIZE), slot_count = le32(b + CFG_SLOT_COUNT);
	uint32_t max_peers = le32(b + CFG_MAX_PEERS);
	char why[160];
	const char *field = validate_shape(mode, overflow, slot_size, slot_count, max_peers, why, sizeof why);
	if (field)
		return header_err(PODIPC_ERR_CORRUPT, field, "%s", why);
	geometry w = compute_geometry(mode, overflow, slot_size, slot_count, max_peers);
	geometry g = w;
	g.slot_stride = le32(b + CFG_SLOT_STRIDE);
	g.peers_offset = le64(b + CFG_PEERS_OFF);
	g.slots_offset = le64(b + CFG_SLOTS_OFF);
	g.file_size = le64(b + CFG_FILE_SIZE);
	g.created = (int64_t)le64(b + CFG_CREATED);
	if (g.slot_stride != w.slot_stride)
		return header_err(PODIPC_ERR_CORRUPT, "slotStride", "%u, want %u for slot size %u", g.slot_stride,
		                  w.slot_stride, slot_size);
	if (g.peers_offset != w.peers_offset)
		return header_err(PODIPC_ERR_CORRUPT, "peersOffset", "%llu, want %llu",
		                  (unsigned long long)g.peers_offset, (unsigned long long)w.peers_offset);
	if (g.slots_offset != w.slots_offset)
		return header_err(PODIPC_ERR_CORRUPT, "slotsOffset", "%llu, want %llu",
		                  (unsigned long long)g.slots_offset, (unsigned long long)w.slots_offset);
	if (g.file_size != w.file_size)
		return header_err(PODIPC_ERR_CORRUPT, "fileSize", "header says %llu bytes, geometry needs %llu",
		                  (unsigned long long)g.file_size, (unsigned long long)w.file_size);
	if (file_size < g.file_size)
		return header_err(PODIPC_ERR_TRUNCATED, "size", "file is %llu bytes, header says %llu",
		                  (unsigned long long)file_size, (unsigned long long)g.file_size);
	if (file_size > g.file_size)
		return header_err(PODIPC_ERR_CORRUPT, "size", "file is %llu bytes, header says %llu",
		                  (unsigned long long)file_size, (unsigned long long)g.file_size);
	*out = g;
	return PODIPC_OK;
}

static void encode_config(uint8_t *b, const geometry *g)
{
	memcpy(b + CFG_MAGIC, MAGIC, 8);
	put32(b + CFG_VERSION, PODIPC_SHM_LAYOUT_VERSION);
	put32(b + CFG_HEADER_BYTES, HEADER_BYTES);
	put32(b + CFG_MODE, g->mode);
	put32(b + CFG_OVERFLOW, g->overflow);
	put32(b + CFG_SLOT_SIZE, g->slot_size);
	put32(b + CFG_SLOT_STRIDE, g->slot_stride);
	put32(b + CFG_SLOT_COUNT, g->slot_count);
	put32(b + CFG_MAX_PEERS, g->max_peers);
	put64(b + CFG_PEERS_OFF, g->peers_offset);
	put64(b + CFG_SLOTS_OFF, g->slots_offset);
	put64(b + CFG_FILE_SIZE, g->file_size);
	put64(b + CFG_CREATED, (uint64_t)g->created);
	put32(b + CFG_CHECKSUM, pi_crc32c(b, CFG_CHECKSUM));
}

/* ---- the channel handle ------------------------------------------------- */

struct podipc_channel {
	atomic_int refs;
	int fd; /* O_RDWR; its description takes peer locks during recovery */
	uint8_t *base;
	geometry geo;
	uint64_t mask;
	pthread_mutex_t recover_mu; /* one recovery at a time through fd's description */

	au64 *tail, *head;
	au32 *data_sig, *data_waiters, *space_sig, *space_waiters;
	au64 *redeliver_gen, *redeliver_scanned;
	au32 *peer_high_water, *subscriber_epoch;
};

static inline au64 *u64at(podipc_channel *c, uint64_t off) { return (au64 *)(c->base + off); }
static inline au32 *u32at(podipc_channel *c, uint64_t off) { return (au32 *)(c->base + off); }
static inline uint8_t *slot_at(podipc_channel *c, uint64_t pos)
{
	return c->base + c->geo.slots_offset + (pos & c->mask) * c->geo.slot_stride;
}
static inline au64 *slot_word(uint8_t *s) { return (au64 *)s; }
static inline uint32_t *slot_len(uint8_t *s) { return (uint32_t *)(s + SLOT_LEN); }
static inline uint8_t *slot_payload(uint8_t *s) { return s + SLOT_HEADER; }
static inline uint8_t *peer_entry(podipc_channel *c, uint32_t i) { return c->base + c->geo.peers_offset + (uint64_t)i * PEER_BYTES; }
static inline off_t peer_lock_offset(podipc_channel *c, uint32_t i) { return (off_t)(c->geo.peers_offset + (uint64_t)i * PEER_BYTES); }
static inline au32 *e32(uint8_t *e, unsigned off) { return (au32 *)(e + off); }
static inline au64 *e64(uint8_t *e, unsigned off) { return (au64 *)(e + off); }

/* Adds n to one of a peer's own counters. Only the entry's owner writes
 * them (docs/shm-layout.md §1.2), so a plain load and store does: no locked
 * read-modify-write on the data path, where the slot's compare-and-swap
 * already orders everything a reader of the counters needs. */
static inline void count(au64 *ctr, uint64_t n)
{
	atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + n, memory_order_relaxed);
}

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- futex (§6) and OFD locks (§4) ------------------------------------- */

static long futex_wait(au32 *addr, uint32_t val, int64_t timeout_ns)
{
	struct timespec ts, *tp = NULL;
	if (timeout_ns >= 0) {
		ts.tv_sec = (time_t)(timeout_ns / 1000000000);
		ts.tv_nsec = (long)(timeout_ns % 1000000000);
		tp = &ts;
	}
	/* FUTEX_WAIT without FUTEX_PRIVATE_FLAG: keyed on the file, so
	 * processes mapping it at different addresses meet. */
	return syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, tp, NULL, 0);
}

static void futex_signal(au32 *addr)
{
	atomic_fetch_add(addr, 1);
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Wakes the waiters on sig if its waiter count says someone sleeps: the
 * only system call on the data path, and only when a peer sleeps. */
static inline void signal_waiters(au32 *sig, au32 *waiters)
{
	if (atomic_load(waiters) != 0)
		futex_signal(sig);
}

/* 0: locked; 1: held by another description; <0: error. */
static int ofd_trylock(int fd, off_t off)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if (errno == EAGAIN || errno == EACCES)
		return 1;
	return pi_sys("fcntl(F_OFD_SETLK)");
}

static void ofd_unlock(int fd, off_t off)
{
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
	(void)fcntl(fd, F_OFD_SETLK, &fl);
}

/* 1: some other description holds the byte (the peer is alive); 0: not; <0: error. */
static int ofd_held(int fd, off_t off)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return pi_sys("fcntl(F_OFD_GETLK)");
	return fl.l_type != F_UNLCK;
}

/* ---- create, open, close ----------------------------------------------- */

static podipc_channel *new_channel(int fd, uint8_t *base, const geometry *g)
{
	podipc_channel *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	atomic_init(&c->refs, 1);
	c->fd = fd;
	c->base = base;
	c->geo = *g;
	c->mask = (uint64_t)g->slot_count - 1;
	pthread_mutex_init(&c->recover_mu, NULL);
	c->tail = u64at(c, OFF_TAIL);
	c->head = u64at(c, OFF_HEAD);
	c->data_sig = u32at(c, OFF_DATA);
	c->data_waiters = u32at(c, OFF_DATA + 4);
	c->space_sig = u32at(c, OFF_SPACE);
	c->space_waiters = u32at(c, OFF_SPACE + 4);
	c->redeliver_gen = u64at(c, OFF_CONTROL + CTL_REDELIVER_GEN);
	c->redeliver_scanned = u64at(c, OFF_CONTROL + CTL_REDELIVER_SCANNED);
	c->peer_high_water = u32at(c, OFF_CONTROL + CTL_PEER_HIGH_WATER);
	c->subscriber_epoch = u32at(c, OFF_CONTROL + CTL_SUBSCRIBER_EPOCH);
	return c;
}

static void channel_ref(podipc_channel *c) { atomic_fetch_add(&c->refs, 1); }

static void channel_unref(podipc_channel *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	munmap(c->base, c->geo.file_size);
	close(c->fd);
	pthread_mutex_destroy(&c->recover_mu);
	free(c);
}

void podipc_channel_close(podipc_channel *ch)
{
	if (ch)
		channel_unref(ch);
}

/* Allocates every block (§7): a sparse file would SIGBUS on a full tmpfs. */
static int allocate(int fd, uint64_t size)
{
	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -1;
	static const uint8_t zeros[65536];
	for (uint64_t off = 0; off < size;) {
		size_t n = size - off < sizeof zeros ? (size_t)(size - off) : sizeof zeros;
		ssize_t w = pwrite(fd, zeros, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (uint64_t)w;
	}
	return 0;
}

int podipc_channel_create(const char *path, const podipc_channel_options *opts, unsigned perm,
                          podipc_channel **out)
{
	if (!path || !out)
		return pi_fail(PODIPC_ERR_INVALID, "create: path and out must not be NULL");
	podipc_channel_options o = opts ? *opts : (podipc_channel_options){0};
	if (o.mode == 0)
		o.mode = PODIPC_MODE_QUEUE;
	if (o.slot_size == 0)
		o.slot_size = PODIPC_DEFAULT_SLOT_SIZE;
	if (o.slot_count == 0)
		o.slot_count = PODIPC_DEFAULT_SLOT_COUNT;
	if (o.max_peers == 0)
		o.max_peers = PODIPC_DEFAULT_MAX_PEERS;
	if (perm == 0)
		perm = 0666;
	char why[160];
	const char *field = validate_shape((uint32_t)o.mode, (uint32_t)o.overflow, o.slot_size, o.slot_count,
	                                   o.max_peers, why, sizeof why);
	if (field)
		return pi_fail(PODIPC_ERR_INVALID, "create %s: %s: %s", path, field, why);
	geometry g = compute_geometry((uint32_t)o.mode, (uint32_t)o.overflow, o.slot_size, o.slot_count, o.max_peers);
	g.created = now_ns(CLOCK_REALTIME);

	char *dcopy = strdup(path), *bcopy = strdup(path);
	char *tmp = NULL;
	if (!dcopy || !bcopy || asprintf(&tmp, "%s/.%s.creating-XXXXXX", dirname(dcopy), basename(bcopy)) < 0) {
		free(dcopy);
		free(bcopy);
		errno = ENOMEM;
		return pi_sys("create: allocate a name");
	}
	free(dcopy);
	free(bcopy);
	int rc;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = pi_sys("create: make the temporary file");
		free(tmp);
		return rc;
	}
	uint8_t *base = MAP_FAILED;
	if (fchmod(fd, perm & 07777) != 0) {
		rc = pi_sys("create: fchmod");
		goto fail;
	}
	if (allocate(fd, g.file_size) != 0) {
		if (errno == ENOSPC || errno == EDQUOT)
			rc = pi_fail(PODIPC_ERR_NO_SPACE, "create %s: the channel file needs %llu bytes: %s", path,
			             (unsigned long long)g.file_size, strerror(errno));
		else
			rc = pi_sys("create: allocate the file");
		goto fail;
	}
	base = mmap(NULL, g.file_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (base == MAP_FAILED) {
		rc = pi_sys("create: mmap");
		goto fail;
	}
	encode_config(base, &g);
	if (g.mode == PODIPC_MODE_QUEUE)
		for (uint64_t k = 0; k < g.slot_count; k++)
			atomic_store((au64 *)(base + g.slots_offset + k * g.slot_stride), pack(k, ST_FREE, 0));
	if (link(tmp, path) != 0) {
		rc = errno == EEXIST ? pi_fail(PODIPC_ERR_EXISTS, "create %s", path) : pi_sys("create: link");
		goto fail;
	}
	unlink(tmp);
	free(tmp);
	podipc_channel *c = new_channel(fd, base, &g);
	if (!c) {
		munmap(base, g.file_size);
		close(fd);
		errno = ENOMEM;
		return pi_sys("create: allocate the handle");
	}
	*out = c;
	return PODIPC_OK;
fail:
	if (base != MAP_FAILED)
		munmap(base, g.file_size);
	close(fd);
	unlink(tmp);
	free(tmp);
	return rc;
}

int podipc_channel_open(const char *path, podipc_channel **out)
{
	if (!path || !out)
		return pi_fail(PODIPC_ERR_INVALID, "open: path and out must not be NULL");
	/* O_NOFOLLOW and O_NONBLOCK: a symlink or a FIFO planted where a
	 * channel was must neither redirect nor hang us. */
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			return pi_fail(PODIPC_ERR_NOT_REGULAR, "open %s: it is a symbolic link", path);
		return pi_sys("open");
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int rc = pi_sys("fstat");
		close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return pi_fail(PODIPC_ERR_NOT_REGULAR, "open %s: file type %#o", path, st.st_mode & S_IFMT);
	}
	uint8_t hdr[LINE_SIZE];
	ssize_t n = pread(fd, hdr, sizeof hdr, 0);
	if (n < 0) {
		int rc = pi_sys("read the header");
		close(fd);
		return rc;
	}
	geometry g;
	int rc = decode_config(hdr, (size_t)n, (uint64_t)st.st_size, &g);
	if (rc != 0) {
		close(fd);
		return rc;
	}
	uint8_t *base = mmap(NULL, g.file_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (base == MAP_FAILED) {
		rc = pi_sys("mmap");
		close(fd);
		return rc;
	}
	podipc_channel *c = new_channel(fd, base, &g);
	if (!c) {
		munmap(base, g.file_size);
		close(fd);
		errno = ENOMEM;
		return pi_sys("open: allocate the handle");
	}
	*out = c;
	return PODIPC_OK;
}

void podipc_channel_get_options(const podipc_channel *ch, podipc_channel_options *out)
{
	*out = (podipc_channel_options){
		.mode = (podipc_mode)ch->geo.mode,
		.overflow = (podipc_overflow)ch->geo.overflow,
		.slot_size = ch->geo.slot_size,
		.slot_count = ch->geo.slot_count,
		.max_peers = ch->geo.max_peers,
	};
}

/* ---- peers (§4) and recovery (§5) -------------------------------------- */

typedef struct peer {
	podipc_channel *ch;
	uint32_t idx, role;
	int lock_fd; /* a description of its own: the kernel drops its locks when the process dies */
	uint8_t *entry;
	podipc_wait wait;
	int64_t spin_ns, live_ns;
	au64 *sent, *received, *lost, *redelivered, *abandoned;
} peer;

/* Folds entry i's counters into the retired line, then frees it. */
static void retire(podipc_channel *c, uint32_t i)
{
	static const unsigned from[] = {PEER_SENT, PEER_RECEIVED, PEER_LOST, PEER_REDELIVERED, PEER_ABANDONED};
	static const unsigned to[] = {RET_SENT, RET_RECEIVED, RET_LOST, RET_REDELIVERED, RET_ABANDONED};
	uint8_t *e = peer_entry(c, i);
	for (size_t k = 0; k < 5; k++) {
		uint64_t v = atomic_load(e64(e, from[k]));
		if (v)
			atomic_fetch_add(u64at(c, OFF_RETIRED + to[k]), v);
	}
	atomic_store(e32(e, PEER_STATE), PEER_FREE);
	for (size_t k = 0; k < 5; k++)
		atomic_store(e64(e, from[k]), 0);
	if (c->geo.mode == PODIPC_MODE_BROADCAST)
		signal_waiters(c->space_sig, c->space_waiters); /* a departed subscriber may be what a producer waits for */
}

/* Undoes what dead peer i left in the ring; the caller holds i's lock byte.
 * Idempotent (§5). */
static void recover_locked(podipc_channel *c, uint32_t i)
{
	uint64_t abandoned = 0, redeliver = 0;
	if (c->geo.mode == PODIPC_MODE_QUEUE) {
		for (uint64_t s = 0; s < c->geo.slot_count; s++) {
			au64 *word = slot_word(c->base + c->geo.slots_offset + s * c->geo.slot_stride);
			for (;;) {
				uint64_t w = atomic_load(word);
				if (w_owner(w) != i)
					break;
				uint32_t st = w_state(w), next = 0;
				if (st == ST_WRITING)
					next = ST_ABANDONED;
				else if (st == ST_READING)
					next = ST_REDELIVER;
				else if (st == ST_REDELIVER)
					redeliver++;
				if (next == 0)
					break;
				uint64_t nw = (w & ~(STATE_MASK << STATE_SHIFT)) | (uint64_t)next << STATE_SHIFT;
				if (atomic_compare_exchange_strong(word, &w, nw)) {
					if (next == ST_ABANDONED)
						abandoned++;
					else
						redeliver++;
					break;
				}
			}
		}
		if (abandoned)
			atomic_fetch_add(u64at(c, OFF_RETIRED + RET_ABANDONED), abandoned);
		if (redeliver)
			atomic_fetch_add(c->redeliver_gen, 1);
	}
	retire(c, i);
	atomic_fetch_add(u64at(c, OFF_RETIRED + RET_REAPED), 1);
	signal_waiters(c->data_sig, c->data_waiters);
	signal_waiters(c->space_sig, c->space_waiters);
}

/* Recovers peer i if its process is gone: 1 recovered, 0 alive or free, <0 error. */
static int recover_peer(podipc_channel *c, uint32_t i)
{
	if (i >= c->geo.max_peers)
		return pi_fail(PODIPC_ERR_CORRUPT, "peer index %u beyond a peer table of %u", i, c->geo.max_peers);
	pthread_mutex_lock(&c->recover_mu);
	off_t off = peer_lock_offset(c, i);
	int r = ofd_trylock(c->fd, off);
	if (r != 0) {
		pthread_mutex_unlock(&c->recover_mu);
		return r < 0 ? r : 0;
	}
	int recovered = 0;
	if (atomic_load(e32(peer_entry(c, i), PEER_STATE)) != PEER_FREE) {
		recover_locked(c, i);
		recovered = 1;
	}
	ofd_unlock(c->fd, off);
	pthread_mutex_unlock(&c->recover_mu);
	return recovered;
}

int podipc_channel_reap_dead_peers(podipc_channel *ch, unsigned *recovered)
{
	unsigned n = 0;
	uint32_t hw = atomic_load(ch->peer_high_water);
	if (hw > ch->geo.max_peers)
		hw = ch->geo.max_peers;
	for (uint32_t i = 0; i < hw; i++) {
		if (atomic_load(e32(peer_entry(ch, i), PEER_STATE)) == PEER_FREE)
			continue;
		int r = recover_peer(ch, i);
		if (r < 0) {
			if (recovered)
				*recovered = n;
			return r;
		}
		n += (unsigned)r;
	}
	if (recovered)
		*recovered = n;
	return PODIPC_OK;
}

static void publish(peer *p)
{
	uint8_t *e = p->entry;
	p->sent = e64(e, PEER_SENT);
	p->received = e64(e, PEER_RECEIVED);
	p->lost = e64(e, PEER_LOST);
	p->redelivered = e64(e, PEER_REDELIVERED);
	p->abandoned = e64(e, PEER_ABANDONED);
	au64 *ctrs[] = {p->sent, p->received, p->lost, p->redelivered, p->abandoned};
	for (size_t k = 0; k < 5; k++)
		atomic_store(ctrs[k], 0);
	atomic_store(e32(e, PEER_ROLE), p->role);
	atomic_store(e32(e, PEER_PID), (uint32_t)getpid());
	atomic_fetch_add(e32(e, PEER_GENERATION), 1);
	atomic_store(e64(e, PEER_STARTED), (uint64_t)now_ns(CLOCK_REALTIME));
	atomic_store(e64(e, PEER_CURSOR), atomic_load(p->ch->tail));
	atomic_store(e32(e, PEER_STATE), PEER_ACTIVE);
	for (;;) {
		uint32_t hw = atomic_load(p->ch->peer_high_water);
		if (hw > p->idx || atomic_compare_exchange_strong(p->ch->peer_high_water, &hw, p->idx + 1))
			return;
	}
}

/* Claims a free entry for role (§4 Register). On success p holds a
 * reference to c. */
static int peer_register(podipc_channel *c, peer *p, uint32_t role, const podipc_peer_options *opts)
{
	podipc_peer_options o = opts ? *opts : (podipc_peer_options){0};
	if (o.wait > PODIPC_WAIT_BLOCK || o.spin_ns < 0 || o.liveness_check_ns < 0)
		return pi_fail(PODIPC_ERR_INVALID, "peer options: wait %d, spin_ns %lld, liveness_check_ns %lld", (int)o.wait,
		               (long long)o.spin_ns, (long long)o.liveness_check_ns);
	char self[64];
	snprintf(self, sizeof self, "/proc/self/fd/%d", c->fd);
	int fd = open(self, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return pi_sys("reopen the channel file for a peer lock");
	if (role == ROLE_PRODUCER && c->geo.mode == PODIPC_MODE_BROADCAST) {
		int r = ofd_trylock(fd, OFF_CONTROL + CTL_PRODUCER_LOCK);
		if (r != 0) {
			close(fd);
			return r < 0 ? r : pi_fail(PODIPC_ERR_PRODUCER_EXISTS, "another live process produces on this channel");
		}
	}
	for (uint32_t i = 0; i < c->geo.max_peers; i++) {
		int r = ofd_trylock(fd, peer_lock_offset(c, i));
		if (r == 1)
			continue;
		if (r < 0) {
			close(fd);
			return r;
		}
		*p = (peer){
			.ch = c, .idx = i, .role = role, .lock_fd = fd, .entry = peer_entry(c, i), .wait = o.wait,
			.spin_ns = o.spin_ns ? o.spin_ns : 20000, .live_ns = o.liveness_check_ns ? o.liveness_check_ns : 50000000,
		};
		if (atomic_load(e32(p->entry, PEER_STATE)) != PEER_FREE)
			recover_locked(c, i); /* its previous owner died; we hold its lock */
		publish(p);
		channel_ref(c);
		return PODIPC_OK;
	}
	close(fd);
	return pi_fail(PODIPC_ERR_PEER_TABLE_FULL, "all %u entries are held by live peers", c->geo.max_peers);
}

static void peer_unregister(peer *p)
{
	retire(p->ch, p->idx);
	close(p->lock_fd);
	channel_unref(p->ch);
}

/* One non-blocking try of a blocking operation: 1 done, 0 not yet (with
 * *owner the peer whose slot is in the way, or NO_OWNER), <0 error. */
typedef int (*attempt_fn)(void *self, uint32_t *owner);

/* Repeats try until it is done, fails, or the timeout passes, waiting per
 * the peer's strategy: spin, then the Dekker handshake of §6. A slot in
 * the way owned by a peer bounds each sleep by the liveness interval and
 * the owner is recovered once its lock is free. Returns 0 when done,
 * PODIPC_ERR_TIMEOUT, or an error. */
static int await(peer *p, au32 *sig, au32 *waiters, attempt_fn try, void *self, int64_t timeout_ns)
{
	uint32_t owner = NO_OWNER;
	int r = try(self, &owner);
	if (r != 0)
		return r < 0 ? r : 0;
	if (timeout_ns == 0)
		return PODIPC_ERR_TIMEOUT;
	int64_t start = now_ns(CLOCK_MONOTONIC);
	int64_t deadline = timeout_ns < 0 || timeout_ns > INT64_MAX - start ? INT64_MAX : start + timeout_ns;
	if (p->wait != PODIPC_WAIT_BLOCK) {
		int64_t last_check = start;
		for (unsigned i = 1;; i++) {
			r = try(self, &owner);
			if (r != 0)
				return r < 0 ? r : 0;
			cpu_relax();
			if (i % 64 != 0)
				continue;
			int64_t now = now_ns(CLOCK_MONOTONIC);
			if (now >= deadline)
				return PODIPC_ERR_TIMEOUT;
			if (owner != NO_OWNER && now - last_check >= p->live_ns) {
				last_check = now;
				if ((r = recover_peer(p->ch, owner)) < 0)
					return r;
			}
			if (p->wait == PODIPC_WAIT_HYBRID && now - start >= p->spin_ns)
				break;
		}
	}
	for (;;) {
		int64_t now = now_ns(CLOCK_MONOTONIC);
		if (now >= deadline)
			return PODIPC_ERR_TIMEOUT;
		uint32_t seen = atomic_load(sig);
		atomic_fetch_add(waiters, 1);
		r = try(self, &owner);
		if (r != 0) {
			atomic_fetch_sub(waiters, 1);
			return r < 0 ? r : 0;
		}
		int64_t wait_ns = deadline == INT64_MAX ? -1 : deadline - now;
		if (owner != NO_OWNER && (wait_ns < 0 || wait_ns > p->live_ns))
			wait_ns = p->live_ns;
		long fr = futex_wait(sig, seen, wait_ns);
		int werr = fr == 0 ? 0 : errno;
		atomic_fetch_sub(waiters, 1);
		if (werr == ETIMEDOUT && owner != NO_OWNER) {
			if ((r = recover_peer(p->ch, owner)) < 0)
				return r;
		} else if (werr != 0 && werr != ETIMEDOUT && werr != EAGAIN && werr != EINTR) {
			errno = werr;
			return pi_sys("futex wait");
		}
	}
}

/* ---- producer (§2.2, §3.2) ---------------------------------------------- */

struct podipc_producer {
	peer p;
	bool held;
	uint64_t pos;
	uint8_t *slot;
	/* Broadcast: the single producer keeps tail and the laggard locally. */
	uint64_t tail, cached_min;
	uint32_t cached_epoch, laggard;
	bool scanned;
};

static int corrupt(const char *fmt, ...) PI_PRINTF(1, 2);
static int corrupt(const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	return pi_fail(PODIPC_ERR_CORRUPT, "%s", why);
}

/* A participant can write any word into a Queue slot. A word no healthy
 * ring can hold at the position a peer looked at is foreign
 * (docs/shm-layout.md §2.5): it is never handed out and never stops the
 * ring. These checks sit on the branches a healthy ring takes only on a
 * full ring, after a crash or with a stale view, never on the claim paths.
 *
 * repair_foreign resets slot s, whose word w is foreign for position pos
 * read from counter (head or tail), to (pos+N, FREE): both sides skip pos.
 * If the counter moved since, the view was merely stale: nothing is
 * touched and the caller reloads. */
static void repair_foreign(podipc_channel *c, au64 *counter, uint64_t pos, uint8_t *s, uint64_t w)
{
	if (atomic_load(counter) != pos)
		return;
	if (atomic_compare_exchange_strong(slot_word(s), &w, pack(pos + c->geo.slot_count, ST_FREE, 0))) {
		atomic_fetch_add(u64at(c, OFF_RETIRED + RET_REPAIRED), 1);
		signal_waiters(c->space_sig, c->space_waiters);
	}
}

/* The ring position the REDELIVER word w found in slot i stands for, and
 * whether a healthy ring can hold it there: below tail (loaded after w),
 * at most a lap old, in slot i. */
static bool redelivery_position(podipc_channel *c, uint64_t i, uint64_t w, uint64_t *pos)
{
	uint64_t t = atomic_load(c->tail);
	int64_t d = seqdiff(w, t);
	*pos = t + (uint64_t)d;
	return d < 0 && d >= -(int64_t)c->geo.slot_count && (uint64_t)-d <= t && (*pos & c->mask) == i;
}

static int try_claim_queue(void *self, uint32_t *owner)
{
	podipc_producer *pr = self;
	podipc_channel *c = pr->p.ch;
	int64_t n = (int64_t)c->geo.slot_count;
	*owner = NO_OWNER;
	for (int attempt = 0; attempt < MAX_CLAIM_ATTEMPTS; attempt++) {
		uint64_t t = atomic_load(c->tail);
		uint8_t *s = slot_at(c, t);
		uint64_t w = atomic_load(slot_word(s));
		int64_t d = seqdiff(w, t);
		uint64_t expect = t;
		if (d == 0) {
			switch (w_state(w)) {
			case ST_FREE: {
				uint64_t free_word = w;
				if (atomic_compare_exchange_strong(slot_word(s), &free_word, pack(t, ST_WRITING, pr->p.idx))) {
					atomic_compare_exchange_strong(c->tail, &expect, t + 1);
					pr->pos = t;
					pr->slot = s;
					pr->held = true;
					return 1;
				}
				break;
			}
			case ST_WRITING:
			case ST_ABANDONED:
				atomic_compare_exchange_strong(c->tail, &expect, t + 1); /* someone claimed t: help */
				break;
			default: /* committed (or unknown) while tail says t: stale, or foreign */
				repair_foreign(c, c->tail, t, s, w);
			}
		} else if (d == -n && t >= (uint64_t)n) {
			switch (w_state(w)) { /* the slot still holds position t-N: full */
			case ST_WRITING:
			case ST_READING:
				*owner = w_owner(w);
				return 0;
			case ST_FULL:
			case ST_ABANDONED:
			case ST_REDELIVER:
				return 0;
			default:
				repair_foreign(c, c->tail, t, s, w);
			}
		} else if (d == n) {
			/* t was taken and freed; if tail still says t, its claimer
			 * died before advancing it: help. */
			if (atomic_load(c->tail) != t)
				continue;
			if (w_state(w) != ST_FREE)
				repair_foreign(c, c->tail, t, s, w); /* t+N claimed while tail says t */
			else
				atomic_compare_exchange_strong(c->tail, &expect, t + 1);
		} else {
			repair_foreign(c, c->tail, t, s, w);
		}
	}
	return corrupt("no progress claiming a slot after %d attempts", MAX_CLAIM_ATTEMPTS);
}

/* The lowest cursor of the registered subscribers (limit if none), and whose. */
static uint64_t min_subscriber_cursor(podipc_channel *c, uint64_t limit, uint32_t *who)
{
	uint64_t lowest = limit;
	*who = NO_OWNER;
	uint32_t hw = atomic_load(c->peer_high_water);
	if (hw > c->geo.max_peers)
		hw = c->geo.max_peers;
	for (uint32_t i = 0; i < hw; i++) {
		uint8_t *e = peer_entry(c, i);
		if (atomic_load(e32(e, PEER_STATE)) != PEER_ACTIVE || atomic_load(e32(e, PEER_ROLE)) != ROLE_SUBSCRIBER)
			continue;
		uint64_t cur = atomic_load(e64(e, PEER_CURSOR));
		if (cur < lowest) {
			lowest = cur;
			*who = i;
		}
	}
	return lowest;
}

static int try_claim_broadcast(void *self, uint32_t *owner)
{
	podipc_producer *pr = self;
	podipc_channel *c = pr->p.ch;
	uint64_t t = pr->tail, n = c->geo.slot_count;
	*owner = NO_OWNER;
	if (c->geo.overflow != PODIPC_OVERFLOW_OVERWRITE && t >= n) {
		uint64_t need = t - n + 1; /* every subscriber must have read position t-N */
		uint32_t epoch = atomic_load(c->subscriber_epoch);
		if (!pr->scanned || epoch != pr->cached_epoch || pr->cached_min < need) {
			pr->cached_epoch = epoch;
			pr->cached_min = min_subscriber_cursor(c, t, &pr->laggard);
			pr->scanned = true;
		}
		if (pr->cached_min < need) {
			*owner = pr->laggard;
			return 0;
		}
	}
	uint8_t *s = slot_at(c, t);
	atomic_store(slot_word(s), stamp_writing(t));
	store_store();
	pr->pos = t;
	pr->slot = s;
	pr->held = true;
	return 1;
}

int podipc_producer_open(podipc_channel *ch, const podipc_peer_options *opts, podipc_producer **out)
{
	if (!ch || !out)
		return pi_fail(PODIPC_ERR_INVALID, "producer: channel and out must not be NULL");
	podipc_producer *pr = calloc(1, sizeof *pr);
	if (!pr) {
		errno = ENOMEM;
		return pi_sys("producer: allocate");
	}
	int rc = peer_register(ch, &pr->p, ROLE_PRODUCER, opts);
	if (rc != 0) {
		free(pr);
		return rc;
	}
	pr->tail = atomic_load(ch->tail);
	pr->laggard = NO_OWNER;
	*out = pr;
	return PODIPC_OK;
}

static int claim(podipc_producer *pr, int64_t timeout_ns)
{
	podipc_channel *c = pr->p.ch;
	attempt_fn try = c->geo.mode == PODIPC_MODE_BROADCAST ? try_claim_broadcast : try_claim_queue;
	if (c->geo.overflow == PODIPC_OVERFLOW_FAIL)
		timeout_ns = 0;
	int rc = await(&pr->p, c->space_sig, c->space_waiters, try, pr, timeout_ns);
	if (rc == PODIPC_ERR_TIMEOUT && timeout_ns == 0)
		return pi_fail(PODIPC_ERR_FULL, "no free slot");
	if (rc == PODIPC_ERR_TIMEOUT)
		return pi_fail(rc, "waiting for a free slot");
	return rc;
}

int podipc_producer_reserve(podipc_producer *p, int64_t timeout_ns, void **buf, size_t *cap)
{
	if (!p || !buf)
		return pi_fail(PODIPC_ERR_INVALID, "reserve: producer and buf must not be NULL");
	if (p->held)
		return pi_fail(PODIPC_ERR_OUTSTANDING, "reserve: commit or abort the previous reservation first");
	int rc = claim(p, timeout_ns);
	if (rc != 0)
		return rc;
	*buf = slot_payload(p->slot);
	if (cap)
		*cap = p->p.ch->geo.slot_size;
	return PODIPC_OK;
}

int podipc_producer_commit(podipc_producer *p, size_t len)
{
	if (!p)
		return pi_fail(PODIPC_ERR_INVALID, "commit: producer must not be NULL");
	if (!p->held)
		return pi_fail(PODIPC_ERR_NOT_HELD, "commit without a reservation");
	podipc_channel *c = p->p.ch;
	if (len > c->geo.slot_size)
		return pi_fail(PODIPC_ERR_TOO_LARGE, "commit of %zu bytes exceeds the slot size %u", len, c->geo.slot_size);
	*slot_len(p->slot) = (uint32_t)len;
	p->held = false;
	if (c->geo.mode == PODIPC_MODE_BROADCAST) {
		atomic_store(slot_word(p->slot), stamp_committed(p->pos));
		p->tail = p->pos + 1;
		atomic_store(c->tail, p->pos + 1);
	} else {
		uint64_t expect = pack(p->pos, ST_WRITING, p->p.idx);
		if (!atomic_compare_exchange_strong(slot_word(p->slot), &expect, pack(p->pos, ST_FULL, p->p.idx)))
			return corrupt("commit position %llu: the slot is no longer reserved by this producer",
			               (unsigned long long)p->pos);
	}
	count(p->p.sent, 1);
	signal_waiters(c->data_sig, c->data_waiters);
	return PODIPC_OK;
}

int podipc_producer_abort(podipc_producer *p)
{
	if (!p)
		return pi_fail(PODIPC_ERR_INVALID, "abort: producer must not be NULL");
	if (!p->held)
		return pi_fail(PODIPC_ERR_NOT_HELD, "abort without a reservation");
	podipc_channel *c = p->p.ch;
	p->held = false;
	count(p->p.abandoned, 1);
	if (c->geo.mode == PODIPC_MODE_BROADCAST)
		return PODIPC_OK; /* the next reserve rewrites the position */
	uint64_t expect = pack(p->pos, ST_WRITING, p->p.idx);
	if (!atomic_compare_exchange_strong(slot_word(p->slot), &expect, pack(p->pos, ST_ABANDONED, p->p.idx)))
		return corrupt("abort position %llu: the slot is no longer reserved by this producer",
		               (unsigned long long)p->pos);
	signal_waiters(c->data_sig, c->data_waiters);
	return PODIPC_OK;
}

int podipc_producer_send(podipc_producer *p, const void *msg, size_t len, int64_t timeout_ns)
{
	if (!p || (!msg && len))
		return pi_fail(PODIPC_ERR_INVALID, "send: producer and msg must not be NULL");
	if (len > p->p.ch->geo.slot_size)
		return pi_fail(PODIPC_ERR_TOO_LARGE, "message of %zu bytes exceeds the slot size %u", len,
		               p->p.ch->geo.slot_size);
	void *buf;
	int rc = podipc_producer_reserve(p, timeout_ns, &buf, NULL);
	if (rc != 0)
		return rc;
	if (len)
		memcpy(buf, msg, len);
	return podipc_producer_commit(p, len);
}

int podipc_producer_close(podipc_producer *p)
{
	if (!p)
		return PODIPC_OK;
	int rc = p->held ? podipc_producer_abort(p) : PODIPC_OK;
	peer_unregister(&p->p);
	free(p);
	return rc;
}

/* ---- receivers: consumer (§2.3, §2.4) and subscriber (§3.3) ------------- */

typedef struct held_msg {
	bool held, kept; /* kept: recv's buffer was too small; the next call returns it again */
	uint64_t pos;
	uint8_t *slot;
	uint32_t len;
} held_msg;

struct podipc_consumer {
	peer p;
	held_msg m;
};

struct podipc_subscriber {
	peer p;
	held_msg m;
	uint64_t cursor; /* next position to read */
	au64 *pub_cursor;
	uint64_t last_lost;
};

/* Borrows the slot at pos once its word was CASed to READING by us. */
static int take(podipc_consumer *q, uint64_t pos)
{
	podipc_channel *c = q->p.ch;
	uint8_t *s = slot_at(c, pos);
	uint32_t n = *slot_len(s);
	if (n > c->geo.slot_size) {
		/* A committed length never exceeds the slot: drop the garbage
		 * (counted as abandoned) so the ring goes on, and report it. */
		atomic_store(slot_word(s), pack(pos + c->geo.slot_count, ST_FREE, 0));
		atomic_fetch_add(u64at(c, OFF_RETIRED + RET_ABANDONED), 1);
		signal_waiters(c->space_sig, c->space_waiters);
		return corrupt("slot %llu: length %u exceeds the slot size %u", (unsigned long long)(pos & c->mask), n,
		               c->geo.slot_size);
	}
	q->m = (held_msg){.held = true, .pos = pos, .slot = s, .len = n};
	count(q->p.received, 1);
	return 1;
}

static int take_redelivery(podipc_consumer *q)
{
	podipc_channel *c = q->p.ch;
	uint64_t gen = atomic_load(c->redeliver_gen), scanned = atomic_load(c->redeliver_scanned);
	for (uint64_t i = 0; i < c->geo.slot_count; i++) {
		uint8_t *s = slot_at(c, i);
		uint64_t w = atomic_load(slot_word(s));
		if (w_state(w) != ST_REDELIVER)
			continue;
		uint64_t pos;
		if (!redelivery_position(c, i, w, &pos))
			continue; /* foreign: never hand it out (the head or tail pass repairs it) */
		if (atomic_compare_exchange_strong(slot_word(s), &w, pack(pos, ST_READING, q->p.idx))) {
			int r = take(q, pos);
			if (r == 1)
				count(q->p.redelivered, 1);
			return r;
		}
	}
	atomic_compare_exchange_strong(c->redeliver_scanned, &scanned, gen);
	return 0;
}

static int try_take(void *self, uint32_t *owner)
{
	podipc_consumer *q = self;
	podipc_channel *c = q->p.ch;
	*owner = NO_OWNER;
	if (atomic_load(c->redeliver_gen) != atomic_load(c->redeliver_scanned)) {
		int r = take_redelivery(q);
		if (r != 0)
			return r;
	}
	int64_t n = (int64_t)c->geo.slot_count;
	for (int attempt = 0; attempt < MAX_CLAIM_ATTEMPTS; attempt++) {
		uint64_t h = atomic_load(c->head);
		uint8_t *s = slot_at(c, h);
		uint64_t w = atomic_load(slot_word(s));
		int64_t d = seqdiff(w, h);
		uint64_t expect = h;
		if (d == 0) {
			switch (w_state(w)) {
			case ST_FULL: {
				uint64_t full_word = w;
				if (atomic_compare_exchange_strong(slot_word(s), &full_word, pack(h, ST_READING, q->p.idx))) {
					atomic_compare_exchange_strong(c->head, &expect, h + 1);
					return take(q, h);
				}
				break;
			}
			case ST_READING:
			case ST_REDELIVER:
				atomic_compare_exchange_strong(c->head, &expect, h + 1); /* someone took h: help */
				break;
			case ST_ABANDONED: {
				uint64_t abandoned_word = w;
				if (atomic_compare_exchange_strong(slot_word(s), &abandoned_word, pack(h + (uint64_t)n, ST_FREE, 0))) {
					atomic_compare_exchange_strong(c->head, &expect, h + 1);
					signal_waiters(c->space_sig, c->space_waiters);
				}
				break;
			}
			case ST_FREE:
				return 0;
			case ST_WRITING:
				*owner = w_owner(w);
				return 0;
			default:
				repair_foreign(c, c->head, h, s, w);
			}
		} else if (d == -n && h >= (uint64_t)n) {
			/* The slot still holds position h-N, which head passed: only a
			 * consumer can be holding it, and h is not produced yet. */
			if (w_state(w) == ST_READING || w_state(w) == ST_REDELIVER)
				return 0;
			repair_foreign(c, c->head, h, s, w);
		} else if (d == n && w_state(w) <= ST_REDELIVER) {
			/* h was taken and freed; if head still says h, its consumer
			 * died before advancing it: help. */
			if (atomic_load(c->head) == h)
				atomic_compare_exchange_strong(c->head, &expect, h + 1);
		} else {
			repair_foreign(c, c->head, h, s, w);
		}
	}
	return corrupt("no progress taking a message after %d attempts", MAX_CLAIM_ATTEMPTS);
}

/* recv's fast path (docs/shm-layout.md §2.3, "copying consumers"): copy
 * the payload out of a FULL slot while it is FULL, then free it with one
 * compare-and-swap, (h,FULL) to (h+N,FREE). A FULL slot's payload does not
 * change (producers write only slots they claimed FREE), so a copy whose CAS
 * succeeds is whole; one whose CAS fails was of a slot another consumer
 * took, and is discarded. Anything but a FULL head slot, a redelivery to
 * scan or a buffer too small takes the borrowing path (try_take). */
typedef struct copy_attempt {
	podipc_consumer *q;
	void *buf;
	size_t cap, len; /* len: set when it copied (nothing is held then) */
} copy_attempt;

/* The speculative copy races, by design, with a producer that rewrites the
 * slot after another consumer freed it; the CAS that follows tells. Under
 * ThreadSanitizer it is an uninstrumented byte loop, so that the race it
 * is built to tolerate is not reported. */
#if defined(__SANITIZE_THREAD__)
__attribute__((no_sanitize_thread)) static void copy_unowned(void *dst, const uint8_t *src, size_t n)
{
	volatile uint8_t *d = dst;
	for (size_t i = 0; i < n; i++)
		d[i] = ((const volatile uint8_t *)src)[i];
}
#else
static inline void copy_unowned(void *dst, const uint8_t *src, size_t n) { memcpy(dst, src, n); }
#endif

static int try_take_copy(void *self, uint32_t *owner)
{
	copy_attempt *a = self;
	podipc_consumer *q = a->q;
	podipc_channel *c = q->p.ch;
	if (atomic_load(c->redeliver_gen) == atomic_load(c->redeliver_scanned)) {
		uint64_t h = atomic_load(c->head);
		uint8_t *s = slot_at(c, h);
		uint64_t w = atomic_load(slot_word(s));
		if (seqdiff(w, h) == 0 && w_state(w) == ST_FULL) {
			uint32_t n = *slot_len(s);
			if (n <= c->geo.slot_size && n <= a->cap) {
				if (n)
					copy_unowned(a->buf, slot_payload(s), n);
				if (atomic_compare_exchange_strong(slot_word(s), &w, pack(h + c->geo.slot_count, ST_FREE, 0))) {
					uint64_t expect = h;
					atomic_compare_exchange_strong(c->head, &expect, h + 1);
					count(q->p.received, 1);
					a->len = n;
					*owner = NO_OWNER;
					signal_waiters(c->space_sig, c->space_waiters);
					return 1;
				}
			}
		}
	}
	return try_take(q, owner);
}

/* The lapped path of §3.3: move the cursor to the oldest position the
 * producer cannot be overwriting and report how many were lost. */
static int lap(podipc_subscriber *s, uint64_t cur)
{
	podipc_channel *c = s->p.ch;
	uint64_t t = atomic_load(c->tail), next = cur + 1, n = c->geo.slot_count;
	if (t >= n && t - n + 1 > next)
		next = t - n + 1;
	s->cursor = next;
	atomic_store(s->pub_cursor, next);
	count(s->p.lost, next - cur);
	s->last_lost = next - cur;
	signal_waiters(c->space_sig, c->space_waiters);
	return pi_fail(PODIPC_ERR_LAPPED, "the producer overwrote %llu messages", (unsigned long long)(next - cur));
}

static int try_read(void *self, uint32_t *owner)
{
	podipc_subscriber *s = self;
	podipc_channel *c = s->p.ch;
	*owner = NO_OWNER;
	uint64_t cur = s->cursor, t = atomic_load(c->tail);
	if (cur >= t)
		return 0;
	if (t - cur > c->geo.slot_count)
		return lap(s, cur);
	uint8_t *sl = slot_at(c, cur);
	uint64_t stamp = atomic_load(slot_word(sl));
	if (stamp != stamp_committed(cur))
		return lap(s, cur);
	uint32_t n = *(volatile uint32_t *)slot_len(sl);
	load_load();
	if (atomic_load(slot_word(sl)) != stamp)
		return lap(s, cur);
	if (n > c->geo.slot_size)
		return corrupt("slot %llu: length %u exceeds the slot size %u", (unsigned long long)(cur & c->mask), n,
		               c->geo.slot_size);
	s->m = (held_msg){.held = true, .pos = cur, .slot = sl, .len = n};
	count(s->p.received, 1);
	return 1;
}

static int consumer_release(podipc_consumer *q)
{
	podipc_channel *c = q->p.ch;
	q->m.held = q->m.kept = false;
	uint64_t expect = pack(q->m.pos, ST_READING, q->p.idx);
	if (!atomic_compare_exchange_strong(slot_word(q->m.slot), &expect, pack(q->m.pos + c->geo.slot_count, ST_FREE, 0)))
		return corrupt("release position %llu: the slot is no longer borrowed by this consumer",
		               (unsigned long long)q->m.pos);
	signal_waiters(c->space_sig, c->space_waiters);
	return PODIPC_OK;
}

static int subscriber_release(podipc_subscriber *s)
{
	podipc_channel *c = s->p.ch;
	s->m.held = s->m.kept = false;
	load_load(); /* the caller's reads of the payload happen before the re-check */
	if (atomic_load(slot_word(s->m.slot)) != stamp_committed(s->m.pos))
		return lap(s, s->m.pos);
	s->cursor = s->m.pos + 1;
	atomic_store(s->pub_cursor, s->cursor);
	signal_waiters(c->space_sig, c->space_waiters);
	return PODIPC_OK;
}

/* Borrow for either receiver: m is its held message, try its attempt. */
static int borrow(peer *p, held_msg *m, attempt_fn try, void *self, int64_t timeout_ns, const void **data, size_t *len)
{
	if (!data || !len)
		return pi_fail(PODIPC_ERR_INVALID, "borrow: data and len must not be NULL");
	if (m->held && !m->kept)
		return pi_fail(PODIPC_ERR_OUTSTANDING, "borrow: release the previous message first");
	if (!m->held) {
		podipc_channel *c = p->ch;
		int rc = await(p, c->data_sig, c->data_waiters, try, self, timeout_ns);
		if (rc == PODIPC_ERR_TIMEOUT)
			return timeout_ns == 0 ? pi_fail(PODIPC_ERR_EMPTY, "no message") : pi_fail(rc, "waiting for a message");
		if (rc != 0)
			return rc;
		if (!m->held)
			return PODIPC_OK; /* try copied the message out itself (recv's fast path) */
	}
	m->kept = false;
	*data = slot_payload(m->slot);
	*len = m->len;
	return PODIPC_OK;
}

int podipc_consumer_open(podipc_channel *ch, const podipc_peer_options *opts, podipc_consumer **out)
{
	if (!ch || !out)
		return pi_fail(PODIPC_ERR_INVALID, "consumer: channel and out must not be NULL");
	if (ch->geo.mode != PODIPC_MODE_QUEUE)
		return pi_fail(PODIPC_ERR_WRONG_MODE, "consumers take from queue channels; subscribe to a broadcast one");
	podipc_consumer *q = calloc(1, sizeof *q);
	if (!q) {
		errno = ENOMEM;
		return pi_sys("consumer: allocate");
	}
	int rc = peer_register(ch, &q->p, ROLE_CONSUMER, opts);
	if (rc != 0) {
		free(q);
		return rc;
	}
	*out = q;
	return PODIPC_OK;
}

int podipc_consumer_borrow(podipc_consumer *c, int64_t timeout_ns, const void **data, size_t *len)
{
	if (!c)
		return pi_fail(PODIPC_ERR_INVALID, "borrow: consumer must not be NULL");
	return borrow(&c->p, &c->m, try_take, c, timeout_ns, data, len);
}

int podipc_consumer_release(podipc_consumer *c)
{
	if (!c)
		return pi_fail(PODIPC_ERR_INVALID, "release: consumer must not be NULL");
	if (!c->m.held)
		return pi_fail(PODIPC_ERR_NOT_HELD, "release without a borrowed message");
	return consumer_release(c);
}

/* recv for either receiver, on top of borrow. */
static int recv_copy(held_msg *m, int rc, const void *data, size_t n, void *buf, size_t cap, size_t *len)
{
	if (rc != 0)
		return rc;
	*len = n;
	if (n > cap) {
		m->kept = true;
		return pi_fail(PODIPC_ERR_TOO_LARGE, "message of %zu bytes, buffer of %zu (kept for the next call)", n, cap);
	}
	if (n)
		memcpy(buf, data, n);
	return PODIPC_OK;
}

int podipc_consumer_recv(podipc_consumer *c, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
	if (!c || !len || (!buf && cap))
		return pi_fail(PODIPC_ERR_INVALID, "recv: consumer, buf and len must not be NULL");
	const void *data = NULL;
	size_t n = 0;
	copy_attempt a = {.q = c, .buf = buf, .cap = cap};
	int rc = borrow(&c->p, &c->m, try_take_copy, &a, timeout_ns, &data, &n);
	if (rc == 0 && !c->m.held) { /* try_take_copy copied it */
		*len = a.len;
		return PODIPC_OK;
	}
	rc = recv_copy(&c->m, rc, data, n, buf, cap, len);
	return rc == 0 ? consumer_release(c) : rc;
}

int podipc_consumer_close(podipc_consumer *q)
{
	if (!q)
		return PODIPC_OK;
	int rc = PODIPC_OK;
	if (q->m.held) {
		podipc_channel *c = q->p.ch;
		uint64_t expect = pack(q->m.pos, ST_READING, q->p.idx);
		if (atomic_compare_exchange_strong(slot_word(q->m.slot), &expect, pack(q->m.pos, ST_REDELIVER, q->p.idx))) {
			atomic_fetch_add(c->redeliver_gen, 1);
			signal_waiters(c->data_sig, c->data_waiters);
		} else {
			rc = corrupt("close: the borrowed slot changed hands");
		}
	}
	peer_unregister(&q->p);
	free(q);
	return rc;
}

int podipc_subscriber_open(podipc_channel *ch, const podipc_peer_options *opts, podipc_subscriber **out)
{
	if (!ch || !out)
		return pi_fail(PODIPC_ERR_INVALID, "subscriber: channel and out must not be NULL");
	if (ch->geo.mode != PODIPC_MODE_BROADCAST)
		return pi_fail(PODIPC_ERR_WRONG_MODE, "subscribers read broadcast channels; consume from a queue one");
	podipc_subscriber *s = calloc(1, sizeof *s);
	if (!s) {
		errno = ENOMEM;
		return pi_sys("subscriber: allocate");
	}
	int rc = peer_register(ch, &s->p, ROLE_SUBSCRIBER, opts);
	if (rc != 0) {
		free(s);
		return rc;
	}
	s->pub_cursor = e64(s->p.entry, PEER_CURSOR);
	/* §3.3: the entry was published with a cursor no later than tail; the
	 * epoch bump makes the producer rescan before its next write, and only
	 * then is the start position read. */
	atomic_fetch_add(ch->subscriber_epoch, 1);
	s->cursor = atomic_load(ch->tail);
	atomic_store(s->pub_cursor, s->cursor);
	*out = s;
	return PODIPC_OK;
}

int podipc_subscriber_borrow(podipc_subscriber *s, int64_t timeout_ns, const void **data, size_t *len)
{
	if (!s)
		return pi_fail(PODIPC_ERR_INVALID, "borrow: subscriber must not be NULL");
	return borrow(&s->p, &s->m, try_read, s, timeout_ns, data, len);
}

int podipc_subscriber_release(podipc_subscriber *s)
{
	if (!s)
		return pi_fail(PODIPC_ERR_INVALID, "release: subscriber must not be NULL");
	if (!s->m.held)
		return pi_fail(PODIPC_ERR_NOT_HELD, "release without a borrowed message");
	return subscriber_release(s);
}

int podipc_subscriber_recv(podipc_subscriber *s, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
	if (!s || !len || (!buf && cap))
		return pi_fail(PODIPC_ERR_INVALID, "recv: subscriber, buf and len must not be NULL");
	const void *data = NULL;
	size_t n = 0;
	int rc = borrow(&s->p, &s->m, try_read, s, timeout_ns, &data, &n);
	rc = recv_copy(&s->m, rc, data, n, buf, cap, len);
	return rc == 0 ? subscriber_release(s) : rc;
}

uint64_t podipc_subscriber_lost(const podipc_subscriber *s) { return s ? s->last_lost : 0; }

int podipc_subscriber_close(podipc_subscriber *s)
{
	if (!s)
		return PODIPC_OK;
	peer_unregister(&s->p);
	free(s);
	return PODIPC_OK;
}

/* ---- statistics --------------------------------------------------------- */

int podipc_channel_stats(podipc_channel *c, podipc_stats *out)
{
	if (!c || !out)
		return pi_fail(PODIPC_ERR_INVALID, "stats: channel and out must not be NULL");
	podipc_stats st = {
		.mode = (podipc_mode)c->geo.mode,
		.overflow = (podipc_overflow)c->geo.overflow,
		.capacity = c->geo.slot_count,
		.slot_size = c->geo.slot_size,
		.sent = atomic_load(u64at(c, OFF_RETIRED + RET_SENT)),
		.received = atomic_load(u64at(c, OFF_RETIRED + RET_RECEIVED)),
		.lost = atomic_load(u64at(c, OFF_RETIRED + RET_LOST)),
		.redelivered = atomic_load(u64at(c, OFF_RETIRED + RET_REDELIVERED)),
		.abandoned = atomic_load(u64at(c, OFF_RETIRED + RET_ABANDONED)),
		.reaped = atomic_load(u64at(c, OFF_RETIRED + RET_REAPED)),
		.repaired = atomic_load(u64at(c, OFF_RETIRED + RET_REPAIRED)),
	};
	uint64_t tail = atomic_load(c->tail), min_cursor = tail;
	bool have_subscriber = false;
	uint32_t hw = atomic_load(c->peer_high_water);
	if (hw > c->geo.max_peers)
		hw = c->geo.max_peers;
	for (uint32_t i = 0; i < hw; i++) {
		uint8_t *e = peer_entry(c, i);
		if (atomic_load(e32(e, PEER_STATE)) != PEER_ACTIVE)
			continue;
		st.sent += atomic_load(e64(e, PEER_SENT));
		st.received += atomic_load(e64(e, PEER_RECEIVED));
		st.lost += atomic_load(e64(e, PEER_LOST));
		st.redelivered += atomic_load(e64(e, PEER_REDELIVERED));
		st.abandoned += atomic_load(e64(e, PEER_ABANDONED));
		if (ofd_held(c->fd, peer_lock_offset(c, i)) != 1) {
			st.dead_peers++;
			continue;
		}
		switch (atomic_load(e32(e, PEER_ROLE))) {
		case ROLE_PRODUCER: st.producers++; break;
		case ROLE_CONSUMER: st.consumers++; break;
		case ROLE_SUBSCRIBER: {
			st.subscribers++;
			uint64_t cur = atomic_load(e64(e, PEER_CURSOR));
			if (cur < min_cursor)
				min_cursor = cur;
			have_subscriber = true;
			break;
		}
		}
	}
	uint64_t depth = 0, head = atomic_load(c->head);
	if (c->geo.mode == PODIPC_MODE_QUEUE && head < tail)
		depth = tail - head;
	else if (c->geo.mode == PODIPC_MODE_BROADCAST && have_subscriber)
		depth = tail - min_cursor;
	st.depth = depth < c->geo.slot_count ? depth : c->geo.slot_count;
	*out = st;
	return PODIPC_OK;
}
