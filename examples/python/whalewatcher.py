"""ctypes wrapper of the whalewatcher C ABI (include/whalewatcher.h).

The library is looked up in $WHALEWATCHER_LIB (a path to libwhalewatcher.so), else by the
system loader as libwhalewatcher.so. Containers and events come back as the dicts of the
`whalewatch ps --json` and `events --json` schemas.

    with Watcher("docker", "unix:///var/run/docker.sock") as w:
        w.wait_ready(10)
        print(w.portfolio())
        with w.subscribe() as events:
            print(events.next(5))

Thread safety follows the C ABI: a Watcher and a Subscription may be used from several
threads at once, but must not be closed while another thread uses them.
"""

import ctypes
import json
import os

OK, TIMEOUT, NOT_FOUND, ENDED, GAP, LAGGED, ENGINE = 0, 1, 2, 3, 4, 5, 6
HEALTH_STATES = ("connecting", "syncing", "synced", "reconnecting", "failed")


class WhalewatcherError(Exception):
    """A non-OK status of the C ABI, with the library's message."""

    def __init__(self, function, status, message):
        super().__init__(f"{function}: status {status}: {message}")
        self.function = function
        self.status = status
        self.message = message


class Ended(Exception):
    """The subscription has ended (its watcher was closed, or it lagged)."""


class _Handle(ctypes.Structure):
    pass


_P = ctypes.POINTER(_Handle)
_lib = None


def _load():
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(os.environ.get("WHALEWATCHER_LIB") or "libwhalewatcher.so")
    c_str, c_int, u64 = ctypes.c_char_p, ctypes.c_int, ctypes.c_uint64
    out_str = ctypes.POINTER(ctypes.c_void_p)  # char **, freed with ww_string_free
    protos = {
        "ww_version": (c_str, []),
        "ww_last_error": (c_str, []),
        "ww_string_free": (None, [ctypes.c_void_p]),
        "ww_watcher_new": (c_int, [c_str, c_str, ctypes.POINTER(_P)]),
        "ww_watcher_close": (None, [_P]),
        "ww_watcher_wait_ready": (c_int, [_P, u64]),
        "ww_watcher_health": (c_int, [_P, ctypes.POINTER(c_int), out_str]),
        "ww_watcher_portfolio_json": (c_int, [_P, out_str]),
        "ww_watcher_lookup_json": (c_int, [_P, c_str, out_str]),
        "ww_watcher_engine_info_json": (c_int, [_P, out_str]),
        "ww_watcher_subscribe": (c_int, [_P, ctypes.POINTER(_P)]),
        "ww_watcher_subscribe_since": (c_int, [_P, u64, ctypes.POINTER(_P)]),
        "ww_subscription_next": (c_int, [_P, u64, out_str]),
        "ww_subscription_free": (None, [_P]),
    }
    for name, (res, args) in protos.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    _lib = lib
    return lib


def version():
    """The library's version string."""
    return _load().ww_version().decode()


def _take(ptr):
    """Copies a returned char * into a str and frees it."""
    if not ptr.value:
        return None
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        _lib.ww_string_free(ptr.value)


def _check(function, status, allowed=(OK,)):
    if status not in allowed:
        raise WhalewatcherError(function, status, _lib.ww_last_error().decode("utf-8", "replace"))
    return status


def _ms(seconds):
    return max(0, int(seconds * 1000))


