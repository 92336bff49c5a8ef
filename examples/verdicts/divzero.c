#include <stdio.h>
/* Both operands volatile: gcc turns 1 / z into a comparison, no division. */
int main(void) { printf("start\n"); fflush(stdout); volatile int a = 1, z = 0; printf("%d\n", a / z); return 0; }
