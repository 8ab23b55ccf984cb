/* Fuzzes the mq frame decoder (src/mqwire.c) under ASan and UBSan: every
 * input (random bytes, streams of valid broker frames with bytes flipped,
 * lengths changed or cut short, any max_frame) is decoded as the client
 * decodes its socket's bytes, from an allocation of exactly its size so
 * that a read past the end is caught. Checked for each frame: a decoded
 * frame lies inside the input and its fields inside the frame; "need more"
 * asks for more than there is; an error is PODIPC_ERR_PROTOCOL with a
 * message; a prefix of the input never decodes a frame the whole input
 * does not. Every 500th input is also written by a fake broker to a real
 * client with a consumer, which must answer with an error or go on, never
 * crash. Deterministic: the seed is the iteration number.
 *
 *   fuzz-mqwire [iterations]            (default 20000)
 *
 * With -DPODIPC_LIBFUZZER the decoder check is a libFuzzer target (the
 * first input byte chooses max_frame). */
#include "fakebroker.h"

#include "../src/internal.h"

static void fuzz_fail(const char *what, size_t len)
{
	fprintf(stderr, "fuzz-mqwire: %s (input of %zu bytes)\n", what, len);
	abort();
}

/* check_stream decodes in as a stream of frames and checks every result. */
static void check_stream(const uint8_t *in, size_t len, uint32_t max_frame)
{
	uint8_t *buf = malloc(len ? len : 1);
	memcpy(buf, in, len);
	size_t off = 0;
	for (;;) {
		pi_mq_frame f;
		size_t used = 99, need = 0, avail = len - off;
		int k = pi_mq_decode(buf + off, avail, max_frame, &f, &used, &need);
		if (k < 0) {
			if (k != PODIPC_ERR_PROTOCOL || strncmp(podipc_last_error(), "protocol error: ", 16) != 0)
				fuzz_fail("an error that is not a protocol error", len);
			break;
		}
		if (k == 0) {
			if (used != 0 || need <= avail || need > 4 + (size_t)max_frame)
				fuzz_fail("need-more with a wrong size", len);
			break;
		}
		if (k != 1 || used < PI_MQ_HEADER || used > avail || used != 4 + (size_t)pi_le32(buf + off))
			fuzz_fail("a frame outside its input", len);
		if (f.data && (f.data < buf + off + PI_MQ_HEADER || f.data + f.len > buf + off + used))
			fuzz_fail("a field outside its frame", len);
		if (f.type < 0x81 || f.type > 0x88)
			fuzz_fail("a frame of a type the client does not take", len);
		/* a prefix decodes nothing, or errs on the same length field */
		size_t cut = used - 1 - (size_t)(f.len % (used - 1));
		size_t u2, n2;
		pi_mq_frame g;
		if (pi_mq_decode(buf + off, cut, max_frame, &g, &u2, &n2) != 0)
			fuzz_fail("a prefix decoded", len);
		off += used;
	}
	free(buf);
}

#ifdef PODIPC_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (len == 0)
		return 0;
	check_stream(data + 1, len - 1, PI_MQ_MIN_FRAME + (uint32_t)data[0] * 997u);
	return 0;
}
#else

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state += 0x9E3779B97F4A7C15ull;
	uint64_t z = rng_state;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void put_frame(pi_buf *b, uint8_t type, const uint8_t *p, size_t n)
{
	pi_buf_reserve(b, 5 + n);
	pi_put32(b->p + b->len, (uint32_t)(n + 1));
	b->p[b->len + 4] = type;
	memcpy(b->p + b->len + 5, p, n);
	b->len += 5 + n;
}

/* valid_stream appends one valid frame of every broker type (consumer 1). */
static void valid_stream(pi_buf *b)
{
	uint8_t p[64] = {0};
	pi_put32(p, 1);
	pi_put64(p + 4, 77);
	put_frame(b, PI_MQ_SEND_OK, p, 12);
	p[4] = 1;
	pi_put32(p + 5, 8);
	put_frame(b, PI_MQ_CONSUME_OK, p, 9);
	put_frame(b, PI_MQ_CANCEL_OK, p, 4);
	memset(p, 0, sizeof p);
	pi_put32(p, 1);
	pi_put64(p + 4, 5);
	pi_put32(p + 28, 1);
	p[32] = 4;
	memcpy(p + 33, "body bytes", 10);
	put_frame(b, PI_MQ_DELIVER, p, 43);
	pi_put32(p, 1);
	pi_put16(p + 4, 2);
	memcpy(p + 6, "full", 4);
	put_frame(b, PI_MQ_ERROR, p, 10);
	put_frame(b, PI_MQ_CONSUMER_CLOSED, p, 10);
	put_frame(b, PI_MQ_PONG, p, 8);
	put_frame(b, PI_MQ_GOAWAY, p + 4, 6);
}

