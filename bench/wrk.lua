-- The bench's wrk script. Arguments after `--`: a mode and its values:
--   get PATH                  GET PATH
--   post-new TEMPLATE         POST /api/runs with a new runId each time (a new container run)
--   post-repeat TEMPLATE ID   POST /api/runs with the same runId (ADF retrying an accepted call)
-- done() prints one JSON line that the bench parses; latencies are in microseconds.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_number", #threads)
end

local counter = 0

function init(args)
   mode = args[1]
   headers = { ["Content-Type"] = "application/json", ["x-functions-key"] = args[4] }
   if mode == "get" then
      fixed = wrk.format("GET", args[2], headers)
   elseif mode == "post-repeat" then
      fixed = wrk.format("POST", "/api/runs", headers,
         string.format('{"template":"%s","runId":"%s"}', args[2], args[3]))
   else
      template = args[2]
   end
end

function request()
   if fixed then
      return fixed
   end
   counter = counter + 1
   return wrk.format("POST", "/api/runs", headers,
      string.format('{"template":"%s","runId":"load-%d-%d"}', template, thread_number, counter))
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
      '"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
