/* The conformance suite's message format (docs/clients.md), shared by the
 * C peers (podipc-shm-peer, podipc-mq-peer):
 *
 *   bytes 0-3   producer id (0xFFFFFFFF: the end marker)
 *   bytes 4-7   sequence number, from 0 per producer
 *   bytes 8-11  CRC-32C of bytes 16..len
 *   bytes 12-15 zero
 *   bytes 16..  payload: byte k is (id*31 + seq*7 + k) mod 256
 */
#ifndef PODIPC_PEER_MSG_H
#define PODIPC_PEER_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
	}
	return ~c;
}

static inline void fill(uint8_t *b, size_t size, uint32_t id, uint32_t seq)
{
	for (size_t k = 16; k < size; k++)
		b[k] = (uint8_t)(id * 31 + seq * 7 + k);
	uint32_t hdr[4] = {id, seq, crc32c(b + 16, size - 16), 0};
	memcpy(b, hdr, sizeof hdr);
}

/* check returns 0 if the message is well-formed, with its id and seq. */
static inline int check(const uint8_t *b, size_t n, uint32_t *id, uint32_t *seq)
{
	if (n < 16)
		return -1;
	uint32_t hdr[4];
	memcpy(hdr, b, sizeof hdr);
	*id = hdr[0];
	*seq = hdr[1];
	if (*id == UINT32_MAX)
		return 0;
	if (hdr[2] != crc32c(b + 16, n - 16))
		return -1;
	for (size_t k = 16; k < n; k++)
		if (b[k] != (uint8_t)(*id * 31 + *seq * 7 + k))
			return -1;
	return 0;
}

#endif
