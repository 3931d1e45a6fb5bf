/*
 * defaults.h - the built-in defaults, each value written once. The engine
 * library uses them when its caller gives 0 / nothing; config/config.c's
 * settings table takes its default strings from them (SA_DEFAULT_STR), and
 * the server passes the configured values on, so a default is never restated
 * in another file. Public: config/ and server/ include it (the settings
 * table's defaults; the command line's usage texts print them with
 * SA_DEFAULT_STR).
 */
#ifndef SA_DEFAULTS_H
#define SA_DEFAULTS_H

#define SA_DEFAULT_THREADS 2
#define SA_DEFAULT_SLOTS 4
#define SA_DEFAULT_QUEUE_MAX 64
#define SA_DEFAULT_PREFILL_CHUNK 128 /* prompt tokens per step, and a standalone workspace's rows */
#define SA_DEFAULT_KV_BLOCK 16       /* token positions per KV page */
#define SA_DEFAULT_TEMPERATURE 1     /* a request's, when it gives none (OpenAI's) */
#define SA_DEFAULT_REPEAT_LAST_N 64  /* tokens the repeat penalty looks back over */
#define SA_DEFAULT_SHARE_THRESHOLD 0.9 /* least attention similarity of an auto span (calibrate.h) */
#define SA_DEFAULT_REBALANCE_ALPHA 0.2 /* re-balancer boost strength (rebalance.h) */
#define SA_DEFAULT_REBALANCE_TAU 0.01  /* re-balancer layer-0 attention threshold (rebalance.h) */

/* A default as the string the settings table holds. */
#define SA_DEFAULT_STR_(x) #x
#define SA_DEFAULT_STR(x) SA_DEFAULT_STR_(x)

#endif
