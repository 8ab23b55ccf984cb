/* Error names and the per-thread detail message. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "podipc.h"
#include "internal.h"

static _Thread_local char last_error[512] = "no error";

const char *podipc_last_error(void) { return last_error; }

int pi_fail(int code, const char *fmt, ...)
{
	int saved = errno;
	size_t n = (size_t)snprintf(last_error, sizeof last_error, "%s: ", podipc_strerror(code));
	if (n < sizeof last_error) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(last_error + n, sizeof last_error - n, fmt, ap);
		va_end(ap);
	}
	errno = saved;
	return code;
}

int pi_sys(const char *what)
{
	int saved = errno;
	char buf[128];
	const char *msg = strerror_r(saved, buf, sizeof buf); /* GNU strerror_r */
	snprintf(last_error, sizeof last_error, "%s: %s", what, msg);
	errno = saved;
	return PODIPC_ERR_SYSTEM;
}

const char *podipc_strerror(int err)
{
	switch (err) {
	case PODIPC_OK: return "success";
	case PODIPC_ERR_SYSTEM: return "system error";
	case PODIPC_ERR_INVALID: return "invalid argument";
	case PODIPC_ERR_NOT_CHANNEL: return "not a channel file";
	case PODIPC_ERR_VERSION: return "unsupported layout version";
	case PODIPC_ERR_CORRUPT: return "corrupt channel";
	case PODIPC_ERR_TRUNCATED: return "corrupt channel: truncated";
	case PODIPC_ERR_EXISTS: return "channel file already exists";
	case PODIPC_ERR_NO_SPACE: return "no space for the channel file";
	case PODIPC_ERR_FULL: return "channel full";
	case PODIPC_ERR_EMPTY: return "channel empty";
	case PODIPC_ERR_TIMEOUT: return "timed out";
	case PODIPC_ERR_TOO_LARGE: return "message too large";
	case PODIPC_ERR_WRONG_MODE: return "operation not valid in this channel mode";
	case PODIPC_ERR_PRODUCER_EXISTS: return "broadcast channel already has a producer";
	case PODIPC_ERR_PEER_TABLE_FULL: return "peer table full";
	case PODIPC_ERR_OUTSTANDING: return "a reservation or borrowed message is outstanding";
	case PODIPC_ERR_NOT_HELD: return "no reservation or borrowed message is held";
	case PODIPC_ERR_LAPPED: return "subscriber lapped";
	case PODIPC_ERR_NOT_REGULAR: return "not a regular file";
	case PODIPC_ERR_CLOSED: return "closed";
	case PODIPC_ERR_PROTOCOL: return "protocol error";
	case PODIPC_ERR_IMPOSTOR: return "broker socket served by an impostor";
	case PODIPC_ERR_UNKNOWN_QUEUE: return "unknown queue";
	case PODIPC_ERR_QUEUE_FULL: return "queue full";
	case PODIPC_ERR_TOO_MANY_PENDING: return "too many pending sends";
	case PODIPC_ERR_TOO_MANY_CONSUMERS: return "too many consumers";
	case PODIPC_ERR_TOO_MANY_CONNECTIONS: return "too many connections";
	case PODIPC_ERR_QUEUE_DELETED: return "queue deleted";
	case PODIPC_ERR_SHUTDOWN: return "broker shutting down";
	case PODIPC_ERR_BROKER_INTERNAL: return "broker internal error";
	case PODIPC_ERR_STALE: return "delivery from a lost connection";
	}
	return "unknown podipc error";
}
