#include "util/strmap.h"

#include <stdlib.h>
#include <string.h>

void strmap_init(strmap *m)
{
    memset(m, 0, sizeof *m);
}

void strmap_free(strmap *m)
{
    free(m->keys);
    free(m->vals);
    strmap_init(m);
}

uint64_t strmap_hash(const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static size_t find_slot(const char **keys, size_t cap, const char *key)
{
    size_t i = strmap_hash(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static int grow(strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    const char **keys = calloc(cap, sizeof *keys);
    int64_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = find_slot(keys, cap, m->keys[i]);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int strmap_put(strmap *m, const char *key, int64_t val)
{
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) < 0)
        return -1;
    size_t i = find_slot(m->keys, m->cap, key);
    if (m->keys[i])
        return 0;
    m->keys[i] = key;
    m->vals[i] = val;
    m->len++;
    return 1;
}

int64_t strmap_get(const strmap *m, const char *key)
{
    if (!m->cap)
        return -1;
    size_t i = find_slot(m->keys, m->cap, key);
    return m->keys[i] ? m->vals[i] : -1;
}
