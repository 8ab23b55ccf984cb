/* The message-queue wire format: docs/mq-protocol.md, version 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "podipc.h"
#include "internal.h"
#include "mqwire.h"

static const char *type_name(uint8_t t)
{
	switch (t) {
	case PI_MQ_SEND_OK: return "SEND_OK";
	case PI_MQ_CONSUME_OK: return "CONSUME_OK";
	case PI_MQ_CANCEL_OK: return "CANCEL_OK";
	case PI_MQ_DELIVER: return "DELIVER";
	case PI_MQ_ERROR: return "ERROR";
	case PI_MQ_CONSUMER_CLOSED: return "CONSUMER_CLOSED";
	case PI_MQ_PONG: return "PONG";
	case PI_MQ_GOAWAY: return "GOAWAY";
	}
	return "?";
}

static int bad_size(uint8_t t, size_t n)
{
	return pi_fail(PODIPC_ERR_PROTOCOL, "%s frame with a %zu-byte payload", type_name(t), n);
}

int pi_mq_decode(const uint8_t *buf, size_t avail, uint32_t max_frame, pi_mq_frame *f, size_t *used, size_t *need)
{
	*used = 0;
	if (avail < 4) {
		*need = 4;
		return 0;
	}
	uint32_t n = pi_le32(buf);
	if (n == 0)
		return pi_fail(PODIPC_ERR_PROTOCOL, "frame with length 0");
	if (n > max_frame)
		return pi_fail(PODIPC_ERR_PROTOCOL, "frame of %u bytes, over the connection's max_frame %u", n, max_frame);
	size_t total = 4 + (size_t)n;
	if (avail < total) {
		*need = total;
		return 0;
	}
	const uint8_t *p = buf + PI_MQ_HEADER;
	size_t len = n - 1;
	memset(f, 0, sizeof *f);
	f->type = buf[4];
	switch (f->type) {
	case PI_MQ_SEND_OK:
		if (len != 12)
			return bad_size(f->type, len);
		f->req = pi_le32(p);
		f->id = pi_le64(p + 4);
		break;
	case PI_MQ_CONSUME_OK:
		if (len != 9)
			return bad_size(f->type, len);
		f->req = pi_le32(p);
		f->mode = p[4];
		f->prefetch = pi_le32(p + 5);
		if ((f->mode != 1 && f->mode != 2) || f->prefetch == 0)
			return pi_fail(PODIPC_ERR_PROTOCOL, "CONSUME_OK with mode %u, prefetch %u", f->mode, f->prefetch);
		break;
	case PI_MQ_CANCEL_OK:
		if (len != 4)
			return bad_size(f->type, len);
		f->req = pi_le32(p);
		break;
	case PI_MQ_DELIVER:
		if (len < 33)
			return bad_size(f->type, len);
		f->consumer = pi_le32(p);
		f->tag = pi_le64(p + 4);
		f->id = pi_le64(p + 12);
		f->enqueued_at = (int64_t)pi_le64(p + 20);
		f->deliveries = pi_le32(p + 28);
		f->priority = p[32];
		f->data = p + 33;
		f->len = len - 33;
		if (f->deliveries == 0 || f->priority > PI_MQ_MAX_PRIORITY)
			return pi_fail(PODIPC_ERR_PROTOCOL, "DELIVER with delivery count %u, priority %u", f->deliveries,
			               f->priority);
		break;
	case PI_MQ_ERROR:
	case PI_MQ_CONSUMER_CLOSED:
		if (len < 6 || len > 6 + PI_MQ_MAX_ERROR_TEXT)
			return bad_size(f->type, len);
		f->req = f->consumer = pi_le32(p);
		f->code = pi_le16(p + 4);
		f->data = p + 6;
		f->len = len - 6;
		if (f->code == 0)
			return pi_fail(PODIPC_ERR_PROTOCOL, "%s with code 0", type_name(f->type));
		break;
	case PI_MQ_PONG:
		if (len != 8)
			return bad_size(f->type, len);
		f->id = pi_le64(p);
		break;
	case PI_MQ_GOAWAY:
		if (len < 2 || len > 2 + PI_MQ_MAX_ERROR_TEXT)
			return bad_size(f->type, len);
		f->code = pi_le16(p);
		f->data = p + 2;
		f->len = len - 2;
		break;
	default:
		return pi_fail(PODIPC_ERR_PROTOCOL, "frame of unknown type 0x%02x from the broker", f->type);
	}
	*used = total;
	return 1;
}

int pi_mq_parse_welcome(const uint8_t b[PI_MQ_WELCOME_SIZE], pi_mq_welcome *w)
{
	if (memcmp(b, PI_MQ_MAGIC, 4) != 0)
		return pi_fail(PODIPC_ERR_PROTOCOL, "WELCOME with a bad magic (not a podipc broker?)");
	w->version = pi_le16(b + 4);
	w->status = pi_le16(b + 6);
	w->max_frame = pi_le32(b + 8);
	w->max_message = pi_le32(b + 12);
	w->max_pending_sends = pi_le32(b + 16);
	w->max_pending_bytes = pi_le32(b + 20);
	w->max_prefetch = pi_le32(b + 24);
	w->max_consumers = pi_le32(b + 28);
	if (w->status != 0)
		return 0;
	if (w->max_frame < PI_MQ_MIN_FRAME || w->max_message == 0 || w->max_message > w->max_frame ||
	    w->max_pending_sends == 0 || w->max_prefetch == 0 || w->max_consumers == 0)
		return pi_fail(PODIPC_ERR_PROTOCOL, "WELCOME with implausible limits (max_frame %u, max_message %u, "
		               "max_pending_sends %u, max_prefetch %u, max_consumers %u)", w->max_frame, w->max_message,
		               w->max_pending_sends, w->max_prefetch, w->max_consumers);
	return 0;
}

int pi_mq_code_error(uint16_t code)
{
	switch (code) {
	case PI_MQ_CODE_UNKNOWN_QUEUE: return PODIPC_ERR_UNKNOWN_QUEUE;
	case PI_MQ_CODE_QUEUE_FULL:
	case PI_MQ_CODE_TIMEOUT: return PODIPC_ERR_QUEUE_FULL;
	case PI_MQ_CODE_TOO_LARGE: return PODIPC_ERR_TOO_LARGE;
	case PI_MQ_CODE_TOO_MANY_PENDING: return PODIPC_ERR_TOO_MANY_PENDING;
	case PI_MQ_CODE_BAD_REQUEST:
	case PI_MQ_CODE_DUPLICATE_ID:
	case PI_MQ_CODE_HANDSHAKE_TIMEOUT: return PODIPC_ERR_PROTOCOL;
	case PI_MQ_CODE_SHUTTING_DOWN: return PODIPC_ERR_SHUTDOWN;
	case PI_MQ_CODE_TOO_MANY_CONSUMERS: return PODIPC_ERR_TOO_MANY_CONSUMERS;
	case PI_MQ_CODE_QUEUE_DELETED: return PODIPC_ERR_QUEUE_DELETED;
	case PI_MQ_CODE_VERSION: return PODIPC_ERR_VERSION;
	case PI_MQ_CODE_TOO_MANY_CONNS: return PODIPC_ERR_TOO_MANY_CONNECTIONS;
	}
	return PODIPC_ERR_BROKER_INTERNAL;
}

const char *pi_mq_code_name(uint16_t code)
{
	static const char *const names[] = {
		"ok", "unknown queue", "queue full", "message too large", "too many pending sends",
		"timeout", "bad request", "broker shutting down", "too many consumers", "queue deleted",
		"internal error", "duplicate consumer id", "unsupported version", "too many connections",
		"handshake timeout", "write timeout",
	};
	return code < sizeof names / sizeof names[0] ? names[code] : "unknown code";
}

int pi_buf_reserve(pi_buf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p) {
		errno = ENOMEM;
		return pi_sys("mq: allocating an output buffer");
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

void pi_buf_free(pi_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* begin reserves a frame of payload size n and returns where it goes. */
static uint8_t *begin(pi_buf *b, uint8_t type, size_t n)
{
	if (pi_buf_reserve(b, PI_MQ_HEADER + n))
		return NULL;
	uint8_t *p = b->p + b->len;
	pi_put32(p, (uint32_t)(n + 1));
	p[4] = type;
	b->len += PI_MQ_HEADER + n;
	return p + PI_MQ_HEADER;
}

