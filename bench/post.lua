-- wrk script: POST signed pushes, each a push of its own (another "after" commit) under a fresh
-- X-GitHub-Delivery: a body posted twice would be a duplicate, which costs ghapp less.
-- usage: wrk -s post.lua URL -- TEMPLATE_FILE VARIANTS_FILE [EVENT]
-- TEMPLATE_FILE holds the body with @@AFTER@@ in place of the pushed sha; VARIANTS_FILE has a
-- line "<sha> <signature of the body with that sha>" per push.
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local template = f:read("*a")
  f:close()
  local at = assert(string.find(template, "@@AFTER@@", 1, true))
  prefix_body = string.sub(template, 1, at - 1)
  suffix_body = string.sub(template, at + 9)
  variants = {}
  for line in io.lines(args[2]) do
    local sha, signature = string.match(line, "^(%x+) (%S+)$")
    table.insert(variants, {sha, signature})
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = args[3] or "push"
  prefix = string.format("bench-%d-%d-%d", os.time(), math.random(1, 1e9), tid)
  step = 2  -- wrk -t2: each thread its own half of the variants
  next_variant = tid
end

function request()
  counter = counter + 1
  local variant = variants[next_variant]
  next_variant = next_variant + step
  if next_variant > #variants then next_variant = tid end
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. counter
  wrk.headers["X-Hub-Signature-256"] = variant[2]
  return wrk.format(nil, nil, nil, prefix_body .. variant[1] .. suffix_body)
end

function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"duration_us\": %d, \"rps\": %.1f, " ..
    "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"errors\": %d}\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout))
end
