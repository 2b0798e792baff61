-- wrk script: heartbeats of many nodes, paced (used by scripts/bench-heartbeats).
--
--   wrk -tT -cC -dD -s heartbeat.lua URL -- NODES PEER PEERS THREADS HZ [PREFIX]
--
-- Node i (0 <= i < NODES) is named PREFIX followed by i in 5 digits (default prefix
-- "hb-"). This wrk process, pointed at peer PEER (0-based) of PEERS, sends the heartbeats
-- of the nodes with i % PEERS == PEER; its thread t those with (i // PEERS) % THREADS == t.
-- Each thread goes round its nodes in order at HZ x (its node count) requests per second,
-- so every node beats HZ times a second as long as the thread keeps up. Pacing: delay()
-- gives each request a slot on the thread's own schedule (LuaJIT ffi clock_gettime,
-- CLOCK_MONOTONIC); a thread that falls behind sends at once, catching up at most 1 s of
-- backlog, so the achieved rate is what the machine allowed. The requests are built once
-- in init().

local ffi = require("ffi")
ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]])
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local reqs, n, i, period, next_at
local max_lag = 1.0

function init(args)
  local nodes, peer, peers, threads, hz = tonumber(args[1]), tonumber(args[2]), tonumber(args[3]),
    tonumber(args[4]), tonumber(args[5])
  local prefix = args[6] or "hb-"
  assert(nodes and peer and peers and threads and hz, "arguments: NODES PEER PEERS THREADS HZ [PREFIX]")
  local headers = { ["Content-Type"] = "application/json" }
  local body = '{"cpu":0.2,"load":0.3,"latency_ms":20,"error_rate":0,"bandwidth_mbps":900}'
  reqs, n = {}, 0
  for k = peer, nodes - 1, peers do
    if math.floor(k / peers) % threads == tid then
      n = n + 1
      reqs[n] = wrk.format("POST", string.format("/v1/nodes/%s%05d/heartbeat", prefix, k), headers, body)
    end
  end
  assert(n > 0, "no nodes for this thread")
  i = 0
  period = 1 / (hz * n)
  next_at = nil
end

function delay()
  local t = now()
  if next_at == nil then
    next_at = t
  end
  next_at = next_at + period
  if next_at < t - max_lag then
    next_at = t - max_lag
  end
  local d = next_at - t
  if d <= 0 then
    return 0
  end
  return math.floor(d * 1000)
end

function request()
  i = i % n + 1
  return reqs[i]
end
