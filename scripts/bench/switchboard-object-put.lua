-- wrk script: switchboard object writes, PUT /v1/objects/ID from region "bench" with a
-- random id per request from the same key space as ../../../shared/bench/etcd-put.lua
-- (1..100000) and a clock that grows with every request of the thread. A write whose
-- clock is not newer than the stored one is answered "stale" (it still goes through the
-- log and is compared); the others are applied and feed region "eu"'s change feed.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local n = 0

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  n = (tid or 0) * 1000000000
end

local headers = { ["Content-Type"] = "application/json" }

request = function()
  n = n + 1
  local id = "obj-" .. math.random(1, 100000)
  local body = '{"region":"bench","clock":{"bench":' .. n .. '},"size":4096,"hash":"sha256:' .. n ..
    '","attrs":{"tier":"hot"}}'
  return wrk.format("PUT", "/v1/objects/" .. id, headers, body)
end
