/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Go's
 * hash/crc32 with crc32.Castagnoli: only the 72-byte channel header is
 * checksummed, so a table-driven byte loop is plenty. */
#include <pthread.h>
#include <stdint.h>
#include <stddef.h>

#include "internal.h"

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void make_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
}

uint32_t pi_crc32c(const void *data, size_t len)
{
	pthread_once(&table_once, make_table);
	const uint8_t *p = data;
	uint32_t c = 0xFFFFFFFFu;
	while (len--)
		c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}
