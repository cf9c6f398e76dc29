/*
 * whalewatcher.h: the C ABI of the whalewatcher library.
 *
 * Build the library with
 *   cargo rustc --lib --release --features ffi --crate-type cdylib,staticlib
 * and link with -lwhalewatcher (shared: target/release/libwhalewatcher.so; static:
 * target/release/libwhalewatcher.a plus -lpthread -ldl -lm -lrt -lgcc_s -lc).
 *
 * Conventions
 * - Functions return an int status: WW_OK (0), a positive outcome that is not an error
 *   (WW_TIMEOUT, WW_NOT_FOUND, WW_ENDED, WW_GAP, WW_LAGGED, WW_ENGINE), or a negative
 *   error.
 *   After any status other than WW_OK, ww_last_error() describes it (per thread).
 * - Out-parameters are set to NULL first: they are NULL whenever no value is produced.
 * - Strings the library returns are NUL-terminated UTF-8 JSON owned by the caller: free
 *   them with ww_string_free(). Handles are freed with ww_watcher_close() and
 *   ww_subscription_free(). String arguments must be NUL-terminated UTF-8.
 * - JSON schemas: containers as in `whalewatch ps --json`
 *   {"engine","id","name","pid","project","paused","image","labels":{...}},
 *   events as in `whalewatch events --json`
 *   {"seq","time","type","exit_code","oom","synthetic","container":{...}}.
 * - No Rust panic crosses this boundary (it becomes WW_ERR_PANIC); NULL pointers and
 *   invalid UTF-8 are reported as errors.
 *
 * Thread safety
 * - Every function may be called from any thread.
 * - A watcher handle may be used by several threads at the same time (all functions
 *   that take a const ww_watcher *); so may a subscription handle (each event goes to
 *   exactly one caller of ww_subscription_next).
 * - A handle must not be freed (ww_watcher_close, ww_subscription_free) while another
 *   thread is still using that same handle.
 * - Subscriptions are independent of their watcher: closing the watcher ends them (a
 *   blocked ww_subscription_next returns WW_ENDED promptly); they stay valid until freed.
 */
#ifndef WHALEWATCHER_H
#define WHALEWATCHER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
#define WW_OK 0
#define WW_TIMEOUT 1               /* nothing within the timeout (not an error) */
#define WW_NOT_FOUND 2             /* no such alive container / no engine info yet */
#define WW_ENDED 3                 /* the subscription has ended (watcher closed) */
#define WW_GAP 4                   /* events were lost from the journal (JSON says which) */
#define WW_LAGGED 5                /* the consumer fell behind; the subscription ended */
#define WW_ENGINE 6                /* "auto": an engine was attached or vanished (JSON) */
#define WW_ERR_NULL (-1)           /* a required pointer argument was NULL */
#define WW_ERR_UTF8 (-2)           /* a string argument was not valid UTF-8 */
#define WW_ERR_INVALID_ARGUMENT (-3) /* unknown engine type, malformed endpoint */
#define WW_ERR_UNSUPPORTED (-4)    /* not in this build, or not for this watcher kind */
#define WW_ERR_ENGINE (-5)         /* the watcher failed (gave up retrying) or was closed */
#define WW_ERR_PANIC (-6)          /* a Rust panic was caught (a bug: please report) */
#define WW_ERR_INTERNAL (-7)       /* cannot happen (e.g. a NUL byte in returned JSON) */

/* Health states (ww_watcher_health). */
#define WW_HEALTH_CONNECTING 0     /* connecting for the first time */
#define WW_HEALTH_SYNCING 1        /* connected, listing the containers */
#define WW_HEALTH_SYNCED 2         /* the portfolio is current and events flow */
#define WW_HEALTH_RECONNECTING 3   /* connection lost, retrying; portfolio is stale */
#define WW_HEALTH_FAILED 4         /* gave up or closed; final ("auto": one engine did) */

/* A watcher of one container engine (opaque). */
typedef struct ww_watcher ww_watcher;
/* A subscription to a watcher's lifecycle events (opaque). */
typedef struct ww_subscription ww_subscription;

/* The library version, e.g. "0.1.0": static, never free it. */
const char *ww_version(void);

/* The message of the most recent non-OK status on the calling thread, "" after WW_OK.
 * Never NULL. Owned by the library and valid until the next whalewatcher call on the
 * same thread: copy it. */
const char *ww_last_error(void);

/* Frees a string returned by the library. NULL is ignored. */
void ww_string_free(char *s);

