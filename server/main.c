#include <stdio.h>
int main(void) { puts("saserve"); return 0; }