class Watcher:
    """Watches one engine: "docker", "podman", "containerd", "cri"; or "auto": every engine
    that discovery finds, now and later (endpoint None, or "with-cri" to watch a standalone
    containerd through its CRI plugin too)."""

    def __init__(self, engine, endpoint=None):
        lib = _load()
        h = _P()
        ep = endpoint.encode() if endpoint else None
        _check("ww_watcher_new", lib.ww_watcher_new(engine.encode(), ep, ctypes.byref(h)))
        self._h = h

    def _handle(self):
        if not self._h:
            raise ValueError("the watcher is closed")
        return self._h

    def wait_ready(self, timeout_s):
        """Waits for the first complete picture; raises on timeout or failure."""
        _check("ww_watcher_wait_ready", _lib.ww_watcher_wait_ready(self._handle(), _ms(timeout_s)))

    def health(self):
        """The health as a dict: {"state": ..., ["since": ...], ["error": ...]}; for "auto"
        {"state": ..., "engines": [...]} (the least healthy engine's state)."""
        state, out = ctypes.c_int(), ctypes.c_void_p()
        _check("ww_watcher_health",
               _lib.ww_watcher_health(self._handle(), ctypes.byref(state), ctypes.byref(out)))
        h = json.loads(_take(out))
        assert h["state"] == HEALTH_STATES[state.value]
        return h

    def portfolio(self):
        """The alive containers: a list of dicts (the `whalewatch ps --json` schema)."""
        out = ctypes.c_void_p()
        _check("ww_watcher_portfolio_json",
               _lib.ww_watcher_portfolio_json(self._handle(), ctypes.byref(out)))
        return json.loads(_take(out))

    def lookup(self, id_or_name):
        """The alive container with this id (or else name) as a dict, or None."""
        out = ctypes.c_void_p()
        st = _check("ww_watcher_lookup_json",
                    _lib.ww_watcher_lookup_json(self._handle(), id_or_name.encode(),
                                                ctypes.byref(out)),
                    (OK, NOT_FOUND))
        return json.loads(_take(out)) if st == OK else None

    def engine_info(self):
        """What the engine said about itself, as a dict, or None before the first listing;
        for "auto" a list of {"engine": ..., "info": ...}, one per attached engine."""
        out = ctypes.c_void_p()
        st = _check("ww_watcher_engine_info_json",
                    _lib.ww_watcher_engine_info_json(self._handle(), ctypes.byref(out)),
                    (OK, NOT_FOUND))
        return json.loads(_take(out)) if st == OK else None

    def subscribe(self, since_seq=None):
        """A Subscription: synthetic "started" events for the portfolio, then live ones
        (or, with since_seq, the journal's events after that sequence number)."""
        h = _P()
        if since_seq is None:
            st = _lib.ww_watcher_subscribe(self._handle(), ctypes.byref(h))
        else:
            st = _lib.ww_watcher_subscribe_since(self._handle(), since_seq, ctypes.byref(h))
        _check("ww_watcher_subscribe", st)
        return Subscription(h)

    def close(self):
        """Stops watching; ends the subscriptions. Idempotent."""
        h, self._h = self._h, None
        if h:
            _lib.ww_watcher_close(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_h", None) and _lib is not None:
            self.close()


class Subscription:
    """A watcher's event stream; iterate it, or call next(timeout_s)."""

    def __init__(self, handle):
        self._h = handle

    def next(self, timeout_s):
        """The next item as a dict (an event, or {"type": "gap"|"lagged", ...}; for "auto"
        also {"type": "attached"|"vanished", "engine": ...}), or None on timeout. Raises
        Ended once the subscription has ended."""
        if not self._h:
            raise Ended("the subscription is closed")
        out = ctypes.c_void_p()
        st = _check("ww_subscription_next",
                    _lib.ww_subscription_next(self._h, _ms(timeout_s), ctypes.byref(out)),
                    (OK, TIMEOUT, ENDED, GAP, LAGGED, ENGINE))
        if st == TIMEOUT:
            return None
        if st == ENDED:
            raise Ended("the subscription has ended")
        return json.loads(_take(out))

    def __iter__(self):
        while True:
            try:
                item = self.next(3600)
            except Ended:
                return
            if item is not None:
                yield item

    def close(self):
        """Unsubscribes. Idempotent."""
        h, self._h = self._h, None
        if h:
            _lib.ww_subscription_free(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_h", None) and _lib is not None:
            self.close()
