-- wrk script: HTTP/1.1 pipelining. Every write sends DEPTH requests back to back (default 16),
-- and wrk waits for all DEPTH responses before the next write; each response counts as one
-- request in wrk's totals (wrk sets its pipeline depth from the request string it verifies).
--   wrk -t1 -c64 -d10s --latency -s perf/pipeline.lua http://127.0.0.1:8000/ -- 16
-- Latency figures are per batch of DEPTH requests, from the write to the last response.

init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end
