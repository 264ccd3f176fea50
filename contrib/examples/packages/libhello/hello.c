#include <stdio.h>
#include "hello.h"

void hello(const char *who) {
    printf("hello from libhello, %s\n", who);
}
