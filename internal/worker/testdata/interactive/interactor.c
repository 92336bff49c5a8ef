/* Guess the number, testlib-style: interactor <input> <output> [<answer>].
   The input file holds the secret and the query limit. The program asks
   "? x" and hears "less", "greater" or "equal"; it ends with "! x". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static FILE *msg;
static void verdict(int code, const char *text, long a) {
    fprintf(msg, text, a); fputc('\n', msg); fclose(msg); exit(code);
}
int main(int argc, char **argv) {
    FILE *in = fopen(argv[1], "r");
    msg = fopen(argv[2], "w");
    long secret, limit, queries = 0;
    if (!in || !msg || fscanf(in, "%ld %ld", &secret, &limit) != 2) return 3;
    char op[4]; long x;
    for (;;) {
        if (scanf("%3s %ld", op, &x) != 2) verdict(1, "unexpected end of the program's output after %ld queries", queries);
        if (strcmp(op, "!") == 0) {
            if (x != secret) verdict(1, "wrong guess %ld", x);
            verdict(0, "found in %ld queries", queries);
        }
        if (strcmp(op, "?") != 0) verdict(2, "expected ? or !, query %ld", queries + 1);
        if (++queries > limit) verdict(1, "more than %ld queries", limit);
        puts(secret < x ? "less" : secret > x ? "greater" : "equal");
        fflush(stdout);
    }
}
