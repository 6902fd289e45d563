-- wrk script: POST a signed webhook body with a fresh X-GitHub-Delivery per request.
-- usage: wrk -s post.lua URL -- BODY_FILE SIGNATURE [EVENT]
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Hub-Signature-256"] = args[2]
  wrk.headers["X-GitHub-Event"] = args[3] or "push"
  prefix = string.format("bench-%d-%d-%d", os.time(), math.random(1, 1e9), tid)
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. counter
  return wrk.format()
end

function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"duration_us\": %d, \"rps\": %.1f, " ..
    "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"errors\": %d}\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout))
end
