/* The message-queue wire format (docs/mq-protocol.md, version 1): frame
 * encoding and the client's decoder of broker frames. Internal; not
 * installed. */
#ifndef PODIPC_MQWIRE_H
#define PODIPC_MQWIRE_H

#include <stddef.h>
#include <stdint.h>

#define PI_MQ_MAGIC "PDMQ"
#define PI_MQ_VERSION 1
#define PI_MQ_HELLO_SIZE 12
#define PI_MQ_WELCOME_SIZE 32
#define PI_MQ_HEADER 5          /* length u32 + type u8 */
#define PI_MQ_MIN_FRAME 4096u   /* the smallest max_frame a broker may announce */
#define PI_MQ_MAX_QUEUE 255
#define PI_MQ_MAX_PRIORITY 9
#define PI_MQ_MAX_ERROR_TEXT 1024

enum {
	PI_MQ_SEND = 0x01,
	PI_MQ_CONSUME = 0x02,
	PI_MQ_CANCEL = 0x03,
	PI_MQ_ACK = 0x04,
	PI_MQ_NACK = 0x05,
	PI_MQ_CREDIT = 0x06,
	PI_MQ_PING = 0x07,
	PI_MQ_SEND_OK = 0x81,
	PI_MQ_CONSUME_OK = 0x82,
	PI_MQ_CANCEL_OK = 0x83,
	PI_MQ_DELIVER = 0x84,
	PI_MQ_ERROR = 0x85,
	PI_MQ_CONSUMER_CLOSED = 0x86,
	PI_MQ_PONG = 0x87,
	PI_MQ_GOAWAY = 0x88,
};

/* Broker error codes (the table "Error codes"). */
enum {
	PI_MQ_CODE_UNKNOWN_QUEUE = 1,
	PI_MQ_CODE_QUEUE_FULL = 2,
	PI_MQ_CODE_TOO_LARGE = 3,
	PI_MQ_CODE_TOO_MANY_PENDING = 4,
	PI_MQ_CODE_TIMEOUT = 5,
	PI_MQ_CODE_BAD_REQUEST = 6,
	PI_MQ_CODE_SHUTTING_DOWN = 7,
	PI_MQ_CODE_TOO_MANY_CONSUMERS = 8,
	PI_MQ_CODE_QUEUE_DELETED = 9,
	PI_MQ_CODE_INTERNAL = 10,
	PI_MQ_CODE_DUPLICATE_ID = 11,
	PI_MQ_CODE_VERSION = 12,
	PI_MQ_CODE_TOO_MANY_CONNS = 13,
	PI_MQ_CODE_HANDSHAKE_TIMEOUT = 14,
	PI_MQ_CODE_WRITE_TIMEOUT = 15,
};

typedef struct pi_mq_welcome {
	uint16_t version, status;
	uint32_t max_frame, max_message, max_pending_sends, max_pending_bytes, max_prefetch, max_consumers;
} pi_mq_welcome;

/* One decoded broker frame. Pointers alias the decoder's input. Which
 * fields are set depends on type:
 *   SEND_OK          req, id
 *   CONSUME_OK       req, mode, prefetch
 *   CANCEL_OK        req
 *   DELIVER          consumer, tag, id, enqueued_at, deliveries, priority, data/len (body)
 *   ERROR            req, code, data/len (text)
 *   CONSUMER_CLOSED  consumer, code, data/len (text)
 *   PONG             id (the token)
 *   GOAWAY           code, data/len (text) */
typedef struct pi_mq_frame {
	uint8_t type;
	uint8_t mode, priority;
	uint16_t code;
	uint32_t req, consumer, prefetch, deliveries;
	uint64_t id, tag;
	int64_t enqueued_at;
	const uint8_t *data;
	size_t len;
} pi_mq_frame;

/* pi_mq_decode looks at the avail bytes at buf. It returns 0 if they do not
 * hold a whole frame yet (*need is then the frame's total size if its
 * length field has arrived, else 4), 1 with *f and *used (the frame's total
 * size) set if they do, or PODIPC_ERR_PROTOCOL (podipc_last_error() says
 * why) for a frame no broker may send: length 0 or over max_frame (checked
 * from the length field alone, before the rest has arrived), a type that is
 * not broker-to-client, a payload of the wrong size or with values out of
 * range. It never reads beyond buf + avail. */
int pi_mq_decode(const uint8_t *buf, size_t avail, uint32_t max_frame, pi_mq_frame *f, size_t *used, size_t *need);

/* pi_mq_parse_welcome decodes a WELCOME; PODIPC_ERR_PROTOCOL if its magic is
 * wrong or, when accepted, its limits are implausible. */
int pi_mq_parse_welcome(const uint8_t b[PI_MQ_WELCOME_SIZE], pi_mq_welcome *w);

/* The podipc_error a broker code stands for. */
int pi_mq_code_error(uint16_t code);
/* The protocol document's name of a broker code. */
const char *pi_mq_code_name(uint16_t code);

/* A growable output buffer. */
typedef struct pi_buf {
	uint8_t *p;
	size_t len, cap;
} pi_buf;

/* Reserves n more bytes at the end of b; 0 or PODIPC_ERR_SYSTEM (ENOMEM). */
int pi_buf_reserve(pi_buf *b, size_t n);
void pi_buf_free(pi_buf *b);

/* Encoders append one frame to b. Each returns 0 or PODIPC_ERR_SYSTEM. */
void pi_mq_put_hello(uint8_t b[PI_MQ_HELLO_SIZE], uint16_t min_version, uint16_t max_version);
int pi_mq_put_send(pi_buf *b, uint32_t req, uint8_t priority, uint32_t ttl_ms, uint32_t timeout_ms,
                   const char *queue, size_t qlen, const void *body, size_t len);
int pi_mq_put_consume(pi_buf *b, uint32_t req, uint32_t consumer, uint32_t prefetch, const char *queue, size_t qlen);
int pi_mq_put_cancel(pi_buf *b, uint32_t req, uint32_t consumer);
int pi_mq_put_settle(pi_buf *b, uint8_t type, uint32_t consumer, int requeue, uint64_t tag);
int pi_mq_put_credit(pi_buf *b, uint32_t consumer, uint32_t n);
int pi_mq_put_ping(pi_buf *b, uint64_t token);

static inline uint16_t pi_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t pi_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t pi_le64(const uint8_t *p) { return (uint64_t)pi_le32(p) | (uint64_t)pi_le32(p + 4) << 32; }
static inline void pi_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void pi_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void pi_put64(uint8_t *p, uint64_t v)
{
	pi_put32(p, (uint32_t)v);
	pi_put32(p + 4, (uint32_t)(v >> 32));
}

#endif
