#include "util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (256 * 1024)
#define ARENA_ALIGN 16

struct arena_chunk {
    arena_chunk *next;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

void arena_init(arena *a)
{
    memset(a, 0, sizeof *a);
}

void arena_free(arena *a)
{
    for (arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    arena_init(a);
}

void *arena_alloc(arena *a, size_t size)
{
    if (size > SIZE_MAX - ARENA_ALIGN - sizeof(arena_chunk))
        return NULL;
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (!a->head || a->cap - a->used < size) {
        size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        arena_chunk *c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        a->total += sizeof *c + cap;
        if (a->head && size > ARENA_CHUNK && a->cap - a->used > 0) {
            /* keep filling the current chunk: put the big one behind it */
            c->next = a->head->next;
            a->head->next = c;
            return c->data;
        }
        c->next = a->head;
        a->head = c;
        a->used = 0;
        a->cap = cap;
    }
    void *p = a->head->data + a->used;
    a->used += size;
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *p = arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = 0;
    return p;
}
