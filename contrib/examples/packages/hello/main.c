#include <hello.h>

int main(int argc, char **argv) {
    hello(argc > 1 ? argv[1] : "world");
    return 0;
}
