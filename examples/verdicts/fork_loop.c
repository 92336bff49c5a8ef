#include <stdio.h>
#include <unistd.h>
int main(void) {
    printf("start\n"); fflush(stdout);
    for (;;) { pid_t p = fork(); if (p < 0) { perror("fork"); return 1; } if (p == 0) { pause(); return 0; } }
}