void pi_mq_put_hello(uint8_t b[PI_MQ_HELLO_SIZE], uint16_t min_version, uint16_t max_version)
{
	memcpy(b, PI_MQ_MAGIC, 4);
	pi_put16(b + 4, min_version);
	pi_put16(b + 6, max_version);
	pi_put32(b + 8, 0);
}

int pi_mq_put_send(pi_buf *b, uint32_t req, uint8_t priority, uint32_t ttl_ms, uint32_t timeout_ms,
                   const char *queue, size_t qlen, const void *body, size_t len)
{
	uint8_t *p = begin(b, PI_MQ_SEND, 14 + qlen + len);
	if (!p)
		return PODIPC_ERR_SYSTEM;
	pi_put32(p, req);
	p[4] = priority;
	p[5] = (uint8_t)qlen;
	pi_put32(p + 6, ttl_ms);
	pi_put32(p + 10, timeout_ms);
	memcpy(p + 14, queue, qlen);
	if (len)
		memcpy(p + 14 + qlen, body, len);
	return 0;
}

int pi_mq_put_consume(pi_buf *b, uint32_t req, uint32_t consumer, uint32_t prefetch, const char *queue, size_t qlen)
{
	uint8_t *p = begin(b, PI_MQ_CONSUME, 13 + qlen);
	if (!p)
		return PODIPC_ERR_SYSTEM;
	pi_put32(p, req);
	pi_put32(p + 4, consumer);
	pi_put32(p + 8, prefetch);
	p[12] = (uint8_t)qlen;
	memcpy(p + 13, queue, qlen);
	return 0;
}

int pi_mq_put_cancel(pi_buf *b, uint32_t req, uint32_t consumer)
{
	uint8_t *p = begin(b, PI_MQ_CANCEL, 8);
	if (!p)
		return PODIPC_ERR_SYSTEM;
	pi_put32(p, req);
	pi_put32(p + 4, consumer);
	return 0;
}

int pi_mq_put_settle(pi_buf *b, uint8_t type, uint32_t consumer, int requeue, uint64_t tag)
{
	size_t fixed = type == PI_MQ_NACK ? 5 : 4;
	uint8_t *p = begin(b, type, fixed + 8);
	if (!p)
		return PODIPC_ERR_SYSTEM;
	pi_put32(p, consumer);
	if (type == PI_MQ_NACK)
		p[4] = requeue ? 1 : 0;
	pi_put64(p + fixed, tag);
	return 0;
}

int pi_mq_put_credit(pi_buf *b, uint32_t consumer, uint32_t n)
{
	uint8_t *p = begin(b, PI_MQ_CREDIT, 8);
	if (!p)
		return PODIPC_ERR_SYSTEM;
	pi_put32(p, consumer);
	pi_put32(p + 4, n);
	return 0;
}

int pi_mq_put_ping(pi_buf *b, uint64_t token)
{
	uint8_t *p = begin(b, PI_MQ_PING, 8);
	if (!p)
		return PODIPC_ERR_SYSTEM;
	pi_put64(p, token);
	return 0;
}
