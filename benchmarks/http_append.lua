-- wrk script for benchmarks.http: single-event appends, every request to a new stream.
--
--   wrk -t1 -c16 -d5s -s benchmarks/http_append.lua http://127.0.0.1:8000 -- PREFIX BODYFILE
--
-- BODYFILE holds the JSON body of one append (written by benchmarks.http, so wrk and the
-- in-process baseline append the same event). Stream names are PREFIX-<thread>-<n>, so
-- no two requests touch the same stream and the server never waits on a stream lock.
-- done() prints one JSON line (prefixed "WRK ") that benchmarks.http parses.

local threads = {}
local counter = 0

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

function init(args)
    prefix = args[1] or "wrk"
    local file = assert(io.open(args[2], "rb"))
    body = file:read("*a")
    file:close()
    headers = {["Content-Type"] = "application/json"}
    n = 0
end

function request()
    n = n + 1
    return wrk.format("POST", "/v1/streams/" .. prefix .. "-" .. id .. "-" .. n, headers, body)
end

function done(summary, latency, requests)
    local errors = summary.errors
    io.write(string.format(
        'WRK {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
        '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
        summary.requests, summary.duration, errors.status,
        errors.connect + errors.read + errors.write + errors.timeout,
        latency:percentile(50), latency:percentile(99), latency.max))
end
