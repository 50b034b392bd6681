-- wrk script of the end-to-end tests (tests/e2e/load.py) and the edge bench
-- (bench/edge/wrk.py): counts every response by status and the 200s that lack a RateLimit
-- header (on a limited path: answered by the failure mode, not decided), then prints one
-- line: WRK_RESULT {json}.
-- WRK_PACE_MS (environment, whole milliseconds, default 0): when above 0, each connection
-- waits that long after an answer before its next request (wrk's delay()), so the load is
-- paced instead of closed loop; the report then carries "pace_ms".
-- Globals, not locals: done() reads each thread's copy with thread:get().
statuses = {}
missing = 0
local threads = {}
local pace_ms = math.floor(tonumber(os.getenv("WRK_PACE_MS") or "0") or 0)

if pace_ms > 0 then
   -- wrk calls delay() only when the script defines it: closed loop otherwise.
   function delay()
      return pace_ms
   end
end

function setup(thread)
   table.insert(threads, thread)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   -- Header names arrive as sent: uvicorn sends them lower-cased, Nginx keeps them so.
   if status == 200 and headers["ratelimit"] == nil and headers["RateLimit"] == nil then
      missing = missing + 1
   end
end

function done(summary, latency, requests)
   local all, lacking = {}, 0
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do
         all[status] = (all[status] or 0) + n
      end
      lacking = lacking + thread:get("missing")
   end
   local parts = {}
   for status, n in pairs(all) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   local errors = summary.errors
   io.write(string.format(
      'WRK_RESULT {"statuses":{%s},"missing_ratelimit":%d,"pace_ms":%d,"requests":%d,"duration_us":%d,' ..
      '"bytes":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"status_errors":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
      table.concat(parts, ","), lacking, pace_ms, summary.requests, summary.duration, summary.bytes,
      errors.connect, errors.read, errors.write, errors.timeout, errors.status,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
