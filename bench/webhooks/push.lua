-- wrk script for bench/webhooks/run.sh: a signed GitHub `push`, with a distinct delivery id on
-- every request so slipway's delivery dedup never short-circuits the work (each request must
-- verify, parse, plan and commit a job and its delivery row).
--
-- The body and its signature are made once by run.sh and passed in the environment: GitHub's
-- X-Hub-Signature-256 covers only the body, so one signature serves every request.
--   WEBHOOK_BODY       path of the JSON body
--   WEBHOOK_SIGNATURE  "sha256=<hex HMAC-SHA256 of the body>"
--   WEBHOOK_RUN        8 hex digits, distinct for every wrk run against one database
-- Delivery ids look like GitHub's (a 36-character UUID): RUN-THREAD-4000-8000-COUNTER.

local function need(name)
  local value = os.getenv(name)
  if value == nil or value == "" then error("push.lua: " .. name .. " is not set") end
  return value
end

local fh = assert(io.open(need("WEBHOOK_BODY"), "rb"))
local body = fh:read("*a")
fh:close()
local run = need("WEBHOOK_RUN")
local headers = {
  ["Content-Type"] = "application/json",
  ["User-Agent"] = "GitHub-Hookshot/bench",
  ["X-GitHub-Event"] = "push",
  ["X-Hub-Signature-256"] = need("WEBHOOK_SIGNATURE"),
}

-- setup() runs in wrk's main Lua state, once per thread, before the threads start; each thread
-- then runs this file in its own state with `thread_id` set.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local sent = 0
function request()
  sent = sent + 1
  headers["X-GitHub-Delivery"] = string.format("%s-%04x-4000-8000-%012x", run, thread_id, sent)
  return wrk.format("POST", nil, headers, body)
end
