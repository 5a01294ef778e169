/*
 * pressure_int.h — the monitor's insides, shared by pressure.c (finding and
 * reading the files) and pressure_watch.c (the thread). Not for use outside
 * src/store/pressure*.c.
 */
#ifndef SW_PRESSURE_INT_H
#define SW_PRESSURE_INT_H

#include "store/pressure.h"

struct pressure_watch;

struct pressure_mon {
    char *proc;     /* root of procfs */
    char *cg1;      /* v1 memory controller directory of this process, or NULL */
    char *cg2;      /* v2 directory of this process, or NULL */
    char *cg2_top;  /* v2 mount point: where walks up the hierarchy stop */
    int cg2_memory; /* the v2 directory has the memory controller */
    char source[1024];
    struct pressure_watch *watch; /* pressure_watch.c; NULL when not running */
};

/* path/name into buf (cap bytes); 0, or -1 if it does not fit. */
int pressure_path(char *buf, size_t cap, const char *dir, const char *name);

#endif
