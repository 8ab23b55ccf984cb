/* Fuzzes the channel-file validation: podipc_channel_open must answer every
 * file (random bytes, mutations of a valid header, wrong sizes) with an
 * error class or a channel that then works without a crash, under ASan and
 * UBSan. Also corrupts the ring of a valid channel and drives a consumer
 * and a producer over it: they report PODIPC_ERR_CORRUPT, never read out of
 * bounds. Deterministic: the seed is the iteration number.
 *
 *   fuzz-header [iterations]            (default 20000)
 *
 * With -DPODIPC_LIBFUZZER the same check is a libFuzzer target. */
#include "testing.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

#include "../src/internal.h"

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state += 0x9E3779B97F4A7C15ull;
	uint64_t z = rng_state;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint8_t valid[8192];
static size_t valid_len;
static const char *fuzz_file;

static void check_open(const uint8_t *data, size_t len)
{
	int fd = open(fuzz_file, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len)) {
		perror("write fuzz file");
		exit(2);
	}
	close(fd);
	podipc_channel *ch = NULL;
	int rc = podipc_channel_open(fuzz_file, &ch);
	if (rc == PODIPC_OK) {
		podipc_stats st;
		podipc_channel_stats(ch, &st);
		podipc_consumer *c = NULL;
		if (podipc_consumer_open(ch, NULL, &c) == PODIPC_OK) {
			char buf[64];
			size_t n;
			for (int i = 0; i < 4; i++)
				podipc_consumer_recv(c, buf, sizeof buf, &n, 0);
			podipc_consumer_close(c);
		}
		podipc_channel_close(ch);
	} else if (rc != PODIPC_ERR_TRUNCATED && rc != PODIPC_ERR_NOT_CHANNEL && rc != PODIPC_ERR_VERSION &&
	           rc != PODIPC_ERR_CORRUPT) {
		fprintf(stderr, "open of a %zu-byte file gave %d (%s): %s\n", len, rc, podipc_strerror(rc),
		        podipc_last_error());
		abort();
	}
}

#ifdef PODIPC_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (!fuzz_file)
		fuzz_file = "/dev/shm/podipc-fuzz-header";
	check_open(data, len);
	return 0;
}
#else

/* Ring corruption: random slot words in a valid 8-slot queue. */
static void check_ring(const char *path, uint64_t iter)
{
	podipc_channel_options o = {.mode = PODIPC_MODE_QUEUE, .slot_size = 32, .slot_count = 8};
	podipc_channel *ch = NULL;
	unlink(path);
	if (podipc_channel_create(path, &o, 0600, &ch) != PODIPC_OK) {
		fprintf(stderr, "create: %s\n", podipc_last_error());
		exit(2);
	}
	int fd = open(path, O_RDWR);
	uint64_t slots_off = 4096, stride = 64;
	for (int k = 0; k < 1 + (int)(rnd() % 4); k++) {
		uint64_t slot = rnd() % 8, w = rnd();
		if (iter % 2) /* plausible words: small sequence, a real state, some owner */
			w = (rnd() % 24) << 16 | (rnd() % 6) << 12 | (rnd() % 3);
		(void)!pwrite(fd, &w, 8, (off_t)(slots_off + slot * stride));
		if (rnd() % 2) {
			uint32_t len = (uint32_t)(rnd() % 64);
			(void)!pwrite(fd, &len, 4, (off_t)(slots_off + slot * stride + 8));
		}
	}
	if (rnd() % 2) {
		uint64_t v = rnd() % 32;
		(void)!pwrite(fd, &v, 8, (off_t)(rnd() % 2 ? 0x80 : 0x100));
	}
	close(fd);
	podipc_consumer *c = NULL;
	podipc_producer *p = NULL;
	if (podipc_consumer_open(ch, NULL, &c) != 0 || podipc_producer_open(ch, NULL, &p) != 0) {
		fprintf(stderr, "peers: %s\n", podipc_last_error());
		exit(2);
	}
	char buf[32];
	size_t n;
	for (int i = 0; i < 12; i++) {
		podipc_producer_send(p, "x", 1, 0);
		podipc_consumer_recv(c, buf, sizeof buf, &n, 0);
	}
	unsigned r;
	podipc_channel_reap_dead_peers(ch, &r);
	podipc_producer_close(p);
	podipc_consumer_close(c);
	podipc_channel_close(ch);
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 20000;
	make_test_dir();
	char file[400], ring[400];
	snprintf(file, sizeof file, "%s/fuzz", test_dir);
	snprintf(ring, sizeof ring, "%s/ring", test_dir);
	fuzz_file = file;

	podipc_channel_options o = {.mode = PODIPC_MODE_QUEUE, .slot_size = 32, .slot_count = 4, .max_peers = 4};
	podipc_channel *ch = NULL;
	if (podipc_channel_create(test_path("valid"), &o, 0600, &ch) != PODIPC_OK) {
		fprintf(stderr, "create: %s\n", podipc_last_error());
		return 2;
	}
	podipc_channel_close(ch);
	int fd = open(test_path("valid"), O_RDONLY);
	valid_len = (size_t)read(fd, valid, sizeof valid);
	close(fd);

	uint8_t buf[sizeof valid + 64];
	for (long i = 0; i < iterations; i++) {
		rng_state = (uint64_t)i;
		size_t len;
		switch (rnd() % 4) {
		case 0: /* random bytes, random length */
			len = rnd() % sizeof buf;
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rnd();
			break;
		default: /* a valid file with a few header bytes flipped and maybe resized */
			memcpy(buf, valid, valid_len);
			len = valid_len;
			for (int k = 0; k < 1 + (int)(rnd() % 3); k++)
				buf[rnd() % 80] ^= (uint8_t)(1u << (rnd() % 8));
			if (rnd() % 2) { /* a consistent checksum: the field checks must catch it */
				uint32_t crc = pi_crc32c(buf, 72);
				memcpy(buf + 72, &crc, 4);
			}
			if (rnd() % 4 == 0)
				len = rnd() % sizeof buf;
			break;
		}
		check_open(buf, len);
		if (i % 8 == 0)
			check_ring(ring, (uint64_t)i);
	}
	check_open(valid, valid_len);
	remove_test_dir();
	fprintf(stderr, "ok   fuzz-header: %ld inputs\n", iterations);
	return 0;
}
#endif
