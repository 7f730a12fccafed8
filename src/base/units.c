/* units.c — human-readable sizes. */
#include "base/units.h"

#include <stdio.h>

const char *bytes_str(char *buf, size_t n, double b) {
    if (!(b >= 0) || b > 1e30) /* NaN, negative, absurd: not a size */
        snprintf(buf, n, "? B");
    else if (b >= 1073741824.0)
        snprintf(buf, n, "%.2f GiB", b / 1073741824.0);
    else if (b >= 1048576.0)
        snprintf(buf, n, "%.1f MiB", b / 1048576.0);
    else if (b >= 1024.0)
        snprintf(buf, n, "%.1f KiB", b / 1024.0);
    else
        snprintf(buf, n, "%.0f B", b);
    return buf;
}
