#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    printf("start\n"); fflush(stdout);
    for (;;) { char *p = malloc(1 << 20); if (!p) return 9; memset(p, 1, 1 << 20); }
}
