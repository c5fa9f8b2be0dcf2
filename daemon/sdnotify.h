/* The sd_notify protocol, implemented directly: a datagram to $NOTIFY_SOCKET. */
#ifndef EFFDETD_SDNOTIFY_H
#define EFFDETD_SDNOTIFY_H

#include <stdint.h>

/* Send "READY=1", "STATUS=...", ... Returns 1 if sent, 0 when not under systemd
 * (no NOTIFY_SOCKET), -1 on error. */
int sd_notify_send(const char *state);
/* Watchdog interval in microseconds (WATCHDOG_USEC, honouring WATCHDOG_PID), 0 if none. */
uint64_t sd_watchdog_usec(void);
/* CLOCK_MONOTONIC in microseconds, for RELOADING=1 + MONOTONIC_USEC=. */
uint64_t sd_monotonic_usec(void);

#endif
