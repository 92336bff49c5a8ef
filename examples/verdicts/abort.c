#include <stdio.h>
#include <stdlib.h>
int main(void) { printf("start\n"); fflush(stdout); abort(); }
