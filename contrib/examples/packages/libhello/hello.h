void hello(const char *who);
