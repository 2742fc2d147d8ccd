/* wg_log — one mutex around the sink so lines from threads never interleave. */
#include "wg_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static wg_log_sink_fn s_sink;
static void *s_sink_arg;
static int s_level = -1; /* -1: not yet read from the environment */

static const char *s_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

static int s_env_level(void) {
    const char *e = getenv("WAGGLE_LOG");
    if (!e) return WG_LOG_INFO;
    for (int i = 0; i <= WG_LOG_OFF; i++)
        if (strcasecmp(e, s_names[i]) == 0) return i;
    return WG_LOG_INFO;
}

void wg_log_set_level(wg_log_level level) { s_level = (int)level; }

wg_log_level wg_log_get_level(void) {
    if (s_level < 0) s_level = s_env_level();
    return (wg_log_level)s_level;
}

void wg_log_set_sink(wg_log_sink_fn fn, void *arg) {
    pthread_mutex_lock(&s_lock);
    s_sink = fn;
    s_sink_arg = arg;
    pthread_mutex_unlock(&s_lock);
}

void wg_log(wg_log_level level, const char *module, const char *fmt, ...) {
    if ((int)level < (int)wg_log_get_level() || level >= WG_LOG_OFF) return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, s_names[level], module ? module : "-");
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s_lock);
    if (s_sink)
        s_sink(level, line, s_sink_arg);
    else
        fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&s_lock);
}
