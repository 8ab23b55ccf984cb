/* Internal helpers of libpodipc; not installed. */
#ifndef PODIPC_INTERNAL_H
#define PODIPC_INTERNAL_H

#include <stdint.h>
#include <stddef.h>

#if defined(__GNUC__)
#define PI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PI_PRINTF(f, a)
#endif

/* Records the calling thread's detailed message and returns code. */
int pi_fail(int code, const char *fmt, ...) PI_PRINTF(2, 3);
/* Records "what: strerror(errno)", keeps errno, returns PODIPC_ERR_SYSTEM. */
int pi_sys(const char *what);

uint32_t pi_crc32c(const void *data, size_t len);

#endif