/* ---- the same inputs through a real client ---- */

static const uint8_t *e2e_input;
static size_t e2e_len;

static void script_fuzz(fb *b)
{
	fb_frame f;
	if (fb_accept(b) != 0 || fb_next(b, &f) != 0 || f.type != PI_MQ_CONSUME)
		return;
	fb_consume_ok(b, pi_le32(f.p), 1, 8);
	b->chunk = (int)(e2e_len % 7) + 1;
	fb_write(b, e2e_input, e2e_len);
	shutdown(b->cfd, SHUT_WR);
	while (fb_next(b, &f) == 0)
		;
}

static void check_client(const uint8_t *in, size_t len)
{
	fb b;
	fb_listen(&b, "fuzz.sock");
	b.w.max_frame = PI_MQ_MIN_FRAME;
	b.w.max_message = 1024;
	e2e_input = in;
	e2e_len = len;
	fb_start(&b, script_fuzz);
	podipc_mq_options o = {.no_reconnect = 1, .uid_check = PODIPC_MQ_UID_NONE};
	podipc_mq *mq = NULL;
	podipc_mq_consumer *c = NULL;
	if (podipc_mq_connect(b.path, &o, &mq) != 0 || podipc_mq_consume(mq, "q", 8, 5000 * PODIPC_MS, &c) != 0) {
		fprintf(stderr, "fuzz-mqwire: client setup: %s\n", podipc_last_error());
		exit(2);
	}
	podipc_mq_delivery d;
	int rc;
	while ((rc = podipc_mq_receive(c, 5000 * PODIPC_MS, &d)) == 0) {
		volatile uint8_t sum = 0;
		for (size_t i = 0; i < d.len; i++) /* ASan: the body is inside its buffer */
			sum += ((const uint8_t *)d.body)[i];
		(void)sum;
		podipc_mq_ack(c, &d);
	}
	if (rc == PODIPC_ERR_TIMEOUT) {
		fprintf(stderr, "fuzz-mqwire: the client hung on a closed connection\n");
		abort();
	}
	podipc_mq_close(mq);
	if (fb_stop(&b))
		exit(2);
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 20000;
	make_test_dir();
	pi_buf valid = {0};
	valid_stream(&valid);
	uint8_t buf[512];
	for (long i = 0; i < iterations; i++) {
		rng_state = (uint64_t)i;
		size_t len;
		if (rnd() % 4 == 0) { /* random bytes, with plausible lengths now and then */
			len = rnd() % sizeof buf;
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rnd();
			if (len > 5 && rnd() % 2)
				pi_put32(buf, (uint32_t)(rnd() % len));
		} else { /* the valid stream, mutated */
			memcpy(buf, valid.p, valid.len);
			len = valid.len;
			for (int k = 0; k < 1 + (int)(rnd() % 4); k++) {
				size_t at = rnd() % len;
				switch (rnd() % 3) {
				case 0: buf[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
				case 1: buf[at] = (uint8_t)rnd(); break;
				default: buf[at] = (uint8_t)(rnd() % 2 ? 0 : 0xFF);
				}
			}
			if (rnd() % 4 == 0)
				len = rnd() % (len + 1);
		}
		uint32_t max_frame = rnd() % 3 ? PI_MQ_MIN_FRAME : (uint32_t)(rnd() % 64) + 1;
		check_stream(buf, len, max_frame);
		if (i % 500 == 0)
			check_client(buf, len);
	}
	check_stream(valid.p, valid.len, PI_MQ_MIN_FRAME);
	pi_buf_free(&valid);
	remove_test_dir();
	fprintf(stderr, "ok   fuzz-mqwire: %ld inputs\n", iterations);
	return 0;
}
#endif
