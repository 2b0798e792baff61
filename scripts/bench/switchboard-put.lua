-- wrk script: switchboard node registrations, PUT /v1/nodes/ID with a random id per
-- request drawn from the same key space as ../../../shared/bench/etcd-put.lua
-- (1..100000). Each wrk thread seeds its own generator, so the threads do not send the
-- same sequence of ids.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
end

local headers = { ["Content-Type"] = "application/json" }
local body = '{"ip":"192.0.2.1","region":"bench","site":"s1","capacity":100}'

request = function()
  local id = "node-" .. math.random(1, 100000)
  return wrk.format("PUT", "/v1/nodes/" .. id, headers, body)
end
