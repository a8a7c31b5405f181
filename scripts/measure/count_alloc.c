// LD_PRELOAD shim: counts heap allocations; SIGUSR1 prints the running totals to stderr.
// gcc -O2 -shared -fPIC -o count_alloc.so count_alloc.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <unistd.h>
// Counts every allocation entry point glibc offers (operator new and Asio's aligned_new land here).
static atomic_long g_count, g_bytes;
static void note(size_t n) { atomic_fetch_add(&g_count, 1); atomic_fetch_add(&g_bytes, (long)n); }
#define REAL(name) static __typeof__(name)* real_##name; if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)
void* malloc(size_t n) { REAL(malloc); note(n); return real_malloc(n); }
void* realloc(void* p, size_t n) { REAL(realloc); note(n); return real_realloc(p, n); }
void* aligned_alloc(size_t a, size_t n) { REAL(aligned_alloc); note(n); return real_aligned_alloc(a, n); }
int posix_memalign(void** p, size_t a, size_t n) { REAL(posix_memalign); note(n); return real_posix_memalign(p, a, n); }
void* memalign(size_t a, size_t n) { REAL(memalign); note(n); return real_memalign(a, n); }
static void report(int sig) { (void)sig; char buf[80]; int k = snprintf(buf, sizeof buf, "allocs=%ld bytes=%ld\n", atomic_load(&g_count), atomic_load(&g_bytes)); write(2, buf, k); }
__attribute__((constructor)) static void init(void) { signal(SIGUSR1, report); }
