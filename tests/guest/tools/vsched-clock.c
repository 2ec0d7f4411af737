/* vsched-clock: print CLOCK_MONOTONIC in nanoseconds (the guest init times
 * workloads with it; busybox has no monotonic clock with ns resolution). */
#include <stdio.h>
#include <time.h>

int main(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 1;
    printf("%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    return 0;
}
