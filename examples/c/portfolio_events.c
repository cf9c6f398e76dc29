/*
 * Prints an engine's portfolio and its next few lifecycle events, as JSON lines:
 *   portfolio <JSON array>
 *   event <JSON object>        (COUNT times; the first ones are the synthetic "started"
 *                               events of the containers already alive)
 *
 * usage: portfolio_events ENGINE [ENDPOINT [COUNT [TIMEOUT_S]]]
 *   e.g. portfolio_events docker unix:///var/run/docker.sock 5 30
 *        portfolio_events auto "" 5 30      (every engine discovery finds)
 *
 * Build: gcc -std=c99 -Wall -I include examples/c/portfolio_events.c \
 *            -L target/release -lwhalewatcher -Wl,-rpath,target/release
 */
#include <stdio.h>
#include <stdlib.h>

#include "whalewatcher.h"

static int fail(const char *what, int status) {
    fprintf(stderr, "%s: status %d: %s\n", what, status, ww_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: %s ENGINE [ENDPOINT [COUNT [TIMEOUT_S]]]\n", argv[0]);
        return 2;
    }
    const char *engine = argv[1];
    const char *endpoint = argc > 2 ? argv[2] : NULL;
    long count = argc > 3 ? strtol(argv[3], NULL, 10) : 5;
    uint64_t timeout_ms = (uint64_t)(argc > 4 ? strtol(argv[4], NULL, 10) : 30) * 1000;

    ww_watcher *w = NULL;
    int st = ww_watcher_new(engine, endpoint, &w);
    if (st != WW_OK) {
        return fail("ww_watcher_new", st);
    }
    int rc = 0;
    ww_subscription *sub = NULL;
    char *json = NULL;

    st = ww_watcher_wait_ready(w, timeout_ms);
    if (st != WW_OK) {
        rc = fail("ww_watcher_wait_ready", st);
        goto out;
    }
    st = ww_watcher_portfolio_json(w, &json);
    if (st != WW_OK) {
        rc = fail("ww_watcher_portfolio_json", st);
        goto out;
    }
    printf("portfolio %s\n", json);
    fflush(stdout);
    ww_string_free(json);
    json = NULL;

    st = ww_watcher_subscribe(w, &sub);
    if (st != WW_OK) {
        rc = fail("ww_watcher_subscribe", st);
        goto out;
    }
    for (long seen = 0; seen < count;) {
        st = ww_subscription_next(sub, timeout_ms, &json);
        if (st == WW_OK) {
            printf("event %s\n", json);
            fflush(stdout);
            seen++;
        } else if (st == WW_GAP || st == WW_ENGINE) {
            /* lost events, or ("auto") an engine attached or vanished */
            fprintf(stderr, "note: %s\n", json);
        } else {
            rc = fail("ww_subscription_next", st);
            goto out;
        }
        ww_string_free(json);
        json = NULL;
    }

out:
    ww_string_free(json);
    ww_subscription_free(sub);
    ww_watcher_close(w);
    return rc;
}
