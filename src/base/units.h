/* units.h — human-readable sizes for messages ("1.50 GiB", "12.0 MiB", "3.2 KiB"). */
#ifndef LLMRT_BASE_UNITS_H
#define LLMRT_BASE_UNITS_H

#include <stddef.h>

/* Writes b bytes in the largest fitting unit into buf and returns buf. */
const char *bytes_str(char *buf, size_t n, double b);

#endif