/* Starts watching an engine and returns at once. engine: "docker" or "podman" (endpoint
 * a URL such as "unix:///var/run/docker.sock"; default DOCKER_HOST or that socket),
 * "containerd" (socket path; default CONTAINERD_ADDRESS or
 * /run/containerd/containerd.sock), "cri" (socket path; default
 * CONTAINER_RUNTIME_ENDPOINT or the first existing well-known socket), or
 * "auto": every engine that discovery finds (dockerd, podman, containerd, cri-o, by
 * their processes' sockets, the environment and the well-known sockets), now and later;
 * its endpoint is NULL, "" or "with-cri" (also watch a standalone containerd through its
 * CRI plugin). endpoint may be NULL or "" for the default. The handle goes to *out; free
 * it with ww_watcher_close(). */
int ww_watcher_new(const char *engine, const char *endpoint, ww_watcher **out);

/* Stops watching and frees the handle: cancels blocked engine calls, joins the
 * watcher's threads, ends its subscriptions. NULL is ignored. */
void ww_watcher_close(ww_watcher *w);

/* Waits at most timeout_ms for the first complete picture: WW_OK when synced,
 * WW_TIMEOUT (the message names the last connection error), WW_ERR_ENGINE when the
 * watcher failed. */
int ww_watcher_wait_ready(const ww_watcher *w, uint64_t timeout_ms);

/* The health: a WW_HEALTH_* state into *state_out and as JSON into *json_out:
 * {"state":"connecting"|"syncing"|"synced"},
 * {"state":"reconnecting","since":RFC3339,"error":MESSAGE} or
 * {"state":"failed","error":MESSAGE}. Either out-parameter may be NULL.
 * "auto": the state of the least healthy attached engine (WW_HEALTH_SYNCED while none is
 * found); JSON {"state":WORD,"engines":[...]}, one such object per engine with an
 * "engine" member {"kind","api_path","pid","inode","source","managed_by"}; vanished
 * engines as {"state":"vanished","since":RFC3339,"engine":{...}}. */
int ww_watcher_health(const ww_watcher *w, int *state_out, char **json_out);

/* The current portfolio as a JSON array of containers (`whalewatch ps --json`), sorted
 * by project, name and id ("auto": by engine type first). Never waits on the engine. */
int ww_watcher_portfolio_json(const ww_watcher *w, char **json_out);

/* The alive container with this id or else the first with this name, as a JSON object;
 * WW_NOT_FOUND when there is none. */
int ww_watcher_lookup_json(const ww_watcher *w, const char *id_or_name, char **json_out);

/* What the engine said about itself at the last listing, as JSON
 * {"id","type","version","api_path","pid","mode"}; WW_NOT_FOUND before the first.
 * "auto": an array of {"engine":{...},"info":{...}|null}, one per attached engine. */
int ww_watcher_engine_info_json(const ww_watcher *w, char **json_out);

/* Subscribes: first a synthetic "started" event for every container in the current
 * portfolio, then live events, with no gap and no duplicate. Free the handle with
 * ww_subscription_free(). */
int ww_watcher_subscribe(const ww_watcher *w, ww_subscription **out);

/* Subscribes to the journal's events after sequence number seq, then live events (a
 * WW_GAP item first when some are no longer in the journal). After WW_LAGGED,
 * resubscribe with seq = resume_seq - 1. "auto": WW_ERR_UNSUPPORTED (sequence numbers
 * are per engine). */
int ww_watcher_subscribe_since(const ww_watcher *w, uint64_t seq, ww_subscription **out);

/* Waits at most timeout_ms (0: just look) for the next item:
 * WW_OK      *json_out is an event (`whalewatch events --json`), "type" one of
 *            "started", "exited", "paused", "unpaused";
 * WW_GAP     *json_out is {"type":"gap","from":SEQ,"to":SEQ};
 * WW_LAGGED  *json_out is {"type":"lagged","missed":N,"resume_seq":SEQ}, and the
 *            subscription has ended;
 * WW_ENGINE  ("auto") *json_out is {"type":"attached"|"vanished","engine":{...}}: an
 *            engine was found (its synthetic "started" events follow) or has gone (the
 *            "exited" events of its containers, with seq 0, came just before);
 * WW_TIMEOUT nothing arrived, *json_out is NULL;
 * WW_ENDED   the subscription has ended, *json_out is NULL.
 * "auto": gaps and lags name their "engine"; a lagging engine resumes from its journal
 * at once, so the subscription goes on ("resumed":true) and that engine's events from
 * resume_seq on may repeat. */
int ww_subscription_next(const ww_subscription *s, uint64_t timeout_ms, char **json_out);

/* Ends and frees a subscription. NULL is ignored. */
void ww_subscription_free(ww_subscription *s);

#ifdef __cplusplus
}
#endif

#endif /* WHALEWATCHER_H */
