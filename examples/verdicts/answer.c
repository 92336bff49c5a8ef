#include <stdio.h>
int main(void) { printf("41\n"); return 0; }
