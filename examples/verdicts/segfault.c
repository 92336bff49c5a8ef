#include <stdio.h>
int main(void) { printf("start\n"); fflush(stdout); volatile int *p = 0; *p = 1; return 0; }
