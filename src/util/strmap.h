/*
 * strmap.h — a string-keyed hash map to int64 values (open addressing,
 * linear probing, FNV-1a). Keys are not copied: they must outlive the map.
 * Used for "find the tensor / key by name" and duplicate detection.
 */
#ifndef SW_STRMAP_H
#define SW_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap {
    const char **keys;
    int64_t *vals;
    size_t cap, len; /* cap is a power of two, or 0 */
} strmap;

void strmap_init(strmap *m);
void strmap_free(strmap *m);
/* Inserts key -> val. Returns 1 if added, 0 if the key already existed (its
 * value is left unchanged), -1 when out of memory. */
int strmap_put(strmap *m, const char *key, int64_t val);
/* Value for key, or -1 if absent. */
int64_t strmap_get(const strmap *m, const char *key);
uint64_t strmap_hash(const char *key);

#endif
