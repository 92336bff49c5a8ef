#include <stdio.h>
#include <string.h>
int main(void) {
    long lo = 1, hi = 1000000000;
    char reply[16];
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        printf("? %ld\n", mid); fflush(stdout);
        if (scanf("%15s", reply) != 1) return 1;
        if (strcmp(reply, "equal") == 0) { lo = hi = mid; break; }
        if (strcmp(reply, "less") == 0) hi = mid - 1; else lo = mid + 1;
    }
    printf("! %ld\n", lo); fflush(stdout);
    return 0;
}
