#include <stdio.h>
int main(void) {
    printf("start\n"); fflush(stdout);
    FILE *f = fopen("big", "w"); char b[4096] = {0};
    for (int i = 0; i < 1024; i++) fwrite(b, 1, sizeof b, f);
    fclose(f); return 0;
}
