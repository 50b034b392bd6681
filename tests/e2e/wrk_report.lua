-- Counts every response by status, and the 200s without a RateLimit header (answered by a
-- failure mode rather than counted), then prints one line: WRK_RESULT {json}.
-- Globals, not locals: done() reads each thread's copy with thread:get().
counts = {}
uncounted = 0
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
   if status == 200 and headers["ratelimit"] == nil and headers["RateLimit"] == nil then
      uncounted = uncounted + 1
   end
end

function done(summary, latency, requests)
   local statuses, not_counted = {}, 0
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("counts")) do
         statuses[status] = (statuses[status] or 0) + n
      end
      not_counted = not_counted + thread:get("uncounted")
   end
   local parts = {}
   for status, n in pairs(statuses) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   local errors = summary.errors
   io.write(string.format(
      'WRK_RESULT {"statuses":{%s},"uncounted":%d,"requests":%d,"duration_us":%d,' ..
      '"connect":%d,"read":%d,"write":%d,"timeout":%d,"p99_us":%d}\n',
      table.concat(parts, ","), not_counted, summary.requests, summary.duration,
      errors.connect, errors.read, errors.write, errors.timeout, latency:percentile(99)))
end
