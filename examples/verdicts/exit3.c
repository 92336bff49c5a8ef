#include <stdio.h>
int main(void) { printf("start\n"); fprintf(stderr, "bye\n"); return 3; }
