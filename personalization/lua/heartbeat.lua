-- KEYS[1] the directory (sorted set: worker id -> unix time its heartbeat expires), KEYS[2] the worker's key.
-- ARGV[1] worker id, ARGV[2] its status (JSON), ARGV[3] TTL in ms, ARGV[4] unix time the heartbeat expires.
-- Entries of workers whose heartbeats expired long ago (an hour) leave the directory here.
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[4]) - 3600)
return 1
