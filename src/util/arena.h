/*
 * arena.h — bump allocation for things that live and die together.
 *
 * An arena hands out memory from large chunks and frees it all at once in
 * arena_free(). Used for the strings, arrays and infos a parsed file keeps:
 * many small objects with one owner and one lifetime. Allocations are
 * 16-byte aligned. A request larger than a chunk gets a chunk of its own.
 */
#ifndef SW_ARENA_H
#define SW_ARENA_H

#include <stddef.h>

typedef struct arena_chunk arena_chunk;

typedef struct arena {
    arena_chunk *head;
    size_t used, cap; /* of the head chunk */
    size_t total;     /* bytes allocated from the system */
} arena;

void arena_init(arena *a);
void arena_free(arena *a);
/* NULL when out of memory or on size overflow. */
void *arena_alloc(arena *a, size_t size);
/* Copies len bytes and appends a NUL. */
char *arena_strndup(arena *a, const char *s, size_t len);

#endif
