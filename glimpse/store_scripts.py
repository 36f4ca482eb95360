"""The Lua scripts of the job store (glimpse/store.py), registered by `JobStore`.

Each runs in Redis as one step: a check and the write it guards cannot be split by another
client, and a read of several keys is one round trip. A script reads the job hash's
`image_key` itself, so the image a job uses is found without a round trip of its own.
"""

from __future__ import annotations

# KEYS[1] job hash, KEYS[2] stats hash; ARGV[1] required status ('active' = queued or running),
# ARGV[2] ttl, ARGV[3] the attempt that must hold the job ('' = any), ARGV[4] the stats counter
# the transition counts ('' = none), then field/value pairs. Returns 1 when written, 0 when the
# job is gone, in another state, or taken up again by another attempt. Outcomes are counted
# here, with the write that makes them, so each is counted exactly once.
GUARDED_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'canceled' then return 0 end
if ARGV[1] == 'active' then
  if status ~= 'queued' and status ~= 'running' then return 0 end
elseif status ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
if ARGV[4] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
end
return 1
"""

# KEYS[1] job hash; ARGV[1] ttl. A running job whose worker died goes back to queued with its
# progress cleared (the dead attempt's partial work is never shown); 1 when done.
REQUEUE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'started_at', '', 'done', 0, 'attempt', '')
redis.call('HINCRBY', KEYS[1], 'restarts', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# KEYS[1] job hash, KEYS[2] segments key, KEYS[3] attribution key, KEYS[4] stats hash; ARGV[1]
# ttl, ARGV[2] segments PNG, ARGV[3] compressed attribution maps ('' when the method has none),
# ARGV[4] the attempt that must hold the job, then fields. The image the job keeps using (for
# overlays) lives as long as the job. Counts jobs_finished with the write.
FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[1]))
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', tonumber(ARGV[1])) end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[4], 'jobs_finished', 1)
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[1]))
local image_key = redis.call('HGET', KEYS[1], 'image_key')
if image_key then
  redis.call('EXPIRE', image_key, tonumber(ARGV[1]))
  redis.call('EXPIRE', image_key .. ':refs', tonumber(ARGV[1]))
end
return 1
"""

# KEYS[1] job hash, KEYS[2] segments key, KEYS[3] attribution key, KEYS[4] renders hash,
# KEYS[5] stats hash; ARGV[1] job id, ARGV[2] key prefix, ARGV[3] ttl. Deletes the job and
# everything only it uses; returns the status it had ('' if none). A queued or running job
# deleted counts as jobs_canceled.
DELETE = """
local fields = redis.call('HMGET', KEYS[1], 'status', 'image_key', 'cache_key')
local status = fields[1]
if not status then return '' end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if status == 'queued' or status == 'running' then
  redis.call('HINCRBY', KEYS[5], 'jobs_canceled', 1)
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[3]))
end
local image_key = fields[2]
if image_key then
  local refs = image_key .. ':refs'
  redis.call('SREM', refs, ARGV[1])
  if redis.call('SCARD', refs) == 0 then redis.call('DEL', image_key, refs) end
end
local cache_key = fields[3]
if cache_key then
  local ck = ARGV[2] .. ':cache:' .. cache_key
  if redis.call('GET', ck) == ARGV[1] then redis.call('DEL', ck) end
end
return status
"""

# KEYS[1] job hash, KEYS[2] segments key, KEYS[3] attribution key, KEYS[4] renders hash; ARGV[1]
# the field of the cached rendering asked for ('' = none), ARGV[2] '1' to read the attribution
# maps, ARGV[3] '1' to read the image. Returns {} for an unknown job; {job hash as HGETALL}
# for one not finished; {job, rendering} when the rendering is cached; else {job, false,
# segments, maps, image}, false where a value is absent or was not asked for.
ARTIFACTS = """
local job = redis.call('HGETALL', KEYS[1])
if #job == 0 then return {} end
if redis.call('HGET', KEYS[1], 'status') ~= 'finished' then return {job} end
if ARGV[1] ~= '' then
  local render = redis.call('HGET', KEYS[4], ARGV[1])
  if render then return {job, render} end
end
local maps = false
if ARGV[2] == '1' then maps = redis.call('GET', KEYS[3]) end
local image = false
if ARGV[3] == '1' then
  local image_key = redis.call('HGET', KEYS[1], 'image_key')
  if image_key and image_key ~= '' then image = redis.call('GET', image_key) end
end
return {job, false, redis.call('GET', KEYS[2]), maps, image}
"""

# KEYS[1] job hash, KEYS[2] renders hash; ARGV[1] field, ARGV[2] the rendered PNG, ARGV[3] the
# most renderings kept per job. Keeps a rendering of a finished job for as long as the job
# (its remaining time to live): 1 when written, 0 when the job is gone or not finished, or
# already keeps its most renderings. A job deleted while it was rendered is not brought back.
CACHE_RENDER = """
if redis.call('HGET', KEYS[1], 'status') ~= 'finished' then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0
  and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""
