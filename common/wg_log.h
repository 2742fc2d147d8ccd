/* wg_log — leveled logging with key=value fields and a settable sink.
 *
 * Lines look like `2026-11-23T10:00:00.123Z INFO broker: job accepted job=abc model=m`.
 * The sink is process-wide; the default writes to stderr. Never call this per
 * token in a hot loop. */
#ifndef WG_LOG_H
#define WG_LOG_H

typedef enum { WG_LOG_DEBUG = 0, WG_LOG_INFO, WG_LOG_WARN, WG_LOG_ERROR, WG_LOG_OFF } wg_log_level;

typedef void (*wg_log_sink_fn)(wg_log_level level, const char *line, void *arg);

/* Messages below `level` are dropped. Default: INFO, or WAGGLE_LOG=debug|info|warn|error|off. */
void wg_log_set_level(wg_log_level level);
wg_log_level wg_log_get_level(void);

/* Replace the sink (NULL restores stderr). `arg` is passed back verbatim. */
void wg_log_set_sink(wg_log_sink_fn fn, void *arg);

/* Format and emit one line; `module` is a short name like "broker". Thread-safe. */
void wg_log(wg_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define wg_debug(mod, ...) wg_log(WG_LOG_DEBUG, mod, __VA_ARGS__)
#define wg_info(mod, ...) wg_log(WG_LOG_INFO, mod, __VA_ARGS__)
#define wg_warn(mod, ...) wg_log(WG_LOG_WARN, mod, __VA_ARGS__)
#define wg_err(mod, ...) wg_log(WG_LOG_ERROR, mod, __VA_ARGS__)

#endif
