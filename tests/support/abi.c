/*
 * Exercises the C ABI's edge paths from C, for tests/ffi_examples.rs to run under
 * valgrind: argument errors, NULL frees, a watcher of an unreachable socket, a
 * subscription that outlives its watcher. usage: abi DOCKER_URL. Prints "ok" at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "whalewatcher.h"

static int failures = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__,    \
                    __LINE__, #cond, ww_last_error());                                \
            failures++;                                                               \
        }                                                                             \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DOCKER_URL\n", argv[0]);
        return 2;
    }
    ww_watcher *w = (ww_watcher *)&failures; /* garbage, must be overwritten */
    char *json = (char *)&failures;
    ww_subscription *sub = NULL;
    int state = -1;

    CHECK(ww_watcher_new(NULL, NULL, &w) == WW_ERR_NULL && w == NULL);
    CHECK(strstr(ww_last_error(), "engine") != NULL);
    CHECK(ww_watcher_new("docker", NULL, NULL) == WW_ERR_NULL);
    CHECK(ww_watcher_new("\xff\xfe", NULL, &w) == WW_ERR_UTF8 && w == NULL);
    CHECK(ww_watcher_new("auto", "unix:///x.sock", &w) == WW_ERR_INVALID_ARGUMENT && w == NULL);
    CHECK(strstr(ww_last_error(), "with-cri") != NULL);
    CHECK(ww_watcher_new("rocket", NULL, &w) == WW_ERR_INVALID_ARGUMENT);
    CHECK(ww_watcher_portfolio_json(NULL, &json) == WW_ERR_NULL && json == NULL);
    CHECK(ww_subscription_next(NULL, 0, &json) == WW_ERR_NULL);
    ww_string_free(NULL);
    ww_subscription_free(NULL);
    ww_watcher_close(NULL);
    CHECK(strcmp(ww_version(), "") != 0);

    /* Unreachable: times out, health says why, nothing is found. */
    CHECK(ww_watcher_new("docker", "unix:///nonexistent/abi.sock", &w) == WW_OK);
    CHECK(strcmp(ww_last_error(), "") == 0);
    CHECK(ww_watcher_wait_ready(w, 200) == WW_TIMEOUT);
    CHECK(strstr(ww_last_error(), "/nonexistent/abi.sock") != NULL);
    CHECK(ww_watcher_health(w, &state, &json) == WW_OK);
    CHECK(state == WW_HEALTH_CONNECTING || state == WW_HEALTH_RECONNECTING);
    CHECK(json != NULL && strstr(json, "\"state\"") != NULL);
    ww_string_free(json);
    CHECK(ww_watcher_health(w, NULL, NULL) == WW_OK);
    CHECK(ww_watcher_lookup_json(w, "x", &json) == WW_NOT_FOUND && json == NULL);
    CHECK(ww_watcher_engine_info_json(w, &json) == WW_NOT_FOUND && json == NULL);
    ww_watcher_close(w);

    /* The real engine: a subscription that outlives its watcher ends. */
    CHECK(ww_watcher_new("docker", argv[1], &w) == WW_OK);
    CHECK(ww_watcher_wait_ready(w, 30000) == WW_OK);
    CHECK(ww_watcher_health(w, &state, NULL) == WW_OK && state == WW_HEALTH_SYNCED);
    CHECK(ww_watcher_engine_info_json(w, &json) == WW_OK);
    CHECK(json != NULL && strstr(json, "\"docker.com\"") != NULL);
    ww_string_free(json);
    CHECK(ww_watcher_portfolio_json(w, &json) == WW_OK && json != NULL && json[0] == '[');
    ww_string_free(json);
    CHECK(ww_watcher_subscribe(w, &sub) == WW_OK && sub != NULL);
    ww_watcher_close(w);
    int st;
    while ((st = ww_subscription_next(sub, 5000, &json)) == WW_OK) {
        ww_string_free(json); /* queued synthetic events drain first */
    }
    CHECK(st == WW_ENDED && json == NULL);
    CHECK(ww_subscription_next(sub, 0, &json) == WW_ENDED);
    ww_subscription_free(sub);

    /* "auto" (discovery finds at least the dockerd): the same, through the fleet. */
    CHECK(ww_watcher_new("auto", NULL, &w) == WW_OK);
    CHECK(ww_watcher_wait_ready(w, 60000) == WW_OK);
    CHECK(ww_watcher_health(w, &state, &json) == WW_OK && state == WW_HEALTH_SYNCED);
    CHECK(json != NULL && strstr(json, "\"engines\":[{") != NULL);
    ww_string_free(json);
    CHECK(ww_watcher_engine_info_json(w, &json) == WW_OK && json != NULL && json[0] == '[');
    ww_string_free(json);
    CHECK(ww_watcher_portfolio_json(w, &json) == WW_OK && json != NULL && json[0] == '[');
    ww_string_free(json);
    sub = (ww_subscription *)&failures;
    CHECK(ww_watcher_subscribe_since(w, 1, &sub) == WW_ERR_UNSUPPORTED && sub == NULL);
    CHECK(ww_watcher_subscribe(w, &sub) == WW_OK && sub != NULL);
    ww_watcher_close(w);
    while ((st = ww_subscription_next(sub, 5000, &json)) == WW_OK || st == WW_ENGINE) {
        ww_string_free(json);
    }
    CHECK(st == WW_ENDED && json == NULL);
    ww_subscription_free(sub);

    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    puts("ok");
    return 0;
}
